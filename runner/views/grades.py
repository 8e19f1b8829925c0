"""Grades of open answers, as HealthBench reports them: per judge (and per panel of judges), model and persona, the
mean score clipped to [0, 1] with the standard deviation of bootstrap means and n; the same per rubric tag
(``axis:...``) and per example tag (theme); the answers that could not be graded; agreement between judges.

Only grades of the answers saved now count: a grade whose answer was answered again since (another key or text)
is left out until it is graded again.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.core.questions import RubricItem
from runner.core.records import Record
from runner.tasks.grading import rubric_score, tag_scores
from runner.views.stats import SEED

PANEL = "panel"
RUBRIC_SCALE, REFERENCE_SCALE = "rubric", "1-5"  # HealthBench rubric scores (clipped means), MedHELM's 1-5 scores


@dataclass(frozen=True)
class Stat:
    """A HealthBench aggregate: the clipped mean, the bootstrap standard deviation of that mean, and n."""

    mean: float | None
    std: float | None
    n: int

    def to_json(self) -> dict[str, Any]:
        """The aggregate as JSON (simple-evals' names: the mean, ``bootstrap_std``, ``n_samples``)."""
        return {"mean": _round(self.mean), "bootstrap_std": _round(self.std), "n_samples": self.n}

    def cell(self) -> str:
        """``0.612 ± 0.031`` (n omitted), or ``–``."""
        if self.mean is None:
            return "–"
        return f"{self.mean:.3f} ± {self.std:.3f}" if self.std is not None else f"{self.mean:.3f}"


@dataclass
class GradeRow:
    """One judge's (or the panel's) grades of one model under one persona."""

    judge: str
    model: str
    persona: str
    overall: Stat
    scale: str = RUBRIC_SCALE
    tags: dict[str, Stat] = field(default_factory=dict)
    themes: dict[str, Stat] = field(default_factory=dict)
    ungradable: list[int] = field(default_factory=list)  # question numbers
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The row as JSON."""
        return {"judge": self.judge, "model": self.model, "persona": self.persona, "scale": self.scale,
                "overall": self.overall.to_json(), "tags": {k: v.to_json() for k, v in sorted(self.tags.items())},
                "themes": {k: v.to_json() for k, v in sorted(self.themes.items())},
                "ungradable": self.ungradable, "judge_prompt_tokens": self.prompt_tokens,
                "judge_completion_tokens": self.completion_tokens, "judge_cost_usd": _round(self.cost_usd, 6)}


@dataclass
class Grades:
    """Everything ``grade`` reports."""

    rows: list[GradeRow]
    judges: list[str]
    agreement: dict[str, Any] | None = None
    resamples: int = 1000
    comparisons: list[GradeComparison] = field(default_factory=list)


def answer_place(record: Record) -> tuple[str, str, int, int]:
    """Where an answer (or the grade of an answer) is: persona, model label, question number, sample (1: the
    answer itself; 2..K: ``--samples``)."""
    return record.persona or "", record.label, record.n, record.sample or 1


def current_grades(grades: Iterable[Record], answers: Iterable[Record]) -> list[Record]:
    """The grades made of the answers saved now (same answer key), each judge's latest."""
    keys = {answer_place(a): a.key for a in answers}
    return [g for g in grades if keys.get(answer_place(g)) is not None
            and keys[answer_place(g)] == (g.model_extra or {}).get("answer_key")]


def collect(grades: Sequence[Record], resamples: int = 1000, seed: int = SEED) -> Grades:
    """Aggregate grade records per judge, model and persona; a panel row where several judges graded the same
    answers (an item is met when most judges say so; a tie is not met)."""
    by_row: dict[tuple[str, str, str, str], list[Record]] = defaultdict(list)
    for g in grades:
        by_row[(_scale(g), _judge(g), g.label, g.persona or "")].append(g)
    judges = sorted({j for _, j, _, _ in by_row})
    rows = [_row(judge, model, persona, records, resamples, seed, scale)
            for (scale, judge, model, persona), records in sorted(by_row.items())]
    agreement = None
    rubric = [g for g in grades if _scale(g) == RUBRIC_SCALE]
    rubric_judges = sorted({_judge(g) for g in rubric})
    if len(rubric_judges) > 1:
        panel, agreement = _panel(rubric, rubric_judges, resamples, seed)
        rows += panel
    return Grades(rows=rows, judges=judges, agreement=agreement, resamples=resamples)


def _scale(record: Record) -> str:
    return REFERENCE_SCALE if _extra(record, "template") == "medhelm-reference" else RUBRIC_SCALE


def _judge(record: Record) -> str:
    extra = record.model_extra or {}
    return str(extra.get("judge_label") or extra.get("judge") or "?")


def _extra(record: Record, name: str) -> Any:
    return (record.model_extra or {}).get(name)


def _row(judge: str, model: str, persona: str, records: Sequence[Record], resamples: int, seed: int,
         scale: str = RUBRIC_SCALE) -> GradeRow:
    row = GradeRow(judge, model, persona, Stat(None, None, 0), scale)
    costs: list[float] = []
    per_question: dict[int, list[Graded | None]] = defaultdict(list)
    for g in sorted(records, key=lambda r: (r.n, r.sample or 1)):
        row.prompt_tokens += g.prompt_tokens or 0
        row.completion_tokens += g.completion_tokens or 0
        cost = _extra(g, "cost_usd")
        if isinstance(cost, int | float):
            costs.append(float(cost))
        score = _extra(g, "score")
        graded = not g.error and isinstance(score, int | float)
        per_question[g.n].append(Graded(float(score), _extra(g, "tag_scores") or {},
                                        _extra(g, "example_tags") or []) if graded else None)
    row.cost_usd = sum(costs) if costs else None
    _fill(row, *_question_means(per_question), resamples, seed)
    return row


@dataclass(frozen=True)
class Graded:
    """One answer's (or sample's) score, its rubric tags' scores and its question's example tags."""

    score: float
    tags: dict[str, Any]
    themes: Sequence[Any]


def _question_means(per_question: dict[int, list[Graded | None]]) -> tuple[list[float], dict[str, list[float]],
                                                                         dict[str, list[float]], list[int]]:
    """Each question's score, rubric tag scores and themes: its answer's, or the mean over its samples
    (``--samples``); a question with an ungradable answer or sample is left out and listed."""
    scores: list[float] = []
    tags: dict[str, list[float]] = defaultdict(list)
    themes: dict[str, list[float]] = defaultdict(list)
    ungradable: list[int] = []
    for n in sorted(per_question):
        graded = per_question[n]
        if any(g is None for g in graded):
            ungradable.append(n)
            continue
        means: dict[str, list[float]] = defaultdict(list)
        for g in graded:
            for tag, value in g.tags.items():
                if isinstance(value, int | float):
                    means[tag].append(float(value))
        _add(scores, tags, themes, sum(g.score for g in graded) / len(graded),
             {tag: sum(v) / len(v) for tag, v in means.items()}, graded[0].themes)
    return scores, tags, themes, ungradable


def _add(scores: list[float], tags: dict[str, list[float]], themes: dict[str, list[float]], score: float,
         tag_values: dict[str, Any], example_tags: Sequence[Any]) -> None:
    scores.append(score)
    for tag, value in tag_values.items():
        if isinstance(value, int | float):
            tags[tag].append(float(value))
    for theme in dict.fromkeys(example_tags):
        themes[str(theme)].append(score)


def _fill(row: GradeRow, scores: list[float], tags: dict[str, list[float]], themes: dict[str, list[float]],
          ungradable: list[int], resamples: int, seed: int) -> None:
    clip = row.scale == RUBRIC_SCALE
    row.overall = _stat(scores, resamples, seed, clip)
    row.tags = {t: _stat(v, resamples, seed, clip) for t, v in tags.items()}
    row.themes = {t: _stat(v, resamples, seed, clip) for t, v in themes.items()}
    row.ungradable = ungradable


def _stat(values: list[float], resamples: int, seed: int, clip: bool) -> Stat:
    """HealthBench's clipped mean with the bootstrap std of the clipped means (rubric scores), or the plain mean
    with the bootstrap std of the means (1-5 scores against a reference); no std with ``resamples`` 0."""
    import numpy as np

    from runner.views.judge_stats import clipped_stats

    if not values:
        return Stat(None, None, 0)
    if clip and resamples:
        stats = clipped_stats(values, resamples, seed)
        return Stat(stats.mean, stats.bootstrap_std, stats.n_samples) if stats else Stat(None, None, 0)
    data = np.asarray(values, dtype=float)
    mean = float(np.clip(data.mean(), 0, 1)) if clip else float(data.mean())
    if not resamples:
        return Stat(mean, None, len(data))
    draws = np.random.default_rng(seed).integers(0, len(data), size=(resamples, len(data)))
    return Stat(mean, float(np.std(data[draws].mean(axis=1))), len(data))


def _items_of(record: Record) -> list[dict[str, Any]]:
    items = _extra(record, "items")
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _panel(grades: Sequence[Record], judges: list[str], resamples: int,
           seed: int) -> tuple[list[GradeRow], dict[str, Any]]:
    """The panel's rows (majority per item) and the judges' agreement on the items every judge graded."""
    from runner.views.judge_stats import cohen_kappa, fleiss_kappa

    by_answer: dict[tuple[str, str, int, int], dict[str, Record]] = defaultdict(dict)
    for g in grades:
        by_answer[answer_place(g)][_judge(g)] = g
    label = f"{PANEL} ({', '.join(judges)})"
    groups: dict[tuple[str, str], dict[int, list[Graded | None]]] = {}
    ratings: list[list[bool]] = []
    for (persona, model, n, _), per_judge in sorted(by_answer.items()):
        if len(per_judge) != len(judges):
            continue  # not graded by every judge: no panel grade
        group = groups.setdefault((model, persona), defaultdict(list))
        lists = [_items_of(per_judge[j]) for j in judges]
        rubric = [(i.get("criterion"), i.get("points")) for i in lists[0]]
        if any([(i.get("criterion"), i.get("points")) for i in items] != rubric for items in lists[1:]):
            continue  # graded against different rubrics: not comparable
        votes = [[items[k].get("met") for items in lists] for k in range(len(rubric))]
        if any(v is None or not isinstance(v, bool) for vs in votes for v in vs):
            group[n].append(None)
            continue
        ratings.extend(votes)
        met = [sum(vs) * 2 > len(vs) for vs in votes]
        items = [RubricItem(str(i.get("criterion")), float(i.get("points") or 0), tuple(i.get("tags") or ()))
                 for i in lists[0]]
        score = rubric_score(items, met)
        if score is None:
            continue
        group[n].append(Graded(score, tag_scores(items, met), _extra(per_judge[judges[0]], "example_tags") or []))
    rows = []
    for (model, persona), per_question in sorted(groups.items()):
        row = GradeRow(label, model, persona, Stat(None, None, 0))
        _fill(row, *_question_means(per_question), resamples, seed)
        rows.append(row)
    pairs = []
    for a in range(len(judges)):
        for b in range(a + 1, len(judges)):
            pairs.append({"judges": [judges[a], judges[b]],
                          "cohen_kappa": _round(cohen_kappa([r[a] for r in ratings], [r[b] for r in ratings]))})
    agreement = {"items": len(ratings), "fleiss_kappa": _round(fleiss_kappa(ratings)) if ratings else None,
                 "pairs": pairs}
    return rows, agreement


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or value != value:  # None or nan
        return None
    return round(float(value), digits)


def to_json(grades: Grades, set_name: str) -> dict[str, Any]:
    """``grades.json``."""
    return {"version": 1, "generated": datetime.now(UTC).isoformat(timespec="seconds"), "set": set_name,
            "judges": grades.judges, "bootstrap_resamples": grades.resamples,
            "rows": [r.to_json() for r in grades.rows], "agreement": grades.agreement,
            "comparisons": [c.to_json() for c in grades.comparisons]}


def render_markdown(grades: Grades, set_name: str) -> str:
    """``grades.md``: rubric scores (overall, rubric tags, themes), scores against reference answers, the answers
    that could not be graded and the judges' agreement; each ``mean ± bootstrap std``."""
    lines = [f"# Grades: question set {set_name}"]
    rubric = [r for r in grades.rows if r.scale == RUBRIC_SCALE]
    reference = [r for r in grades.rows if r.scale == REFERENCE_SCALE]
    if rubric:
        lines += ["", "Rubric scores are HealthBench's: the mean over answers of (points met / positive points), "
                  f"clipped to [0, 1], ± the standard deviation of {grades.resamples:,} bootstrap means; n = answers "
                  "graded.", ""]
        lines += _score_table(rubric, "score")
        for title, attr in (("Rubric tags (axes)", "tags"), ("Themes (example tags)", "themes")):
            lines += _breakdown(rubric, title, attr)
    if reference:
        lines += ["", "## Against the reference answers", "",
                  "MedHELM's judge scheme: accuracy, completeness and clarity each scored 1-5; an answer's score is "
                  f"their mean; ± the standard deviation of {grades.resamples:,} bootstrap means.", ""]
        lines += _score_table(reference, "score (1-5)")
        lines += _breakdown(reference, "Criteria", "tags")
    lines += comparisons_markdown(grades.comparisons)
    bad = [r for r in grades.rows if r.ungradable]
    if bad:
        lines += ["", "## Ungradable answers", "",
                  "An answer with a rubric item the judge could not grade gets no score and is left out of every mean; "
                  "`grade` again asks only for those items.", ""]
        for r in bad:
            lines.append(f"- {_md(r.judge)} · {_md(r.model)} [{_md(r.persona)}]: questions "
                         + ", ".join(str(n) for n in r.ungradable))
    if grades.agreement:
        a = grades.agreement
        lines += ["", "## Agreement between judges", "",
                  f"On {a['items']:,} rubric items every judge graded: Fleiss' kappa "
                  f"{_num(a.get('fleiss_kappa'))}.", "", "| judges | Cohen's kappa |", "| --- | ---: |"]
        lines += [f"| {_md(' / '.join(p['judges']))} | {_num(p.get('cohen_kappa'))} |" for p in a["pairs"]]
    return "\n".join(lines) + "\n"


def _score_table(rows: Sequence[GradeRow], title: str) -> list[str]:
    lines = [f"| judge | model | persona | {title} | n | ungradable | judge tokens | judge cost |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        panel = r.judge.startswith(PANEL)
        cost = "–" if panel or r.cost_usd is None else f"${r.cost_usd:.4f}"
        tokens = "–" if panel else f"{r.prompt_tokens + r.completion_tokens:,}"
        lines.append(f"| {_md(r.judge)} | {_md(r.model)} | {_md(r.persona)} | {r.overall.cell()} | {r.overall.n} | "
                     f"{len(r.ungradable)} | {tokens} | {cost} |")
    return lines


def _breakdown(rows: Sequence[GradeRow], title: str, attr: str) -> list[str]:
    names = sorted({t for r in rows for t in getattr(r, attr)})
    if not names:
        return []
    lines = ["", f"## {title}", "", "| judge | model | persona | " + " | ".join(_md(n) for n in names) + " |",
             "| --- | --- | --- |" + " --- |" * len(names)]
    for r in rows:
        values = getattr(r, attr)
        cells = [values[n].cell() if n in values else "–" for n in names]
        lines.append(f"| {_md(r.judge)} | {_md(r.model)} | {_md(r.persona)} | " + " | ".join(cells) + " |")
    return lines


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def chart_png(grades: Grades) -> bytes | None:
    """Bars of each row's overall rubric score with ± bootstrap std, as PNG bytes; None when none was graded."""
    rows = [r for r in grades.rows if r.overall.mean is not None and r.scale == RUBRIC_SCALE]
    if not rows:
        return None
    from runner.views.charts import figure_png

    names = [f"{r.model} [{r.persona}]\n{r.judge}" for r in rows]

    def draw(ax: Any) -> None:
        ax.bar(range(len(rows)), [r.overall.mean for r in rows], yerr=[r.overall.std or 0 for r in rows], capsize=3)
        ax.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("rubric score (clipped mean)")
        ax.set_title("Rubric grades (± bootstrap std)")

    return figure_png((max(6.0, 1.2 * len(rows) + 2), 4.8), draw)


def write_outputs(grades: Grades, set_name: str, output_dir: Path) -> dict[str, Path | None]:
    """Write ``grades.json``, ``grades.md`` and ``grades.png`` under the output root, each atomically."""
    from runner.core.store import write_output

    output_dir = Path(output_dir)
    paths: dict[str, Path | None] = {"json": output_dir / "grades.json", "markdown": output_dir / "grades.md",
                                     "chart": None}
    write_output(output_dir / "grades.json", json.dumps(to_json(grades, set_name), ensure_ascii=False, indent=1)
                 + "\n", root=output_dir, mode=0o644)
    write_output(output_dir / "grades.md", render_markdown(grades, set_name), root=output_dir, mode=0o644)
    chart = chart_png(grades)
    if chart is not None:
        paths["chart"] = write_output(output_dir / "grades.png", chart, root=output_dir, mode=0o644)
    return paths


def question_grades(grades: Sequence[Record], n: int) -> list[Record]:
    """The grades of question ``n``'s answers, by model, persona and judge."""
    return sorted((g for g in grades if g.n == n), key=lambda g: (g.label, g.persona or "", _judge(g)))


def render_question_grades(grades: Sequence[Record], width: int) -> str:
    """The grades of one question's answers as text: each answer's score per judge, the items not met (positive)
    and met (negative), with the judge's explanation cut to the width."""
    if not grades:
        return ""
    lines = ["Grades"]
    for g in grades:
        score = _extra(g, "score")
        items = _items_of(g)
        met = sum(1 for i in items if i.get("met") is True)
        head = (f"  {g.label} [{g.persona}] by {_judge(g)}: "
                + (f"{score:.3f}" if isinstance(score, int | float) else "ungradable")
                + f" ({met} of {len(items)} items met)")
        lines.append(head)
        for i in items:
            points = i.get("points") or 0
            met_it = i.get("met")
            if not (met_it is None or (met_it is False and points > 0) or (met_it is True and points < 0)):
                continue
            mark = "?" if met_it is None else ("✗" if points > 0 else "!")
            why = " ".join(str(i.get("explanation") or i.get("problem") or "").split())
            text = f"    {mark} [{points:g}] {' '.join(str(i.get('criterion')).split())}" + (f" — {why}" if why else "")
            lines.append(text if len(text) <= width else text[:max(10, width - 1)] + "…")
    return "\n".join(lines)


def meta_evaluation(items: Sequence[Any], met: dict[int, bool]) -> dict[str, Any]:
    """A judge's agreement with physicians, as HealthBench's meta-evaluation reports it: pairwise precision, recall
    and F1 per class (met, not met) over every (judge label, physician label) pair, the balanced F1 (the mean of the
    two F1s, HealthBench's headline), per category too; and the physicians' own balanced F1 against each other (the
    mean over physicians), the baseline a judge is compared with. ``items`` are ``tasks.grading.MetaItem``;
    ``met`` the judge's label per item number (items the judge could not grade are left out)."""
    from runner.views.judge_stats import physician_agreement, rater_agreement

    graded = [i for i in items if i.n in met]

    def summary(rows: Sequence[Any]) -> dict[str, Any]:
        agreement = rater_agreement((met[i.n], i.labels) for i in rows)
        physicians = physician_agreement(dict(zip(i.physicians, i.labels, strict=True)) for i in rows)
        scores = [a.balanced_f1 for a in physicians.values() if a.balanced_f1 is not None]
        return {"items": len(rows), "pairs": agreement.pairs, "balanced_f1": _round(agreement.balanced_f1),
                "met": vars(agreement.met), "not_met": vars(agreement.not_met),
                "physician_balanced_f1": _round(sum(scores) / len(scores)) if scores else None,
                "physicians": len(scores)}

    categories = sorted({i.category for i in graded})
    return {"overall": summary(graded),
            "categories": {c: summary([i for i in graded if i.category == c]) for c in categories},
            "ungradable": sorted(i.n for i in items if i.n not in met)}


def render_meta_markdown(result: dict[str, Any], judge: str, source: str) -> str:
    """``meta_eval.md``: the judge's balanced F1 against physicians, overall and per category."""
    lines = [f"# Meta-evaluation of {judge} against physicians", "",
             f"From {source}: the judge's label of each (completion, rubric criterion) compared with each physician's "
             "label, as HealthBench's meta-evaluation does. Balanced F1 = the mean of the F1 of 'met' and of 'not "
             "met'; the physicians' column is each physician against the others, averaged.", "",
             "| category | items | judge balanced F1 | physicians' balanced F1 | met F1 | not-met F1 |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    rows = [("all", result["overall"]), *result["categories"].items()]
    for name, row in rows:
        lines.append(f"| {_md(name)} | {row['items']} | {_num(row['balanced_f1'])} | "
                     f"{_num(row['physician_balanced_f1'])} | {_num(row['met']['f1'])} | "
                     f"{_num(row['not_met']['f1'])} |")
    if result["ungradable"]:
        lines += ["", f"{len(result['ungradable'])} item(s) the judge could not grade are left out; grade again to "
                  "ask for those only."]
    return "\n".join(lines) + "\n"


@dataclass
class GradeComparison:
    """Two models' rubric scores from one judge under one persona, on the answers both had graded."""

    judge: str
    persona: str
    a: str
    b: str
    n: int
    mean_a: float
    mean_b: float
    interval: Any  # stats.Interval of mean(a) - mean(b), or None
    p: float
    p_adjusted: float | None = None

    @property
    def difference(self) -> float:
        """mean(a) - mean(b) over the shared answers."""
        return self.mean_a - self.mean_b

    def to_json(self) -> dict[str, Any]:
        """The comparison as JSON."""
        return {"judge": self.judge, "persona": self.persona, "a": self.a, "b": self.b, "n": self.n,
                "mean_a": _round(self.mean_a), "mean_b": _round(self.mean_b), "difference": _round(self.difference),
                "ci95": [_round(x) for x in self.interval.to_json()] if self.interval else None,
                "p": _round(self.p, 6), "p_holm": _round(self.p_adjusted, 6)}


def compare_grades(grades: Sequence[Record], pairs: Sequence[tuple[str, str]] | None, resamples: int = 10_000,
                   seed: int = SEED) -> list[GradeComparison]:
    """Paired comparisons of rubric scores: for each judge and persona, the answers to the same questions graded
    for both models; the mean difference of the per-answer scores (not clipped: the paired quantity) with its
    paired bootstrap 95% interval and the sign-flip permutation test (``stats.paired_interval``,
    ``stats.sign_flip_p``), Holm-adjusted over all comparisons made. ``pairs`` are (name, name) as the user wrote
    them (a model's name, alias or slug); None compares every pair."""
    from itertools import combinations

    from runner.views.answers import resolve_aliases
    from runner.views.stats import holm, paired_interval, sign_flip_p

    found: dict[tuple[str, str], dict[str, dict[int, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    names: dict[str, set[str]] = defaultdict(set)
    for g in grades:
        score = _extra(g, "score")
        if _scale(g) != RUBRIC_SCALE or g.error or not isinstance(score, int | float):
            continue
        found[(_judge(g), g.persona or "")][g.label][g.n].append(float(score))
        names[g.label] |= g.names
    scores = {group: {label: {n: sum(v) / len(v) for n, v in by_n.items()}  # a question's samples: their mean
                      for label, by_n in by_label.items()} for group, by_label in found.items()}
    out: list[GradeComparison] = []
    for (judge, persona), by_model in sorted(scores.items()):
        if pairs is None:
            wanted = list(combinations(sorted(by_model), 2))
        else:
            wanted = []
            for a, b in pairs:
                la = [m for m in sorted(by_model) if names[m] & resolve_aliases(a)]
                lb = [m for m in sorted(by_model) if names[m] & resolve_aliases(b)]
                wanted += [(x, y) for x in la for y in lb if x != y]
        for a, b in wanted:
            shared = sorted(set(by_model[a]) & set(by_model[b]))
            if not shared:
                continue
            xs, ys = [by_model[a][n] for n in shared], [by_model[b][n] for n in shared]
            out.append(GradeComparison(judge, persona, a, b, len(shared), sum(xs) / len(xs), sum(ys) / len(ys),
                                       paired_interval(xs, ys, resamples, seed) if resamples else None,
                                       sign_flip_p([x - y for x, y in zip(xs, ys, strict=True)], resamples or 10_000,
                                                   seed)))
    for c, adjusted in zip(out, holm([c.p for c in out]), strict=True):
        c.p_adjusted = adjusted
    return out


def comparisons_markdown(comparisons: Sequence[GradeComparison]) -> list[str]:
    """The ``grades.md`` section of paired comparisons."""
    from runner.views.stats import format_p

    if not comparisons:
        return []
    lines = ["", "## Paired comparisons", "",
             "On the questions both models' answers were graded by the same judge under the same persona: the mean "
             "difference of the per-answer rubric scores (A − B), its paired bootstrap 95% interval, and the two-sided "
             "sign-flip permutation test (exact up to 16 questions); p-values Holm-adjusted over the comparisons.", "",
             "| judge | persona | A | B | n | A | B | A − B | 95% interval | p | p (Holm) |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for c in comparisons:
        interval = f"{c.interval.low:+.3f} to {c.interval.high:+.3f}" if c.interval else "–"
        lines.append(f"| {_md(c.judge)} | {_md(c.persona)} | {_md(c.a)} | {_md(c.b)} | {c.n} | {c.mean_a:.3f} | "
                     f"{c.mean_b:.3f} | {c.difference:+.3f} | {interval} | {format_p(c.p)} | "
                     f"{format_p(c.p_adjusted) if c.p_adjusted is not None else '–'} |")
    return lines
