"""Public multiple-choice benchmarks as distributed, read into ``runner.core.questions.Question`` objects.

Each format (the ``--format`` names; detected from the keys when not given) is a benchmark family of
``runner.tasks.families``, which describes its records and converts them.

Files: ``.jsonl``, ``.json`` (a list, an object keyed by id, or {"data": [...]}) and ``.parquet``.
``load_hub_dataset`` reads the same formats through the ``datasets`` library (online, or its cache offline).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from runner.core.errors import InputError, UsageError
from runner.core.questions import Question
from runner.tasks.registry import Family, HubDataset, family_by_format, family_of_record, format_names, hub_dataset


def detect_format(row: dict[str, Any]) -> str | None:
    """The benchmark format a record's keys show, or None."""
    family = family_of_record(row)
    return family.name if family else None


def read_rows(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(line or record number, record) for every record of a JSONL, JSON or Parquet file."""
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise InputError(name, None, "benchmark file not found" if not path.exists() else "not a file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return list(enumerate(_parquet_rows(path), start=1))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(name, None, "not valid UTF-8") from None
    if suffix == ".json":
        return list(enumerate(_json_rows(text, name), start=1))
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(name, lineno, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise InputError(name, lineno, f"expected a JSON object, got {type(obj).__name__}")
        rows.append((lineno, obj))
    return rows


def _parquet_rows(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError("reading Parquet files needs pyarrow: pip install pyarrow") from None
    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
        raise InputError(str(path), None, f"cannot read Parquet: {exc}") from None


def _json_rows(text: str, name: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(name, exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if isinstance(data, dict):  # keyed by id, as PubMedQA's ori_pqal.json
        data = [{"id": key, **value} if isinstance(value, dict) else value for key, value in data.items()]
    if not isinstance(data, list):
        raise InputError(name, None, "expected a list of records or an object keyed by id")
    for i, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise InputError(name, None, f"record {i} is a {type(row).__name__}, not an object")
    return data


def load_benchmark(path: str | Path, fmt: str | None = None, task: str | None = None, limit: int | None = None,
                   start: int = 1) -> list[Question]:
    """Read a benchmark file into multiple-choice Questions numbered from ``start``."""
    rows = read_rows(path)
    if not rows:
        raise InputError(str(path), None, "no records in the file")
    return convert_rows(rows, str(path), fmt, task, limit, start)


def convert_rows(rows: Iterable[tuple[int, dict[str, Any]]], name: str, fmt: str | None = None,
                 task: str | None = None, limit: int | None = None, start: int = 1) -> list[Question]:
    """Turn raw records into Questions; ``fmt`` None means detect it from the first record.

    The whole file is read and checked before ``limit`` is applied, so what only the whole file shows (MedMCQA's
    1-4 answer numbering) is decided on every record, not on the first few.
    """
    questions: list[Question] = []
    for where, row in rows:
        row_fmt = fmt or detect_format(row)
        if row_fmt is None:
            raise InputError(name, where, f"cannot tell the benchmark format from the keys {sorted(row)}; "
                                          f"give --format ({', '.join(format_names())})")
        family = family_by_format(row_fmt)
        fmt = row_fmt
        try:
            fields = family.convert(row)
            record_task = task or fields.pop("task", None) or family.default_task
            fields.pop("task", None)
            family.check(fields, record_task, task_given=task is not None)
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            problem = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
            raise InputError(name, where, f"not a valid {row_fmt} record: {problem}") from None
        questions.append(Question(n=start + len(questions), line=where, task=record_task, **fields))
    if fmt in format_names():
        questions = family_by_format(fmt).finish(questions, name)
    return questions if limit is None else questions[:limit]


def load_hub_dataset(name: str, fmt: str | None = None, split: str | None = None, subset: str | None = None,
                     task: str | None = None, limit: int | None = None, start: int = 1) -> list[Question]:
    """A benchmark through the ``datasets`` library: a known short name (``medqa``, ``mmlu_anatomy``, ...),
    a hub path, or a local folder. Offline, only what is in its cache (or on disk) can load."""
    family, where = hub_source(name)
    path, config = where.path, subset or where.config
    fmt = fmt or (family.name if family else None)
    task = task or (family.hub_task(name) if family else None)
    split = split or where.split
    try:
        import datasets
    except ImportError:
        raise UsageError("--dataset needs the datasets package: pip install datasets") from None
    try:
        data = datasets.load_dataset(path, config, split=split)
    except Exception as exc:  # noqa: BLE001 - network, cache and format errors all end the same way
        raise UsageError(
            f"cannot load dataset {name!r} ({path}{', ' + config if config else ''}, split "
            f"{split!r}) with the datasets library: {type(exc).__name__}: {_first_line(exc)}. It needs "
            "the hub (online) or a copy in its cache (offline); otherwise download the files and pass "
            "--data FILE --format " + (fmt or "|".join(format_names()))) from None
    rows: Iterator[tuple[int, dict[str, Any]]] = ((i, dict(row)) for i, row in enumerate(data, start=1))
    return convert_rows(rows, f"{name}[{split}]", fmt, task, limit, start)


def hub_source(name: str) -> tuple[Family | None, HubDataset]:
    """The family (None for a hub path the runner does not know) and hub location of a ``--dataset`` name."""
    known = hub_dataset(name)
    return known if known else (None, HubDataset(name, None, "test"))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0][:300] if lines else "").rstrip(".")
