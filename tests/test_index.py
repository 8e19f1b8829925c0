"""The store's index (``outputs/index.db``): kept as records are saved, read by the resume and the views, never
trusted over the files, rebuilt when missing or corrupt, repaired after a SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runner.core import index as index_module
from runner.core import records as records_module
from runner.core.index import INDEX_FILE, Index
from runner.core.settings import GenerationSettings
from runner.core.store import Store
from runner.engine import run
from tests.conftest import REPO, drug_questions

MODELS = ["fake:echo"]


@pytest.fixture(autouse=True)
def _fresh_indexes() -> Any:
    """Each test sees its stores' indexes as a new process would."""
    Index.forget_all()
    yield
    Index.forget_all()


def _run(questions: Path, out: Path, personas: list[str] | None = None) -> Any:
    report = run(questions, MODELS, personas or ["cardiologist"], GenerationSettings(), output_dir=out,
                 progress=False)
    Index.forget_all()  # as at the end of a process
    return report


def _rows(out: Path) -> list[dict[str, Any]]:
    db = sqlite3.connect(out / INDEX_FILE)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM records ORDER BY path")]
    finally:
        db.close()


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every record file parsed from now on (by the readers of records and by the index)."""
    seen: list[Path] = []
    original = records_module.read_json_file

    def counting(path: Any, **kwargs: Any) -> Any:
        if str(path).endswith(".json") and Path(path).stem.isdigit():
            seen.append(Path(path))
        return original(path, **kwargs)

    monkeypatch.setattr(records_module, "read_json_file", counting)
    return seen


def test_a_run_writes_the_index_users_can_query(tmp_path: Path) -> None:
    questions, out = drug_questions(tmp_path, 4), tmp_path / "out"
    assert _run(questions, out, ["cardiologist", "oncology-researcher"]).exit_status == 0
    rows = _rows(out)
    assert len(rows) == 8
    row = next(r for r in rows if r["persona"] == "cardiologist" and r["n"] == 3)
    saved = json.loads((out / row["path"]).read_text())
    assert row["path"] == f"{questions.stem}/cardiologist/echo/3.json"
    assert (row["set_name"], row["space"], row["model_folder"], row["kind"], row["model"]) == \
        (questions.stem, "", "echo", "generator", "fake:echo")
    assert (row["key"], row["ok"], row["has_txt"], row["problem"]) == (saved["key"], 1, 1, None)
    assert row["completion_tokens"] == saved["completion_tokens"] and row["run_id"] == saved["run_id"]
    # what the README shows: one query over the results
    db = sqlite3.connect(out / INDEX_FILE)
    assert db.execute("SELECT persona, count(*), sum(ok) FROM records GROUP BY persona ORDER BY persona").fetchall() \
        == [("cardiologist", 4, 4), ("oncology-researcher", 4, 4)]
    db.close()
    assert not (out / f"{INDEX_FILE}-wal").exists()  # closed at the end of the process: one file


def test_a_resume_reads_no_record_when_the_index_is_current(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    questions, out = drug_questions(tmp_path, 6), tmp_path / "out"
    _run(questions, out)
    reads = _count_reads(monkeypatch)
    report = _run(questions, out)
    assert [s.skipped for s in report.summaries] == [6] and reads == []


def test_the_index_is_not_trusted_over_the_files(tmp_path: Path) -> None:
    questions, out = drug_questions(tmp_path, 5), tmp_path / "out"
    _run(questions, out)
    folder = out / questions.stem / "cardiologist" / "echo"
    (folder / "1.txt").unlink()  # the record alone is not a saved answer
    record = json.loads((folder / "2.json").read_text())
    (folder / "2.json").write_text(json.dumps({**record, "error": "boom"}))  # a failed answer now (in place)
    (folder / "3.json").unlink()
    (folder / "4.json").write_text("{not json")
    report = _run(questions, out)
    assert [(s.skipped, s.answered) for s in report.summaries] == [(1, 4)]
    rows = {r["n"]: r for r in _rows(out)}
    assert sorted(rows) == [1, 2, 3, 4, 5]
    assert all(r["ok"] and r["has_txt"] and r["problem"] is None for r in rows.values())
    for n, row in rows.items():
        assert row["key"] == json.loads((folder / f"{n}.json").read_text())["key"]


def test_a_view_repairs_the_index_and_warns_about_a_bad_file(tmp_path: Path, caplog: Any) -> None:
    questions, out = drug_questions(tmp_path, 3), tmp_path / "out"
    _run(questions, out)
    folder = out / questions.stem / "cardiologist" / "echo"
    (folder / "2.json").write_text("[1, 2]")
    (folder / "3.json").unlink()
    snapshot = Store(out).snapshot()
    assert [r.n for r in snapshot.records] == [1]
    assert "2.json: not a JSON object" in caplog.text
    Index.forget_all()  # as at the end of the process: what the view learnt is written
    rows = {r["n"]: r for r in _rows(out)}
    assert sorted(rows) == [1, 2] and rows[2]["problem"] is not None and not rows[2]["ok"]


@pytest.mark.parametrize("damage", ["missing", "garbage", "old-schema", "folder"])
def test_an_unusable_index_is_rebuilt_or_left_out(tmp_path: Path, damage: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    questions, out = drug_questions(tmp_path, 4), tmp_path / "out"
    _run(questions, out)
    path = out / INDEX_FILE
    if damage == "missing":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"this is not an SQLite database" * 100)
    elif damage == "old-schema":
        db = sqlite3.connect(path)
        db.execute("UPDATE meta SET value = '0' WHERE name = 'schema_version'")
        db.commit()
        db.close()
    else:
        path.unlink()
        path.mkdir()  # cannot be replaced: every reader reads the files
    reads = _count_reads(monkeypatch)
    report = _run(questions, out)
    assert [s.skipped for s in report.summaries] == [4]
    assert len(reads) == 4  # the files, read once to rebuild the index (or, with no index, to resume)
    if damage == "folder":
        assert path.is_dir()
        assert [r.n for r in Store(out).snapshot().records] == [1, 2, 3, 4]
    else:
        assert sorted(r["n"] for r in _rows(out)) == [1, 2, 3, 4]
        del reads[:]
        _run(questions, out)
        assert reads == []


def _index_claims(out: Path) -> list[str]:
    """What the index says is saved that the files do not hold (each as a line; none expected)."""
    if not (out / INDEX_FILE).exists():
        return []
    wrong = []
    for row in _rows(out):
        if row["problem"] is not None or not row["ok"]:
            continue
        path = out / row["path"]
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            wrong.append(f"{row['path']}: {exc}")
            continue
        if data.get("key") != row["key"] or data.get("error"):
            wrong.append(f"{row['path']}: another record")
        if row["has_txt"] and not path.with_suffix(".txt").exists():
            wrong.append(f"{row['path']}: no .txt")
    return wrong


def test_sigkill_at_any_point_never_leaves_the_index_claiming_more_than_the_files(tmp_path: Path) -> None:
    questions, out = drug_questions(tmp_path, 3000), tmp_path / "out"
    env = {**os.environ, "NO_PROGRESS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, str(REPO / "medical_model_runner.py"), "run", "-q", str(questions), "-m", "fake:echo",
               "-p", "cardiologist,oncology-researcher", "-o", str(out), "--no-progress"]
    folder = out / questions.stem / "cardiologist" / "echo"
    rng = random.Random(18)
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not folder.is_dir():
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        assert _index_claims(out) == []
    assert kills >= 2
    # the next command repairs the index: its rows are the files, exactly
    snapshot = Store(out).snapshot()
    Index.forget_all()
    files = {p.relative_to(out).as_posix() for p in out.glob(f"{questions.stem}/*/*/*.json")}
    assert {r["path"] for r in _rows(out)} == files
    assert len(snapshot.records) == len(files)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _index_claims(out) == [] and len(_rows(out)) == 6000


def test_a_snapshot_of_some_models_and_personas_reads_only_their_folders(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    questions, out = drug_questions(tmp_path, 3), tmp_path / "out"
    run(questions, ["fake:echo", "fake:canned"], ["cardiologist", "oncology-researcher"], GenerationSettings(),
        output_dir=out, progress=False)
    Index.forget_all()
    Store(out).snapshot()  # brings the index up to date
    reads = _count_reads(monkeypatch)
    snapshot = Store(out).snapshot(models={"fake:canned"}, personas={"cardiologist"})
    assert {(r.model, r.persona) for r in snapshot.records} == {("fake:canned", "cardiologist")}
    assert len(reads) == 3
    del reads[:]
    assert len(Store(out).snapshot(models={"canned@none", "echo"}).records) == 6  # the slug; no such variant


def test_score_reads_the_records_as_a_stream_when_nothing_reads_them_again(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.cli import main
    from tests.conftest import write_jsonl

    questions = write_jsonl(tmp_path / "mc.jsonl", [{"question": f"Which drug {i}?", "options": {"A": "x", "B": "y"},
                                                     "answer": "A"} for i in range(4)])
    out = tmp_path / "out"
    run(questions, MODELS, ["medical-exam"], GenerationSettings(), output_dir=out, progress=False)
    asked: list[bool] = []
    original = Store.snapshot

    def watching(self: Store, *args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("records", True))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Store, "snapshot", watching)
    monkeypatch.setenv("NO_PROGRESS", "1")
    assert main(["score", "-o", str(out)]) == 0
    assert asked == [False]  # manifests and sets only: the records are scored as they are read, never all held
    assert json.loads((out / "scores.json").read_text())["results"][0]["n"] == 4


REPLIES = ["Answer: B", "I would choose C.", "A or B", "The answer is (D).", "A. Insulin\nB. Metformin"]


def _mc_store(tmp_path: Path) -> tuple[Path, Path]:
    """Five multiple-choice questions answered by fake:canned with ``REPLIES`` (right answer: B for all)."""
    from runner.providers.fake import FakeGenerator
    from tests.conftest import write_jsonl

    questions = write_jsonl(tmp_path / "mc.jsonl", [
        {"question": f"Which drug {i}?", "options": {"A": "Insulin", "B": "Metformin", "C": "Statin", "D": "None"},
         "answer": "B"} for i in range(len(REPLIES))])
    out = tmp_path / "out"
    FakeGenerator.canned.extend(REPLIES)
    report = run(questions, ["fake:canned"], ["medical-exam"], GenerationSettings(), output_dir=out, progress=False)
    assert report.exit_status == 0
    Index.forget_all()
    return questions, out


def _count_extractions(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Every letter extracted from an answer's text by a view from now on."""
    from runner.tasks import letters
    from runner.views import answers, scores

    seen: list[str | None] = []

    def counting(text: Any, options: Any) -> Any:
        seen.append(text)
        return letters.extract_letter(text, options)

    monkeypatch.setattr(scores, "extract_letter", counting)
    monkeypatch.setattr(answers, "extract_letter", counting)
    return seen


def _score(out: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    from runner.cli import main

    monkeypatch.setenv("NO_PROGRESS", "1")
    assert main(["score", "-o", str(out)]) == 0
    Index.forget_all()  # as at the end of the process: what the view learnt is written
    return [(i["n"], i["chosen"]) for i in json.loads((out / "scores.json").read_text())["results"][0]["items"]]


def test_each_answers_letter_is_read_once_and_kept_in_the_index(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.cli import main
    from runner.tasks.letters import EXTRACTOR_VERSION, extract_letter

    _, out = _mc_store(tmp_path)
    options = {"A": "Insulin", "B": "Metformin", "C": "Statin", "D": "None"}
    expected = [(n + 1, extract_letter(text, options)) for n, text in enumerate(REPLIES)]
    assert [c for _, c in expected] == ["B", "C", None, "D", None]
    # The run read each letter as it saved the answer: the index holds them, with the extractor's version.
    assert [(r["n"], r["chosen"], r["chosen_by"]) for r in sorted(_rows(out), key=lambda r: r["n"])] == \
        [(n, c, EXTRACTOR_VERSION) for n, c in expected]
    extracted = _count_extractions(monkeypatch)
    assert _score(out, monkeypatch) == expected
    assert main(["report", "-o", str(out)]) == 0
    assert extracted == []  # score and the report took every letter from the index
    cards = (out / "report.html").read_text()
    assert [cards.count(f'class="card {v}"') for v in ("right", "wrong", "unparseable")] == [1, 2, 2]

    # Letters read by another version of the extractor are never used: read again, and the index updated.
    db = sqlite3.connect(out / INDEX_FILE)
    db.execute("UPDATE records SET chosen = 'A', chosen_by = 'another'")
    db.commit()
    db.close()
    assert _score(out, monkeypatch) == expected and len(extracted) == len(REPLIES)
    assert {(r["chosen_by"]) for r in _rows(out)} == {EXTRACTOR_VERSION}
    assert _score(out, monkeypatch) == expected and len(extracted) == len(REPLIES)  # not read a third time

    # An answer edited after it was indexed: its new text is read, never the letter kept for the old one.
    path = out / "mc" / "medical-exam" / "canned" / "1.json"
    record = json.loads(path.read_text())
    record["text"] = "The answer is C."
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)
    assert _score(out, monkeypatch)[0] == (1, "C")
    assert next(r["chosen"] for r in _rows(out) if r["n"] == 1) == "C"


def test_scores_are_the_same_with_and_without_the_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, out = _mc_store(tmp_path)
    with_index = _score(out, monkeypatch)
    (out / INDEX_FILE).unlink()
    (out / INDEX_FILE).mkdir()  # an index that cannot be used: every letter is extracted from the files
    extracted = _count_extractions(monkeypatch)
    assert _score(out, monkeypatch) == with_index and len(extracted) == len(REPLIES)


def test_a_version_1_index_gains_the_letter_columns_without_reading_a_file(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.tasks.letters import EXTRACTOR_VERSION

    _, out = _mc_store(tmp_path)
    db = sqlite3.connect(out / INDEX_FILE)
    db.executescript("ALTER TABLE records DROP COLUMN chosen; ALTER TABLE records DROP COLUMN chosen_by; "
                     "UPDATE meta SET value = '1' WHERE name = 'schema_version';")
    db.close()
    reads, extracted = _count_reads(monkeypatch), _count_extractions(monkeypatch)
    assert len(_score(out, monkeypatch)) == len(REPLIES)
    assert len(reads) == len(REPLIES)  # each file read once, to score it: the index was not rebuilt
    assert len(extracted) == len(REPLIES)  # the letters, new to this index: read once, then kept
    rows = _rows(out)
    assert len(rows) == len(REPLIES) and {r["chosen_by"] for r in rows} == {EXTRACTOR_VERSION}
    db = sqlite3.connect(out / INDEX_FILE)
    assert db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone() == \
        (index_module.SCHEMA_VERSION,)
    db.close()
