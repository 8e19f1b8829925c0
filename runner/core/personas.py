"""Personas: expert system prompts, one per ``.md`` file (name = file name without ``.md``).

The bundled personas ship inside the package (``runner/prompts/``, package data read through
``importlib.resources``, so a wheel or ``pip install .`` has them); a ``prompts/`` folder in the current
directory is searched first. ``none`` is built in: no system prompt at all (a persona file cannot be empty).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from runner.core.errors import InputError, UsageError, did_you_mean
from runner.core.text import has_surrogate

DEFAULT_PERSONA = "oncology-researcher"
BUNDLED_PACKAGE, BUNDLED_FOLDER = "runner", "prompts"  # the bundled personas: runner/prompts/*.md
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NO_PERSONA = "none"  # the built-in persona with no text: models get no system message (HealthBench sends none)


@dataclass(frozen=True)
class Persona:
    """A named system prompt. ``source`` is the file it came from, or ``inline``."""

    name: str
    text: str
    source: str

    @property
    def summary(self) -> str:
        """The first sentence of the prompt, for listings."""
        if not self.text:
            return "(no system prompt: only the question or conversation is sent)"
        first = " ".join(self.text.split())
        match = re.match(r"(.+?[.!?])(\s|$)", first)
        sentence = match.group(1) if match else first
        return sentence if len(sentence) <= 110 else sentence[:107] + "..."

    @property
    def sha256(self) -> str:
        """Hash of the prompt text (part of each answer's cache key)."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def bundled_dir() -> Traversable:
    """The folder of bundled personas inside the installed package (a plain folder for an ordinary install)."""
    return resources.files(BUNDLED_PACKAGE).joinpath(BUNDLED_FOLDER)


def persona_dirs() -> list[Traversable]:
    """Folders searched for personas: ``./prompts`` first, then the bundled one."""
    local = Path.cwd() / "prompts"
    return [local, bundled_dir()] if local.is_dir() else [bundled_dir()]


def list_personas() -> list[Persona]:
    """Every persona found, by name (a name in ``./prompts`` hides the bundled one)."""
    found: dict[str, Persona] = {}
    for folder in persona_dirs():
        try:
            entries = sorted(folder.iterdir(), key=lambda e: e.name)
        except OSError:  # an unreadable ./prompts lists nothing, as an empty one
            continue
        for entry in entries:
            stem = entry.name.removesuffix(".md")
            if entry.name.endswith(".md") and stem not in found and NAME_RE.match(stem) and entry.is_file():
                try:
                    found[stem] = _read_entry(entry)
                except InputError:
                    continue
    return [found[name] for name in sorted(found)]


def _read_entry(entry: Traversable) -> Persona:
    """A persona from a folder entry: a file on disk (every check of ``read_persona_file``) or package data."""
    if isinstance(entry, Path):
        return read_persona_file(entry)
    text = entry.read_text(encoding="utf-8").strip()
    if not text:
        raise InputError(str(entry), None, "persona file is empty")
    return Persona(name=entry.name.removesuffix(".md"), text=text, source=str(entry))


def read_persona_file(path: Path, name: str | None = None) -> Persona:
    """Load one persona file; an empty, unreadable, missing or not-a-file path is an InputError naming the fix."""
    if has_surrogate(str(path)):  # it would be recorded as the persona's source, which must be UTF-8
        raise InputError(ascii(str(path)), None, "the file name is not valid UTF-8; rename the file")
    try:
        if path.is_dir():
            raise InputError(str(path), None, "is a folder, not a persona file; give a .md file inside it "
                                              "(--persona path/to/file.md) or a persona name")
        if path.exists() and not path.is_file():  # a FIFO or a device would block or never end
            raise InputError(str(path), None, "is not a regular file; give a .md file or a persona name")
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise InputError(str(path), None, "persona file not found") from None
    except UnicodeDecodeError as exc:
        raise InputError(str(path), None, f"persona file is not valid UTF-8 (byte {exc.start + 1}); "
                                          "save it as UTF-8") from None
    except OSError as exc:  # a parent that is a file, a name too long, no permission
        raise InputError(str(path), None, f"cannot read persona file: {exc.strerror or exc}") from None
    if not text:
        raise InputError(str(path), None, "persona file is empty")
    stem = name or path.stem
    if not NAME_RE.match(stem):
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip("._-")[:64] or "persona"
    return Persona(name=stem, text=text, source=str(path))


def is_persona_path(spec: str) -> bool:
    """Whether a persona spec names a file (``my/prompt.md``) rather than a persona (``cardiologist``)."""
    return "/" in spec or "\\" in spec or spec.strip().endswith((".md", ".txt"))


def resolve_persona(spec: str) -> Persona:
    """A persona by name (``cardiologist``) or by path (``my/prompt.md``); ``none``: no system prompt."""
    spec = spec.strip()
    if not spec:
        raise UsageError("empty persona name")
    if spec == NO_PERSONA:  # built in, and reserved: a prompts/none.md does not replace it
        return no_persona()
    if is_persona_path(spec):
        return read_persona_file(Path(spec))
    for folder in persona_dirs() if NAME_RE.match(spec) else ():  # a name is short and plain, never a path
        entry = folder.joinpath(f"{spec}.md")
        if entry.is_file():
            return _read_entry(entry)
    names = [p.name for p in list_personas()]
    raise UsageError(f"unknown persona {spec!r}{did_you_mean(spec, names)}; known personas: "
                     f"{', '.join(names) or '(none found)'} (or give a path to a .md file)")


def no_persona() -> Persona:
    """The built-in persona ``none``: empty text, so no system message is sent."""
    return Persona(name=NO_PERSONA, text="", source="built-in")


def resolve_personas(specs: list[str], system_prompt: str | None = None) -> list[Persona]:
    """Resolve ``--persona a,b`` or an inline ``--system-prompt`` (named ``custom``)."""
    if system_prompt is not None:
        if not system_prompt.strip():
            raise UsageError("--system-prompt is empty")
        if has_surrogate(system_prompt):  # bytes that are not UTF-8 on the command line
            raise UsageError("--system-prompt is not valid UTF-8; pass the text in UTF-8")
        return [Persona(name="custom", text=system_prompt.strip(), source="inline")]
    personas = [resolve_persona(s) for s in specs]
    names = [p.name for p in personas]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise UsageError(f"persona given twice: {', '.join(sorted(dupes))}")
    return personas
