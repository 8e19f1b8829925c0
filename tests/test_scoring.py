"""Accuracy, standard error, the leaderboard and the chart, on fixed records; the ``score`` command on the store."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.core.store import Store
from runner.views.scores import (
    canonical_task,
    collect_scores,
    leaderboard,
    mean_stderr,
    render_markdown,
    task_order,
    write_outputs,
)

FIXTURES = Path(__file__).parent / "fixtures"
OPTIONS = {"A": "Atorvastatin", "B": "Insulin", "C": "Metformin", "D": "Warfarin"}


def record(n: int, text: str, answer: str = "C", task: str = "medqa_4options", model: str = "fake:echo",
           persona: str = "medical-exam", **extra: Any) -> dict[str, Any]:
    """A saved answer as the store holds it (only the fields scoring reads, plus identity)."""
    slug = model.partition(":")[2].replace("/", "_")
    return {"n": n, "question_id": f"q{n}", "question": f"Question {n}?", "options": OPTIONS, "answer": answer,
            "task": task, "persona": persona, "model": model, "alias": None, "slug": slug, "kind": "generator",
            "text": text, "error": None, "key": f"k{n}", "set": "fixed", **extra}


def loglik_record(n: int, chosen: str, chosen_norm: str, answer: str = "C", task: str = "medqa_4options") -> dict:
    base = record(n, chosen, answer, task, model="hf:org/model", persona="loglik")
    base["kind"] = "loglik"
    base["loglik"] = {"acc_choice": chosen, "acc_norm_choice": chosen_norm, "logprobs": [-1.0, -2.0, -3.0, -4.0]}
    return base


FIXED = [
    record(1, "The answer is C."),              # right
    record(2, "Answer: c"),                     # right
    record(3, "**B**"),                         # wrong
    record(4, "I cannot answer medical questions."),  # unparseable -> wrong
    record(5, "", error="fake failure"),        # failed -> not counted
    record(6, "Metformin", task="MMLU-anatomy"),      # right, task alias
    record(7, "D", answer="A", task="mmlu_anatomy"),  # wrong
    record(8, "A", task="medmcqa", persona="cardiologist"),
    {**record(9, ""), "kind": "embedder", "embedding": [0.1, 0.2]},  # not an answer
    {**record(10, "A"), "options": None, "answer": None},            # not multiple-choice
]


def test_mean_stderr_is_the_harness_sample_formula() -> None:
    values = [1.0, 1.0, 0.0, 0.0, 0.0]
    p, n = 0.4, 5
    assert mean_stderr(values) == pytest.approx(math.sqrt(p * (1 - p) / (n - 1)))
    assert mean_stderr([1.0]) is None and mean_stderr([]) is None
    assert mean_stderr([1.0, 1.0, 1.0]) == 0.0


def test_accuracy_per_model_persona_and_task() -> None:
    scores = {(s.persona, s.task): s for s in collect_scores(FIXED)}
    assert set(scores) == {("medical-exam", "medqa_4options"), ("medical-exam", "mmlu_anatomy"),
                           ("cardiologist", "medmcqa")}
    medqa = scores[("medical-exam", "medqa_4options")]
    assert (medqa.n, medqa.correct, medqa.failed) == (4, 2, 1)
    assert medqa.accuracy == 0.5
    assert medqa.stderr == pytest.approx(math.sqrt(0.5 * 0.5 / 3))
    assert medqa.unparseable == [{"n": 4, "id": "q4", "text": "I cannot answer medical questions."}]
    assert [i["chosen"] for i in medqa.items] == ["C", "C", "B", None]
    anatomy = scores[("medical-exam", "mmlu_anatomy")]
    assert (anatomy.n, anatomy.correct, anatomy.accuracy) == (2, 1, 0.5)
    assert scores[("cardiologist", "medmcqa")].stderr is None  # one question: no standard error


def test_filters() -> None:
    assert {s.persona for s in collect_scores(FIXED, personas={"cardiologist"})} == {"cardiologist"}
    assert collect_scores(FIXED, models={"other"}) == []
    assert len(collect_scores(FIXED, models={"echo"})) == 3  # the slug works too
    only = collect_scores(FIXED, questions={("fixed", 1, "Question 1?"), ("fixed", 2, "Question 2?")})
    assert [(s.n, s.correct) for s in only] == [(2, 2)]
    assert collect_scores(FIXED, questions={("other", 1, "Question 1?")}) == []
    assert collect_scores(FIXED, sets={"other"}) == []
    assert len(collect_scores(FIXED, sets={"fixed"})) == len(collect_scores(FIXED))


def test_loglik_records_give_acc_and_acc_norm() -> None:
    records = [loglik_record(1, "C", "C"), loglik_record(2, "A", "C"), loglik_record(3, "B", "B"),
               loglik_record(4, "C", "A")]
    (score,) = collect_scores(records)
    assert score.method == "loglik" and score.persona == "loglik"
    assert (score.n, score.correct, score.accuracy) == (4, 2, 0.5)
    assert score.acc_norm == 0.5 and score.acc_norm_stderr == pytest.approx(math.sqrt(0.25 / 3))
    assert "acc_norm" in score.to_json() and "acc_norm" not in collect_scores(FIXED)[0].to_json()


def test_task_names_and_leaderboard_order() -> None:
    assert canonical_task("MedQA") == "medqa_4options" and canonical_task("pubmed_qa") == "pubmedqa"
    assert canonical_task("clinical_knowledge") == "mmlu_clinical_knowledge" and canonical_task(None) == "(no task)"
    shuffled = ["pubmedqa", "my_task", "mmlu_professional_medicine", "medqa_4options", "mmlu_anatomy", "medmcqa",
                "mmlu_college_biology", "mmlu_medical_genetics", "mmlu_college_medicine", "mmlu_clinical_knowledge"]
    assert task_order(shuffled) == ["medmcqa", "medqa_4options", "mmlu_anatomy", "mmlu_clinical_knowledge",
                                    "mmlu_college_biology", "mmlu_college_medicine", "mmlu_medical_genetics",
                                    "mmlu_professional_medicine", "pubmedqa", "my_task"]


def test_leaderboard_rows_and_average() -> None:
    records = [record(1, "C"), record(2, "C"), record(3, "C", task="medmcqa"), record(4, "A", task="medmcqa"),
               record(5, "C", model="fake:canned"), record(6, "A", model="fake:canned"),
               record(7, "C", task="medmcqa", model="fake:canned"), record(8, "C", task="medmcqa", model="fake:canned")]
    columns, rows = leaderboard(collect_scores(records))
    assert columns == ["medmcqa", "medqa_4options"]
    assert [(r.label, r.average) for r in rows] == [("fake:canned", 0.75), ("fake:echo", 0.75)]
    text = render_markdown(collect_scores(records))
    assert "| Model | MedMCQA | MedQA | Average (unweighted) |" in text
    assert "| fake:echo (medical-exam) | 50.0 ± 50.0 | 100.0 ± 0.0 | 75.0 |" in text
    assert "Average: unweighted mean over tasks (as the Open Medical LLM Leaderboard)" in text


def test_the_weighted_average_is_the_accuracy_over_all_questions(tmp_path: Path) -> None:
    # MedQA 3 of 3 right, MedMCQA 1 of 4: unweighted (1 + 0.25) / 2, weighted by size 4 / 7
    records = [record(1, "C"), record(2, "C"), record(3, "C"), record(4, "C", task="medmcqa"),
               *(record(n, "A", task="medmcqa") for n in (5, 6, 7))]
    scores = collect_scores(records)
    (row,) = leaderboard(scores, "weighted")[1]
    assert row.average == pytest.approx(4 / 7) and row.weighted == pytest.approx(4 / 7)
    assert row.unweighted == pytest.approx(0.625) and leaderboard(scores)[1][0].average == pytest.approx(0.625)
    text = render_markdown(scores, "weighted")
    assert "| Average (weighted) |" in text and "| 57.1 |" in text and "weighted by their number of questions" in text
    data = json.loads(write_outputs(scores, tmp_path, "weighted")["json"].read_text())
    (entry,) = data["leaderboard"]
    assert entry["average_kind"] == "weighted" and entry["average"] == pytest.approx(4 / 7)
    assert entry["average_unweighted"] == pytest.approx(0.625)


def test_incomplete_rows_are_marked() -> None:
    records = [record(1, "C"), record(2, "C", task="medmcqa", model="fake:canned")]
    text = render_markdown(collect_scores(records))
    assert "| 100.0 †" in text


def test_write_outputs(tmp_path: Path) -> None:
    paths = write_outputs(collect_scores(FIXED), tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["task_order"] == ["medmcqa", "medqa_4options", "mmlu_anatomy"]
    assert {r["name"] for r in data["leaderboard"]} == {"fake:echo (medical-exam)", "fake:echo (cardiologist)"}
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["markdown"].read_text()
    assert "question 4: I cannot answer medical questions." in md and "1 failed" in md


def test_empty_store_still_writes_outputs(tmp_path: Path) -> None:
    paths = write_outputs([], tmp_path)
    assert paths["chart"] is None and "No multiple-choice answers" in paths["markdown"].read_text()


def test_score_command_on_saved_answers(cli: Callable[..., Any], tmp_path: Path) -> None:
    store = Store(tmp_path / "outputs").questions_set("fixed")
    for r in FIXED:
        store.save(r["persona"], r["slug"], r["n"], r, r["text"])
    done = cli("score", "--persona", "medical-exam")
    assert done.returncode == 0, done.stderr
    assert "| fake:echo (medical-exam) | 50.0 ± 28.9 | 50.0 ± 50.0 | 50.0 |" in done.stdout
    assert (tmp_path / "outputs" / "scores.png").is_file()
    data = json.loads((tmp_path / "outputs" / "scores.json").read_text())
    assert {r["persona"] for r in data["results"]} == {"medical-exam"}


def test_score_runs_missing_answers_then_scores(cli: Callable[..., Any], tmp_path: Path) -> None:
    first = cli("score", "--data", str(FIXTURES / "medmcqa.json"), "--data", str(FIXTURES / "pubmedqa.jsonl"),
                "--models", "fake:echo", "--max-new-tokens", "30")
    assert first.returncode == 0, first.stderr
    assert "| fake:echo (medical-exam) |" in first.stdout and "MedMCQA" in first.stdout
    # each file is its own question set, numbered from 1
    medmcqa = sorted(p.name for p in (tmp_path / "outputs" / "medmcqa" / "medical-exam" / "echo").glob("*.json"))
    pubmedqa = sorted(p.name for p in (tmp_path / "outputs" / "pubmedqa" / "medical-exam" / "echo").glob("*.json"))
    assert medmcqa == [f"{n}.json" for n in (1, 2, 3)] and pubmedqa == [f"{n}.json" for n in (1, 2, 3)]
    task = json.loads((tmp_path / "outputs" / "pubmedqa" / "medical-exam" / "echo" / "1.json").read_text())["task"]
    assert task == "pubmedqa"
    again = cli("score", "--data", str(FIXTURES / "medmcqa.json"), "--data", str(FIXTURES / "pubmedqa.jsonl"),
                "--models", "fake:echo", "--max-new-tokens", "30")
    assert again.returncode == 0 and "already saved" in again.stderr


def test_fewshot_examples_reach_the_model(cli: Callable[..., Any], tmp_path: Path) -> None:
    done = cli("score", "--data", str(FIXTURES / "medqa_hf.jsonl"), "--limit", "1", "--models", "fake:echo",
               "--num-fewshot", "2", "--fewshot-file", str(FIXTURES / "medqa_hf_dev.jsonl"))
    assert done.returncode == 0, done.stderr
    # questions with examples in front are a question set of their own
    saved = json.loads((tmp_path / "outputs" / "medqa_hf-2shot" / "medical-exam" / "echo" / "1.json").read_text())
    # the harness's default sampler: random.Random(1234).sample(pool, 2) for the first question
    smoker, croup = "Question: A 60-year-old smoker", "Question: A child has a barking cough"
    order = [(smoker, "Answer: B"), (croup, "Answer: A")]
    order = [order[i] for i in random.Random(1234).sample(range(2), 2)]
    first, second, question = saved["question"].split("\n\n", 2)
    assert first.startswith(order[0][0]) and first.endswith(order[0][1])
    assert second.startswith(order[1][0]) and second.endswith(order[1][1]) and question.startswith("A 58-year-old man")
    # --fewshot-sampler first: the first K of the file, in order
    done = cli("score", "--data", str(FIXTURES / "medqa_hf.jsonl"), "--limit", "1", "--models", "fake:echo",
               "--num-fewshot", "2", "--fewshot-file", str(FIXTURES / "medqa_hf_dev.jsonl"),
               "--fewshot-sampler", "first", "--set", "first")
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "outputs" / "first" / "medical-exam" / "echo" / "1.json").read_text())
    first, second, _ = saved["question"].split("\n\n", 2)
    assert first.startswith(smoker) and second.startswith(croup)


@pytest.mark.parametrize(("args", "message"), [
    (["--data", str(FIXTURES / "medqa_hf.jsonl")], "--models is needed"),
    (["--scoring", "loglik", "--models", "gemini-2.5-flash", "--data", str(FIXTURES / "medqa_hf.jsonl")],
     "cannot serve 'loglik' requests"),
    (["--data", str(FIXTURES / "medqa_hf.jsonl"), "--models", "fake:echo", "--num-fewshot", "2"],
     "--num-fewshot needs --fewshot-file"),
    (["--data", str(FIXTURES / "medqa_hf.jsonl"), "--questions", "q.jsonl", "--models", "fake:echo"],
     "one question source"),
    (["--data", "missing.jsonl", "--models", "fake:echo"], "missing.jsonl: benchmark file not found"),
])
def test_usage_errors(cli: Callable[..., Any], tmp_path: Path, args: list[str], message: str) -> None:
    done = cli("score", *args)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not (tmp_path / "outputs").exists()  # nothing written


def test_score_average_flag(cli: Callable[..., Any], tmp_path: Path) -> None:
    done = cli("score", "--data", str(FIXTURES / "medqa_hf.jsonl"), "--models", "fake:echo", "--average", "weighted")
    assert done.returncode == 0, done.stderr
    assert "Average (weighted)" in done.stdout
    assert "Average (weighted)" in (tmp_path / "outputs" / "leaderboard.md").read_text()
    bad = cli("score", "--average", "median")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
