"""Saving is part of each answer's own outcome (issue 16).

An answer that cannot be saved fails alone, with a message naming the file and the problem; the other answers are
saved, the exit status is 1 and the manifest is closed. A full disk stops the run cleanly: no more requests, the
summary printed, the manifest closed with a status saying why. Answers longer than ``max_answer_chars`` are cut
when saved, and the record says so.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runner.commands.summary import format_summary
from runner.core.questions import Question
from runner.core.settings import GenerationSettings, ModelEntry, load_config
from runner.core.store import SetStore, Store
from runner.engine import run
from runner.providers.fake import FakeGenerator
from tests.conftest import REPO, drug_questions, write_jsonl
from tests.fake_servers import FakeServer, Reply

PERSONA = "cardiologist"


@pytest.fixture
def messages() -> Iterator[list[str]]:
    """The runner's log lines during a test (the CLI's handler may have turned propagation off)."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("runner")
    handler = Collect(logging.INFO)
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def questions(count: int) -> list[Question]:
    return [Question(n=i, question=f"What is drug number {i}?") for i in range(1, count + 1)]


def folder(out: Path, model: str, set_name: str = "questions", persona: str = PERSONA) -> Path:
    return out / set_name / persona / model


def records(path: Path) -> dict[int, dict]:
    """The records saved in one model folder; every ``.txt`` matches its record."""
    found = {}
    for p in path.glob("*.json"):
        if p.is_file() and p.stem.isdigit():
            record = json.loads(p.read_text(encoding="utf-8"))
            found[record["n"]] = record
            assert (path / f"{record['n']}.txt").read_text(encoding="utf-8") == record["text"]
    return found


def manifest_of(out: Path) -> dict:
    [path] = (out / "runs").glob("*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update({"NO_PROGRESS": "1", "PYTHONPATH": str(REPO), **extra})
    return env


# --- one answer that cannot be saved ------------------------------------------------------------------------------


def test_a_directory_where_a_record_goes_fails_that_answer_alone(tmp_path: Path,
                                                                 cli: Callable[..., subprocess.CompletedProcess]
                                                                 ) -> None:
    write_jsonl(tmp_path / "questions.jsonl", [{"question": f"What is drug number {i}?"} for i in range(5)])
    out = tmp_path / "outputs" / "questions" / "oncology-researcher"
    (out / "echo" / "2.json").mkdir(parents=True)  # a local (batched) model
    (out / "async-echo" / "4.json").mkdir(parents=True)  # a concurrent model, the engine's API path
    first = cli("--models", "fake:echo,fake:async-echo")
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr
    for model, n in (("echo", 2), ("async-echo", 4)):
        path = out / model / f"{n}.json"
        assert f"question {n}: could not save the answer to {path.relative_to(tmp_path)}: Is a directory" \
            in first.stderr
        assert sorted(records(out / model)) == sorted({1, 2, 3, 4, 5} - {n})  # the others are saved
    assert "2 answer(s) could not be saved" in first.stdout
    assert "run the same command again to retry only those" in first.stdout
    manifest = manifest_of(tmp_path / "outputs")
    assert manifest["status"] == "finished"
    assert {s["label"]: (s["answered"], s["failed"], s["unsaved"]) for s in manifest["summary"]} == {
        "fake:echo": (4, 1, 1), "fake:async-echo": (4, 1, 1)}
    shutil.rmtree(out / "echo" / "2.json")
    shutil.rmtree(out / "async-echo" / "4.json")
    second = cli("--models", "fake:echo,fake:async-echo")
    assert second.returncode == 0, second.stderr
    assert second.stderr.count("4 answer(s) already saved, skipped") == 2  # only the unsaved one is asked
    assert sorted(records(out / "echo")) == sorted(records(out / "async-echo")) == [1, 2, 3, 4, 5]


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("model", ["fake:echo", "fake:async-echo"])
def test_a_question_nested_too_deeply_to_save_fails_alone(tmp_path: Path, model: str,
                                                          messages: list[str]) -> None:
    """A question with ~990 levels of nesting in an extra key: json.dumps of its record raises RecursionError."""
    qs = questions(3)
    qs[1] = Question(n=2, question="What is drug number 2?", extra={"deep": nested(990)})
    out = tmp_path / "out"
    report = run(qs, [model], [PERSONA], GenerationSettings(), output_dir=out, progress=False)
    assert report.exit_status == 1
    [summary] = report.summaries
    assert (summary.answered, summary.failed, summary.unsaved) == (2, 1, 1)
    slug = model.split(":")[1]
    assert sorted(records(folder(out, slug))) == [1, 3]
    assert not (folder(out, slug) / "2.txt").exists()  # checked before anything is written
    [line] = [m for m in messages if "could not save" in m]
    assert f"question 2: could not save the answer to {folder(out, slug) / '2.json'}" in line
    assert "'extra' field is nested too deeply to write as JSON" in line
    assert manifest_of(out)["status"] == "finished"


def test_an_answer_that_cannot_be_encoded_fails_alone(tmp_path: Path, messages: list[str]) -> None:
    """A lone surrogate in a model's answer (possible in JSON from a server) fails that answer, not the run."""
    FakeGenerator.canned.extend(["fine", "half of a pair: \ud800 here", "fine too"])
    out = tmp_path / "out"
    report = run(questions(3), ["fake:canned"], [PERSONA], GenerationSettings(), output_dir=out, progress=False)
    assert report.exit_status == 1
    assert (report.summaries[0].answered, report.summaries[0].failed) == (2, 1)
    assert sorted(records(folder(out, "canned"))) == [1, 3]
    [line] = [m for m in messages if "could not save" in m]
    assert "question 2" in line and "2.json" in line
    assert "the record's 'text' field holds text that cannot be written as UTF-8 (surrogates not allowed" in line


def test_an_api_run_keeps_every_paid_answer_when_some_saves_fail(tmp_path: Path, server: FakeServer,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 messages: list[str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-savefail-0123456789abcdefghij")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    out = tmp_path / "out"
    model = folder(out, "m", set_name="q16")
    for n in (3, 9, 16):
        (model / f"{n}.json").mkdir(parents=True)
    entry = ModelEntry(name="openai:m", base_url=server.openai_base_url)
    path = drug_questions(tmp_path, 16)
    report = run(path, [entry], [PERSONA], GenerationSettings(concurrency=4), output_dir=out, progress=False)
    assert server.count == 16  # every question asked once...
    assert sorted(records(model)) == sorted(set(range(1, 17)) - {3, 9, 16})  # ...and every other answer kept
    [summary] = report.summaries
    assert (summary.answered, summary.failed, summary.unsaved) == (13, 3, 3)
    assert summary.completion_tokens == 16 * 3  # all 16 were paid for
    assert report.exit_status == 1 and manifest_of(out)["status"] == "finished"
    assert len([m for m in messages if "could not save the answer" in m and "Is a directory" in m]) == 3
    for n in (3, 9, 16):
        (model / f"{n}.json").rmdir()
    again = run(path, [entry], [PERSONA], GenerationSettings(concurrency=4), output_dir=out, progress=False)
    assert again.exit_status == 0 and server.count == 19  # only the three unsaved answers were asked again
    assert sorted(records(model)) == list(range(1, 17))


def test_an_unencodable_server_answer_fails_alone(tmp_path: Path, server: FakeServer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The server sends ``"\\ud800"`` (valid JSON; a lone surrogate once decoded): that answer fails alone."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-savefail-0123456789abcdefghij")
    server.push(Reply.ok("a lone \ud800 surrogate"))
    out = tmp_path / "out"
    entry = ModelEntry(name="openai:m", base_url=server.openai_base_url)
    report = run(drug_questions(tmp_path, 4), [entry], [PERSONA], GenerationSettings(concurrency=1),
                 output_dir=out, progress=False)
    assert server.count == 4 and report.exit_status == 1
    assert sorted(records(folder(out, "m", set_name="q4"))) == [2, 3, 4]


# --- a full disk --------------------------------------------------------------------------------------------------


def fill_disk_after(monkeypatch: pytest.MonkeyPatch, saves: int, code: int = errno.ENOSPC) -> list[int]:
    """Make the store's answer saves fail with ``OSError(code)`` after ``saves`` of them; returns the attempts."""
    attempts: list[int] = []
    real = SetStore.save

    def save(self: SetStore, persona: str, folder: str, n: int, record: dict, body: str | None,
             *more: object) -> None:
        attempts.append(n)
        if len(attempts) > saves:
            raise OSError(code, os.strerror(code), str(self.path / persona / folder / f"{n}.json"))
        real(self, persona, folder, n, record, body, *more)

    monkeypatch.setattr(SetStore, "save", save)
    return attempts


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_stops_a_local_run_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    fill_disk_after(monkeypatch, 5, code)
    out = tmp_path / "out"
    # Two local models (an API model would answer alongside: tests/test_concurrent_drivers.py covers that case).
    report = run(questions(50), ["fake:echo", "fake:slow"], [PERSONA], GenerationSettings(),
                 output_dir=out, progress=False)
    assert len(FakeGenerator.history) == 6  # the batch ended at the save that failed; the next model never ran
    assert report.stopped and report.stopped.startswith("disk full: could not write ")
    assert report.exit_status == 1
    echo, slow = report.summaries
    assert (echo.answered, echo.failed, echo.unsaved, echo.not_asked) == (5, 1, 1, 44)
    assert (slow.answered, slow.failed, slow.not_asked) == (0, 0, 50)
    manifest = manifest_of(out)
    assert manifest["status"] == "disk-full" and manifest["stopped_because"] == report.stopped
    assert sorted(records(folder(out, "echo"))) == [1, 2, 3, 4, 5]
    text = format_summary(report)
    assert "Stopped early: disk full" in text and "94 answer(s) were not asked" in text


def test_a_full_disk_stops_an_api_run_sending_no_more_requests(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = fill_disk_after(monkeypatch, 10)
    out = tmp_path / "out"
    report = run(questions(200), ["fake:async-echo"], [PERSONA], GenerationSettings(concurrency=4),
                 output_dir=out, progress=False)
    asked = len(FakeGenerator.history)
    assert asked <= 10 + 1 + 4  # those saved, the one that found the disk full, and at most those in flight
    assert len(attempts) == asked  # every answer that came back was offered to the store
    [summary] = report.summaries
    assert summary.answered == 10 and summary.answered + summary.failed + summary.not_asked == 200
    assert report.exit_status == 1 and manifest_of(out)["status"] == "disk-full"


FULL_DISK_SCRIPT = """
import errno, os, sys
from runner.core.store import SetStore
real, count = SetStore.save, [0]
def save(self, persona, folder, n, record, body, *more):
    count[0] += 1
    if count[0] > 3:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path / persona / folder / f"{n}.json"))
    real(self, persona, folder, n, record, body, *more)
SetStore.save = save
from runner.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_full_disk_through_the_cli_prints_the_summary_and_exits_1(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "questions.jsonl", [{"question": f"Question {i}?"} for i in range(40)])
    proc = subprocess.run([sys.executable, "-c", FULL_DISK_SCRIPT, "--models", "fake:async-echo,fake:echo",
                           "--concurrency", "2"], cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "No space left on device. Stopping the run: no more requests are sent" in proc.stderr
    assert "answered" in proc.stdout and "Stopped early: disk full" in proc.stdout  # the summary table and why
    assert "Free some space and run the same command again" in proc.stdout
    assert manifest_of(tmp_path / "outputs")["status"] == "disk-full"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs (needs root and Linux; skipped elsewhere)."""
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not mount or not umount:
        pytest.skip("mounting a small tmpfs needs root on Linux")
    where = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    where.mkdir()
    done = subprocess.run([mount, "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield where
    finally:
        subprocess.run([umount, "-l", str(where)], capture_output=True)


def test_a_really_full_disk_stops_the_run_cleanly(tmp_path: Path, small_disk: Path,
                                                  cli: Callable[..., subprocess.CompletedProcess]) -> None:
    write_jsonl(tmp_path / "questions.jsonl", [{"question": f"Question {i} about {'drugs ' * 40}?"}
                                               for i in range(300)])
    proc = cli("--models", "fake:async-echo,fake:echo", "--output-dir", str(small_disk))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "No space left on device" in proc.stderr and "Stopped early: disk full" in proc.stdout
    manifest = manifest_of(small_disk)  # rewritten in the space its file already held
    assert manifest["status"] == "disk-full"
    saved = records(folder(small_disk, "echo", persona="oncology-researcher"))
    assert 0 < len(saved) < 300 and all(r["error"] is None for r in saved.values())


def test_a_manifest_that_cannot_be_written_at_the_end_is_reported(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   messages: list[str]) -> None:
    calls = []
    real = Store.write_manifest

    def write_manifest(self: Store, run_id: str, manifest: dict) -> Path:
        calls.append(manifest["status"])
        if len(calls) > 1:
            raise PermissionError(errno.EACCES, "Permission denied", str(self.root / "runs" / f"{run_id}.json"))
        return real(self, run_id, manifest)

    monkeypatch.setattr(Store, "write_manifest", write_manifest)
    out = tmp_path / "out"
    report = run(questions(3), ["fake:echo"], [PERSONA], GenerationSettings(), output_dir=out, progress=False)
    assert report.summaries[0].answered == 3
    assert report.exit_status == 1
    [problem] = report.problems
    assert problem.startswith(f"could not update the run manifest {report.manifest_path}: Permission denied")
    assert any("could not update the run manifest" in m for m in messages)
    assert f"Problem: {problem}" in format_summary(report)


def test_a_manifest_that_cannot_be_written_at_the_start_is_a_clear_error(
        tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess]) -> None:
    write_jsonl(tmp_path / "questions.jsonl", [{"question": "What is aspirin?"}])
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "runs").write_text("not a folder")
    proc = cli("--models", "fake:echo")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "error: cannot write the run manifest under outputs/runs" in proc.stderr
    assert "nothing was asked" in proc.stderr


# --- the answer-size cap ------------------------------------------------------------------------------------------


def test_a_long_answer_is_cut_when_saved_and_the_record_says_so(tmp_path: Path) -> None:
    long = "x" * 250 + "END"
    FakeGenerator.canned.extend([long, "short"])
    out = tmp_path / "out"
    report = run(questions(2), ["fake:canned"], [PERSONA], GenerationSettings(max_answer_chars=100),
                 output_dir=out, progress=False)
    assert report.exit_status == 0
    saved = records(folder(out, "canned"))
    cut, whole = saved[1], saved[2]
    assert cut["text"] == "x" * 100 and cut["text_chars_full"] == 253
    assert (folder(out, "canned") / "1.txt").read_text() == "x" * 100
    [warning] = cut["warnings"]
    assert "cut to its first 100 of 253 characters" in warning and "--max-answer-chars" in warning
    assert whole["text"] == "short" and "text_chars_full" not in whole and whole["warnings"] is None
    # not part of the answer key: another cap reuses the saved answers
    again = run(questions(2), ["fake:canned"], [PERSONA], GenerationSettings(max_answer_chars=1000),
                output_dir=out, progress=False)
    assert again.summaries[0].skipped == 2
    assert GenerationSettings(max_answer_chars=5).answer_key_fields() == GenerationSettings().answer_key_fields()


def test_the_answer_cap_defaults_and_comes_from_flags_and_config(tmp_path: Path,
                                                                 cli: Callable[..., subprocess.CompletedProcess]
                                                                 ) -> None:
    from runner.cli import build_parser

    assert GenerationSettings().max_answer_chars == 200_000
    parser = build_parser()
    assert parser.parse_args(["run", "--max-answer-chars", "1000"]).max_answer_chars == 1000
    assert parser.parse_args(["run"]).max_answer_chars is None  # not given: the config file (or default) decides
    assert parser.parse_args(["score", "--max-answer-chars", "70"]).max_answer_chars == 70
    (tmp_path / "run.toml").write_text("[settings]\nmax_answer_chars = 40\n", encoding="utf-8")
    assert load_config(tmp_path / "run.toml").settings.max_answer_chars == 40
    write_jsonl(tmp_path / "questions.jsonl", [{"question": "What is the mechanism of action of metformin?"}])
    proc = cli("--models", "fake:echo", "--config", "run.toml")
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "outputs/questions/oncology-researcher/echo/1.json").read_text())
    assert len(record["text"]) == 40 and record["text_chars_full"] > 40
    assert record["settings"]["max_answer_chars"] == 40
    proc = cli("--models", "fake:echo", "--max-answer-chars", "25", "--force", "--output-dir", "flag")
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "flag/questions/oncology-researcher/echo/1.json").read_text())
    assert len(record["text"]) == 25
    bad = cli("--models", "fake:echo", "--max-answer-chars", "0")
    assert bad.returncode == 2 and "--max-answer-chars" in bad.stderr
