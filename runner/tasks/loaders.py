"""Public multiple-choice benchmarks as distributed, read into ``runner.core.questions.Question`` objects.

Formats (the ``--format`` names; detected from the keys when not given):

- ``medqa``: MedQA 4 options, either ``question`` / ``options`` {A..D} / ``answer_idx`` (the original JSONL)
  or ``sent1`` / ``ending0``..``ending3`` / ``label`` 0-3 (the ``-hf`` variant the harness reads).
- ``medmcqa``: ``question``, ``opa``..``opd``, ``cop`` (0-3 as on the hub; 1-4 in the original release,
  recognised when a 4 appears and no 0; or a letter).
- ``pubmedqa``: ``question``, ``context`` ({"contexts": [...]}, a list or a string) or ``CONTEXTS``,
  ``final_decision`` yes/no/maybe; also the original ``ori_pqal.json`` (an object keyed by PMID).
- ``mmlu``: ``question``, ``choices`` (4 texts), ``answer`` (0-3 or a letter); the task is
  ``mmlu_<subject>`` from the ``subject`` key, else from ``task``.

Files: ``.jsonl``, ``.json`` (a list, an object keyed by id, or {"data": [...]}) and ``.parquet``.
``load_hub_dataset`` reads the same formats through the ``datasets`` library (online, or its cache offline).
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from runner.core.errors import InputError, UsageError
from runner.core.questions import Question

FORMATS = ("medqa", "medmcqa", "pubmedqa", "mmlu")
DEFAULT_TASKS = {"medqa": "medqa_4options", "medmcqa": "medmcqa", "pubmedqa": "pubmedqa"}
MMLU_MEDICAL = ("anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
                "professional_medicine")
# --dataset NAME -> (hub path, config, split, format): the splits the harness scores.
HUB_DATASETS: dict[str, tuple[str, str | None, str, str]] = {
    "medqa": ("GBaker/MedQA-USMLE-4-options-hf", None, "test", "medqa"),
    "medmcqa": ("openlifescienceai/medmcqa", None, "validation", "medmcqa"),
    "pubmedqa": ("qiaojin/PubMedQA", "pqa_labeled", "train", "pubmedqa"),
    **{f"mmlu_{s}": ("cais/mmlu", s, "test", "mmlu") for s in MMLU_MEDICAL},
}
HUB_DATASETS["medqa_4options"] = HUB_DATASETS["medqa"]
LETTERS = string.ascii_uppercase


def detect_format(row: dict[str, Any]) -> str | None:
    """The benchmark format a record's keys show, or None."""
    keys = set(row)
    if {"sent1", "ending0"} <= keys or {"options", "answer_idx"} <= keys:
        return "medqa"
    if {"opa", "opb", "cop"} <= keys:
        return "medmcqa"
    if "final_decision" in keys:
        return "pubmedqa"
    if {"choices", "answer"} <= keys:
        return "mmlu"
    return None


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
    """Turn raw records into Questions; ``fmt`` None means detect it from the first record."""
    questions: list[Question] = []
    for where, row in rows:
        if limit is not None and len(questions) >= limit:
            break
        row_fmt = fmt or detect_format(row)
        if row_fmt is None:
            raise InputError(name, where, f"cannot tell the benchmark format from the keys {sorted(row)}; "
                                          f"give --format ({', '.join(FORMATS)})")
        if row_fmt not in FORMATS:
            raise UsageError(f"unknown format {row_fmt!r}; known formats: {', '.join(FORMATS)}")
        fmt = row_fmt
        try:
            fields = _CONVERTERS[row_fmt](row)
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            problem = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
            raise InputError(name, where, f"not a valid {row_fmt} record: {problem}") from None
        record_task = task or fields.pop("task", None) or DEFAULT_TASKS.get(row_fmt)
        fields.pop("task", None)
        questions.append(Question(n=start + len(questions), line=where, task=record_task, **fields))
    if fmt == "medmcqa":
        questions = _fix_medmcqa_base(questions, name)
    return questions


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string")
    return value


def _id(row: dict[str, Any]) -> str | None:
    for key in ("id", "pubid", "PMID", "qid"):
        if row.get(key) is not None:
            return str(row[key])
    return None


def _index(value: Any, count: int, what: str) -> int:
    """An answer given as 0-based index or as a letter."""
    if isinstance(value, str) and value.strip().upper() in LETTERS[:count]:
        return LETTERS.index(value.strip().upper())
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < count:
        raise ValueError(f"{what} {value!r} is not an option index 0-{count - 1} or a letter")
    return value


def _medqa(row: dict[str, Any]) -> dict[str, Any]:
    if "sent1" in row:
        options = {LETTERS[i]: _text(row[f"ending{i}"], f"ending{i}") for i in range(4) if f"ending{i}" in row}
        answer = LETTERS[_index(row["label"], len(options), "label")]
        question = row["sent1"]  # the harness's prompt uses sent1 only (sent2 is empty in the -hf files)
    else:
        raw = row["options"]
        options = ({k.strip().upper(): _text(v, f"option {k}") for k, v in raw.items()} if isinstance(raw, dict)
                   else {LETTERS[i]: _text(v, f"option {i}") for i, v in enumerate(raw)})
        answer = str(row["answer_idx"]).strip().upper()
        if answer not in options:
            raise ValueError(f"answer_idx {row['answer_idx']!r} is not one of the options {', '.join(options)}")
        question = row["question"]
    return {"question": _text(question, "question"), "options": options, "answer": answer, "id": _id(row)}


def _medmcqa(row: dict[str, Any]) -> dict[str, Any]:
    options = {letter: _text(row[key], key) for letter, key in zip("ABCD", ("opa", "opb", "opc", "opd"), strict=True)}
    cop = row["cop"]
    if cop is None or cop == -1:
        raise ValueError("cop is missing (-1): this split has no public answers")
    if isinstance(cop, str) and cop.strip().lower() in "abcd" and cop.strip():
        index = "abcd".index(cop.strip().lower())
    else:
        index = int(cop)
        if not 0 <= index <= 4:
            raise ValueError(f"cop {cop!r} is not 0-3 (or 1-4)")
    # Raw index kept in extra until the whole file shows whether it counts from 0 or 1.
    extra = {"cop": cop}
    if row.get("subject_name"):
        extra["subject"] = row["subject_name"]
    return {"question": _text(row["question"], "question"), "options": options, "answer": "ABCDE"[index],
            "id": _id(row), "extra": extra}


def _fix_medmcqa_base(questions: list[Question], name: str) -> list[Question]:
    raw = [q.extra.get("cop") for q in questions]
    ints = [c for c in raw if isinstance(c, int) and not isinstance(c, bool)]
    one_based = bool(ints) and 4 in ints and 0 not in ints
    fixed = []
    for q in questions:
        cop = q.extra.get("cop")
        answer = q.answer
        if one_based and isinstance(cop, int):
            answer = "ABCD"[cop - 1]
        if answer not in "ABCD":
            raise InputError(name, q.line, f"cop {cop!r} is outside 0-3")
        extra = {k: v for k, v in q.extra.items() if k != "cop"}
        fixed.append(Question(n=q.n, question=q.question, line=q.line, id=q.id, options=q.options, answer=answer,
                              context=q.context, task=q.task, extra=extra))
    return fixed


def _pubmedqa(row: dict[str, Any]) -> dict[str, Any]:
    raw = row.get("context", row.get("CONTEXTS", row.get("contexts")))
    if isinstance(raw, dict):
        raw = raw.get("contexts", raw.get("CONTEXTS"))
    if isinstance(raw, list):
        context = "\n".join(str(c) for c in raw)
    elif isinstance(raw, str):
        context = raw
    else:
        raise ValueError("context must be {'contexts': [...]}, a list or a string")
    decision = str(row["final_decision"]).strip().lower()
    choices = ["yes", "no", "maybe"]
    if decision not in choices:
        raise ValueError(f"final_decision {row['final_decision']!r} is not yes, no or maybe")
    question = row.get("question", row.get("QUESTION"))
    return {"question": _text(question, "question"), "context": _text(context, "context"),
            "options": dict(zip("ABC", choices, strict=True)), "answer": "ABC"[choices.index(decision)], "id": _id(row)}


def _mmlu(row: dict[str, Any]) -> dict[str, Any]:
    choices = row["choices"]
    if not isinstance(choices, (list, tuple)) or len(choices) < 2:
        raise ValueError("choices must be a list of at least two texts")
    options = {LETTERS[i]: _text(c, f"choice {i}") for i, c in enumerate(choices)}
    answer = LETTERS[_index(row["answer"], len(options), "answer")]
    fields: dict[str, Any] = {"question": _text(row["question"], "question"), "options": options, "answer": answer,
                              "id": _id(row)}
    if row.get("subject"):
        fields["task"] = f"mmlu_{row['subject']}"
    elif row.get("task"):
        fields["task"] = row["task"]
    return fields


_CONVERTERS = {"medqa": _medqa, "medmcqa": _medmcqa, "pubmedqa": _pubmedqa, "mmlu": _mmlu}


def load_hub_dataset(name: str, fmt: str | None = None, split: str | None = None, subset: str | None = None,
                     task: str | None = None, limit: int | None = None, start: int = 1) -> list[Question]:
    """A benchmark through the ``datasets`` library: a known short name (``medqa``, ``mmlu_anatomy``, ...),
    a hub path, or a local folder. Offline, only what is in its cache (or on disk) can load."""
    known = HUB_DATASETS.get(name)
    path, config, default_split, known_fmt = known if known else (name, None, "test", None)
    fmt = fmt or known_fmt
    task = task or (name if known and name.startswith("mmlu_") else None)
    split = split or default_split
    try:
        import datasets
    except ImportError:
        raise UsageError("--dataset needs the datasets package: pip install datasets") from None
    try:
        data = datasets.load_dataset(path, subset or config, split=split)
    except Exception as exc:  # noqa: BLE001 - network, cache and format errors all end the same way
        raise UsageError(
            f"cannot load dataset {name!r} ({path}{', ' + (subset or config) if subset or config else ''}, split "
            f"{split!r}) with the datasets library: {type(exc).__name__}: {_first_line(exc)}. It needs "
            "the hub (online) or a copy in its cache (offline); otherwise download the files and pass "
            "--data FILE --format " + (fmt or "|".join(FORMATS))) from None
    rows: Iterator[tuple[int, dict[str, Any]]] = ((i, dict(row)) for i, row in enumerate(data, start=1))
    return convert_rows(rows, f"{name}[{split}]", fmt, task, limit, start)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0][:300] if lines else "").rstrip(".")
