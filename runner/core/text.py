"""Untrusted text made safe: for a terminal (``sanitize``), cut to a bounded length (``shorten``), and the
characters an input file may not hold (``bad_character``).

Every function here is linear in the length of the text: a server's reply, a model's answer or an input file can
be megabytes of one unbroken token, and nothing may stall on it.
"""

from __future__ import annotations

import re

# Escape sequences a terminal acts on, in their 7-bit (ESC [) and 8-bit (U+009B) forms. Each alternative starts at
# an introducer and scans a run of characters that stops at the next introducer, so a failed match never rescans:
# the whole substitution is linear.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI: cursor moves, screen clears, colours
    # OSC (window title, hyperlinks), DCS, SOS, PM and APC strings, ended by BEL or ST
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d-\x9f])[^\x07\x1b\x90\x98\x9b-\x9f]*(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[ -/]*[0-~]"  # every other escape (and the start of an unterminated one: the rest shows as text)
)
# C0 controls but newline, DEL, C1 controls (U+009B is an 8-bit CSI) and the bidi overrides and isolates, which
# reorder what follows them on screen.
_INVISIBLE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SURROGATES = re.compile("[\ud800-\udfff]")
# What an input file may not hold: C0 controls other than tab, newline and carriage return, DEL, C1 controls,
# and lone surrogates (JSON's "\ud800" decodes to one; it cannot be written as UTF-8).
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

DEFAULT_LIMIT = 2000


def sanitize(text: str, *, newlines: bool = True) -> str:
    """``text`` made safe to print on a terminal: no escape sequences, control or bidi-override characters.

    Carriage returns become newlines and tabs spaces (4 columns); with ``newlines=False`` (a name, an id, a
    title: one line) every line break becomes a space. Lone surrogates become U+FFFD, so printing never fails.
    """
    if not text:
        return text
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ESCAPES.sub("", text)
    if "\t" in text:
        text = text.expandtabs(4)
    text = _INVISIBLE.sub("", text)
    text = _SURROGATES.sub("\ufffd", text)
    return text if newlines else text.replace("\n", " ")


def shorten(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """``text`` cut to its first ``limit`` characters, saying how long it was: ``abc… (123,456 characters)``."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (undecodable bytes of a file name or an argument end up as these)."""
    return _SURROGATES.search(text) is not None


def bad_character(text: str) -> str | None:
    """A description of the first character an input file may not hold (``the control character U+001B``,
    ``a lone surrogate U+D800 (not valid Unicode)``), or None when there is none."""
    match = _FORBIDDEN.search(text)
    if match is None:
        return None
    code = ord(match.group())
    if 0xD800 <= code <= 0xDFFF:
        return f"a lone surrogate U+{code:04X} (not valid Unicode)"
    return f"the control character U+{code:04X}"
