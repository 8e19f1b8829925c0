"""The saved record, typed: what every view reads, and one snapshot of a store's records per command.

A record is the ``<n>.json`` beside each answer (written by ``runner.engine.recording.make_record``; the on-disk
keys and values are a contract and never change here). Reading turns it into a ``Record``:

- ``kind`` is ``generate``, ``embed``, ``loglik``, ``grade`` (a judge's grade of an answer, kept apart) or
  ``pairwise`` (a judge's comparison of two answers, kept apart).
  Records on disk say ``generator`` and ``embedder`` (the
  model's kind) for the first two; those are mapped when read, and a record without a kind is an ``embed`` one when
  it holds an embedding, else ``generate``.
- Records of version 1 (no ``set``, ``tag``, ``persona_text``, ``model_options``) read the same, those fields None.
- Unknown keys are kept (``model_extra``), so a record of a newer version stays readable.
- A record file that cannot be used is treated as absent (``read_record`` returns None) and named in one warning
  (once per file and process): not a regular file (a FIFO, a folder, a symbolic link: never opened, so a FIFO cannot
  block a command), unreadable, not valid UTF-8 JSON, not an object, no integer ``n``, or a field of the wrong type.
  The views skip it, and the next run answers that question again (its save replaces the bad file).

``Snapshot`` holds one walk over a store (records, run manifests, the sets' ``set.json``); ``Store.snapshot``
builds it, and the views take it, so a command parses each saved record once.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Kind = Literal["generate", "embed", "loglik", "grade", "pairwise"]
# The values records on disk carry (the model's kind, or ``loglik``), and the kinds they are read as.
DISK_KINDS: dict[str, Kind] = {"generator": "generate", "embedder": "embed", "loglik": "loglik",
                               "generate": "generate", "embed": "embed", "grade": "grade",
                               "pairwise": "pairwise"}


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
    # A conversation's turns ({"role", "content"}; the last is the user turn ``question``); None for a question.
    messages: list[dict[str, str]] | None = None
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
    reasoning: str | None = None  # a reasoning model's thinking trace, kept apart from the answer (``text``)
    reasoning_tokens: int | None = None
    thinking: dict[str, Any] | None = None  # local budget forcing: {"waits": int, "forced_end": bool}
    sample: int | None = None  # self-consistency (--samples): which of the question's answers this is (1 = the answer)
    user_message: str | None = None  # the user turn sent (generate records; the system prompt is persona_text)
    prompt_text: str | None = None  # local models: the whole prompt text the model received, template applied
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
    return check_record(data, set_name)[0]


def check_record(data: Any, set_name: str | None = None) -> tuple[Record | None, str | None]:
    """A Record from a parsed JSON value, or None and what is wrong with it (in words, naming the field)."""
    if isinstance(data, Record):
        return (data.model_copy(update={"set_name": set_name}) if set_name is not None else data), None
    if not isinstance(data, dict):
        return None, f"not a JSON object (a JSON {_json_type(data)})"
    if not isinstance(data.get("n"), int) or isinstance(data.get("n"), bool):
        return None, "no integer question number 'n'"
    if set_name is not None:
        data = {**data, "set": set_name}
    try:
        return Record.model_validate(data), None
    except ValidationError as exc:
        errors = exc.errors()
        fields = list(dict.fromkeys(str(e["loc"][0]) if e.get("loc") else "record" for e in errors))
        more = f" (also wrong: {', '.join(repr(f) for f in fields[1:])})" if len(fields) > 1 else ""
        return None, f"field {fields[0]!r}: {errors[0].get('msg', 'invalid')}{more}"


class BadFile(ValueError):
    """A store file that exists but cannot be used; the message says why, in words."""


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return name
    return "not a regular file"


Fetched = bytes | BadFile | None  # a file's bytes as ``read_ahead`` found them: its bytes, why not, or no file
NOT_FETCHED: Any = object()  # read the file now


def read_file_bytes(path: Path | str, *, listed_regular: bool = False) -> bytes | None:
    """The bytes of one store file; None when there is none. BadFile when it exists but cannot be used.

    Only a regular file is ever opened (checked with ``lstat`` first, and again on the open file): a FIFO would
    block the command, a device could be endless, and a symbolic link is never followed. ``listed_regular``: the
    caller has just seen a regular file there (a folder listing), so the first check is skipped (the open never
    follows a link and the open file is checked again).
    """
    if not listed_regular:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BadFile(f"cannot be read ({exc.strerror or exc})") from None
        if not stat.S_ISREG(mode):
            raise BadFile(f"{_file_kind(mode)}, not a regular file")
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadFile("a symbolic link, not a regular file") from None
        raise BadFile(f"cannot be read ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced between the two looks
            raise BadFile(f"{_file_kind(st.st_mode)}, not a regular file")
        # os.read, not a buffered file object (a few microseconds a file, at 150,000 files); to the end, whatever
        # the size said (a file may grow while read).
        chunks = [os.read(fd, st.st_size + 1)]
        while chunks[-1]:
            chunks.append(os.read(fd, max(st.st_size, 65536)))
    except OSError as exc:
        raise BadFile(f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 2 else b"".join(chunks)


_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def read_json_file(path: Path | str, *, listed_regular: bool = False, fetched: Fetched = NOT_FETCHED) -> Any:
    """The parsed JSON of one store file; None when there is none. BadFile when it exists but cannot be used
    (``read_file_bytes`` says which files are opened). ``fetched``: its bytes as ``read_ahead`` read them."""
    if fetched is NOT_FETCHED:
        raw = read_file_bytes(path, listed_regular=listed_regular)
    elif isinstance(fetched, BadFile):
        raise fetched
    else:
        raw = fetched
    if raw is None:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadFile("not valid UTF-8") from None
    except RecursionError:
        raise BadFile("JSON nested too deeply") from None
    except ValueError as exc:
        raise BadFile(f"not valid JSON ({exc})") from None


READ_AHEAD_THREADS = 4
_CHUNK = 64  # files a thread reads in one go
_WINDOW = 8  # chunks read ahead of the parser (8 x 64 files: ~1.3 MB of records)


def read_ahead(paths: Sequence[tuple[Path | str, bool]]) -> Iterator[Fetched]:
    """The bytes of each file (``(path, listed_regular)`` as ``read_file_bytes`` takes them), in order, read by a few
    threads ahead of the caller: reading a file waits on the disk without the interpreter's lock, so while the
    caller parses one file the next ones are read (a store whose files left the page cache reads ~2x faster)."""
    if len(paths) < 2 * _CHUNK:
        for path, listed in paths:
            yield _fetch(path, listed)
        return
    chunks = [paths[i:i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    with ThreadPoolExecutor(READ_AHEAD_THREADS, thread_name_prefix="read-ahead") as pool:
        pending: deque[Future[list[Fetched]]] = deque()
        for chunk in chunks:
            pending.append(pool.submit(_fetch_all, chunk))
            if len(pending) >= _WINDOW:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


def _fetch(path: Path | str, listed_regular: bool) -> Fetched:
    try:
        return read_file_bytes(path, listed_regular=listed_regular)
    except BadFile as exc:
        return exc


def _fetch_all(chunk: Sequence[tuple[Path | str, bool]]) -> list[Fetched]:
    return [_fetch(path, listed) for path, listed in chunk]


_warned: set[tuple[str, str]] = set()


def warn_once(path: Path | str, problem: str, consequence: str) -> None:
    """One warning per file and process: ``warning: PATH: PROBLEM; CONSEQUENCE``."""
    key = (str(path), problem)
    if key not in _warned:
        _warned.add(key)
        logging.getLogger("runner").warning("warning: %s: %s; %s", path, problem, consequence)


def skipped_note(path: Path | str) -> str:
    """What happens to a record file that cannot be used, for its warning."""
    stem = Path(path).stem
    n = stem if stem.isascii() and stem.isdigit() else None
    return f"skipped (question {n} counts as not answered: a run answers it again)" if n else "skipped"


def _json_object(path: Path | str, listed_regular: bool = False,
                 fetched: Fetched = NOT_FETCHED) -> tuple[dict[str, Any] | None, str | None]:
    """A record file's JSON object, or None and what is wrong with it (None too for a file that is not there)."""
    try:
        data = read_json_file(path, listed_regular=listed_regular, fetched=fetched)
    except BadFile as exc:
        return None, str(exc)
    if data is not None and not isinstance(data, dict):
        return None, f"not a JSON object (a JSON {_json_type(data)})"
    return data, None


def inspect_record(path: Path | str, set_name: str | None = None, *, listed_regular: bool = False,
                   fetched: Fetched = NOT_FETCHED) -> tuple[dict[str, Any] | None, Record | None, str | None]:
    """One record file read and checked: its JSON object, its Record (None when it cannot be used) and what is wrong
    with it, in words (None for a usable record, and for a file that is not there: no object, no Record).
    ``fetched``: the file's bytes as ``read_ahead`` read them."""
    data, problem = _json_object(path, listed_regular, fetched)
    if data is None:
        return None, None, problem
    record, problem = check_record(data, set_name)
    return data, record, problem


def read_record_json(path: Path, *, listed_regular: bool = False) -> dict[str, Any] | None:
    """The parsed JSON object of one record file, or None when it is missing or cannot be used (with a warning).

    The one place a record file is parsed (``listed_regular``: see ``read_json_file``).
    """
    data, problem = _json_object(path, listed_regular)
    if problem:
        warn_once(path, problem, skipped_note(path))
    return data


def read_record(path: Path | str, set_name: str | None = None, *, listed_regular: bool = False,
                pool: ValuePool | None = None, fetched: Fetched = NOT_FETCHED) -> Record | None:
    """The Record saved at ``path``, or None when it is missing, unreadable or invalid (invalid ones with a warning).

    With ``pool``, values many records repeat (persona text, settings, options, ...) are shared (``ValuePool``).
    """
    _, record, problem = inspect_record(path, set_name, listed_regular=listed_regular, fetched=fetched)
    if problem:
        warn_once(path, problem, skipped_note(path))
    return record if record is None or pool is None else pool.share(record)


# Fields whose values repeat across a store's records (the same persona text, settings, question or options under
# every persona and model): ``ValuePool`` keeps one object of each value.
SHARED_FIELDS = ("kind", "set_name", "tag", "question", "context", "options", "answer", "task", "persona",
                 "persona_sha256", "persona_text", "model", "alias", "provider", "model_id", "slug", "model_options",
                 "settings", "finish_reason", "run_id", "messages", "extra")


class ValuePool:
    """One object per distinct value of the fields records repeat, for a command that holds many records.

    A store of 150,000 answers repeats each persona text, settings block and question under every model and persona:
    read as they are, those copies (and each record's own set of field names) take most of the memory. Records are
    frozen, so sharing a value between them changes nothing they show.
    """

    def __init__(self) -> None:
        self._values: dict[str, dict[Any, Any]] = {name: {} for name in SHARED_FIELDS}  # per field: token -> value
        self._given: dict[frozenset[str], set[str]] = {}

    def share(self, record: Record) -> Record:
        """``record`` with its repeated values (and its set of given field names) replaced by shared ones."""
        values = record.__dict__
        for name, pool in self._values.items():
            value = values.get(name)
            if value is None:
                continue
            if type(value) is str:  # the value is its own token
                values[name] = pool.setdefault(value, value)
                continue
            try:
                token = _frozen(value)
                hash(token)
            except TypeError:  # a value that cannot be a dictionary key: kept as it is
                continue
            values[name] = pool.setdefault(token, value)
        given = record.__pydantic_fields_set__
        object.__setattr__(record, "__pydantic_fields_set__", self._given.setdefault(frozenset(given), given))
        return record


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a JSON value (TypeError for one that has none)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        flat = ("d", tuple(value.items()), tuple(map(type, value.values())))  # 0 and 0.0, 1 and True: apart
        try:  # a flat dictionary (settings, options): one call in C
            hash(flat)
            return flat
        except TypeError:
            pass
        return ("d", tuple((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("l", tuple(_frozen(v) for v in value))
    hash(value)
    return (type(value), value)


def as_records(records: Any) -> list[Record]:
    """Records from Records or parsed record dicts (invalid ones left out): for callers holding plain data."""
    return list(each_record(records))


def each_record(records: Any) -> Iterator[Record]:
    """``as_records`` one at a time: a caller that reads records as they come never holds them all."""
    for item in records:
        record = item if isinstance(item, Record) else parse_record(item)
        if record is not None:
            yield record


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
    # What views derive from these records, kept for the command so that one view's work is not redone by another
    # (``views.scores.snapshot_choices``: each answer's letter, extracted once for the cards and the scores).
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def records_of(self, set_name: str | None = None) -> list[Record]:
        """The records of one question set (every record when None)."""
        if set_name is None:
            return list(self.records)
        return [r for r in self.records if r.set_name == set_name]

    def info(self, set_name: str) -> dict[str, Any] | None:
        """A set's ``set.json`` (where its questions came from), or None."""
        return self.infos.get(set_name)
