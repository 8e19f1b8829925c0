"""The statistics of ``score``: an interval on every accuracy, paired comparisons of models, breakdowns by field.

- Every accuracy (acc and, for log-likelihood rows, acc_norm) gets a 95% percentile bootstrap interval beside the
  harness's standard error; so does each leaderboard row's average (tasks resampled separately, then averaged as
  the row's average is: unweighted, or weighted by the number of questions).
- ``--compare A,B`` (or ``all``) compares two models on the items both answered, per task and overall, under each
  persona and method they share: both accuracies, the difference with its paired bootstrap interval, the
  discordant counts and McNemar's exact p-value, with Holm-Bonferroni adjusted p-values across every comparison
  shown. Unparseable answers count as wrong (as in the accuracy); failed answers and items only one model answered
  are left out, and the table says how many.
- ``--by FIELD`` breaks each accuracy down by a question field (``task``, or a key the questions carry such as
  ``category``, ``subject`` or ``tags``; a list gives one group per element).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runner.views.scores import TaskScore, column_of, leaderboard, task_order, task_title
from runner.views.stats import (
    LEVEL,
    RESAMPLES,
    SEED,
    Interval,
    bootstrap_means,
    format_p,
    holm,
    mcnemar_exact,
    paired_interval,
    percentile_interval,
)

OVERALL = "overall"


@dataclass
class Comparison:
    """Model A against model B on the items both answered, in one scope (a task, or overall)."""

    a: str
    b: str
    persona: str
    method: str
    scope: str
    n: int
    acc_a: float | None
    acc_b: float | None
    difference: float | None
    interval: Interval | None
    a_only: int  # A right and B wrong
    b_only: int  # B right and A wrong
    p_value: float
    p_holm: float | None = None
    only_a_answered: int = 0  # left out: answered by A only (B failed or never answered)
    only_b_answered: int = 0
    discordant: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The scores.json form."""
        return _with_interval(vars(self))


@dataclass
class Breakdown:
    """One accuracy broken down by one value of a question field."""

    row: str
    task: str
    field: str
    value: str
    n: int
    accuracy: float | None
    interval: Interval | None

    def to_json(self) -> dict[str, Any]:
        """The scores.json form."""
        return _with_interval(vars(self))


@dataclass
class Statistics:
    """Everything ``score`` computed beside the accuracies; rendered in leaderboard.md, scores.json and the report."""

    resamples: int = RESAMPLES
    seed: int = SEED
    level: float = LEVEL
    averages: dict[str, Interval] = field(default_factory=dict)  # leaderboard row name -> interval of its average
    comparisons: list[Comparison] = field(default_factory=list)
    breakdowns: list[Breakdown] = field(default_factory=list)
    show_discordant: bool = False

    def to_json(self) -> dict[str, Any]:
        """The scores.json form."""
        return {"bootstrap": {"resamples": self.resamples, "seed": self.seed, "level": self.level,
                              "method": "percentile"},
                "average_intervals": {name: i.to_json() for name, i in self.averages.items()},
                "comparisons": [c.to_json() for c in self.comparisons],
                "breakdowns": [b.to_json() for b in self.breakdowns]}


def _with_interval(fields: dict[str, Any]) -> dict[str, Any]:
    """A dataclass's fields for scores.json, its ``interval`` as ``[low, high]`` (or None)."""
    interval = fields.get("interval")
    return {**fields, "interval": interval.to_json() if interval else None}


def row_name(score: TaskScore) -> str:
    """The leaderboard row a score belongs to (``label (persona)``, or ``label (log-likelihood)``)."""
    return f"{score.label} ({'log-likelihood' if score.method == 'loglik' else score.persona})"


def task_seed(seed: int, column: str) -> int:
    """A task's own seed, so the tasks of one average are resampled independently and each task's interval does not
    depend on which other tasks are scored."""
    return seed + zlib.crc32(column.encode("utf-8"))


def add_intervals(scores: Sequence[TaskScore], stats: Statistics, average: str = "unweighted") -> None:
    """Set each score's interval (and acc_norm's) and each leaderboard row's average interval."""
    for s in scores:
        seed = task_seed(stats.seed, column_of(s, scores))
        values = list(s.correctness().values())
        s.interval = _json(percentile_interval(values, stats.resamples, seed, stats.level))
        if s.method == "loglik":
            norm = list(s.correctness(norm=True).values())
            s.acc_norm_interval = _json(percentile_interval(norm, stats.resamples, seed, stats.level))
    _, rows = leaderboard(scores, average)
    tail = (1 - stats.level) / 2 * 100
    for row in rows:
        parts = [(t.n, bootstrap_means(list(t.correctness().values()), stats.resamples,
                                       task_seed(stats.seed, column)))
                 for column, t in row.tasks.items() if t.n]
        if not parts or stats.resamples < 1:
            continue
        weights = np.array([n if average == "weighted" else 1 for n, _ in parts], dtype=float)
        means = np.vstack([m for _, m in parts]).T @ weights / weights.sum()
        low, high = np.percentile(means, [tail, 100 - tail])
        stats.averages[row.name] = Interval(float(low), float(high))


def _json(interval: Interval | None) -> list[float] | None:
    return interval.to_json() if interval else None


def _side(scores: Sequence[TaskScore], names: set[str]) -> dict[tuple[str, str], list[TaskScore]]:
    """The scores of the rows one side's names select, by (persona, method)."""
    found: dict[tuple[str, str], list[TaskScore]] = {}
    for s in scores:
        # a variant (label@tag) is chosen by its own label; plain names choose the untagged row
        if s.label in names or (not s.tag and names & {s.model, s.slug}):
            found.setdefault((s.persona, s.method), []).append(s)
    return found


def compare(scores: Sequence[TaskScore], a_names: set[str], b_names: set[str], stats: Statistics) -> list[Comparison]:
    """A against B per task and overall under each (persona, method) both have; [] when they share none."""
    side_a, side_b = _side(scores, a_names), _side(scores, b_names)
    out = []
    for key in sorted(set(side_a) & set(side_b)):
        a_rows, b_rows = side_a[key], side_b[key]
        labels = {s.label for s in a_rows}, {s.label for s in b_rows}
        if labels[0] & labels[1]:
            continue  # the same row on both sides
        a_by = {column_of(s, scores): s for s in a_rows}
        b_by = {column_of(s, scores): s for s in b_rows}
        common = task_order(set(a_by) & set(b_by))
        pooled: list[tuple[TaskScore, TaskScore, int]] = []
        for column in common:
            a, b = a_by[column], b_by[column]
            out.append(_compare_one(column, [(a, b, n) for n in _shared(a, b)], a, b, stats))
            pooled += [(a, b, n) for n in _shared(a, b)]
        if len(common) > 1:
            out.append(_compare_one(OVERALL, pooled, a_rows[0], b_rows[0], stats,
                                    only=_only_counts([(a_by[c], b_by[c]) for c in common])))
    return out


def _shared(a: TaskScore, b: TaskScore) -> list[int]:
    return sorted(set(a.correctness()) & set(b.correctness()))


def _only_counts(pairs: Iterable[tuple[TaskScore, TaskScore]]) -> tuple[int, int]:
    only_a = only_b = 0
    for a, b in pairs:
        ca, cb = set(a.correctness()), set(b.correctness())
        only_a += len(ca - cb)
        only_b += len(cb - ca)
    return only_a, only_b


def _compare_one(scope: str, items: list[tuple[TaskScore, TaskScore, int]], a: TaskScore, b: TaskScore,
                 stats: Statistics, only: tuple[int, int] | None = None) -> Comparison:
    scored: dict[int, dict[int, float]] = {}

    def right(score: TaskScore, n: int) -> float:
        if id(score) not in scored:
            scored[id(score)] = score.correctness()
        return scored[id(score)][n]

    ya = [right(a_s, n) for a_s, _, n in items]
    yb = [right(b_s, n) for _, b_s, n in items]
    a_only = sum(1 for x, y in zip(ya, yb, strict=True) if x > y)
    b_only = sum(1 for x, y in zip(ya, yb, strict=True) if y > x)
    n = len(items)
    acc_a, acc_b = (sum(ya) / n, sum(yb) / n) if n else (None, None)
    seed = task_seed(stats.seed, scope)
    interval = paired_interval(ya, yb, stats.resamples, seed, stats.level) if n else None
    if only is None:
        only = _only_counts([(a, b)])
    comparison = Comparison(a=a.label, b=b.label, persona=a.persona, method=a.method, scope=scope, n=n,
                            acc_a=acc_a, acc_b=acc_b,
                            difference=(acc_a - acc_b) if acc_a is not None and acc_b is not None else None,
                            interval=interval, a_only=a_only, b_only=b_only, p_value=mcnemar_exact(a_only, b_only),
                            only_a_answered=only[0], only_b_answered=only[1])
    if scope != OVERALL:
        items_a, items_b = {i["n"]: i for i in a.items}, {i["n"]: i for i in b.items}
        for (_, _, q), x, y in zip(items, ya, yb, strict=True):
            if x != y:
                comparison.discordant.append(_discordant(q, items_a[q], items_b[q], a, b))
    return comparison


def _discordant(n: int, item_a: dict[str, Any], item_b: dict[str, Any], a: TaskScore, b: TaskScore) -> dict[str, Any]:
    detail_a, detail_b = a.details.get(n), b.details.get(n)
    return {"n": n, "id": detail_a.id if detail_a else None, "question": detail_a.question if detail_a else "",
            "answer": item_a["answer"], "a_chosen": item_a["chosen"], "b_chosen": item_b["chosen"],
            "a_text": detail_a.text if detail_a else "", "b_text": detail_b.text if detail_b else ""}


def compare_all(scores: Sequence[TaskScore], stats: Statistics) -> list[Comparison]:
    """Every pair of rows that share a persona and method, where they answered some items in common."""
    labels: dict[tuple[str, str], list[str]] = {}
    for s in scores:
        group = labels.setdefault((s.persona, s.method), [])
        if s.label not in group:
            group.append(s.label)
    out = []
    for (persona, method), names in sorted(labels.items()):
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                selected = [s for s in scores if s.persona == persona and s.method == method]
                out += [c for c in compare(selected, {a}, {b}, stats) if c.n]  # pairs with shared items only
    return out


def adjust(comparisons: Sequence[Comparison]) -> None:
    """Holm-Bonferroni adjusted p-values across every comparison shown."""
    for comparison, p in zip(comparisons, holm([c.p_value for c in comparisons]), strict=True):
        comparison.p_holm = p


def breakdowns(scores: Sequence[TaskScore], by: str, stats: Statistics) -> list[Breakdown]:
    """Each accuracy broken down by the values of question field ``by`` (items without it under ``(none)``)."""
    out = []
    for s in scores:
        groups: dict[str, list[float]] = {}
        for n, value in s.correctness().items():
            for key in _values(s, n, by):
                groups.setdefault(key, []).append(value)
        column = column_of(s, scores)
        for key in sorted(groups):
            values = groups[key]
            out.append(Breakdown(row_name(s), column, by, key, len(values), sum(values) / len(values),
                                 percentile_interval(values, stats.resamples, task_seed(stats.seed, f"{column}/{key}"),
                                                     stats.level)))
    return out


def _values(score: TaskScore, n: int, by: str) -> list[str]:
    if by == "task":
        return [score.task]
    detail = score.details.get(n)
    value = detail.extra.get(by) if detail else None
    if value is None or value == "" or value == []:
        return ["(none)"]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _ci(interval: Interval | list[float] | None) -> str:
    if interval is None:
        return "–"
    low, high = (interval.low, interval.high) if isinstance(interval, Interval) else interval
    return f"[{100 * low:.1f}, {100 * high:.1f}]"


def markdown_sections(scores: Sequence[TaskScore], stats: Statistics, average: str) -> list[str]:
    """The leaderboard.md (and terminal) sections: intervals, comparisons, discordant items, breakdowns."""
    level = f"{round(100 * stats.level)}%"
    lines = ["", f"## {level} bootstrap intervals", "",
             f"Percentile bootstrap, {stats.resamples:,} resamples, seed {stats.seed}; the same data gives the same "
             "interval.", "", "| Row | Task | Questions | Accuracy | ± stderr | " + level + " interval |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for s in scores:
        if s.accuracy is None:
            continue
        lines.append(f"| {row_name(s)} | {task_title(column_of(s, scores))} | {s.n} | {_pct(s.accuracy)} | "
                     f"{_pct(s.stderr)} | {_ci(s.interval)} |")
        if s.method == "loglik" and s.acc_norm is not None:
            lines.append(f"| {row_name(s)} | {task_title(column_of(s, scores))} (acc_norm) | {s.n} | "
                         f"{_pct(s.acc_norm)} | {_pct(s.acc_norm_stderr)} | {_ci(s.acc_norm_interval)} |")
    for name, interval in stats.averages.items():
        lines.append(f"| {name} | Average ({average}) | | | | {_ci(interval)} |")
    if stats.comparisons:
        lines += ["", "## Paired comparisons", "",
                  "On the items both models answered (unparseable = wrong; failed answers and items only one model "
                  f"answered are left out and counted). Difference A − B with its paired bootstrap {level} interval; "
                  "McNemar's exact test on the discordant items; p (Holm) adjusted across every comparison shown.",
                  "", "| A | B | Persona | Task | Items | A % | B % | A − B | " + level + " interval | A only | "
                  "B only | p | p (Holm) | left out (A only / B only answered) |",
                  "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for c in stats.comparisons:
            persona = "log-likelihood" if c.method == "loglik" else c.persona
            scope = "Overall" if c.scope == OVERALL else task_title(c.scope)
            lines.append(f"| {c.a} | {c.b} | {persona} | {scope} | {c.n} | {_pct(c.acc_a)} | {_pct(c.acc_b)} | "
                         f"{_signed(c.difference)} | {_ci(c.interval)} | {c.a_only} | {c.b_only} | "
                         f"{format_p(c.p_value)} | {format_p(c.p_holm) if c.p_holm is not None else '–'} | "
                         f"{c.only_a_answered} / {c.only_b_answered} |")
        if stats.show_discordant:
            lines += _discordant_lines(stats.comparisons)
    if stats.breakdowns:
        by = stats.breakdowns[0].field
        lines += ["", f"## Breakdown by {by}", "", f"| Row | Task | {by} | Questions | Accuracy | {level} interval |",
                  "| --- | --- | --- | ---: | ---: | ---: |"]
        lines += [f"| {b.row} | {task_title(b.task)} | {b.value} | {b.n} | {_pct(b.accuracy)} | {_ci(b.interval)} |"
                  for b in stats.breakdowns]
    return lines


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f}"


def _discordant_lines(comparisons: Sequence[Comparison]) -> list[str]:
    lines = ["", "## Items the models disagree on", ""]
    for c in comparisons:
        if not c.discordant:
            continue
        lines.append(f"### {c.a} vs {c.b}, {task_title(c.scope)} ({len(c.discordant)})")
        lines.append("")
        for item in c.discordant:
            who = c.a if item["a_chosen"] == item["answer"] else c.b
            lines.append(f"- question {item['n']}{' (' + item['id'] + ')' if item['id'] else ''}: "
                         f"{_short(item['question'], 160)} — correct {item['answer']}; right: {who}")
            lines.append(f"  - {c.a}: {item['a_chosen'] or 'unparseable'} — {_short(item['a_text'], 200)}")
            lines.append(f"  - {c.b}: {item['b_chosen'] or 'unparseable'} — {_short(item['b_text'], 200)}")
        lines.append("")
    return lines


def _short(text: str, limit: int) -> str:
    flat = " ".join((text or "").split())
    return (flat[:limit] + "…") if len(flat) > limit else (flat or "(empty)")
