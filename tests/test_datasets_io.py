"""Every benchmark loader on its fixture file (written by us in the public formats)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.core.errors import InputError, UsageError
from runner.tasks.loaders import detect_format, load_benchmark, load_hub_dataset

FIXTURES = Path(__file__).parent / "fixtures"


def test_medqa_hf_form() -> None:
    qs = load_benchmark(FIXTURES / "medqa_hf.jsonl")
    assert [q.answer for q in qs] == ["B", "A", "C", "D"]
    assert [q.n for q in qs] == [1, 2, 3, 4]
    assert qs[0].options == {"A": "Atorvastatin", "B": "Warfarin", "C": "Metformin", "D": "Omeprazole"}
    assert qs[0].task == "medqa_4options" and qs[0].id == "mq1"
    assert qs[0].question.startswith("A 58-year-old man") and qs[0].is_multiple_choice


def test_medqa_options_form_matches_the_hf_form() -> None:
    original = load_benchmark(FIXTURES / "medqa_options.jsonl")
    hf = load_benchmark(FIXTURES / "medqa_hf.jsonl", fmt="medqa")
    assert [(q.question, q.options, q.answer, q.task) for q in original] == \
        [(q.question, q.options, q.answer, q.task) for q in hf]
    assert original[0].extra == {}  # meta_info and answer text are not kept as question fields


def test_medmcqa_json_counts_cop_from_zero() -> None:
    qs = load_benchmark(FIXTURES / "medmcqa.json")
    assert [q.answer for q in qs] == ["B", "C", "A"]
    assert qs[0].options["B"] == "Phrenic nerve" and qs[0].task == "medmcqa"
    assert qs[0].extra == {"subject": "Anatomy"}


def test_medmcqa_original_release_counts_cop_from_one() -> None:
    qs = load_benchmark(FIXTURES / "medmcqa_original.jsonl")
    assert [q.answer for q in qs] == ["B", "C", "A", "D"]


def test_pubmedqa_original_keyed_by_pmid() -> None:
    qs = load_benchmark(FIXTURES / "pubmedqa_ori_pqal.json")
    assert [q.answer for q in qs] == ["A", "B", "C"]
    assert qs[0].options == {"A": "yes", "B": "no", "C": "maybe"}
    assert qs[0].id == "10001" and qs[0].task == "pubmedqa"
    assert qs[0].context.splitlines()[1].startswith("After 12 weeks")


def test_pubmedqa_hub_form_gives_the_same_questions() -> None:
    hub = load_benchmark(FIXTURES / "pubmedqa.jsonl")
    ori = load_benchmark(FIXTURES / "pubmedqa_ori_pqal.json")
    fields = [[(q.question, q.context, q.answer, q.id) for q in qs] for qs in (hub, ori)]
    assert fields[0] == fields[1]


def test_mmlu_parquet_takes_its_task_from_the_subject() -> None:
    qs = load_benchmark(FIXTURES / "mmlu_anatomy.parquet", start=11)
    assert [q.answer for q in qs] == ["B", "B", "A"]
    assert [q.n for q in qs] == [11, 12, 13]
    assert {q.task for q in qs} == {"mmlu_anatomy"}
    assert qs[1].options["B"] == "right atrium"


def test_mmlu_jsonl_accepts_letter_and_index_answers() -> None:
    qs = load_benchmark(FIXTURES / "mmlu_clinical_knowledge.jsonl", limit=5)
    assert [q.answer for q in qs] == ["B", "A"] and qs[0].task == "mmlu_clinical_knowledge"


def test_limit_and_explicit_task() -> None:
    qs = load_benchmark(FIXTURES / "medqa_hf.jsonl", task="medqa_usmle", limit=2)
    assert len(qs) == 2 and {q.task for q in qs} == {"medqa_usmle"}


def test_detect_format() -> None:
    assert detect_format({"sent1": "", "ending0": ""}) == "medqa"
    assert detect_format({"question": "", "options": {}, "answer_idx": "A"}) == "medqa"
    assert detect_format({"opa": "", "opb": "", "cop": 0}) == "medmcqa"
    assert detect_format({"final_decision": "yes"}) == "pubmedqa"
    assert detect_format({"choices": [], "answer": 0}) == "mmlu"
    assert detect_format({"question": "x"}) is None


def test_bad_records_name_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"sent1": "Q", "ending0": "a", "ending1": "b", "ending2": "c", "ending3": "d",
                               "label": 0}) + "\n" +
                   json.dumps({"sent1": "Q", "ending0": "a", "ending1": "b", "ending2": "c", "ending3": "d",
                               "label": 7}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:2: not a valid medqa record: label 7"):
        load_benchmark(bad)
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text('{"text": "hello"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"unknown.jsonl:1: cannot tell the benchmark format"):
        load_benchmark(unknown)
    with pytest.raises(InputError, match="not found"):
        load_benchmark(tmp_path / "missing.jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"opa": \n', encoding="utf-8")
    with pytest.raises(InputError, match=r"broken.jsonl:1: invalid JSON"):
        load_benchmark(broken)
    test_split = tmp_path / "test.json"
    test_split.write_text(json.dumps([{"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": -1}]))
    with pytest.raises(InputError, match="no public answers"):
        load_benchmark(test_split)
    with pytest.raises(UsageError, match="unknown format"):
        load_benchmark(FIXTURES / "medqa_hf.jsonl", fmt="nope")


def test_hub_dataset_offline_without_cache_fails_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UsageError, match=r"cannot load dataset 'medqa'.*--data FILE --format medqa"):
        load_hub_dataset("medqa")


def test_hub_dataset_reads_a_local_folder_through_datasets(tmp_path: Path) -> None:
    folder = tmp_path / "mmlu_local"
    folder.mkdir()
    (folder / "test.parquet").write_bytes((FIXTURES / "mmlu_anatomy.parquet").read_bytes())
    qs = load_hub_dataset(str(folder), limit=2)  # the split is named after the file
    assert [q.answer for q in qs] == ["B", "B"] and qs[0].task == "mmlu_anatomy"
