"""Credentials: read from the environment (or ``.env``), and scrubbed from anything we write or print.

``redact`` hides a credential in every form it takes on the wire: the value of a key variable, a key-shaped
string, the password of a URL (as written, percent-decoded, and base64-encoded as HTTP Basic auth sends it) and
the value of an ``Authorization`` header. It is linear in the length of the text (a server's error can be
megabytes of one unbroken token), and ``redact(text, limit=N)`` cuts a long text safely: a secret that straddles
the cut is still hidden.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import unquote

from runner.core.errors import InputError, ModelUnavailable

SECRET_NAME_RE = re.compile(r"(API_KEY|_TOKEN|_SECRET|PASSWORD)$", re.IGNORECASE)
# Shapes of well-known keys, scrubbed even when they are not in our environment. Each alternative is a literal
# followed by one character class: a failed attempt scans at most the run of that class, so the search is linear.
KEY_SHAPES = re.compile(r"\b(?:sk-[A-Za-z0-9_-]{16,}|AIza[0-9A-Za-z_-]{30,}|hf_[A-Za-z0-9]{20,})")
# ``Authorization: Bearer xyz``, ``"authorization": "Basic eHl6"``, ``Authorization=xyz``: the value goes,
# whatever the scheme. The scheme is matched possessively, so ``Bearer ***`` is left alone.
AUTH_HEADER = re.compile(r"(authorization[\"']?[ \t]*[:=][ \t\"']*(?:(?:basic|bearer|token)[ \t]+)?+)"
                         r"[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# A credential after its scheme without the header's name: ``Basic <base64 of user:password>``, ``Bearer <key>``.
BASIC_VALUE = re.compile(r"(?<![A-Za-z0-9])(basic[ \t]+)([A-Za-z0-9+/]{4,}={0,2})", re.IGNORECASE)
BEARER_VALUE = re.compile(r"(?<![A-Za-z0-9])(bearer[ \t]+)([A-Za-z0-9._~+/-]{8,}=*)", re.IGNORECASE)
# Where a URL's authority (``user:password@host:port``) ends.
_AUTHORITY_END = re.compile(r"[/?#\s\"'<>]")
_CUT_MARGIN = 512  # redact this much past a cut, so that a secret straddling the cut is recognised whole
_REMEMBERED_URLS: set[str] = set()  # base URLs from the config file, whose passwords are not in the environment


def load_env_file(path: str | Path = ".env") -> None:
    """Load ``.env`` from the current directory; variables already set win.

    A ``.env`` that is not UTF-8 or cannot be read is an InputError naming the file and the fix.
    """
    path = Path(path)
    if not path.is_file():
        return
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(str(path), line, "not valid UTF-8; save the file as UTF-8 (or remove the character), "
                                          "or delete it and set the variables in the environment") from None
    except OSError as exc:
        raise InputError(str(path), None, f"cannot read it ({exc.strerror}); fix its permissions or delete it, "
                                          "and set the variables in the environment") from None
    from dotenv import load_dotenv

    load_dotenv(stream=io.StringIO(text), override=False)


def get_key(env_vars: Sequence[str], model: str) -> str:
    """The first of ``env_vars`` that is set; otherwise ModelUnavailable naming the variable to set."""
    for var in env_vars:
        value = os.environ.get(var, "").strip()
        if value:
            return value
    names = " or ".join(env_vars)
    raise ModelUnavailable(f"{model}: no API key; set {names} in the environment or in .env")


def remember_url(url: str | None) -> None:
    """Hide this URL's password too (a base URL from the config file, which the environment does not hold)."""
    if url and "@" in url:
        _REMEMBERED_URLS.add(url)


def secret_values() -> list[str]:
    """Every exact string to hide, longest first: values of credential variables, and the password of every URL
    in the environment (or remembered) in each form it takes on the wire."""
    values: set[str] = set()
    for name, value in os.environ.items():
        if SECRET_NAME_RE.search(name) and len(value) >= 6:
            values.add(value)
        if "://" in value and "@" in value:
            values.update(url_secret_forms(value))
    for url in _REMEMBERED_URLS:
        values.update(url_secret_forms(url))
    return sorted(values, key=len, reverse=True)


def url_secret_forms(text: str) -> set[str]:
    """The credentials of every URL in ``text``, as sent: ``user:password`` as written and percent-decoded, the
    password alone (when 6 characters or more, like any secret value), and the base64 of each pair (HTTP Basic
    auth: ``Authorization: Basic <base64>``, with and without its ``=`` padding)."""
    forms: set[str] = set()
    for _, start, end in _userinfos(text):
        userinfo = text[start:end]
        for pair in {userinfo, unquote(userinfo)}:
            user, _, password = pair.partition(":")
            if len(pair) >= 6:
                forms.add(pair)
            if len(password) >= 6:
                forms.add(password)
            for encoding in ("utf-8", "latin-1"):
                try:
                    encoded = base64.b64encode(f"{user}:{password}".encode(encoding)).decode("ascii")
                except UnicodeEncodeError:
                    continue
                forms.update({encoded, encoded.rstrip("=")} - {""})
    return forms


def _userinfos(text: str) -> Iterator[tuple[int, int, int]]:
    """``(scheme_end, start, end)`` of each URL's userinfo (``text[start:end]``, before the last ``@`` of the
    authority). Each authority scan stops at the next ``/``, and every ``://`` holds one: linear."""
    i = text.find("://")
    while i != -1:
        start = i + 3
        stop = _AUTHORITY_END.search(text, start)
        end_of_authority = stop.start() if stop else len(text)
        at = text.rfind("@", start, end_of_authority)
        if at > start:
            yield i, start, at
        i = text.find("://", max(end_of_authority, start))


def _scrub_userinfo(text: str) -> str:
    parts: list[str] = []
    pos = 0
    for _, start, end in _userinfos(text):
        parts += [text[pos:start], "***"]
        pos = end
    if not parts:
        return text
    parts.append(text[pos:])
    return "".join(parts)


def _basic_value(match: re.Match[str]) -> str:
    """``Basic ***`` when the value is the base64 of ``user:password``; else the text as it was (``Basic sense``)."""
    value = match.group(2)
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return match.group(0)
    if ":" in decoded and decoded.isprintable():
        return match.group(1) + "***"
    return match.group(0)


def _bearer_value(match: re.Match[str]) -> str:
    """``Bearer ***`` when the value looks like a token (a digit in it, or long); else as it was."""
    value = match.group(2)
    if len(value) >= 20 or any(c.isdigit() for c in value):
        return match.group(1) + "***"
    return match.group(0)


def _redact(text: str) -> str:
    for value in secret_values():
        if value in text:
            text = text.replace(value, "***")
    # Each regex scan costs about a second per 50 MB; a plain search for its word first skips it when it cannot
    # match (the usual case).
    lowered = text.lower()
    if "authorization" in lowered:
        text = AUTH_HEADER.sub(r"\1***", text)
    if "basic" in lowered:
        text = BASIC_VALUE.sub(_basic_value, text)
    if "bearer" in lowered:
        text = BEARER_VALUE.sub(_bearer_value, text)
    if "sk-" in text or "AIza" in text or "hf_" in text:
        text = KEY_SHAPES.sub("***", text)
    if "://" in text:
        text = _scrub_userinfo(text)
    return text


def redact(text: str, limit: int | None = None) -> str:
    """``text`` with every known secret value, key-shaped string, URL password (in any form) and Authorization
    value replaced by ``***``.

    With ``limit``, a longer text is cut to its first ``limit`` characters, saying how long it was
    (``… (123,456 characters)``); only the part kept (and a margin past it) is scanned, so a huge server reply
    costs no more than a short one.
    """
    if not text:
        return text
    if limit is None or len(text) <= limit:
        return _redact(text)
    end = limit + _CUT_MARGIN
    while True:
        # Redacting shortens the text; the cut must still fall a margin before the end of what was scanned, so
        # that a secret cut in two by the window is never shown in part.
        cleaned = _redact(text[:end])
        if end >= len(text) or len(cleaned) >= limit + _CUT_MARGIN:
            break
        end *= 2
    if len(cleaned) <= limit:
        return cleaned
    return f"{cleaned[:limit]}… ({len(text):,} characters)"
