"""Accuracy of multiple-choice answers, read from the store: per model, persona, method and task.

Two methods share one table. ``generate`` records are free-text answers whose chosen letter is extracted
(``runner.tasks.letters``); an answer with no recognisable letter counts as wrong and is listed with its text, and a
failed answer (error, no text) is left out of the accuracy and counted as ``failed``. ``loglik`` records
(kind ``loglik``) carry the harness-style choice already: ``acc`` and ``acc_norm``.

Standard error is the harness's ``mean_stderr``: the sample standard deviation over the 0/1 scores divided by
sqrt(n), i.e. sqrt(p (1 - p) / (n - 1)); None below two questions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.core.index import KnownChoices
from runner.core.records import Record, Snapshot, each_record
from runner.core.store import with_tag
from runner.tasks.letters import EXTRACTOR_VERSION, extract_letter
from runner.tasks.registry import leaderboard_tasks, task_aliases

NO_TASK = "(no task)"


def canonical_task(task: str | None) -> str:
    """The harness name of a task (``MedQA`` and ``medqa`` become ``medqa_4options``)."""
    if not task or not task.strip():
        return NO_TASK
    name = task.strip().lower().replace("-", "_").replace(" ", "_")
    return task_aliases().get(name, name)


def task_title(task: str) -> str:
    """A column heading for a task (``medqa_4options (medqa_dev)`` keeps its set in brackets)."""
    name, _, rest = task.partition(" (")
    return dict(leaderboard_tasks()).get(name, name) + (f" ({rest}" if rest else "")


def task_order(tasks: Iterable[str]) -> list[str]:
    """Leaderboard tasks first, in the leaderboard's order (the families'), then any others alphabetically."""
    present = set(tasks)
    rank = {key: i for i, (key, _) in enumerate(leaderboard_tasks())}
    return sorted(present, key=lambda t: (rank.get(t.partition(" (")[0], len(rank)), t))


def mean_stderr(values: Sequence[float]) -> float | None:
    """Standard error of the mean with the sample standard deviation (the harness's ``mean_stderr``)."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return math.sqrt(variance / n)


@dataclass
class TaskScore:
    """Accuracy of one model under one persona and method on one task."""

    model: str
    label: str
    slug: str
    persona: str
    method: str
    task: str
    set_name: str = ""
    tag: str | None = None
    n: int = 0
    correct: int = 0
    accuracy: float | None = None
    stderr: float | None = None
    failed: int = 0
    truncated: int = 0  # free-text answers cut off by the token limit
    unparseable: list[dict[str, Any]] = field(default_factory=list)
    acc_norm: float | None = None
    acc_norm_stderr: float | None = None
    interval: list[float] | None = None  # 95% percentile bootstrap interval of the accuracy (runner.views.stats)
    acc_norm_interval: list[float] | None = None
    items: list[dict[str, Any]] = field(default_factory=list)  # per question: n, chosen, answer (and chosen_norm)
    details: dict[int, ItemDetail] = field(default_factory=dict, repr=False)  # per question, not in scores.json

    def to_json(self) -> dict[str, Any]:
        """The scores.json form (loglik-only fields left out for generate rows).

        Built field by field: the per-question rows (``items``, ``unparseable``) are the score's own lists, not
        copies (150,000 answers make them large), so the result is for reading and writing, not for changing.
        """
        left_out = _NOT_IN_JSON if self.method == "loglik" else _NOT_IN_GENERATE_JSON
        return {name: getattr(self, name) for name in _field_names() if name not in left_out}

    def correctness(self, norm: bool = False) -> dict[int, float]:
        """Each scored question's 0/1 score by number (``norm``: acc_norm's, for log-likelihood rows)."""
        key = "chosen_norm" if norm else "chosen"
        return {item["n"]: float(item.get(key) == item["answer"]) for item in self.items}


_NOT_IN_JSON = frozenset({"details"})
_NO_EXTRA: dict[str, Any] = {}  # one empty mapping for every record without extra fields (read only, as ItemDetail)
_NOT_IN_GENERATE_JSON = _NOT_IN_JSON | {"acc_norm", "acc_norm_stderr", "acc_norm_interval"}


def _field_names() -> tuple[str, ...]:
    """TaskScore's fields in their order (scores.json keeps it)."""
    return tuple(f.name for f in fields(TaskScore))


@dataclass(frozen=True, slots=True)
class ItemDetail:
    """What the statistics views show of a scored question: its id and text, the answer text, its other fields
    (the record's own mapping, not a copy: read only)."""

    id: str | None
    question: str
    text: str
    extra: Mapping[str, Any]



def record_method(record: Record) -> str | None:
    """``loglik``, ``generate``, or None for records that are not answers to score (embeddings)."""
    if record.kind == "loglik":
        return "loglik"
    if record.kind == "embed" or record.embedding is not None:
        return None
    return "generate"


def record_choice(record: Record) -> tuple[str | None, str | None]:
    """The letter a multiple-choice record chose, and for a log-likelihood record its acc_norm choice.

    A free-text answer's letter is extracted from its text (None: unparseable); a log-likelihood record carries its
    ``acc_choice`` and ``acc_norm_choice``. The one reading of a record's choice that scoring and exports share.
    """
    if record.kind == "loglik":
        info = record.loglik
        return (info.acc_choice, info.acc_norm_choice) if info else (None, None)
    return extract_letter(record.text, record.options or {}), None


Choice = tuple[str | None, str | None]


class ChoiceMemo:
    """``record_choice`` read once per record however many views ask (scores, then self-consistency): a letter is
    extracted once per record per command. Holds each record it was asked about, so its identity stays its key."""

    def __init__(self) -> None:
        self._found: dict[int, tuple[Record, Choice]] = {}

    def __call__(self, record: Record) -> Choice:
        """The record's choice, as ``record_choice`` gives it."""
        found = self._found.get(id(record))
        if found is None or found[0] is not record:
            found = self._found[id(record)] = (record, record_choice(record))
        return found[1]


def stream_choices() -> tuple[KnownChoices, Callable[[Record], Choice]]:
    """A ``KnownChoices`` for ``Store.iter_records(known=...)`` and the ``choice`` function (``record_choice``) for
    the records of that stream: a letter the store's index holds for the answer, read by this version of the
    extractor, is taken as it is; one that had to be extracted is handed back to the index, so the next view does
    not extract it again."""
    known = KnownChoices(EXTRACTOR_VERSION)

    def choice(record: Record) -> Choice:
        if record.kind == "loglik":
            return record_choice(record)
        found = known.get(record)
        if found is not None:
            return found[0], None
        chosen = record_choice(record)
        known.put(record, chosen[0])
        return chosen

    return known, choice


def snapshot_choices(snapshot: Snapshot) -> ChoiceMemo:
    """The ``ChoiceMemo`` of one snapshot: every view of a command that reads its records' letters (the report's
    answer cards and its scores) shares it, so each letter is extracted once."""
    return snapshot.memo.setdefault("choices", ChoiceMemo())


def _matches(record: Record, names: set[str] | None) -> bool:
    return names is None or bool(record.names & names)


def collect_scores(records: Iterable[Record | dict[str, Any]], models: set[str] | None = None,
                   personas: set[str] | None = None, methods: set[str] | None = None,
                   questions: set[tuple[str, int, str]] | None = None,
                   sets: set[str] | None = None,
                   choice: Callable[[Record], Choice] = record_choice) -> list[TaskScore]:
    """Group the multiple-choice records and score each group (model and variant, persona, method, set, task).

    ``models`` holds accepted names, aliases or slugs (``name@tag`` for one variant); ``personas`` applies to
    free-text answers only; ``sets`` keeps some question sets; ``questions`` (set, n, question text) triples
    limit the scores to the questions just answered. ``records`` are Records (a snapshot's) or record dicts.
    ``choice`` reads a record's choice (``record_choice``; a ``ChoiceMemo`` to share it with other views).
    """
    groups: dict[tuple[str, ...], TaskScore] = {}
    values: dict[tuple[str, ...], tuple[list[float], list[float]]] = {}
    for record in each_record(records):  # as they come: a stream of records is never held whole
        method = record_method(record)
        options, answer = record.options, record.answer
        if method is None or not options or not answer or (methods and method not in methods):
            continue
        # Personas filter free-text answers; log-likelihood records have none of their own.
        if not _matches(record, models):
            continue
        if personas and method == "generate" and record.persona not in personas:
            continue
        set_name = record.set_name or ""
        if sets is not None and set_name not in sets:
            continue
        if questions is not None and (set_name, record.n, record.question) not in questions:
            continue
        task, tag = canonical_task(record.task), record.tag or None
        key = (str(record.model), tag or "", str(record.persona), method, set_name, task)
        score = groups.get(key)
        if score is None:
            label = with_tag(str(record.alias or key[0]), tag)
            score = groups[key] = TaskScore(model=key[0], label=label, slug=str(record.slug), persona=key[2],
                                            method=method, task=task, set_name=set_name, tag=tag)
            values[key] = ([], [])
        if record.error:
            score.failed += 1
            continue
        score.truncated += method == "generate" and record.finish_reason == "length"
        acc, norm = values[key]
        item: dict[str, Any] = {"n": record.n}
        chosen, chosen_norm = choice(record)
        if method == "loglik":
            norm.append(float(chosen_norm == answer))
            item["chosen_norm"] = chosen_norm
        else:
            if chosen is None:
                score.unparseable.append({"n": record.n, "id": record.question_id, "text": record.text or ""})
        acc.append(float(chosen == answer))
        item.update(chosen=chosen, answer=answer)
        score.items.append(item)
        score.details[record.n] = ItemDetail(record.question_id, record.question or "", record.text or "",
                                             record.extra or _NO_EXTRA)
    for key, score in groups.items():
        acc, norm = values[key]
        score.n, score.correct = len(acc), int(sum(acc))
        score.accuracy = sum(acc) / len(acc) if acc else None
        score.stderr = mean_stderr(acc)
        if score.method == "loglik" and norm:
            score.acc_norm, score.acc_norm_stderr = sum(norm) / len(norm), mean_stderr(norm)
    return sorted(groups.values(), key=lambda s: (s.label, s.persona, s.method, s.set_name, task_order([s.task])))


def column_of(score: TaskScore, scores: Sequence[TaskScore]) -> str:
    """The leaderboard column of a score: its task, or ``task (set)`` when one task was scored in several sets."""
    sets = {s.set_name for s in scores if s.task == score.task and s.accuracy is not None}
    return score.task if len(sets) <= 1 else f"{score.task} ({score.set_name})"


def truncation_warnings(scores: Sequence[TaskScore]) -> list[str]:
    """One warning per model and persona whose free-text answers mostly ended at the token limit."""
    totals: dict[tuple[str, str], list[int]] = {}
    for s in scores:
        if s.method == "generate":
            row = totals.setdefault((s.label, s.persona), [0, 0])
            row[0] += s.truncated
            row[1] += s.n
    return [f"{label} [{persona}]: {cut} of {n} answers were cut off by the token limit, so many may never "
            "state a letter; answer again with a larger --max-new-tokens (e.g. --max-new-tokens 512 --force), "
            "or score local models with --scoring loglik"
            for (label, persona), (cut, n) in totals.items() if n and cut * 2 > n]


@dataclass
class BoardRow:
    """One leaderboard row: a model under a persona and method, its accuracy per task and the average."""

    label: str
    model: str
    persona: str
    method: str
    tasks: dict[str, TaskScore]
    average: float | None  # the one shown: unweighted or weighted, as asked
    complete: bool
    unweighted: float | None = None  # mean of the task accuracies (the Open Medical LLM Leaderboard's)
    weighted: float | None = None  # accuracy over all the row's questions (the harness's multimedqa group)

    @property
    def name(self) -> str:
        """The row's display name."""
        suffix = "log-likelihood" if self.method == "loglik" else self.persona
        return f"{self.label} ({suffix})"


AVERAGES = ("unweighted", "weighted")  # --average: the leaderboard's mean over tasks, or weighted by task size
AVERAGE_NOTES = {
    "unweighted": "unweighted mean over tasks (as the Open Medical LLM Leaderboard)",
    "weighted": "mean over tasks weighted by their number of questions (as lm-evaluation-harness's multimedqa group)",
}


def leaderboard(scores: Sequence[TaskScore], average: str = "unweighted") -> tuple[list[str], list[BoardRow]]:
    """The task columns (leaderboard order) and the rows, best average first.

    ``average``: ``unweighted``, the mean of the task accuracies, as the Open Medical LLM Leaderboard's; or
    ``weighted`` by each task's number of questions, as the harness's ``multimedqa`` group aggregates (MedMCQA is
    most of its items). A row missing some of the table's tasks is averaged over the tasks it has and marked
    incomplete.
    """
    if average not in AVERAGES:
        raise ValueError(f"unknown average {average!r}; choose {' or '.join(AVERAGES)}")
    columns = task_order(column_of(s, scores) for s in scores if s.accuracy is not None)
    rows: dict[tuple[str, str, str, str], BoardRow] = {}
    for s in scores:
        if s.accuracy is None:
            continue
        row = rows.setdefault((s.model, s.tag or "", s.persona, s.method),
                              BoardRow(s.label, s.model, s.persona, s.method, {}, None, False))
        row.tasks[column_of(s, scores)] = s
    for row in rows.values():
        scored = [t for t in row.tasks.values() if t.accuracy is not None]
        row.unweighted = sum(t.accuracy or 0.0 for t in scored) / len(scored) if scored else None
        questions = sum(t.n for t in scored)
        row.weighted = sum((t.accuracy or 0.0) * t.n for t in scored) / questions if questions else None
        row.average = row.weighted if average == "weighted" else row.unweighted
        row.complete = set(row.tasks) >= set(columns)
    ordered = sorted(rows.values(), key=lambda r: (-(r.average or 0), r.name))
    return columns, ordered


def _pct(value: float | None, stderr: float | None = None) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f}" + (f" ± {100 * stderr:.1f}" if stderr is not None else "")


def render_markdown(scores: Sequence[TaskScore], average: str = "unweighted") -> str:
    """The leaderboard as a markdown table (accuracy % ± standard error), with notes; ``average`` as in
    ``leaderboard``, named in the header and the notes."""
    columns, rows = leaderboard(scores, average)
    lines = ["# Multiple-choice leaderboard", ""]
    if not rows:
        return "\n".join([*lines, "No multiple-choice answers found in the store.", ""])
    lines.append("| Model | " + " | ".join(task_title(c) for c in columns) + f" | Average ({average}) |")
    lines.append("| --- | " + " | ".join("---:" for _ in columns) + " | ---: |")
    for row in rows:
        cells = [_pct(row.tasks[c].accuracy, row.tasks[c].stderr) if c in row.tasks else "–" for c in columns]
        mean = _pct(row.average) + ("" if row.complete else " †")
        lines.append(f"| {row.name} | " + " | ".join(cells) + f" | {mean} |")
    counts = ", ".join(f"{task_title(c)} {max(r.tasks[c].n for r in rows if c in r.tasks)}" for c in columns)
    lines += ["", f"Accuracy in % ± standard error. Questions per task: {counts}.",
              f"Average: {AVERAGE_NOTES[average]}; † averaged over the tasks that row has.",
              "Rows named after a persona score free-text answers (letter extracted; unparseable = wrong); "
              "log-likelihood rows use the lm-evaluation-harness method (acc)."]
    loglik = [s for s in scores if s.method == "loglik" and s.accuracy is not None]
    if loglik:
        lines += ["", "## Log-likelihood scores: acc and acc_norm", "",
                  "| Model | Task | Questions | acc | acc_norm |", "| --- | --- | ---: | ---: | ---: |"]
        lines += [f"| {s.label} ({s.persona}) | {task_title(column_of(s, scores))} | {s.n} | "
                  f"{_pct(s.accuracy, s.stderr)} | {_pct(s.acc_norm, s.acc_norm_stderr)} |" for s in loglik]
    warnings = truncation_warnings(scores)
    if warnings:
        lines += ["", "## Warnings", "", *(f"- {w}" for w in warnings)]
    bad = [s for s in scores if s.unparseable or s.failed]
    if bad:
        lines += ["", "## Unparseable and failed answers", ""]
        for s in bad:
            where = task_title(column_of(s, scores))
            lines.append(f"- {s.label} [{s.persona}] {where}: {len(s.unparseable)} unparseable"
                         + (f", {s.failed} failed (not counted; run again to retry)" if s.failed else ""))
            for item in s.unparseable[:20]:
                text = " ".join(item["text"].split())
                lines.append(f"  - question {item['n']}: {text[:200] + ('…' if len(text) > 200 else '') or '(empty)'}")
    return "\n".join(lines) + "\n"


def chart_png(scores: Sequence[TaskScore], average: str = "unweighted") -> bytes | None:
    """A grouped bar chart (tasks + average, one bar per row, error bars = stderr) as PNG bytes; None when empty."""
    columns, rows = leaderboard(scores, average)
    if not rows:
        return None
    from runner.views.charts import figure_png

    groups = [task_title(c) for c in columns] + [f"Average ({average})"]
    width = 0.8 / len(rows)

    def draw(ax: Any) -> None:
        for i, row in enumerate(rows):
            heights = [100 * row.tasks[c].accuracy if c in row.tasks else 0.0 for c in columns]
            below, above = zip(*[_error_bar(row.tasks.get(c)) for c in columns], strict=True) if columns else ((), ())
            heights.append(100 * (row.average or 0.0))
            xs = [g + (i - (len(rows) - 1) / 2) * width for g in range(len(groups))]
            ax.bar(xs, heights, width, yerr=[[*below, 0.0], [*above, 0.0]], capsize=2, label=row.name)
        ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title("Multiple-choice accuracy")
        ax.legend(fontsize=8, loc="upper right")

    return figure_png((max(6.0, 1.1 * len(groups) * max(1, len(rows)) ** 0.5 + 2), 4.8), draw)


def _error_bar(score: TaskScore | None) -> tuple[float, float]:
    """(below, above) in points: the bootstrap interval when it was computed, else ± the standard error."""
    if score is None or score.accuracy is None:
        return 0.0, 0.0
    if score.interval:
        return (max(0.0, 100 * (score.accuracy - score.interval[0])),
                max(0.0, 100 * (score.interval[1] - score.accuracy)))
    return 100 * (score.stderr or 0.0), 100 * (score.stderr or 0.0)


def render_chart(scores: Sequence[TaskScore], path: Path, root: Path | None = None,
                 average: str = "unweighted") -> Path | None:
    """Write the chart (``chart_png``) to ``path`` atomically; None when there is nothing to chart.

    A symbolic link at ``path`` is replaced, never written through; with ``root``, a folder on the way that leads
    outside it is refused. A killed process leaves the old chart or the new one, never a partial file.
    """
    from runner.core.store import write_output

    data = chart_png(scores, average)
    if data is None:
        return None
    return write_output(path, data, root=root, mode=0o644)


def write_outputs(scores: Sequence[TaskScore], output_dir: Path, average: str = "unweighted",
                  statistics: dict[str, Any] | None = None, sections: Sequence[str] = (),
                  extra: dict[str, Any] | None = None) -> dict[str, Path | None]:
    """Write ``scores.json``, ``leaderboard.md`` and ``scores.png`` under the output root (``average`` as in
    ``leaderboard``; ``scores.json`` holds both averages and says which one ``average`` is). ``statistics`` goes into
    ``scores.json`` and ``sections`` (markdown lines) at the end of ``leaderboard.md`` (``runner.views.comparisons``);
    ``extra`` adds top-level keys to ``scores.json`` (``self_consistency``: ``runner.views.consistency``).

    Each is written atomically inside ``output_dir`` (a symbolic link there is replaced, not followed); a folder
    that cannot be written is one UsageError naming it.
    """
    from runner.core.store import write_output

    columns, rows = leaderboard(scores, average)
    data = {
        "version": 1,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "task_order": columns,
        "results": [s.to_json() for s in scores],
        "leaderboard": [{"name": r.name, "model": r.model, "persona": r.persona, "method": r.method,
                         "tasks": {t: s.accuracy for t, s in r.tasks.items()}, "average": r.average,
                         "average_kind": average, "average_unweighted": r.unweighted,
                         "average_weighted": r.weighted, "complete": r.complete} for r in rows],
    }
    if statistics:
        data["statistics"] = statistics
    data.update(extra or {})
    output_dir = Path(output_dir)
    json_path, md_path = output_dir / "scores.json", output_dir / "leaderboard.md"
    write_output(json_path, json_text(data), root=output_dir, mode=0o644)
    markdown = render_markdown(scores, average) + ("\n".join(sections) + "\n" if sections else "")
    write_output(md_path, markdown, root=output_dir, mode=0o644)
    chart = render_chart(scores, output_dir / "scores.png", output_dir, average)
    return {"json": json_path, "markdown": md_path, "chart": chart}


_ENCODE = json.JSONEncoder(ensure_ascii=False).encode


def json_text(data: Any) -> str:
    """``data`` as JSON text, laid out for reading but written fast: a list of flat objects (per-question rows, the
    bulk of a large scores.json) one compact object a line, everything else one entry a line (indent 1).

    The content is that of ``json.dumps(data, ensure_ascii=False)``; only the spacing differs.
    """
    return "".join(_json_pieces(data, "\n")) + "\n"


def _json_key(key: Any) -> str:
    """A key that is not a string as ``json.dumps`` writes it (1 → "1", True → "true", None → "null")."""
    return next(iter(json.loads(_ENCODE({key: None}))))


def _flat(value: Any) -> bool:
    return isinstance(value, dict) and not any(isinstance(v, dict | list | tuple) for v in value.values())


def _json_pieces(value: Any, newline: str) -> Iterator[str]:
    inner = newline + " "
    if isinstance(value, dict) and value:
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ("," if i else "") + inner + _ENCODE(key if isinstance(key, str) else _json_key(key)) + ": "
            yield from _json_pieces(item, inner)
        yield newline + "}"
    elif isinstance(value, list | tuple) and value:
        yield "["
        if all(_flat(item) for item in value):
            yield inner + ("," + inner).join(map(_ENCODE, value))
        else:
            for i, item in enumerate(value):
                yield ("," if i else "") + inner
                yield from _json_pieces(item, inner)
        yield newline + "]"
    else:
        yield _ENCODE(value)
