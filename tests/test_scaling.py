"""Scaling curves (``score --plot thinking``) and the automatic tags that let runs at several thinking budgets,
efforts and samples settings sit side by side, through the real CLI with the fake provider's canned answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.cli import main
from runner.commands.options import automatic_tag
from runner.core.settings import GenerationSettings, merge_settings
from runner.providers.base import Request, Result
from runner.providers.fake import FakeGenerator
from tests.conftest import write_jsonl

ANSWERS = ["A", "B", "C", "D"]


@pytest.fixture(autouse=True)
def _thinking_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    """``fake:canned`` as a reasoning model: each answer reports the thinking budget's half as its thinking tokens
    (``fake:echo`` reports none, as a model without a trace)."""
    monkeypatch.setenv("NO_PROGRESS", "1")
    answer = FakeGenerator.generate_one

    def thinking(self: FakeGenerator, request: Request) -> Result:
        result = answer(self, request)
        if self.spec.model_id == "canned":
            result.reasoning_tokens = (request.settings.thinking_budget or 0) // 2
        return result

    monkeypatch.setattr(FakeGenerator, "generate_one", thinking)


def mc_questions(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "mc.jsonl", [
        {"question": f"Question {i}?", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, "answer": letter,
         "task": "demo"} for i, letter in enumerate(ANSWERS)])


def run(tmp_path: Path, model: str, *extra: str, canned: list[str] = ()) -> Path:
    out = tmp_path / "out"
    FakeGenerator.canned.extend(canned)
    assert main(["run", "-q", str(mc_questions(tmp_path)), "-m", model, "-p", "medical-exam", "-o", str(out),
                 *extra]) == 0
    return out


def test_automatic_tags() -> None:
    def tag(**flags: object) -> str | None:
        return automatic_tag(merge_settings(GenerationSettings(), flags))

    assert tag() is None
    assert tag(temperature=0.7) is None  # sampling alone keeps the untagged answers
    assert tag(thinking_budget=512) == "think512"
    assert tag(reasoning_effort="high") == "effort-high"
    assert tag(thinking_budget=1024, min_thinking=256, wait=2) == "think1024+min256-wait2"
    assert tag(samples=5, temperature=0.7) == "samples-t0.7"
    assert tag(samples=5) == "samples"  # the temperature of a model's card
    assert tag(thinking_budget=512, samples=8, temperature=1.0) == "think512+samples-t1"
    assert tag(samples=1, thinking_budget=0) == "think0"


def test_budgets_sit_side_by_side_under_automatic_tags(tmp_path: Path) -> None:
    run(tmp_path, "fake:canned", "--thinking-budget", "64")
    out = run(tmp_path, "fake:canned", "--thinking-budget", "256")  # not a variant of the first: no --tag needed
    folders = sorted(p.name for p in (out / "mc" / "medical-exam").iterdir())
    assert folders == ["canned@think256", "canned@think64"]
    record = json.loads((out / "mc" / "medical-exam" / "canned@think64" / "1.json").read_text())
    assert (record["tag"], record["settings"]["thinking_budget"]) == ("think64", 64)
    run(tmp_path, "fake:canned", "--thinking-budget", "64", "--tag", "mine")  # a tag given is used as it is
    assert (out / "mc" / "medical-exam" / "canned@mine" / "1.json").exists()


def test_scaling_points_table_and_figure(tmp_path: Path, capsys) -> None:
    # Budget 64: 2 of 4 right, 32 thinking tokens each; budget 256: 3 of 4 right, 128 each.
    run(tmp_path, "fake:canned", "--thinking-budget", "64",
        canned=["Answer: A", "Answer: B", "Answer: A", "Answer: A"])
    run(tmp_path, "fake:canned", "--thinking-budget", "256",
        canned=["Answer: A", "Answer: B", "Answer: C", "Answer: A"])
    # Budget 256 with 3 samples: majority right on questions 1, 2 and 4 (3 of 4); 3 × 128 tokens per question.
    run(tmp_path, "fake:canned", "--thinking-budget", "256", "--samples", "3", "--temperature", "0.7", "--seed", "5",
        canned=["Answer: A", "Answer: A", "Answer: B",  # q1 (A): A×2
                "Answer: B", "Answer: C", "Answer: B",  # q2 (B): B×2
                "Answer: A", "Answer: B", "Answer: D",  # q3 (C): a three-way tie, A first: wrong
                "Answer: D", "Answer: D", "Answer: A"])  # q4 (D): D×2
    out = run(tmp_path, "fake:echo")  # no thinking tokens reported: placed by completion tokens
    capsys.readouterr()
    assert main(["score", "-o", str(out), "--plot", "thinking", "--bootstrap", "400"]) == 0
    assert "Scaling: " in capsys.readouterr().out
    data = json.loads((out / "scaling.json").read_text())
    lines = {line["model"]: line for line in data["lines"]}
    assert set(lines) == {"fake:canned", "fake:echo"}
    canned = lines["fake:canned"]
    assert canned["tokens"] == "thinking" and "thinking tokens" in canned["legend"]
    points = canned["points"]
    assert [p["tag"] for p in points] == ["think64", "think256", "think256+samples-t0.7"]  # by mean tokens
    assert [p["thinking_budget"] for p in points] == [64, 256, 256]
    assert [p["samples"] for p in points] == [1, 1, 3]
    assert [p["n"] for p in points] == [4, 4, 4]
    assert [p["accuracy"] for p in points] == pytest.approx([0.5, 0.75, 0.75])
    assert [p["accuracy_of"] for p in points] == ["answers", "answers", "majority vote"]
    assert [p["mean_tokens"] for p in points] == pytest.approx([32, 128, 384])
    assert [p["mean_tokens_per_answer"] for p in points] == pytest.approx([32, 128, 128])
    assert [p["setting"] for p in points] == ["budget 64", "budget 256", "budget 256, 3 samples (majority vote)"]
    for p in points:
        low, high = p["interval"]
        assert 0 <= low <= p["accuracy"] <= high <= 1
    echo = lines["fake:echo"]
    assert echo["tokens"] == "completion" and "completion tokens" in echo["legend"]
    (point,) = echo["points"]
    assert point["setting"] == "default" and point["tag"] is None and point["mean_tokens"] > 0
    table = (out / "scaling.md").read_text()
    assert "| fake:canned | budget 64 | think64 | 4 | 50.0 |" in table
    assert "| fake:canned | budget 256, 3 samples (majority vote) | think256+samples-t0.7 | 4 | 75.0 |" in table
    assert "| fake:echo | default | – | 4 |" in table
    assert (out / "scaling.png").read_bytes().startswith(b"\x89PNG")


def test_no_plot_without_the_flag(tmp_path: Path) -> None:
    out = run(tmp_path, "fake:canned", "--thinking-budget", "64")
    assert main(["score", "-o", str(out), "--bootstrap", "0"]) == 0
    assert not (out / "scaling.png").exists() and not (out / "scaling.json").exists()
