"""The saved answers as one flat table: one row per answer, written as CSV, JSONL or Parquet (``export``).

Rows come from a ``Snapshot`` (every generate and log-likelihood record; embeddings are vectors, not answers, and
stay in ``embeddings.npy``). A multiple-choice answer gets the letter it chose and whether that is right, by the
scorer's own reading (``runner.views.scores.record_choice``); a log-likelihood result gives its acc choice as
``chosen`` and its acc_norm choice as ``chosen_norm``. The estimated cost uses the prices the report uses.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runner.core.errors import UsageError
from runner.core.records import Record
from runner.core.store import write_output
from runner.views.answers import DEFAULT_OUTPUT_DIR, StoreSource, open_store, select_records, sent_user_message
from runner.views.scores import record_choice

FORMATS = ("csv", "jsonl", "parquet")
EXPORTED_KINDS = ("generate", "loglik")
# Every column, in order, with its type (for Parquet's schema); one place for the table's shape.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("set", "string"), ("n", "int"), ("question_id", "string"), ("task", "string"), ("question", "string"),
    ("model", "string"), ("alias", "string"), ("slug", "string"), ("tag", "string"), ("label", "string"),
    ("provider", "string"), ("persona", "string"), ("kind", "string"),
    ("temperature", "float"), ("top_p", "float"), ("max_new_tokens", "int"), ("seed", "int"),
    ("prompt_tokens", "int"), ("completion_tokens", "int"), ("latency_s", "float"), ("cost_usd", "float"),
    ("finish_reason", "string"), ("error", "string"), ("attempts", "int"), ("text", "string"),
    ("reasoning_tokens", "int"), ("reasoning", "string"),
    ("correct_answer", "string"), ("chosen", "string"), ("correct", "bool"),
    ("chosen_norm", "string"), ("correct_norm", "bool"),
    ("time", "string"), ("run_id", "string"),
)
# With ``prompts``: what each answer was sent.
PROMPT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("system_prompt", "string"), ("user_message", "string"), ("prompt_text", "string"),
)
SETTINGS = ("temperature", "top_p", "max_new_tokens", "seed")


def columns(prompts: bool = False) -> list[str]:
    """The column names of an export, in order."""
    return [name for name, _ in (*COLUMNS, *(PROMPT_COLUMNS if prompts else ()))]


def export_rows(source: StoreSource = DEFAULT_OUTPUT_DIR, models: Sequence[str] | None = None,
                personas: Sequence[str] | None = None, question_set: str | None = None,
                prompts: bool = False) -> list[dict[str, Any]]:
    """One dict per saved answer (every set unless ``question_set`` names one), keys as ``columns(prompts)``.

    ``models`` (names, aliases, slugs, ``name@tag``) and ``personas`` filter; a filter or set that matches nothing
    is a UsageError naming what is saved.
    """
    from runner.providers.catalog import cost_usd
    from runner.views.report import price_table

    snapshot = open_store(source)
    if question_set is not None and question_set not in snapshot.set_names:
        raise UsageError(f"no question set {question_set!r} under {snapshot.root}; saved sets: "
                         f"{', '.join(snapshot.set_names) or '(none)'}")
    records = [r for r in snapshot.records_of(question_set) if r.kind in EXPORTED_KINDS]
    if not records:
        raise UsageError(f"no saved answers under {snapshot.root}; run some questions first")
    records = select_records(records, models, personas, snapshot.root)
    prices = price_table(snapshot.manifests)
    rows = []
    for record in sorted(records, key=lambda r: (r.set_name or "", r.label, r.persona or "", r.kind, r.n)):
        row = _row(record, prompts)
        price = prices.get(record.model_name) or (prices.get(record.alias) if record.alias else None)
        if price and (record.prompt_tokens is not None or record.completion_tokens is not None):
            row["cost_usd"] = cost_usd(record.prompt_tokens or 0, record.completion_tokens or 0, price)
        rows.append(row)
    return rows


def _row(record: Record, prompts: bool) -> dict[str, Any]:
    settings = record.settings or {}
    row: dict[str, Any] = dict.fromkeys(columns(prompts))
    row.update({
        "set": record.set_name, "n": record.n, "question_id": record.question_id, "task": record.task,
        "question": record.question, "model": record.model_name, "alias": record.alias, "slug": record.slug,
        "tag": record.tag, "label": record.label, "provider": record.provider, "persona": record.persona,
        "kind": record.kind, "prompt_tokens": record.prompt_tokens, "completion_tokens": record.completion_tokens,
        "latency_s": record.latency_s, "finish_reason": record.finish_reason, "error": record.error,
        "attempts": record.attempts, "text": record.text, "time": record.time, "run_id": record.run_id,
        "reasoning_tokens": record.reasoning_tokens, "reasoning": record.reasoning,
    })
    row.update({name: settings.get(name) for name in SETTINGS})
    if record.multiple_choice and record.ok:
        chosen, chosen_norm = record_choice(record)
        row.update(correct_answer=record.answer, chosen=chosen, correct=chosen == record.answer)
        if record.kind == "loglik":
            row.update(chosen_norm=chosen_norm, correct_norm=chosen_norm == record.answer)
    elif record.multiple_choice:
        row["correct_answer"] = record.answer
    if prompts:
        user = record.user_message
        if user is None and record.kind == "generate" and record.question:
            user = sent_user_message(record)
        prompt = record.prompt_text or (record.loglik.prompt if record.loglik else None)
        row.update(system_prompt=record.persona_text if record.kind == "generate" else None, user_message=user,
                   prompt_text=prompt)
    return row


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may run as a formula (CSV injection)


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text: a string starting like a formula gets a leading ``'`` (OWASP's
    advice for CSV injection); numbers and other values are unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def render(rows: Sequence[dict[str, Any]], fmt: str, prompts: bool = False) -> bytes:
    """The rows as the bytes of a CSV, JSONL or Parquet file (Parquet needs pyarrow: a UsageError says so)."""
    names = columns(prompts)
    if fmt == "jsonl":
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        return text.encode("utf-8", "backslashreplace")  # a lone surrogate stays a valid JSON escape
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=names)
        writer.writeheader()
        writer.writerows({k: spreadsheet_safe(v) for k, v in row.items()} for row in rows)
        return buffer.getvalue().encode("utf-8", "backslashreplace")
    if fmt == "parquet":
        return _parquet(rows, prompts)
    raise UsageError(f"unknown export format {fmt!r}; known formats: {', '.join(FORMATS)}")


def _parquet(rows: Sequence[dict[str, Any]], prompts: bool) -> bytes:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError("--format parquet needs pyarrow: pip install pyarrow (or export --format csv or "
                         "jsonl)") from None
    types = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    spec = (*COLUMNS, *(PROMPT_COLUMNS if prompts else ()))
    schema = pa.schema([(name, types[kind]) for name, kind in spec])
    table = pa.table({name: pa.array([row[name] for row in rows], type=types[kind]) for name, kind in spec},
                     schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def write_export(rows: Sequence[dict[str, Any]], path: Path, fmt: str, prompts: bool = False,
                 root: Path | None = None) -> Path:
    """Write the rows to ``path`` atomically (a temporary file renamed over it); returns ``path``.

    ``root``: the output folder, when ``path`` is its default place inside it (a link there leading outside is
    refused). A file that cannot be written is one UsageError naming it.
    """
    fix = f"make {path.parent} writable, or choose another --out FILE"
    return write_output(path, render(rows, fmt, prompts), root=root, fix=fix)
