"""The saved answers as one flat table: one row per answer, written as CSV, JSONL or Parquet (``export``).

Rows come from the store read as a stream (every generate and log-likelihood record; embeddings are vectors, not
answers, and stay in ``embeddings.npy``): each record becomes a tuple of values and is let go, and the tuples are
sorted, then written a batch at a time to a temporary file renamed over the target. A multiple-choice answer gets
the letter it chose and whether that is right, by the scorer's own reading (``runner.views.scores.record_choice``,
through the letters the store's index holds); a log-likelihood result gives its acc choice as ``chosen`` and its
acc_norm choice as ``chosen_norm``. The estimated cost uses the prices the report uses."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from runner.core.errors import UsageError
from runner.core.records import Record, Snapshot
from runner.core.store import Store, output_stream
from runner.views.answers import DEFAULT_OUTPUT_DIR, StoreSource, check_folder, resolve_aliases, sent_user_message
from runner.views.scores import Choice, record_choice, stream_choices

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


Row = tuple[Any, ...]  # one answer's values, in ``columns(prompts)`` order


def export_table(source: StoreSource = DEFAULT_OUTPUT_DIR, models: Sequence[str] | None = None,
                 personas: Sequence[str] | None = None, question_set: str | None = None,
                 prompts: bool = False) -> list[Row]:
    """One tuple of values (in ``columns(prompts)`` order) per saved answer, sorted by set, model label, persona,
    kind and question number; every set unless ``question_set`` names one.

    An output folder is read as a stream (``Store.iter_records``), so no more than one Record is alive at a time;
    a letter the store's index holds is not extracted again. ``models`` (names, aliases, slugs, ``name@tag``) and
    ``personas`` filter as ``select_records`` does; a filter or set that matches nothing is a UsageError naming
    what is saved.
    """
    from runner.views.report import price_table

    store, records, choice = _records(source, question_set)
    if question_set is not None and question_set not in store.set_names:
        raise UsageError(f"no question set {question_set!r} under {store.root}; saved sets: "
                         f"{', '.join(store.set_names) or '(none)'}")
    selection = Selection(models, personas)
    maker = RowMaker(prompts, price_table(store.manifests), choice)
    # The stream's order (set, persona folder, model folder, n) is a snapshot's, so the stable sort keeps the ties
    # of the former sort of the snapshot's records.
    rows = [maker.row(r) for r in records if r.kind in EXPORTED_KINDS and selection.keep(r)]
    selection.check(store.root)
    rows.sort(key=_order)
    return rows


def _records(source: StoreSource, question_set: str | None
             ) -> tuple[Snapshot, Iterable[Record], Callable[[Record], Choice]]:
    """The store's manifests and sets (a Snapshot; without its records when ``source`` is a folder), the records
    of ``question_set`` (of every set when None), not read yet, and how to read each one's choice."""
    if isinstance(source, Snapshot):
        return source, source.records_of(question_set), record_choice
    check_folder(source)
    store = Store(source)
    known, choice = stream_choices()
    return store.snapshot(records=False), store.iter_records(question_set, share=False, known=known), choice


def _order(row: Row) -> tuple[Any, ...]:
    return row[0] or "", row[9], row[11] or "", row[12], row[1]  # set, label, persona, kind, n


def export_rows(source: StoreSource = DEFAULT_OUTPUT_DIR, models: Sequence[str] | None = None,
                personas: Sequence[str] | None = None, question_set: str | None = None,
                prompts: bool = False) -> list[dict[str, Any]]:
    """One dict per saved answer (every set unless ``question_set`` names one), keys as ``columns(prompts)``: the
    rows of ``export_table`` by name."""
    names = columns(prompts)
    return [dict(zip(names, row, strict=True)) for row in export_table(source, models, personas, question_set,
                                                                        prompts)]


class Selection:
    """``select_records`` for records as they come: ``keep`` says whether a record is a row, and ``check``, once
    every record was offered, raises the UsageError ``select_records`` would have (in the same words)."""

    def __init__(self, models: Sequence[str] | None, personas: Sequence[str] | None) -> None:
        self.models, self.personas = list(models or ()), list(personas or ())
        self.wanted = [resolve_aliases(m) for m in self.models]
        self.names: set[str] = set().union(*self.wanted)
        self.matched = [False] * len(self.wanted)
        self.labels: set[str] = set()  # every record's label, to name them when a model matches none
        self.saved: set[str] = set()  # the personas of the records the model filter keeps
        self.offered = 0

    def keep(self, record: Record) -> bool:
        """Whether ``record`` passes the model and persona filters (noting what it would match)."""
        self.offered += 1
        if self.models:
            names = record.names
            self.labels.add(record.label)
            for i, spellings in enumerate(self.wanted):
                self.matched[i] = self.matched[i] or bool(names & spellings)
            if not names & self.names:
                return False
        if self.personas:
            self.saved.add(record.persona or "?")
            return record.persona in self.personas
        return True

    def check(self, where: object) -> None:
        """A UsageError when no record was offered, or when a model or persona filter matched none."""
        if not self.offered:
            raise UsageError(f"no saved answers under {where}; run some questions first")
        for name, matched in zip(self.models, self.matched, strict=True):
            if not matched:
                raise UsageError(f"no saved answers from model {name!r} under {where}; saved models: "
                                 f"{', '.join(sorted(self.labels))}")
        saved = sorted(self.saved)
        for name in self.personas:
            if name not in saved:
                raise UsageError(f"no saved answers under persona {name!r} in {where}; "
                                 f"saved personas: {', '.join(saved)}")


class RowMaker:
    """Makes the row of a record: its values, its choice (``choice``, as ``record_choice``) and its cost (at
    ``prices``, as ``report.price_table`` gives them). The strings rows repeat (names, questions, letters) are kept
    once, so 150,000 rows held for sorting take a fraction of their records' memory."""

    def __init__(self, prompts: bool, prices: dict[str, tuple[float, float]],
                 choice: Callable[[Record], Choice]) -> None:
        from runner.providers.catalog import cost_usd

        self.prompts, self.prices, self.choice, self.cost_usd = prompts, prices, choice, cost_usd
        self.strings: dict[Any, Any] = {}

    def row(self, record: Record) -> Row:
        """The values of ``record``'s row, in ``columns(self.prompts)`` order."""
        one = self.strings.setdefault
        settings = record.settings or {}
        answer = chosen = correct = chosen_norm = correct_norm = None
        if record.multiple_choice:
            answer = record.answer
            if record.ok:
                chosen, norm = self.choice(record)
                correct = chosen == answer
                if record.kind == "loglik":
                    chosen_norm, correct_norm = norm, norm == answer
        model, label = record.model_name, record.label
        row = (
            one(record.set_name, record.set_name), record.n, record.question_id, one(record.task, record.task),
            one(record.question, record.question), one(model, model),
            one(record.alias, record.alias), one(record.slug, record.slug), one(record.tag, record.tag),
            one(label, label), one(record.provider, record.provider),
            one(record.persona, record.persona), one(record.kind, record.kind),
            *(settings.get(name) for name in SETTINGS),
            record.prompt_tokens, record.completion_tokens, record.latency_s, self.cost(record),
            one(record.finish_reason, record.finish_reason), record.error, record.attempts, record.text,
            record.reasoning_tokens, record.reasoning, one(answer, answer), one(chosen, chosen), correct,
            one(chosen_norm, chosen_norm), correct_norm, record.time, one(record.run_id, record.run_id),
        )
        return row + self.prompt_values(record) if self.prompts else row

    def cost(self, record: Record) -> float | None:
        """The estimated cost of ``record``'s tokens, when its model has prices and it counted tokens."""
        prices = self.prices
        price = prices.get(record.model_name) or (prices.get(record.alias) if record.alias else None)
        if price and (record.prompt_tokens is not None or record.completion_tokens is not None):
            return self.cost_usd(record.prompt_tokens or 0, record.completion_tokens or 0, price)
        return None

    def prompt_values(self, record: Record) -> Row:
        """What ``record``'s answer was sent: system prompt, user message, prompt text (``PROMPT_COLUMNS``)."""
        one = self.strings.setdefault
        user = record.user_message
        if user is None and record.kind == "generate" and record.question:
            user = sent_user_message(record)
        prompt = record.prompt_text or (record.loglik.prompt if record.loglik else None)
        system = record.persona_text if record.kind == "generate" else None
        return one(system, system), one(user, user), one(prompt, prompt)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may run as a formula (CSV injection)


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text: a string starting like a formula gets a leading ``'`` (OWASP's
    advice for CSV injection); numbers and other values are unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


WRITE_BATCH = 2000  # rows encoded and written at a time: few large writes, little text held


def write_rows(rows: Sequence[Row], out: BinaryIO, fmt: str, prompts: bool = False) -> None:
    """Write the rows (``export_table``'s) to a binary file as CSV, JSONL or Parquet (Parquet needs pyarrow: a
    UsageError says so, before anything is written)."""
    if fmt == "csv":
        write_csv(rows, out, prompts)
    elif fmt == "jsonl":
        write_jsonl(rows, out, prompts)
    elif fmt == "parquet":
        write_parquet(parquet_table(rows, prompts), out)
    else:
        raise UsageError(f"unknown export format {fmt!r}; known formats: {', '.join(FORMATS)}")


def write_csv(rows: Iterable[Row], out: BinaryIO, prompts: bool = False) -> None:
    """The rows as CSV (a header of the column names; every cell ``spreadsheet_safe``), UTF-8."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns(prompts))
    for batch in _batches(rows):
        # spreadsheet_safe, inlined: a call per cell is a third of the writing time
        writer.writerows(["'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v for v in row]
                         for row in batch)
        out.write(buffer.getvalue().encode("utf-8", "backslashreplace"))
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():  # the header of no rows
        out.write(buffer.getvalue().encode("utf-8", "backslashreplace"))


def write_jsonl(rows: Iterable[Row], out: BinaryIO, prompts: bool = False) -> None:
    """The rows as JSON Lines: one object per row, keys as ``columns(prompts)``, UTF-8 text as it is."""
    names = columns(prompts)
    encode = json.JSONEncoder(ensure_ascii=False).encode  # what json.dumps(..., ensure_ascii=False) does, made once
    for batch in _batches(rows):
        text = "".join([encode(dict(zip(names, row, strict=True))) + "\n" for row in batch])
        out.write(text.encode("utf-8", "backslashreplace"))  # a lone surrogate stays a valid JSON escape


def _batches(rows: Iterable[Row]) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == WRITE_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def parquet_table(rows: Sequence[Row], prompts: bool = False) -> Any:
    """The rows as a pyarrow Table with the export's schema (pyarrow missing: a UsageError saying how to get it)."""
    try:
        import pyarrow as pa
    except ImportError:
        raise UsageError("--format parquet needs pyarrow: pip install pyarrow (or export --format csv or "
                         "jsonl)") from None
    types = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    spec = (*COLUMNS, *(PROMPT_COLUMNS if prompts else ()))
    schema = pa.schema([(name, types[kind]) for name, kind in spec])
    return pa.table({name: _array(pa, [row[i] for row in rows], types[kind])
                     for i, (name, kind) in enumerate(spec)}, schema=schema)


def _array(pa: Any, values: list[Any], kind: Any) -> Any:
    """One column; a text with a lone surrogate (a model's broken output, which Parquet's UTF-8 cannot hold) gets
    it as its escape, ``\udc80``, as the CSV and JSONL files write it."""
    try:
        return pa.array(values, type=kind)
    except UnicodeEncodeError:
        return pa.array([v.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(v, str) else v
                         for v in values], type=kind)


def write_parquet(table: Any, out: BinaryIO) -> None:
    """A pyarrow Table (``parquet_table``) as a Parquet file."""
    import pyarrow.parquet as pq

    pq.write_table(table, out)


def write_export(rows: Sequence[Row], path: Path, fmt: str, prompts: bool = False,
                 root: Path | None = None) -> Path:
    """Write the rows (``export_table``'s) to ``path`` as a stream, atomically (a temporary file renamed over it);
    returns ``path``.

    ``root``: the output folder, when ``path`` is its default place inside it (a link there leading outside is
    refused). A file that cannot be written is one UsageError naming it.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; known formats: {', '.join(FORMATS)}")
    table = parquet_table(rows, prompts) if fmt == "parquet" else None  # pyarrow missing: nothing is created
    fix = f"make {path.parent} writable, or choose another --out FILE"
    with output_stream(path, root=root, fix=fix) as out:
        if table is None:
            write_rows(rows, out, fmt, prompts)
        else:
            write_parquet(table, out)
    return path
