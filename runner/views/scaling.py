"""Scaling curves (``score --plot thinking``): accuracy against the thinking spent, the figure of s1 and med-s1.

One point per model, variant (tag: each thinking budget, effort or samples setting is its own, ``automatic_tag``),
persona and question set, over its multiple-choice questions (every task pooled):

- **accuracy**: of the answers; with samples (K > 1) of the majority vote over each question's samples
  (``consistency.majority_vote``); unparseable = wrong, failed answers left out. 95% percentile bootstrap interval
  over the questions (fixed seed).
- **tokens**: the mean thinking tokens spent per question, all its samples together (``reasoning_tokens`` of the
  records; an answer that reports none counts 0). A model none of whose answers reports thinking tokens is measured
  in completion tokens instead, and its line says so. The table also gives the mean per answer.
- the point's setting (thinking budget, reasoning effort, samples, temperature) comes from the records' ``settings``.

One line per model (and persona and set, when there are several), its points ordered by mean tokens. Written as
``scaling.png``, ``scaling.md`` and ``scaling.json`` under the output root.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.views.comparisons import task_seed
from runner.views.consistency import SampleGroup
from runner.views.stats import LEVEL, RESAMPLES, SEED, percentile_interval

THINKING, COMPLETION = "thinking", "completion"


@dataclass
class Point:
    """One model at one setting: its accuracy with interval and the tokens it spent per question."""

    model: str
    label: str  # the model's display name (alias), without the tag
    tag: str | None
    persona: str
    set_name: str
    setting: str  # in words: "budget 512", "effort high", "5 samples (majority vote)", "default"
    thinking_budget: int | None
    reasoning_effort: str | None
    min_thinking: int | None
    samples: int
    temperature: float | None
    n: int
    accuracy: float | None
    interval: list[float] | None
    accuracy_of: str  # "answers" or "majority vote"
    tokens: str = THINKING  # which tokens are counted: thinking, or completion (the model reports no thinking)
    mean_tokens: float | None = None  # per question, all its samples together
    mean_tokens_per_answer: float | None = None
    answers: int = 0

    def to_json(self) -> dict[str, Any]:
        """The scaling.json form."""
        return dict(vars(self))


@dataclass
class Line:
    """One model's points, ordered by mean tokens."""

    name: str
    model: str
    persona: str
    set_name: str
    tokens: str
    points: list[Point] = field(default_factory=list)

    @property
    def legend(self) -> str:
        """The legend entry: the model, and which tokens its points are placed by."""
        what = "thinking tokens" if self.tokens == THINKING else "completion tokens: no thinking tokens reported"
        return f"{self.name} ({what})"


def _base_label(group: SampleGroup) -> str:
    return group.label[: -len(group.tag) - 1] if group.tag and group.label.endswith(f"@{group.tag}") else group.label


def setting_words(settings: dict[str, Any], samples: int) -> str:
    """A point's setting in words, from a record's ``settings`` and the samples saved."""
    parts = []
    if settings.get("thinking_budget") is not None:
        parts.append(f"budget {settings['thinking_budget']}")
    if settings.get("reasoning_effort") is not None:
        parts.append(f"effort {settings['reasoning_effort']}")
    if settings.get("min_thinking") is not None:
        parts.append(f"min {settings['min_thinking']}, wait {settings.get('wait', 0)}")
    if samples > 1:
        parts.append(f"{samples} samples (majority vote)")
    return ", ".join(parts) or "default"


def scaling_lines(groups: Sequence[SampleGroup], resamples: int = RESAMPLES, seed: int = SEED,
                  level: float = LEVEL) -> list[Line]:
    """The points of every model × setting saved (``groups``: ``consistency.collect_samples``), as lines."""
    pooled: dict[tuple[str, str, str, str], list[SampleGroup]] = {}
    for g in groups:
        pooled.setdefault((g.model, g.tag or "", g.persona, g.set_name), []).append(g)
    by_line: dict[tuple[str, str, str], list[tuple[list[SampleGroup], int]]] = {}
    for (model, _, persona, set_name), parts in pooled.items():
        samples = max(g.samples for g in parts)
        by_line.setdefault((model, persona, set_name), []).append((parts, samples))
    personas = {key[1] for key in by_line}
    sets = {key[2] for key in by_line}
    lines = []
    for (model, persona, set_name), members in sorted(by_line.items()):
        votes = [v for parts, _ in members for g in parts for q in g.questions.values() for v in q.votes]
        tokens = THINKING if any(v.reasoning_tokens is not None for v in votes) else COMPLETION
        name = _base_label(members[0][0][0])
        name += f" [{persona}]" if len(personas) > 1 else ""
        name += f" ({set_name})" if len(sets) > 1 else ""
        line = Line(name, model, persona, set_name, tokens)
        for parts, samples in members:
            line.points.append(_point(parts, samples, tokens, resamples, seed, level))
        line.points.sort(key=lambda p: (p.mean_tokens is None, p.mean_tokens or 0.0, p.setting))
        lines.append(line)
    return lines


def _point(parts: list[SampleGroup], samples: int, tokens: str, resamples: int, seed: int, level: float) -> Point:
    first = parts[0]
    settings = next((g.settings for g in parts if g.settings), {})
    correct: list[float] = []
    spent: list[float] = []
    answers = 0
    for g in parts:
        for n in sorted(g.questions):
            q = g.questions[n]
            if not q.votes:
                continue
            chosen = q.majority if samples > 1 else q.votes[0].letter
            correct.append(float(chosen == q.answer))
            counts = [(v.reasoning_tokens if tokens == THINKING else v.completion_tokens) for v in q.votes]
            spent.append(float(sum(c or 0 for c in counts)))
            answers += len(q.votes)
    name = f"{first.model}@{first.tag or ''}/{first.persona}/{first.set_name}"
    found = percentile_interval(correct, resamples, task_seed(seed, name), level)
    return Point(model=first.model, label=_base_label(first), tag=first.tag, persona=first.persona,
                 set_name=first.set_name, setting=setting_words(settings, samples),
                 thinking_budget=settings.get("thinking_budget"), reasoning_effort=settings.get("reasoning_effort"),
                 min_thinking=settings.get("min_thinking"), samples=samples, temperature=settings.get("temperature"),
                 n=len(correct), accuracy=sum(correct) / len(correct) if correct else None,
                 interval=found.to_json() if found else None,
                 accuracy_of="majority vote" if samples > 1 else "answers", tokens=tokens,
                 mean_tokens=sum(spent) / len(spent) if spent else None,
                 mean_tokens_per_answer=sum(spent) / answers if answers else None, answers=answers)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def render_markdown(lines: Sequence[Line], level: float = LEVEL) -> str:
    """``scaling.md``: one table row per point."""
    pct = f"{round(100 * level)}%"
    out = ["# Accuracy against thinking", ""]
    points = [p for line in lines for p in line.points]
    if not points:
        return "\n".join([*out, "No multiple-choice answers found in the store.", ""])
    out += [f"| Model | Setting | Tag | n | Accuracy | {pct} interval | Mean tokens per question | Mean tokens per "
            "answer | Tokens counted |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for line in lines:
        for p in line.points:
            out.append(f"| {line.name} | {p.setting} | {p.tag or '–'} | {p.n} | {_pct(p.accuracy)} | "
                       f"{'–' if not p.interval else f'[{100 * p.interval[0]:.1f}, {100 * p.interval[1]:.1f}]'} | "
                       f"{_num(p.mean_tokens)} | {_num(p.mean_tokens_per_answer)} | {p.tokens} |")
    out += ["", f"Accuracy in % of the multiple-choice questions (every task pooled; unparseable = wrong, failed "
            f"answers left out), of the majority vote where samples were saved, with its {pct} percentile bootstrap "
            "interval over the questions. Tokens: the thinking tokens (reasoning_tokens) spent per question, all its "
            "samples together, and per answer; a model whose answers report no thinking tokens is measured in "
            "completion tokens (column 'Tokens counted')."]
    return "\n".join(out) + "\n"


def chart_png(lines: Sequence[Line]) -> bytes | None:
    """The figure: accuracy (with intervals) against mean tokens per question, one line per model; None when no point
    has tokens."""
    drawn = [(line, [p for p in line.points if p.mean_tokens is not None and p.accuracy is not None])
             for line in lines]
    drawn = [(line, points) for line, points in drawn if points]
    if not drawn:
        return None
    from runner.views.charts import figure_png

    def draw(ax: Any) -> None:
        for line, points in drawn:
            xs = [p.mean_tokens for p in points]
            ys = [100 * (p.accuracy or 0.0) for p in points]
            below = [max(0.0, y - 100 * p.interval[0]) if p.interval else 0.0 for p, y in zip(points, ys, strict=True)]
            above = [max(0.0, 100 * p.interval[1] - y) if p.interval else 0.0 for p, y in zip(points, ys, strict=True)]
            ax.errorbar(xs, ys, yerr=[below, above], marker="o", capsize=3, label=line.legend)
            for p, x, y in zip(points, xs, ys, strict=True):
                ax.annotate(p.setting, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xlabel("mean tokens per question, all samples together (which tokens: see the legend)")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title("Accuracy against thinking")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(alpha=0.3)

    return figure_png((7.5, 5.0), draw)


def write_scaling(lines: Sequence[Line], output_dir: Path, resamples: int = RESAMPLES,
                  level: float = LEVEL) -> dict[str, Path | None]:
    """Write ``scaling.json``, ``scaling.md`` and ``scaling.png`` (when a point has tokens) under ``output_dir``,
    each atomically (``write_output``)."""
    from runner.core.store import write_output

    output_dir = Path(output_dir)
    data = {"version": 1, "generated": datetime.now(UTC).isoformat(timespec="seconds"),
            "x": "mean tokens per question, all its samples together (thinking tokens; completion tokens for a "
                 "model that reports none)",
            "bootstrap": {"resamples": resamples, "seed": SEED, "level": level, "method": "percentile"},
            "lines": [{"name": line.name, "legend": line.legend, "model": line.model, "persona": line.persona,
                       "set": line.set_name, "tokens": line.tokens, "points": [p.to_json() for p in line.points]}
                      for line in lines]}
    json_path, md_path = output_dir / "scaling.json", output_dir / "scaling.md"
    write_output(json_path, json.dumps(data, ensure_ascii=False, indent=1) + "\n", root=output_dir, mode=0o644)
    write_output(md_path, render_markdown(lines, level), root=output_dir, mode=0o644)
    png = chart_png(lines)
    chart = write_output(output_dir / "scaling.png", png, root=output_dir, mode=0o644) if png else None
    return {"json": json_path, "markdown": md_path, "chart": chart}
