"""File permissions: what a new file gets (the umask decides, as for any file the user makes)."""

from __future__ import annotations

import os


def current_umask() -> int:
    """The process's umask (read from ``/proc`` where it can be, which changes nothing; else set and restored)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The permissions a plain ``open(path, "w")`` gives a new file: 0o666 less the umask (0o644 under 022)."""
    return 0o666 & ~current_umask()
