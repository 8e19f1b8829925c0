"""API concurrency benchmark: 64 questions through an OpenAI-compatible server that answers after 100 ms.

    .venv/bin/python benchmarks/bench_api.py [--questions 64] [--delay 0.1] [--concurrency 16]

Starts the local fake server (tests/fake_servers.py) in its own process on 127.0.0.1, runs the questions through
``runner.engine.run`` with the real openai SDK at concurrency 1 (the reference tool's way) and at ``--concurrency``,
each into a fresh output folder, and prints both wall times and the ratio. Targets: at least 10x, and within 1.5x
of the ideal (questions x delay / concurrency). Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.lean_server import start_in_process  # noqa: E402
from runner.core.settings import GenerationSettings, ModelEntry  # noqa: E402
from runner.core.store import atomic_write  # noqa: E402
from runner.engine import run  # noqa: E402 - after the path is set


def timed_run(workdir: Path, name: str, questions: Path, base_url: str, concurrency: int) -> float:
    """Wall seconds for one run into a fresh output folder; fails loudly if any answer failed."""
    start = time.perf_counter()
    report = run(questions, [ModelEntry(name="openai:bench-model", base_url=base_url)], ["general-physician"],
                 GenerationSettings(concurrency=concurrency, max_new_tokens=64), output_dir=workdir / name,
                 progress=False)
    seconds = time.perf_counter() - start
    answered = sum(s.answered for s in report.summaries)
    if report.exit_status != 0:
        raise SystemExit(f"run {name} failed: {[s.error for s in report.summaries]}")
    return seconds if answered else float("nan")


def store_write_seconds(workdir: Path, answers: int) -> float:
    """Seconds the store needs to write ``answers`` answers (two atomically renamed files each), no model."""
    folder = workdir / "store-only"
    start = time.perf_counter()
    for n in range(answers):
        atomic_write(folder / f"{n}.txt", "An answer of a few hundred characters. " * 8)
        atomic_write(folder / f"{n}.json", "{}" + " " * 1500)
    return time.perf_counter() - start


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--delay", type=float, default=0.1, help="server seconds per answer")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        questions = workdir / "questions.jsonl"
        questions.write_text("".join(f'{{"question": "Benchmark question {i}: what does drug {i} do?"}}\n'
                                     for i in range(args.questions)), encoding="utf-8")
        server, port = start_in_process(workdir, args.delay)
        base_url = f"http://127.0.0.1:{port}/v1"
        try:
            timed_run(workdir, "warm-up", questions, base_url, args.concurrency)  # imports, first connections
            serial = timed_run(workdir, "c1", questions, base_url, 1)
            concurrent = timed_run(workdir, f"c{args.concurrency}", questions, base_url, args.concurrency)
        finally:
            server.terminate()
            server.wait(timeout=10)
        writes = store_write_seconds(workdir, args.questions)
    ideal = args.questions * args.delay / args.concurrency
    ratio = serial / concurrent
    print(f"{args.questions} questions, server delay {args.delay * 1000:.0f} ms (benchmarks/lean_server.py, "
          f"its own process), every answer checked saved")
    print(f"concurrency 1:  {serial:6.2f} s   (ideal {args.questions * args.delay:.2f} s)")
    print(f"concurrency {args.concurrency}: {concurrent:6.2f} s   (ideal {ideal:.2f} s, "
          f"{concurrent / ideal:.2f}x the ideal; target <= 1.5x)")
    print(f"speed-up: {ratio:.1f}x (target >= 10x)")
    # Saving runs on the event loop: its time is wall time no concurrency can hide.
    print(f"of which saving {args.questions} answers alone takes {writes:.2f} s here (2 files each)")
    ok = ratio >= 10 and concurrent <= 1.5 * ideal
    print("targets met" if ok else "targets NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
