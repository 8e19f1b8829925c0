"""The saved record, typed: what every view reads, and one snapshot of a store's records per command.

A record is the ``<n>.json`` beside each answer (written by ``runner.engine.recording.make_record``; the on-disk
keys and values are a contract and never change here). Reading turns it into a ``Record``:

- ``kind`` is ``generate``, ``embed`` or ``loglik``. Records on disk say ``generator`` and ``embedder`` (the
  model's kind) for the first two; those are mapped when read, and a record without a kind is an ``embed`` one when
  it holds an embedding, else ``generate``.
- Records of version 1 (no ``set``, ``tag``, ``persona_text``, ``model_options``) read the same, those fields None.
- Unknown keys are kept (``model_extra``), so a record of a newer version stays readable.
- A record that is not valid JSON, not an object, or has no integer ``n`` is treated as absent (``read_record``
  returns None), as before.

``Snapshot`` holds one walk over a store (records, run manifests, the sets' ``set.json``); ``Store.snapshot``
builds it, and the views take it, so a command parses each saved record once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Kind = Literal["generate", "embed", "loglik"]
# The values records on disk carry (the model's kind, or ``loglik``), and the kinds they are read as.
DISK_KINDS: dict[str, Kind] = {"generator": "generate", "embedder": "embed", "loglik": "loglik",
                               "generate": "generate", "embed": "embed"}


class LoglikBlock(BaseModel):
    """The ``loglik`` block of a log-likelihood record: every choice's score and the choices made."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    num_fewshot: int | None = None
    letters: list[str] = Field(default_factory=list)
    choices: list[str] = Field(default_factory=list)
    logprobs: list[float] = Field(default_factory=list)
    greedy: list[bool] = Field(default_factory=list)
    acc_choice: str | None = None
    acc_norm_choice: str | None = None
    acc: int | None = None
    acc_norm: int | None = None
    prompt: str | None = None
    template_version: int | str | None = None


class Record(BaseModel):
    """One saved answer (``generate``), question embedding (``embed``) or log-likelihood result (``loglik``)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, protected_namespaces=(),
                              coerce_numbers_to_str=True, frozen=True)

    n: Annotated[int, Field(strict=True)]
    kind: Kind = "generate"
    version: int | None = None
    set_name: str | None = Field(default=None, alias="set")  # always filled in by the store when read
    tag: str | None = None
    question_id: str | None = None
    question: str = ""
    context: str | None = None
    options: dict[str, str] | None = None
    answer: str | None = None  # the right option's letter, for multiple-choice questions
    task: str | None = None
    extra: dict[str, Any] | None = None
    persona: str | None = None
    persona_sha256: str | None = None
    persona_text: str | None = None
    model: str | None = None
    alias: str | None = None
    provider: str | None = None
    model_id: str | None = None
    slug: str | None = None
    model_options: dict[str, Any] | None = None
    settings: dict[str, Any] | None = None
    text: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    finish_reason: str | None = None
    error: str | None = None
    attempts: int | None = None
    warnings: list[str] | None = None
    time: str | None = None
    key: str | None = None
    run_id: str | None = None
    embedding_dim: int | None = None
    embedding: list[float] | None = None
    loglik: LoglikBlock | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_kind(cls, data: Any) -> Any:
        """Map the kinds written on disk (``generator``, ``embedder``) to the record kinds; guess a missing one."""
        if isinstance(data, dict):
            kind = data.get("kind")
            if kind is None:
                kind = "embed" if data.get("embedding") is not None else "generate"
            data = {**data, "kind": DISK_KINDS.get(kind, kind) if isinstance(kind, str) else kind}
        return data

    @field_validator("question", mode="before")
    @classmethod
    def _no_question(cls, value: Any) -> Any:
        return "" if value is None else value

    @property
    def ok(self) -> bool:
        """True when the record holds a result (no error)."""
        return not self.error

    @property
    def model_name(self) -> str:
        """The canonical model name (``provider:model-id``), else the slug, else ``?``."""
        return self.model or self.slug or "?"

    @property
    def label(self) -> str:
        """The display name: the catalog alias when there is one, else the model; ``@tag`` for a named variant."""
        name = self.alias or self.model_name
        return f"{name}@{self.tag}" if self.tag else name

    @property
    def names(self) -> set[str]:
        """Every name a model filter may use for this record: model, alias, slug, model id, each also ``name@tag``.

        A plain name matches every variant of the model; ``name@tag`` matches one.
        """
        names = {str(v) for v in (self.model, self.alias, self.slug, self.model_id) if v}
        if self.tag:
            names |= {f"{name}@{self.tag}" for name in names}
        return names

    @property
    def multiple_choice(self) -> bool:
        """True for a question with options and a right answer."""
        return bool(self.options) and bool(self.answer)


def parse_record(data: Any, set_name: str | None = None) -> Record | None:
    """A Record from a parsed JSON value (``set_name``, when given, is the set it was found in); None when invalid."""
    if isinstance(data, Record):
        return data.model_copy(update={"set_name": set_name}) if set_name is not None else data
    if not isinstance(data, dict) or not isinstance(data.get("n"), int):
        return None
    if set_name is not None:
        data = {**data, "set": set_name}
    try:
        return Record.model_validate(data)
    except ValidationError:
        return None


def read_record_json(path: Path) -> dict[str, Any] | None:
    """The parsed JSON object of one record file, or None when it is missing or unreadable.

    The one place a record file is parsed.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_record(path: Path, set_name: str | None = None) -> Record | None:
    """The Record saved at ``path``, or None when it is missing, unreadable or invalid."""
    return parse_record(read_record_json(path), set_name)


def as_records(records: Any) -> list[Record]:
    """Records from Records or parsed record dicts (invalid ones left out): for callers holding plain data."""
    out = []
    for item in records:
        record = parse_record(item)
        if record is not None:
            out.append(record)
    return out


@dataclass
class Snapshot:
    """One walk over an output store: its records, run manifests and question sets, read once.

    ``records`` are those of ``scope`` (one set) or of every set when ``scope`` is None; ``set_names`` and
    ``infos`` always cover the whole store.
    """

    root: Path
    records: list[Record] = field(default_factory=list)
    manifests: list[dict[str, Any]] = field(default_factory=list)
    set_names: list[str] = field(default_factory=list)
    infos: dict[str, dict[str, Any]] = field(default_factory=dict)  # each set's ``set.json``, when it has one
    scope: str | None = None

    def records_of(self, set_name: str | None = None) -> list[Record]:
        """The records of one question set (every record when None)."""
        if set_name is None:
            return list(self.records)
        return [r for r in self.records if r.set_name == set_name]

    def info(self, set_name: str) -> dict[str, Any] | None:
        """A set's ``set.json`` (where its questions came from), or None."""
        return self.infos.get(set_name)
