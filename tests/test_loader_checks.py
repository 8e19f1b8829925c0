"""Loaders that refuse what they would mis-read, and few-shot pools that never show a question its own answer."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.core.errors import InputError
from runner.tasks.fewshot import plan_fewshot
from runner.tasks.loaders import load_benchmark, load_hub_dataset

FIXTURES = Path(__file__).parent / "fixtures"


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def medmcqa_row(i: int, cop: int) -> dict[str, Any]:
    return {"id": f"m{i}", "question": f"Question {i}?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": cop}


def test_medmcqa_numbering_is_decided_on_the_whole_file_not_after_limit(tmp_path: Path) -> None:
    # the original release counts from 1: the first rows hold no 4, a later one does
    path = write(tmp_path / "orig.jsonl", [medmcqa_row(1, 1), medmcqa_row(2, 2), medmcqa_row(3, 3),
                                           medmcqa_row(4, 4)])
    assert [q.answer for q in load_benchmark(path, limit=3)] == ["A", "B", "C"]
    assert [q.answer for q in load_benchmark(path)] == ["A", "B", "C", "D"]
    hub = write(tmp_path / "hub.jsonl", [medmcqa_row(1, 1), medmcqa_row(2, 2), medmcqa_row(3, 0)])
    assert [q.answer for q in load_benchmark(hub, limit=2)] == ["B", "C"]  # a 0 anywhere: counted from 0


def test_a_five_option_medqa_file_is_not_medqa_4options(tmp_path: Path) -> None:
    row = {"question": "Which drug?", "options": {"A": "a", "B": "b", "C": "c", "D": "d", "E": "e"},
           "answer": "e", "answer_idx": "E"}
    path = write(tmp_path / "five.jsonl", [row])
    with pytest.raises(InputError, match=r"five.jsonl:1: .*5 options, but medqa_4options is the 4-option task; "
                                         r"give --task medqa_5options"):
        load_benchmark(path)
    (q,) = load_benchmark(path, task="medqa_5options")
    assert q.task == "medqa_5options" and len(q.options or {}) == 5 and q.answer == "E"


def test_medqa_answer_text_must_agree_with_answer_idx(tmp_path: Path) -> None:
    row = json.loads((FIXTURES / "medqa_options.jsonl").read_text().splitlines()[0])
    assert load_benchmark(write(tmp_path / "ok.jsonl", [row]))[0].answer == "B"
    row["answer_idx"] = "C"
    with pytest.raises(InputError, match=r"bad.jsonl:1: .*answer 'Warfarin' is not the text of option C"):
        load_benchmark(write(tmp_path / "bad.jsonl", [row]))


def test_an_mmlu_row_without_subject_is_refused_unless_task_names_it(tmp_path: Path) -> None:
    row = {"question": "Which bone?", "choices": ["a", "b", "c", "d"], "answer": 1}
    path = write(tmp_path / "mmlu.jsonl", [row])
    with pytest.raises(InputError, match=r"mmlu.jsonl:1: .*no subject.*--task mmlu_<subject>"):
        load_benchmark(path)
    (q,) = load_benchmark(path, task="mmlu_anatomy")
    assert q.task == "mmlu_anatomy"


def test_score_names_the_file_and_line_of_a_refused_record(cli: Callable[..., subprocess.CompletedProcess[str]],
                                                           tmp_path: Path) -> None:
    rows = [{"question": "Q?", "options": {"A": "a", "B": "b", "C": "c", "D": "d", "E": "e"}, "answer_idx": "A"}]
    write(tmp_path / "five.jsonl", rows)
    done = cli("score", "--data", "five.jsonl", "--models", "fake:echo")
    assert done.returncode == 2 and "five.jsonl:1:" in done.stderr and "medqa_5options" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "outputs").exists()


def test_pubmedqa_dataset_is_the_split_the_harness_scores(monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    import datasets

    asked: list[tuple[Any, ...]] = []
    rows = [json.loads(line) for line in (FIXTURES / "harness" / "pubmedqa_test.jsonl").read_text().splitlines()]

    def fake_load(path: str, name: str | None = None, split: str | None = None) -> list[dict[str, Any]]:
        asked.append((path, name, split))
        return rows

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    questions = load_hub_dataset("pubmedqa")
    assert asked == [("bigbio/pubmed_qa", "pubmed_qa_labeled_fold0_source", "test")]
    assert len(questions) == 4 and questions[0].task == "pubmedqa" and questions[0].context

    # the score command says where the questions came from, and takes the few-shot examples from train
    import argparse

    from runner.commands import score

    args = argparse.Namespace(questions=None, data=None, dataset="pubmedqa", split=None, subset=None, task=None,
                              limit=None, format=None, question_set=None, fewshot_file=None, fewshot_split=None)
    with caplog.at_level(logging.INFO, logger="runner"):
        score._question_sets(args)
        score._fewshot_pool(args)
    assert "pubmedqa: 4 question(s) from bigbio/pubmed_qa (pubmed_qa_labeled_fold0_source), split test" in caplog.text
    assert "few-shot examples: 4 from bigbio/pubmed_qa (pubmed_qa_labeled_fold0_source), split train" in caplog.text
    assert asked[-1] == ("bigbio/pubmed_qa", "pubmed_qa_labeled_fold0_source", "train")


def test_the_same_file_as_pool_never_shows_a_question_itself(cli: Callable[..., subprocess.CompletedProcess[str]],
                                                              tmp_path: Path) -> None:
    data = FIXTURES / "harness" / "medqa_test.jsonl"
    questions = load_benchmark(data)
    plan = plan_fewshot(questions, questions, 3)
    assert plan.overlap == len(questions)
    for q in questions:
        assert q.question not in {ex.question for ex in plan.for_question(q)} and len(plan.for_question(q)) == 3
    done = cli("score", "--data", str(data), "--fewshot-file", str(data), "--num-fewshot", "3", "--models",
               "fake:echo", "--limit", "2")
    assert done.returncode == 0, done.stderr
    assert "none is shown as its own example" in done.stderr
    for n in (1, 2):
        saved = json.loads((tmp_path / "outputs" / "medqa_test-3shot" / "medical-exam" / "echo" / f"{n}.json")
                           .read_text())
        own = questions[n - 1].question
        assert saved["question"].count(own) == 1 and saved["question"].split("\n\n")[-1].startswith(own)


def test_a_pool_with_too_few_examples_of_the_task_is_a_usage_error(cli: Callable[..., Any], tmp_path: Path) -> None:
    done = cli("score", "--data", str(FIXTURES / "medqa_hf.jsonl"), "--models", "fake:echo", "--num-fewshot", "5",
               "--fewshot-file", str(FIXTURES / "medqa_hf_dev.jsonl"))
    assert done.returncode == 2 and "--num-fewshot 5" in done.stderr and "only 2 example(s)" in done.stderr
    done = cli("score", "--data", str(FIXTURES / "medqa_hf.jsonl"), "--models", "fake:echo", "--num-fewshot", "1",
               "--fewshot-file", str(FIXTURES / "mmlu_clinical_knowledge.jsonl"))
    assert done.returncode == 2 and "no examples of task 'medqa_4options'" in done.stderr
