"""Paired comparisons, intervals and breakdowns on fixed records, checked against scipy and numpy directly."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runner.views.comparisons import (
    Statistics,
    add_intervals,
    adjust,
    breakdowns,
    column_of,
    compare,
    markdown_sections,
    task_seed,
)
from runner.views.scores import collect_scores
from runner.views.stats import paired_interval, percentile_interval
from tests.test_scoring import record

scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is the reference the statistics are checked against")

# model A right on the first 30 of 40 MedQA questions, model B on questions 11-40 (and B fails on question 40,
# A never answered question 39); MedMCQA: 10 questions, A right on 8, B on 3
RIGHT_A = {"medqa_4options": set(range(1, 31)), "medmcqa": set(range(101, 109))}
RIGHT_B = {"medqa_4options": set(range(11, 40)), "medmcqa": set(range(101, 104))}


def records() -> list[dict[str, Any]]:
    out = []
    for task, numbers in (("medqa_4options", range(1, 41)), ("medmcqa", range(101, 111))):
        for n in numbers:
            subject = "Anatomy" if n % 2 else "Pharmacology"
            if n != 39:
                out.append(record(n, "C" if n in RIGHT_A[task] else "B", task=task, model="fake:a",
                                  extra={"subject": subject}))
            b_text = "C" if n in RIGHT_B[task] else "I cannot say."
            out.append(record(n, "" if n == 40 else b_text, task=task, model="fake:b", extra={"subject": subject},
                              **({"error": "boom"} if n == 40 else {})))
    return out


def test_a_paired_comparison_is_mcnemar_and_a_paired_bootstrap_on_the_shared_items() -> None:
    scores = collect_scores(records())
    stats = Statistics()
    found = compare(scores, {"fake:a"}, {"fake:b"}, stats)
    adjust(found)
    by_scope = {c.scope: c for c in found}
    medqa = by_scope["medqa_4options"]
    shared = [n for n in range(1, 39)]  # 39: A has no answer; 40: B failed
    ya = [float(n in RIGHT_A["medqa_4options"]) for n in shared]
    yb = [float(n in RIGHT_B["medqa_4options"]) for n in shared]
    a_only = sum(1 for x, y in zip(ya, yb, strict=True) if x > y)
    b_only = sum(1 for x, y in zip(ya, yb, strict=True) if y > x)
    assert (medqa.n, medqa.a_only, medqa.b_only) == (38, a_only, b_only) == (38, 10, 8)
    assert (medqa.only_a_answered, medqa.only_b_answered) == (1, 1)
    assert medqa.acc_a == pytest.approx(np.mean(ya)) and medqa.difference == pytest.approx(np.mean(ya) - np.mean(yb))
    assert medqa.p_value == pytest.approx(scipy_stats.binomtest(10, 18, 0.5).pvalue, rel=1e-12)
    assert medqa.interval == paired_interval(ya, yb, seed=task_seed(1234, "medqa_4options"))
    assert len(medqa.discordant) == 18 and {d["n"] for d in medqa.discordant} == set(range(1, 11)) | set(range(31, 39))
    # B's unparseable answers count as wrong; MedMCQA: A right on 8, B on 3, never B right where A is wrong
    medmcqa = by_scope["medmcqa"]
    assert (medmcqa.n, medmcqa.a_only, medmcqa.b_only) == (10, 5, 0)
    assert medmcqa.p_value == pytest.approx(scipy_stats.binomtest(5, 5, 0.5).pvalue)
    overall = by_scope["overall"]
    assert (overall.n, overall.a_only, overall.b_only) == (48, 15, 8)
    assert overall.p_value == pytest.approx(scipy_stats.binomtest(15, 23, 0.5).pvalue)
    # Holm across the three comparisons, by hand
    ps = sorted(c.p_value for c in found)
    want = [min(1.0, 3 * ps[0]), max(min(1.0, 3 * ps[0]), min(1.0, 2 * ps[1])), 0.0]
    want[2] = max(want[1], min(1.0, ps[2]))
    assert sorted(c.p_holm for c in found) == pytest.approx(want)


def test_every_accuracy_gets_a_bootstrap_interval_and_a_breakdown() -> None:
    scores = collect_scores(records())
    stats = Statistics()
    add_intervals(scores, stats)
    for s in scores:
        values = [float(i["chosen"] == i["answer"]) for i in s.items]
        want = percentile_interval(values, seed=task_seed(1234, column_of(s, scores)))
        assert want is not None and s.interval == [want.low, want.high] and want.low <= s.accuracy <= want.high
    assert set(stats.averages) == {"fake:a (medical-exam)", "fake:b (medical-exam)"}
    parts = breakdowns(scores, "subject", stats)
    a_medqa = {b.value: b for b in parts if b.row == "fake:a (medical-exam)" and b.task == "medqa_4options"}
    assert a_medqa["Anatomy"].n + a_medqa["Pharmacology"].n == 39
    assert a_medqa["Anatomy"].accuracy == pytest.approx(15 / 19)  # odd numbers 1..37 except 39: 15 of 19 right
    text = "\n".join(markdown_sections(scores, stats, "unweighted"))
    assert "## 95% bootstrap intervals" in text and "Average (unweighted)" in text


def test_score_compare_through_the_cli(cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    from runner.core.settings import GenerationSettings
    from runner.engine import run
    from runner.providers.fake import FakeGenerator

    questions = tmp_path / "mc.jsonl"
    questions.write_text("".join(json.dumps({"id": f"q{i}", "question": f"Which is drug {i}?", "task": "demo",
                                             "options": {"A": "Aspirin", "B": "Bisoprolol"}, "answer": "A"}) + "\n"
                                 for i in range(1, 21)), encoding="utf-8")
    out = tmp_path / "outputs"
    for tag, right in ((None, range(1, 16)), ("b", range(6, 21))):
        FakeGenerator.canned.extend("Answer: A" if i in right else "Answer: B" for i in range(1, 21))
        run(questions, ["fake:canned"], ["medical-exam"], GenerationSettings(), output_dir=out, progress=False,
            tag=tag)
    done = cli("score", "--compare", "fake:canned,fake:canned@b", "--show", "discordant", "--by", "task")
    assert done.returncode == 0, done.stderr
    assert "## Paired comparisons" in done.stdout and "## Items the models disagree on" in done.stdout
    p = scipy_stats.binomtest(5, 10, 0.5).pvalue  # A only 1-5, B only 16-20
    assert "| 20 | 75.0 | 75.0 | +0.0 |" in done.stdout and f"| 5 | 5 | {p:.3g} |" in done.stdout
    data = json.loads((out / "scores.json").read_text())
    (comparison,) = data["statistics"]["comparisons"]
    assert (comparison["a_only"], comparison["b_only"], comparison["p_value"]) == (5, 5, pytest.approx(p))
    assert data["statistics"]["bootstrap"] == {"resamples": 10000, "seed": 1234, "level": 0.95, "method": "percentile"}
    again = cli("score", "--compare", "fake:canned,fake:canned@b", "--json")
    assert json.loads(again.stdout)["statistics"]["comparisons"][0]["n"] == 20
    assert (out / "scores.json").read_text().count('"interval"') >= 2
    bad = cli("score", "--compare", "fake:canned")
    assert bad.returncode == 2 and "give two models" in bad.stderr
