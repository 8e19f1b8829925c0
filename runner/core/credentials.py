"""Credentials: read from the environment (or ``.env``), and scrubbed from anything we write or print."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from runner.core.errors import ModelUnavailable

SECRET_NAME_RE = re.compile(r"(API_KEY|_TOKEN|_SECRET|PASSWORD)$", re.IGNORECASE)
# Shapes of well-known keys, scrubbed even when they are not in our environment.
KEY_SHAPES = re.compile(r"\b(sk-[A-Za-z0-9_-]{16,}|AIza[0-9A-Za-z_-]{30,}|hf_[A-Za-z0-9]{20,})")
URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def load_env_file(path: str | Path = ".env") -> None:
    """Load ``.env`` from the current directory; variables already set win."""
    if Path(path).is_file():
        from dotenv import load_dotenv

        load_dotenv(path, override=False)


def get_key(env_vars: Sequence[str], model: str) -> str:
    """The first of ``env_vars`` that is set; otherwise ModelUnavailable naming the variable to set."""
    for var in env_vars:
        value = os.environ.get(var, "").strip()
        if value:
            return value
    names = " or ".join(env_vars)
    raise ModelUnavailable(f"{model}: no API key; set {names} in the environment or in .env")


def secret_values() -> list[str]:
    """Values of environment variables that look like credentials (long enough to be worth hiding)."""
    return sorted({v for k, v in os.environ.items() if SECRET_NAME_RE.search(k) and len(v) >= 6}, key=len,
                  reverse=True)


def redact(text: str) -> str:
    """Replace every known secret value, key-shaped string and URL password in ``text`` with ``***``."""
    if not text:
        return text
    for value in secret_values():
        text = text.replace(value, "***")
    text = KEY_SHAPES.sub("***", text)
    return URL_USERINFO.sub(r"\g<scheme>***@", text)
