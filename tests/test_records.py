"""The typed record: every kind of saved record reads into a ``Record``, and each command parses a record once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import runner.core.records as records_module
from runner.cli import main
from runner.core.personas import resolve_persona
from runner.core.questions import Question
from runner.core.records import LoglikBlock, Record, parse_record, read_record
from runner.core.settings import GenerationSettings
from runner.core.store import Store
from runner.engine import run
from runner.engine.recording import make_record
from runner.providers.base import Result
from runner.providers.catalog import resolve_model
from tests.conftest import write_jsonl

FIXTURES = Path(__file__).parent / "fixtures"
MCQ = Question(n=1, question="Which is a statin?", options={"A": "Insulin", "B": "Atorvastatin"}, answer="B",
               task="demo")


def _record_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.json") if p.stem.isdigit() and "runs" not in p.parts)


def test_a_record_written_by_the_engine_reads_as_a_record(tmp_path: Path, questions_file: Path) -> None:
    run(questions_file, ["fake:echo"], ["cardiologist"], GenerationSettings(), output_dir=tmp_path, progress=False)
    path = tmp_path / "questions" / "cardiologist" / "echo" / "4.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    record = read_record(path)
    assert isinstance(record, Record)
    assert data["kind"] == "generator" and record.kind == "generate"  # the disk keeps the model's kind
    assert (record.n, record.set_name, record.tag, record.persona) == (4, "questions", None, "cardiologist")
    assert record.options == {"A": "Atorvastatin", "B": "Insulin"} and record.answer == "A" and record.multiple_choice
    assert record.text == data["text"] and record.persona_text and record.model_options == data["model_options"]
    assert record.label == "fake:echo" and {"fake:echo", "echo"} <= record.names
    assert record.ok and record.version == 2 and record.loglik is None and record.embedding is None
    assert not record.model_extra  # every key the engine writes is a field of the Record
    dumped = record.model_dump(by_alias=True, exclude={"loglik", "embedding", "embedding_dim"})
    assert set(dumped) == set(data)


def test_version_1_records_read_in_place(tmp_path: Path) -> None:
    store = tmp_path / "v1"
    shutil.copytree(FIXTURES / "v1" / "store", store)
    snapshot = Store(store).snapshot()
    assert len(snapshot.records) == len(_record_files(store)) and snapshot.set_names == ["medqa2", "questions"]
    generated = [r for r in snapshot.records if r.kind == "generate"]
    embedded = [r for r in snapshot.records if r.kind == "embed"]
    assert generated and embedded
    first = generated[0]
    assert first.version == 1 and first.persona_text is None and first.model_options is None and first.tag is None
    assert first.set_name in snapshot.set_names and first.text.startswith("[persona ")
    assert all(r.embedding and r.embedding_dim == len(r.embedding) for r in embedded)
    assert embedded[0].label == "all-minilm-l6-v2"


def test_a_log_likelihood_record_reads_with_its_block(tmp_path: Path) -> None:
    run([MCQ], ["fake:echo"], settings=GenerationSettings(), output_dir=tmp_path, progress=False,
        question_set="mcq", kind="loglik")
    (path,) = _record_files(tmp_path / "mcq")
    assert json.loads(path.read_text(encoding="utf-8"))["kind"] == "loglik"
    record = read_record(path, "mcq")
    assert record is not None and record.kind == "loglik" and record.persona == "loglik"
    assert isinstance(record.loglik, LoglikBlock)
    assert record.loglik.letters == ["A", "B"] and len(record.loglik.logprobs) == 2
    assert record.loglik.acc_choice in ("A", "B") and record.loglik.acc in (0, 1)


def test_an_encoder_record_reads_with_its_vector() -> None:
    spec = resolve_model("all-minilm-l6-v2")
    data = make_record(MCQ, resolve_persona("cardiologist"), spec, GenerationSettings(),
                       Result(text="", latency_s=0.1), "key", "run", [0.5, -0.25, 0.0], set_name="mcq")
    assert data["kind"] == "embedder"
    record = parse_record(json.loads(json.dumps(data)))
    assert record is not None and record.kind == "embed" and record.set_name == "mcq"
    assert record.embedding == [0.5, -0.25, 0.0] and record.embedding_dim == 3


def test_unknown_keys_are_kept_and_invalid_records_are_absent(tmp_path: Path) -> None:
    base: dict[str, Any] = {"n": 3, "question": "Q?", "kind": "generator", "text": "A."}
    record = parse_record({**base, "future_field": {"x": 1}})
    assert record is not None and record.model_extra == {"future_field": {"x": 1}}
    assert parse_record({**base, "kind": None}).kind == "generate"  # type: ignore[union-attr]
    assert parse_record({"n": 1, "embedding": [0.1]}).kind == "embed"  # type: ignore[union-attr]
    for bad in ({**base, "n": "3"}, {**base, "n": None}, {**base, "options": ["A", "B"]}, {**base, "kind": "x"},
                [base], "text", None):
        assert parse_record(bad) is None, bad
    (tmp_path / "1.json").write_text("{not json", encoding="utf-8")
    assert read_record(tmp_path / "1.json") is None and read_record(tmp_path / "2.json") is None


@pytest.fixture
def small_store(tmp_path: Path) -> Path:
    """Three questions (one multiple-choice) x 2 models x 2 personas, saved by the engine."""
    questions = write_jsonl(tmp_path / "questions.jsonl", [
        {"id": "a", "question": "What are the symptoms of type 2 diabetes?"},
        {"id": "b", "question": "How does metformin work?"},
        {"id": "d", "question": "Which is a statin?", "options": {"A": "Atorvastatin", "B": "Insulin"},
         "answer": "A", "task": "demo"},
    ])
    out = tmp_path / "out"
    run(questions, ["fake:echo", "fake:async-echo"], ["cardiologist", "general-physician"], GenerationSettings(),
        output_dir=out, progress=False)
    assert len(_record_files(out)) == 12
    return out


@pytest.mark.parametrize("command", [["report"], ["compare"], ["compare", "3"], ["score"]])
def test_each_command_parses_each_record_once(small_store: Path, command: list[str],
                                             monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    parsed: list[Path] = []
    original = records_module.read_json_file

    def counting(path: Path, **kwargs: Any) -> Any:
        if Path(path).name.endswith(".json") and Path(path).stem.isdigit():
            parsed.append(Path(path))
        return original(path, **kwargs)

    # every reader of record files: the views' and the store index's check (here building the index: a new store)
    monkeypatch.setattr(records_module, "read_json_file", counting)
    (small_store / "index.db").unlink(missing_ok=True)
    monkeypatch.setenv("NO_PROGRESS", "1")
    assert main([*command, "--output-dir", str(small_store)]) == 0, capsys.readouterr().err
    files = _record_files(small_store)
    if command == ["compare", "3"]:  # one question: only its records are read (issue 18), each once
        files = [f for f in files if f.name == "3.json"]
        assert len(files) == 4
    assert sorted(parsed) == files  # every record file once, none twice


def test_an_unusable_record_says_why_once(tmp_path: Path) -> None:
    import logging

    from runner.core.records import check_record

    assert check_record([1, 2]) == (None, "not a JSON object (a JSON array)")
    assert check_record({"n": "1"})[1] == "no integer question number 'n'"
    _, problem = check_record({"n": 1, "options": ["A"], "latency_s": "slow"})
    assert problem and problem.startswith("field 'options': ") and problem.endswith("(also wrong: 'latency_s')")
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda rec: messages.append(rec.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("runner")
    logger.addHandler(handler)
    try:
        (tmp_path / "7.json").write_text('{"n": 7, "options": ["A"]}', encoding="utf-8")
        for _ in range(3):
            assert read_record(tmp_path / "7.json") is None
    finally:
        logger.removeHandler(handler)
    assert len(messages) == 1 and str(tmp_path / "7.json") in messages[0]
    assert "field 'options'" in messages[0]
    assert "question 7 counts as not answered: a run answers it again" in messages[0]
