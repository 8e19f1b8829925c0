"""The manifest each run writes: settings, models, personas, package versions, questions hash. Never a key.

A manifest is written at the start of a run (status ``running``, with the process id and host that run it) and
rewritten at its end (``finished``, ``interrupted``, ``disk-full``, ``crashed``). A run killed outright never
rewrites it: ``run_status`` reads such a manifest as ``interrupted or killed`` once its process is gone.
"""

from __future__ import annotations

import functools
import os
import platform
import secrets
import socket
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.core.credentials import redact

if TYPE_CHECKING:
    from runner.core.personas import Persona
    from runner.core.questions import Question
    from runner.core.settings import GenerationSettings
    from runner.providers.catalog import ModelSpec

RUNNING, GONE = "running", "interrupted or killed"
PACKAGES = ("medical-model-runner", "torch", "transformers", "accelerate", "bitsandbytes", "sentence-transformers",
            "gguf", "openai", "google-genai", "pydantic", "numpy")


def new_run_id() -> str:
    """A sortable, unique run id: UTC time (to the millisecond, so runs in one second keep their order) and a
    random suffix."""
    now = datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z-" + secrets.token_hex(3)


@functools.cache
def _versions() -> tuple[tuple[str, str | None], ...]:
    found = []
    for name in PACKAGES:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            found.append((name, None))
    return tuple(found)


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape answers (read from metadata once per process)."""
    return dict(_versions())


def build_manifest(run_id: str, questions: Sequence[Question], questions_path: str | Path | None,
                   specs: Sequence[ModelSpec], personas: Sequence[Persona], settings: GenerationSettings,
                   argv: Sequence[str] | None) -> dict[str, Any]:
    """The manifest written at the start of a run (completed with counts at its end)."""
    from runner.core.questions import file_sha256

    path = Path(questions_path) if questions_path else None
    return {
        "run_id": run_id,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": RUNNING,
        "process": this_process(),
        "argv": [redact(a) for a in argv] if argv is not None else None,
        "questions": {
            "path": str(path) if path else None,
            "sha256": file_sha256(path) if path and path.is_file() else None,
            "count": len(questions),
        },
        "personas": [{"name": p.name, "sha256": p.sha256, "source": p.source} for p in personas],
        "models": [_model_entry(s, settings) for s in specs],
        "settings": settings.model_dump(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def this_process() -> dict[str, Any]:
    """Which process runs: its id, its host, and its start time (Linux), so a reused process id is not mistaken
    for it."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "start": _proc_stat(os.getpid())[1]}


def run_status(manifest: dict[str, Any]) -> str:
    """A run's status as it stands now: ``running`` only while the process that wrote it is alive.

    A manifest left ``running`` by a run that was killed (``kill -9``, the OOM killer, a power cut) reads
    ``interrupted or killed``; one from another host, or from before the process was recorded, reads
    ``running (on HOST)`` or ``running or killed``, since it cannot be checked from here.
    """
    status = manifest.get("status")
    if status != RUNNING:
        return str(status) if status is not None else "unknown"
    process = manifest.get("process")
    if not isinstance(process, dict) or not isinstance(process.get("pid"), int):
        return "running or killed"
    if process.get("host") != socket.gethostname():
        return f"running (on {process.get('host')})"
    return RUNNING if _alive(process["pid"], process.get("start")) else GONE


def _alive(pid: int, start: Any) -> bool:
    """True when process ``pid`` exists here and (when its start time was recorded) is the same process."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    except OSError:
        return False
    state, now = _proc_stat(pid)
    if state in ("Z", "X"):  # killed, not yet reaped by its parent
        return False
    return start is None or now is None or now == start


def _proc_stat(pid: int) -> tuple[str | None, int | None]:
    """The process's state letter and start time in clock ticks since boot (``/proc/<pid>/stat``); None where
    unknown (not Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        fields = stat[stat.rindex(")") + 2:].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None, None


def _model_entry(spec: ModelSpec, settings: GenerationSettings | None = None) -> dict[str, Any]:
    """A model in the manifest: its spec, and the settings it ran with where they differ from the run's (its model
    card's defaults, or a local-only setting not sent to an API model)."""
    data = spec.model_dump(exclude_none=True)
    if settings is not None:
        own, run = spec.settings_for(settings).model_dump(), settings.model_dump()
        if own != run:
            data["settings"] = {k: v for k, v in own.items() if v != run[k]}
    if "base_url" in data:
        data["base_url"] = redact(data["base_url"])
    data["name"] = spec.name
    return data
