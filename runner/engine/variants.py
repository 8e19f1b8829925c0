"""What a saved answer was made with, and how a new request differs from it.

A run that would overwrite a saved answer made with another persona text, other settings or other model options
(a *variant*) stops before writing and says what differs: ``--tag NAME`` keeps both, ``--force`` replaces.
A question whose text changed since its answer was saved is not a variant: it is answered anew.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.core.personas import Persona
    from runner.core.questions import Question
    from runner.core.settings import GenerationSettings
    from runner.providers.catalog import ModelSpec

MISSING, FAILED, SAME, VARIANT, CHANGED = "missing", "failed", "same", "variant", "changed"


def saved_state(record: dict[str, Any] | None, key: str, question: Question) -> str:
    """How a saved record stands against a new request for ``key``.

    ``missing`` or ``failed``: nothing worth keeping; ``same``: made for exactly this key; ``changed``: made for
    another text of the question; ``variant``: the same question under another persona text or settings.
    """
    if not record:
        return MISSING
    if record.get("error"):
        return FAILED
    if record.get("key") == key:
        return SAME
    # A conversation's earlier turns are part of its text (plain questions and their records have none).
    turns = None if question.messages is None else [{"role": m.role, "content": m.content} for m in question.messages]
    saved = json.dumps([record.get("question"), record.get("context"), record.get("options"), record.get("messages")],
                       ensure_ascii=False, sort_keys=True)
    now = json.dumps([question.question, question.context, question.options, turns], ensure_ascii=False,
                     sort_keys=True)
    return VARIANT if saved == now else CHANGED


def _quote(text: str, limit: int = 48) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[:limit - 1] + "…")


def differences(record: dict[str, Any], persona: Persona | None, spec: ModelSpec | None,
                settings: GenerationSettings | None) -> list[str]:
    """What differs between a saved record and a new request, in words (``temperature 0.0 -> 0.7``)."""
    out: list[str] = []
    if persona is not None and record.get("persona_sha256") not in (None, persona.sha256):
        old = record.get("persona_text")
        out.append(f"persona text {_quote(old)} -> {_quote(persona.text)}" if old else
                   f"persona text (now {_quote(persona.text)})")
    if settings is not None and isinstance(record.get("settings"), dict):
        new = settings.answer_key_fields()
        for name, value in new.items():
            old = record["settings"].get(name)
            if old != value:
                out.append(f"{name} {old} -> {value}")
    if spec is not None and "model_options" in record:
        from runner.engine.recording import model_options

        new_options = model_options(spec)
        for name in sorted(set(new_options) | set(record["model_options"] or {})):
            old, value = (record["model_options"] or {}).get(name), new_options.get(name)
            if old != value:
                out.append(f"{name} {old} -> {value}")
    return out or ["other model options or examples"]


@dataclass
class Conflict:
    """Saved answers of one model under one persona that a run would replace with a variant."""

    set_name: str
    persona: str
    label: str
    folder: str
    count: int = 0
    what: Counter[str] = field(default_factory=Counter)


def format_conflicts(conflicts: list[Conflict], output_dir: object) -> str:
    """The message a run stops with when it would replace variants (nothing has been written)."""
    lines = ["this run would replace saved answers made with other settings; nothing was written:"]
    for c in conflicts:
        what = "; ".join(w for w, _ in c.what.most_common(3))
        lines.append(f"  {c.label} [{c.persona}] in set {c.set_name!r} ({output_dir}/{c.set_name}/{c.persona}/"
                     f"{c.folder}/): {c.count} answer(s) differ: {what}")
    lines.append("Keep both: add --tag NAME (this run's answers are saved as a named variant beside the others).")
    lines.append("Replace them: add --force.")
    return "\n".join(lines)
