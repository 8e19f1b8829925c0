"""Faults at the server and kills mid-run, through the real command line against a local server.

Each fault ends in bounded time with a clear error recorded for that answer; other models carry on;
exit status 1; a re-run retries only what failed; the key never appears anywhere.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, write_jsonl
from tests.fake_servers import spawn

KEY = "sk-faulttest-0123456789abcdefghijklmnop"
FAST_RETRIES = "[settings]\nmax_attempts = 3\ntimeout_s = 1.0\nretry_initial_wait_s = 0.05\nretry_max_wait_s = 0.3\n"


def cli_env(base_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update({"NO_PROGRESS": "1", "PYTHONPATH": str(REPO), "OPENAI_API_KEY": KEY})
    if base_url:
        env["OPENAI_BASE_URL"] = base_url
    return env


def run_cli(tmp_path: Path, *args: str, base_url: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "medical_model_runner.py"), *args], cwd=tmp_path,
                          env=cli_env(base_url), capture_output=True, text=True, timeout=timeout)


def assert_key_nowhere(tmp_path: Path, *streams: str) -> None:
    for text in streams:
        assert KEY not in text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), f"key written to {path}"


def request_count(log_file: Path) -> int:
    return len(log_file.read_text().splitlines()) if log_file.exists() else 0


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FAULTS = {
    "server-error-500": ('{"status": 500}', "500"),
    "429-storm-with-retry-after": ('{"status": 429, "retry_after": 0.1}', "429"),
    "hangs-forever": ('{"kind": "hang"}', "timed out after 1 s"),
    "invalid-json": ('{"kind": "invalid-json"}', "JSON"),
    "wrong-key-401": ('{"status": 401, "message": "Incorrect API key provided: {credential}"}', "401"),
    "connection-refused": (None, "onnect"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_is_recorded_others_carry_on(tmp_path: Path, questions_file: Path, fault: str) -> None:
    reply, expected = FAULTS[fault]
    server = None
    if reply is None:
        base_url = f"http://127.0.0.1:{closed_port()}/v1"
    else:
        server, port = spawn(tmp_path, "--default", reply, "--log-file", str(tmp_path / "log.jsonl"))
        base_url = f"http://127.0.0.1:{port}/v1"
    (tmp_path / "run.toml").write_text(
        f'models = [{{name = "openai:faulty-model", base_url = "{base_url}"}}, "fake:echo"]\n' + FAST_RETRIES)
    try:
        start = time.monotonic()
        proc = run_cli(tmp_path, "--config", "run.toml")
        elapsed = time.monotonic() - start
    finally:
        if server:
            server.kill()
            server.wait()
    assert proc.returncode == 1, proc.stderr
    assert elapsed < 60
    out = tmp_path / "outputs" / "questions" / "oncology-researcher"  # the set of questions.jsonl
    assert len(list((out / "echo").glob("*.txt"))) == 4  # the other model carried on
    for n in range(1, 5):
        record = json.loads((out / "faulty-model" / f"{n}.json").read_text())
        assert record["error"] and expected in record["error"], record["error"]
        assert not (out / "faulty-model" / f"{n}.txt").exists()
    if fault in ("wrong-key-401", "invalid-json"):  # never retried: one request per question
        assert request_count(tmp_path / "log.jsonl") == 4
    elif server is not None:  # retried, up to the bound
        assert request_count(tmp_path / "log.jsonl") == 4 * 3
    assert "run the same command again to retry only those" in proc.stdout
    assert_key_nowhere(tmp_path, proc.stdout, proc.stderr)


def test_rerun_retries_only_failed_answers(tmp_path: Path, questions_file: Path) -> None:
    log = tmp_path / "log.jsonl"
    server, port = spawn(tmp_path, "--script", '[{"status": 500}, {"status": 503}]', "--log-file", str(log))
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        first = run_cli(tmp_path, "--models", "openai:m", "--max-attempts", "1", "--concurrency", "1",
                        base_url=base_url)
        assert first.returncode == 1 and request_count(log) == 4
        second = run_cli(tmp_path, "--models", "openai:m", "--max-attempts", "1", base_url=base_url)
        assert second.returncode == 0, second.stderr
        assert request_count(log) == 6  # only the two failures were asked again
        assert "2 answer(s) already saved, skipped" in second.stderr
    finally:
        server.kill()
        server.wait()
    assert_key_nowhere(tmp_path, first.stdout, first.stderr, second.stdout, second.stderr)


def test_sigkill_mid_run_nothing_lost_nothing_redone(tmp_path: Path) -> None:
    total = 60
    write_jsonl(tmp_path / "questions.jsonl", [{"question": f"Question {i}: what is drug {i}?"} for i in range(total)])
    log = tmp_path / "log.jsonl"
    server, port = spawn(tmp_path, "--delay", "0.05", "--log-file", str(log))
    base_url = f"http://127.0.0.1:{port}/v1"
    folder = tmp_path / "outputs" / "questions" / "oncology-researcher" / "killtest"
    try:
        proc = subprocess.Popen([sys.executable, str(REPO / "medical_model_runner.py"), "--models", "openai:killtest",
                                 "--concurrency", "4"], cwd=tmp_path, env=cli_env(base_url),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while len(list(folder.glob("*.json"))) < 12 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        saved = {}
        for path in folder.glob("*.json"):
            record = json.loads(path.read_text())  # never half-written
            saved[record["n"]] = record
            assert (folder / f"{record['n']}.txt").read_text() == record["text"]
        assert 12 <= len(saved) < total
        before = request_count(log)
        rerun = run_cli(tmp_path, "--models", "openai:killtest", "--concurrency", "4", base_url=base_url)
        assert rerun.returncode == 0, rerun.stderr
        asked_again = [json.loads(line) for line in log.read_text().splitlines()[before:]]
    finally:
        server.kill()
        server.wait()
    assert len(asked_again) == total - len(saved)  # answers saved before the kill were not requested again
    saved_questions = {r["question"] for r in saved.values()}
    for entry in asked_again:
        assert entry["body"]["messages"][-1]["content"] not in saved_questions
    final = {int(p.stem): json.loads(p.read_text()) for p in folder.glob("*.json")}
    assert sorted(final) == list(range(1, total + 1))  # exactly one answer per question
    assert all(r["error"] is None for r in final.values())
    assert not list(folder.glob("*.tmp"))
    assert_key_nowhere(tmp_path, rerun.stdout, rerun.stderr)


def test_saves_that_fail_lose_no_other_paid_answer(tmp_path: Path) -> None:
    """Answers whose records cannot be written fail alone: every other answer the server sent is saved."""
    total = 16
    write_jsonl(tmp_path / "questions.jsonl", [{"question": f"Question {i}: what is drug {i}?"} for i in range(total)])
    folder = tmp_path / "outputs" / "questions" / "oncology-researcher" / "savefail"
    unsavable = (2, 7, 11, 16)
    for n in unsavable:
        (folder / f"{n}.json").mkdir(parents=True)
    log = tmp_path / "log.jsonl"
    server, port = spawn(tmp_path, "--delay", "0.02", "--log-file", str(log))
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        first = run_cli(tmp_path, "--models", "openai:savefail", "--concurrency", "4", base_url=base_url)
        assert first.returncode == 1, first.stderr
        assert "Traceback" not in first.stderr
        assert request_count(log) == total  # all sixteen were answered (and paid for)...
        saved = {int(p.stem) for p in folder.glob("*.json") if p.is_file()}
        assert saved == set(range(1, total + 1)) - set(unsavable)  # ...and all twelve others kept
        for n in unsavable:
            assert f"question {n}: could not save the answer to {Path('outputs/questions/oncology-researcher')}" \
                   f"/savefail/{n}.json: Is a directory" in first.stderr
        assert f"{len(unsavable)} answer(s) could not be saved" in first.stdout
        manifest = json.loads(next((tmp_path / "outputs" / "runs").glob("*.json")).read_text())
        assert manifest["status"] == "finished"
        for n in unsavable:
            (folder / f"{n}.json").rmdir()
        second = run_cli(tmp_path, "--models", "openai:savefail", "--concurrency", "4", base_url=base_url)
        assert second.returncode == 0, second.stderr
        assert request_count(log) == total + len(unsavable)  # only the unsaved ones were asked again
    finally:
        server.kill()
        server.wait()
    assert_key_nowhere(tmp_path, first.stdout, first.stderr, second.stdout, second.stderr)
