"""Self-consistency (``--samples K``): samples saved and skipped like answers, their seeds, and ``score``'s majority
vote, mean per-sample accuracy and pass@k, through the real CLI and engine with the fake provider's canned answers."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from runner.cli import main
from runner.core.settings import GenerationSettings
from runner.core.store import Store
from runner.engine import run
from runner.providers.fake import FakeGenerator
from runner.views.consistency import majority_vote, pass_at_k
from tests.conftest import write_jsonl

SEED = 11
TAG = "samples-t0.7"  # the automatic tag of --samples K --temperature 0.7


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROGRESS", "1")


def mc_questions(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "mc.jsonl", [
        {"question": "Which is a statin?", "options": {"A": "Atorvastatin", "B": "Insulin", "C": "Heparin"},
         "answer": "A", "task": "demo"},
        {"question": "Which is an anticoagulant?", "options": {"A": "Atorvastatin", "B": "Heparin", "C": "Insulin"},
         "answer": "B", "task": "demo"},
        {"question": "Which lowers glucose?", "options": {"A": "Heparin", "B": "Atorvastatin", "C": "Insulin"},
         "answer": "C", "task": "demo"},
    ])


# Per question, samples 1..3 in order: the engine asks a question's samples next to each other.
CANNED = [
    "Answer: A", "Answer: B", "Answer: A",  # q1 (A): A×2 B×1, majority A, right; 2 of 3 samples right
    "Answer: A", "Answer: B", "I cannot tell.",  # q2 (B): a tie A×1 B×1, the earliest (A) wins: wrong; 1 of 3 right
    "No idea.", "Not sure at all.", "Cannot say.",  # q3 (C): nothing parseable: wrong; 0 of 3 right
]


def run_samples(tmp_path: Path, samples: int, *extra: str, canned: list[str] | None = None) -> Path:
    out = tmp_path / "out"
    FakeGenerator.canned.extend(canned or [])
    assert main(["run", "-q", str(mc_questions(tmp_path)), "-m", "fake:canned", "-p", "medical-exam", "-o", str(out),
                 "--temperature", "0.7", "--seed", str(SEED), "--samples", str(samples), *extra]) == 0
    return out


def model_dir(out: Path, tag: str = TAG) -> Path:
    return out / "mc" / "medical-exam" / f"canned@{tag}"


def test_majority_vote_ties_go_to_the_earliest_sample() -> None:
    assert majority_vote(["A", "B", "B"]) == "B"
    assert majority_vote(["B", "A", "A", "B"]) == "B"  # 2-2: B was chosen first
    assert majority_vote(["A", "B", "B", "A", None]) == "A"
    assert majority_vote([None, "C", "A"]) == "C"  # unparseable samples do not vote
    assert majority_vote([None, None]) is None
    assert majority_vote([]) is None


def test_pass_at_k_is_the_chance_that_k_samples_drawn_hold_a_right_one() -> None:
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                draws = list(itertools.combinations([True] * c + [False] * (n - c), k))
                by_enumeration = sum(any(d) for d in draws) / len(draws)
                direct = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(by_enumeration) == pytest.approx(direct)
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_votes_mean_per_sample_accuracy_and_pass_at_k_in_scores(tmp_path: Path, capsys) -> None:
    out = run_samples(tmp_path, 3, canned=CANNED)
    assert not FakeGenerator.canned  # every canned answer was asked for
    assert main(["score", "-o", str(out), "--bootstrap", "500"]) == 0
    data = json.loads((out / "scores.json").read_text())
    (sc,) = data["self_consistency"]
    assert (sc["label"], sc["persona"], sc["task"], sc["tag"]) == (f"fake:canned@{TAG}", "medical-exam", "demo", TAG)
    assert (sc["samples"], sc["n"], sc["answered_samples"], sc["failed"], sc["stale"]) == (3, 3, 9, 0, 0)
    assert sc["majority_accuracy"] == pytest.approx(1 / 3)
    right = [2, 1, 0]  # right samples per question, of 3
    assert sc["mean_sample_accuracy"] == pytest.approx(sum(c / 3 for c in right) / 3)
    assert sc["pass_at"]["1"] == pytest.approx(sum(1 - math.comb(3 - c, 1) / math.comb(3, 1) for c in right) / 3)
    assert sc["pass_at"]["3"] == pytest.approx(sum(1 - math.comb(3 - c, 3) / math.comb(3, 3) for c in right) / 3)
    assert sc["pass_at_n"] == {"1": 3, "3": 3}
    low, high = sc["mean_sample_interval"]
    assert 0 <= low <= sc["mean_sample_accuracy"] <= high <= 1
    assert len(sc["majority_interval"]) == 2
    items = {i["n"]: i for i in sc["items"]}
    assert items[1]["votes"] == {"A": 2, "B": 1} and items[1]["majority"] == "A"
    assert items[2]["votes"] == {"A": 1, "B": 1} and items[2]["majority"] == "A"  # the tie: the earliest sample
    assert items[2]["unparseable"] == 1
    assert items[3]["votes"] == {} and items[3]["majority"] is None and items[3]["unparseable"] == 3
    # The ordinary accuracy is sample 1's, unchanged: A, A, unparseable -> 1 of 3.
    (row,) = data["results"]
    assert (row["n"], row["correct"]) == (3, 1)
    board = (out / "leaderboard.md").read_text()
    assert "## Self-consistency (--samples)" in board and "pass@3 66.7" in board
    assert "## Self-consistency" in capsys.readouterr().out


def test_report_shows_the_votes_on_each_answer_card(tmp_path: Path) -> None:
    out = run_samples(tmp_path, 3, canned=CANNED)
    assert main(["report", "-o", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "votes: A×2 B×1" in page
    assert "votes: A×1 B×1 ?×1" in page
    assert "votes: ?×3" in page


def test_samples_are_saved_apart_with_derived_seeds_and_keys(tmp_path: Path) -> None:
    out = run_samples(tmp_path, 3)
    folder = model_dir(out)
    assert sorted(p.name for p in folder.glob("*.json")) == ["1.json", "2.json", "3.json"]
    for k in (2, 3):
        assert sorted(p.name for p in (folder / "_samples" / str(k)).glob("*.json")) == ["1.json", "2.json", "3.json"]
    records = {(k, n): json.loads(((folder if k == 1 else folder / "_samples" / str(k)) / f"{n}.json").read_text())
               for k in (1, 2, 3) for n in (1, 2, 3)}
    for (k, _), record in records.items():
        assert record["sample"] == k
        assert record["settings"]["seed"] == SEED + k - 1  # derived seed: seed + k - 1
    assert len({r["key"] for r in records.values()}) == 9
    # The requests sent carried each sample's own seed, the samples of one question together.
    assert [r.settings.seed for r in FakeGenerator.history] == [SEED, SEED + 1, SEED + 2] * 3
    # Readers of answers see sample 1 only.
    snapshot = Store(out).snapshot()
    assert sorted(r.n for r in snapshot.records) == [1, 2, 3]
    samples = Store(out).sample_records()
    assert sorted((r.sample, r.n) for r in samples) == [(k, n) for k in (2, 3) for n in (1, 2, 3)]


def test_a_rerun_skips_saved_samples_and_more_samples_ask_only_the_new_ones(tmp_path: Path) -> None:
    out = run_samples(tmp_path, 3)
    assert len(FakeGenerator.history) == 9
    FakeGenerator.history.clear()
    report = run(mc_questions(tmp_path), ["fake:canned"], ["medical-exam"],
                 GenerationSettings(temperature=0.7, seed=SEED, samples=3), output_dir=out, progress=False, tag=TAG)
    assert FakeGenerator.history == []  # every sample saved: nothing asked
    assert (report.summaries[0].skipped, report.summaries[0].answered) == (9, 0)
    run_samples(tmp_path, 5)  # the same automatic tag: samples 1..3 are reused
    assert sorted(r.settings.seed for r in FakeGenerator.history) == sorted([SEED + 3, SEED + 4] * 3)
    folder = model_dir(out)
    for k in (4, 5):
        for n in (1, 2, 3):
            record = json.loads((folder / "_samples" / str(k) / f"{n}.json").read_text())
            assert (record["sample"], record["settings"]["seed"]) == (k, SEED + k - 1)


def test_samples_after_a_single_answer_reuse_it(tmp_path: Path) -> None:
    """``samples`` is not in the key: sample 1 of a run with --samples 3 is the answer of a run without it."""
    out = run_samples(tmp_path, 1, "--tag", "sampled")
    first = json.loads((model_dir(out, "sampled") / "1.json").read_text())
    assert first["sample"] is None  # asked without --samples
    FakeGenerator.history.clear()
    run_samples(tmp_path, 3, "--tag", "sampled")
    assert sorted(r.settings.seed for r in FakeGenerator.history) == sorted([SEED + 1, SEED + 2] * 3)
    assert json.loads((model_dir(out, "sampled") / "1.json").read_text()) == first  # kept as it was


def test_several_samples_at_temperature_zero_are_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    status = main(["run", "-q", str(mc_questions(tmp_path)), "-m", "fake:canned", "-o", str(out), "--samples", "3"])
    assert status == 2
    err = capsys.readouterr().err
    assert "--samples 3" in err and "temperature 0" in err and "--temperature" in err
    assert not out.exists()  # refused before anything is written
    assert FakeGenerator.history == []


def test_a_sample_made_under_other_settings_is_not_counted(tmp_path: Path) -> None:
    out = run_samples(tmp_path, 3, canned=CANNED)
    # Answer 1 of every question again with another token limit, replacing it (--force): its samples are stale.
    FakeGenerator.canned.extend(["Answer: A"] * 3)
    assert main(["run", "-q", str(mc_questions(tmp_path)), "-m", "fake:canned", "-p", "medical-exam", "-o", str(out),
                 "--temperature", "0.7", "--seed", str(SEED), "--tag", TAG, "--max-new-tokens", "64",
                 "--force"]) == 0
    assert main(["score", "-o", str(out), "--bootstrap", "0"]) == 0
    data = json.loads((out / "scores.json").read_text())
    assert data["self_consistency"][0]["stale"] == 6
    assert data["self_consistency"][0]["answered_samples"] == 3
