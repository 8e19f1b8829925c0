"""Killed or interrupted runs: nothing half-written, nothing lost, the re-run completes the rest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, sigint_as_a_terminal_sends_it, write_jsonl

N_QUESTIONS = 400  # fake:async-echo answers in 20 ms, 8 at a time: about 1 s in all


def start_run(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NO_PROGRESS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, str(REPO / "medical_model_runner.py"), "--models", "fake:async-echo",
                             "--concurrency", "2", *args], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=sigint_as_a_terminal_sends_it)


def wait_for_answers(folder: Path, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if folder.is_dir() and len(list(folder.glob("*.json"))) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} answers appeared in {folder}")


def saved_records(folder: Path, swept: bool = True) -> dict[int, dict]:
    """Every record parses (nothing half-written); .txt files match their records.

    A kill can leave a temporary file (never an answer file); the next run sweeps it.
    """
    records = {}
    for path in folder.glob("*.json"):
        record = json.loads(path.read_text())  # raises on a torn file
        records[record["n"]] = record
        assert (folder / f"{record['n']}.txt").read_text() == record["text"]
    if swept:
        assert not list(folder.glob("*.tmp"))
    return records


def make_questions(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "questions.jsonl", [{"question": f"Question number {i}?"} for i in range(N_QUESTIONS)])


def test_sigkill_then_rerun_completes(tmp_path: Path) -> None:
    make_questions(tmp_path)
    folder = tmp_path / "outputs" / "questions" / "oncology-researcher" / "async-echo"
    proc = start_run(tmp_path)
    wait_for_answers(folder, 20)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    before = saved_records(folder, swept=False)
    assert 20 <= len(before) < N_QUESTIONS
    rerun = start_run(tmp_path)
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert f"{len(before)} answer(s) already saved, skipped" in err
    after = saved_records(folder)
    assert sorted(after) == list(range(1, N_QUESTIONS + 1))
    for n, record in before.items():  # saved answers were kept, not redone
        assert after[n]["run_id"] == record["run_id"]


def test_sigint_stops_quickly_and_says_how_to_resume(tmp_path: Path) -> None:
    make_questions(tmp_path)
    folder = tmp_path / "outputs" / "questions" / "oncology-researcher" / "async-echo"
    proc = start_run(tmp_path)
    wait_for_answers(folder, 10)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 5
    assert proc.returncode == 130
    assert "run the same command again to resume" in err
    assert "Traceback" not in err
    saved = saved_records(folder)
    manifest = json.loads(next((tmp_path / "outputs" / "runs").glob("*.json")).read_text())
    assert manifest["status"] == "interrupted"
    rerun = start_run(tmp_path)
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0 and f"{len(saved)} answer(s) already saved" in err
    assert len(saved_records(folder)) == N_QUESTIONS


def test_sigkill_of_a_loglik_run_then_rerun_skips_what_was_saved(tmp_path: Path) -> None:
    """Log-likelihood scoring runs through the same engine: a killed run resumes like a generation run."""
    count = 100  # fake:slow scores one question in 50 ms: about 5 s in all
    write_jsonl(tmp_path / "mcq.jsonl", [{"question": f"Question {i}?", "options": {"A": "yes", "B": "no"},
                                          "answer": "AB"[i % 2]} for i in range(count)])
    folder = tmp_path / "outputs" / "mcq" / "loglik" / "slow"
    env = {**os.environ, "NO_PROGRESS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, str(REPO / "medical_model_runner.py"), "score", "--scoring", "loglik",
               "--models", "fake:slow", "--questions", "mcq.jsonl"]
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    wait_for_answers(folder, 10)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    before = {r["n"]: r for r in (json.loads(p.read_text()) for p in folder.glob("*.json"))}  # none torn
    assert 10 <= len(before) < count
    rerun = subprocess.run(command, cwd=tmp_path, env=env, text=True, capture_output=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(before)} answer(s) already saved, skipped" in rerun.stderr
    after = {r["n"]: r for r in (json.loads(p.read_text()) for p in folder.glob("*.json"))}
    assert sorted(after) == list(range(1, count + 1)) and not list(folder.glob("*.tmp"))
    assert all(r["kind"] == "loglik" and r["loglik"]["acc_choice"] in "AB" for r in after.values())
    for n, record in before.items():  # saved results were kept, not scored again
        assert after[n]["run_id"] == record["run_id"]
    assert "| fake:slow" in rerun.stdout or "slow" in rerun.stdout  # then the scores are printed


def test_a_killed_runs_manifest_reads_interrupted_or_killed(tmp_path: Path) -> None:
    """A run killed outright never closes its manifest; readers see that its process is gone."""
    from runner.engine.manifest import run_status

    make_questions(tmp_path)
    folder = tmp_path / "outputs" / "questions" / "oncology-researcher" / "async-echo"
    proc = start_run(tmp_path)
    wait_for_answers(folder, 10)
    [path] = (tmp_path / "outputs" / "runs").glob("*.json")
    manifest = json.loads(path.read_text())
    assert manifest["status"] == "running" and manifest["process"]["pid"] == proc.pid
    assert run_status(manifest) == "running"  # its process is alive
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    manifest = json.loads(path.read_text())
    assert manifest["status"] == "running"  # as the kill left it...
    assert run_status(manifest) == "interrupted or killed"  # ...and as it reads
    report = subprocess.run([sys.executable, str(REPO / "medical_model_runner.py"), "report"], cwd=tmp_path,
                            env={**os.environ, "NO_PROGRESS": "1", "PYTHONPATH": str(REPO)}, text=True,
                            capture_output=True, timeout=120)
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "outputs" / "report.html").read_text()
    assert "<td>interrupted or killed</td>" in html and "<td>running</td>" not in html
    if manifest["process"]["start"] is not None:  # Linux: a process that took the same id later is not the run
        assert run_status({**manifest, "process": {**manifest["process"], "pid": os.getpid()}}) == \
            "interrupted or killed"
    assert run_status({**manifest, "process": {**manifest["process"], "host": "elsewhere"}}) == "running (on elsewhere)"
    assert run_status({"status": "running"}) == "running or killed"  # a manifest from before processes were recorded
