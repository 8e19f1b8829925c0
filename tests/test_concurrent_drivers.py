"""API models answer while a local model generates (their event loop in a worker thread); Ctrl-C, a full disk and a
crash reach both sides."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from runner.core.questions import Question
from runner.core.settings import GenerationSettings
from runner.core.store import SetStore
from runner.engine import run
from runner.providers.fake import FakeGenerator
from tests.conftest import REPO, sigint_as_a_terminal_sends_it, write_jsonl
from tests.fake_servers import FakeServer
from tests.test_interrupts import saved_records, wait_for_answers

PERSONA = "cardiologist"


def questions(count: int) -> list[Question]:
    return [Question(n=i + 1, id=str(i), question=f"What is drug number {i}?") for i in range(count)]


def folder(out: Path, slug: str) -> Path:
    return out / "questions" / PERSONA / slug


def manifest_of(out: Path) -> dict[str, Any]:
    [path] = (out / "runs").glob("*.json")
    return json.loads(path.read_text())


def wait_until(condition: Any, timeout: float = 10.0) -> bool:
    """Poll ``condition()`` until it is true (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def hold_first_request(monkeypatch: pytest.MonkeyPatch, behaviour: str, until: Any) -> list[bool]:
    """Make ``fake:<behaviour>``'s first request wait (at most 10 s) until ``until()``; returns [whether it came]."""
    seen: list[bool] = []
    real = FakeGenerator._behave

    def behave(self: FakeGenerator, key: str) -> None:
        if self.spec.model_id == behaviour and not seen:
            seen.append(wait_until(until))
        real(self, key)

    monkeypatch.setattr(FakeGenerator, "_behave", behave)
    return seen


def api_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "runner-api-models"]


def test_api_answers_are_saved_while_a_local_model_generates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local model's batch waits for every API answer to be on disk: only a concurrent API side lets it go on."""
    count, out = 12, tmp_path / "out"
    api_done = hold_first_request(monkeypatch, "slow",
                                  lambda: len(list(folder(out, "async-echo").glob("*.json"))) == count)
    report = run(questions(count), ["fake:async-echo", "fake:slow", "fake:echo"], [PERSONA], GenerationSettings(),
                 output_dir=out, progress=False)
    assert api_done == [True]  # the API model answered everything while fake:slow was generating
    assert report.exit_status == 0
    # The summaries (closing table, manifest) list the local models first, in plan order, then the API ones.
    assert [s.label for s in report.summaries] == ["fake:slow", "fake:echo", "fake:async-echo"]
    assert all(s.answered == count for s in report.summaries)
    manifest = manifest_of(out)
    assert manifest["status"] == "finished"
    assert [s["label"] for s in manifest["summary"]] == ["fake:slow", "fake:echo", "fake:async-echo"]
    for slug in ("slow", "echo", "async-echo"):
        assert sorted(saved_records(folder(out, slug))) == list(range(1, count + 1))
    assert not api_threads()


def fill_disk_for(monkeypatch: pytest.MonkeyPatch, slug: str) -> threading.Event:
    """Saves into ``slug``'s folder fail with ENOSPC; the event is set once one has."""
    full = threading.Event()
    real = SetStore.save

    def save(self: SetStore, persona: str, where: str, n: int, record: dict, body: str | None,
             *more: object) -> None:
        if where == slug:
            full.set()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path / persona / where / f"{n}.json"))
        real(self, persona, where, n, record, body, *more)

    monkeypatch.setattr(SetStore, "save", save)
    return full


def test_a_full_disk_seen_by_the_api_side_ends_the_local_batch(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    count, out = 30, tmp_path / "out"
    full = fill_disk_for(monkeypatch, "async-echo")
    hold_first_request(monkeypatch, "slow", full.is_set)  # fake:slow's first answer comes after the full disk
    report = run(questions(count), ["fake:slow", "fake:echo", "fake:async-echo"], [PERSONA], GenerationSettings(),
                 output_dir=out, progress=False)
    slow, echo, api = report.summaries
    assert (slow.answered, slow.failed, slow.not_asked) == (0, 0, count)  # its batch ended at its first answer
    assert (echo.answered, echo.failed, echo.not_asked) == (0, 0, count)  # and the next local model never loaded
    assert api.answered == 0 and api.failed >= 1 and api.failed + api.not_asked == count
    assert report.stopped and report.stopped.startswith("disk full: could not write ")
    assert manifest_of(out)["status"] == "disk-full" and report.exit_status == 1


def test_a_full_disk_seen_by_the_local_side_stops_the_api_requests(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    count, out = 30, tmp_path / "out"
    full = fill_disk_for(monkeypatch, "slow")
    hold_first_request(monkeypatch, "async-echo", full.is_set)  # the API's first requests wait for the full disk
    report = run(questions(count), ["fake:slow", "fake:async-echo"], [PERSONA], GenerationSettings(concurrency=2),
                 output_dir=out, progress=False)
    slow, api = report.summaries
    assert (slow.answered, slow.failed, slow.not_asked) == (0, 1, count - 1)
    # Only the requests already in flight (at most --concurrency) were answered and saved; no new one was sent.
    assert api.answered <= 2 and api.answered + api.failed + api.not_asked == count
    assert len(FakeGenerator.history) <= 1 + 2
    assert manifest_of(out)["status"] == "disk-full" and report.exit_status == 1


def crash_in(monkeypatch: pytest.MonkeyPatch, behaviour: str) -> list[str]:
    """A bug in the engine (not a failed answer) when ``fake:<behaviour>`` answers; returns the crashing thread."""
    from runner.engine import orchestrator

    where: list[str] = []
    real = orchestrator.note_prompt

    def note_prompt(provider: Any, request: Any, result: Any) -> None:
        if provider.spec.model_id == behaviour:
            where.append(threading.current_thread().name)
            raise RuntimeError(f"a bug met while {behaviour} answered")
        real(provider, request, result)

    monkeypatch.setattr(orchestrator, "note_prompt", note_prompt)
    return where


def test_a_crash_on_the_api_side_is_raised_after_the_local_models(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    count, out = 10, tmp_path / "out"
    where = crash_in(monkeypatch, "async-echo")
    with pytest.raises(RuntimeError, match="a bug met while async-echo answered"):
        run(questions(count), ["fake:async-echo", "fake:slow"], [PERSONA], GenerationSettings(),
            output_dir=out, progress=False)
    assert where and where[0] == "runner-api-models"
    assert sorted(saved_records(folder(out, "slow"))) == list(range(1, count + 1))  # the local model finished
    manifest = manifest_of(out)
    assert manifest["status"] == "crashed"
    assert manifest["stopped_because"] == "RuntimeError: a bug met while async-echo answered"
    assert not api_threads()


def test_a_crash_on_the_local_side_cancels_the_api_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.engine import orchestrator

    count, out = 400, tmp_path / "out"  # fake:async-echo, 2 at a time: 4 s in all
    real = orchestrator._progress

    def progress(total: int, desc: str, enabled: bool) -> Any:  # a bug in the local driver, once the API answers
        if desc == "fake:slow" and wait_until(lambda: len(list(folder(out, "async-echo").glob("*.json"))) >= 4):
            raise RuntimeError("a bug met while slow started")
        return real(total, desc, enabled)

    monkeypatch.setattr(orchestrator, "_progress", progress)
    with pytest.raises(RuntimeError, match="a bug met while slow started"):
        run(questions(count), ["fake:slow", "fake:async-echo"], [PERSONA], GenerationSettings(concurrency=2),
            output_dir=out, progress=False)
    assert not api_threads()  # the API side was cancelled and joined before the crash went on
    sent = len(FakeGenerator.history)
    time.sleep(0.1)
    assert len(FakeGenerator.history) == sent < count  # nothing is sent after the crash
    assert 4 <= len(saved_records(folder(out, "async-echo"))) < count
    assert manifest_of(out)["status"] == "crashed"


# --- Ctrl-C through the command line ------------------------------------------------------------------------------

N_QUESTIONS = 100  # fake:slow: 50 ms each (5 s); the API model: 0.1 s each at the server, 2 at a time (5 s)


def start_cli(tmp_path: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update({"NO_PROGRESS": "1", "PYTHONPATH": str(REPO), "OPENAI_BASE_URL": ""})
    return subprocess.Popen([sys.executable, str(REPO / "medical_model_runner.py"), "run", "--config", "run.toml"],
                            cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=sigint_as_a_terminal_sends_it)


def test_ctrl_c_stops_the_local_model_and_the_api_requests(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "questions.jsonl", [{"question": f"Question number {i}?"} for i in range(N_QUESTIONS)])
    local = tmp_path / "outputs" / "questions" / "oncology-researcher" / "slow"
    api = tmp_path / "outputs" / "questions" / "oncology-researcher" / "served-model"
    with FakeServer(delay=0.1) as server:
        (tmp_path / "run.toml").write_text(
            f'models = ["fake:slow", {{ name = "openai:served-model", base_url = "{server.openai_base_url}" }}]\n'
            "[settings]\nconcurrency = 2\nretry_initial_wait_s = 0.01\n")
        proc = start_cli(tmp_path)
        wait_for_answers(api, 4)
        wait_for_answers(local, 4)
        before = server.count
        assert len(list(local.glob("*.json"))) < N_QUESTIONS  # both sides are mid-run
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - sent < 5
        assert proc.returncode == 130, err
        assert "run the same command again to resume" in err and "Traceback" not in err
        at_exit = server.count
        # Only what was in flight, or sent in the moment the signal took to reach the API side's event loop.
        assert at_exit - before <= 2 * 2
        time.sleep(0.3)
        assert server.count == at_exit < N_QUESTIONS  # and nothing after: the count stops growing
        manifest = json.loads(next((tmp_path / "outputs" / "runs").glob("*.json")).read_text())
        assert manifest["status"] == "interrupted"
        saved_local, saved_api = saved_records(local), saved_records(api)  # every .json with its .txt, none torn
        assert 4 <= len(saved_api) <= at_exit and 4 <= len(saved_local) < N_QUESTIONS

        rerun = start_cli(tmp_path)
        _, err = rerun.communicate(timeout=60)
        assert rerun.returncode == 0, err
        assert f"fake:slow: {len(saved_local)} answer(s) already saved, skipped" in err
        assert f"{len(saved_api)} answer(s) already saved, skipped" in err
        assert server.count - at_exit == N_QUESTIONS - len(saved_api)  # nothing saved was asked again
    after_local, after_api = saved_records(local), saved_records(api)
    assert sorted(after_local) == sorted(after_api) == list(range(1, N_QUESTIONS + 1))
    for before_records, after in ((saved_local, after_local), (saved_api, after_api)):
        for n, record in before_records.items():
            assert after[n]["run_id"] == record["run_id"]
