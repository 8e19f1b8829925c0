"""Grading benchmark: 100 saved answers x 10 rubric items graded by a judge server that answers in 100 ms.

    .venv/bin/python benchmarks/bench_grade.py [--answers 100] [--items 10] [--delay 0.1] [--concurrency 32]

Answers the questions with ``fake:echo`` (no model), starts ``benchmarks/lean_server.py`` in its own process on
127.0.0.1 replying with a HealthBench verdict, then runs the ``grade`` command's engine path (one judge call per
rubric item, through the real openai SDK) and prints the wall time beside the ideal (answers x items x delay /
concurrency). Target: within 1.5x of the ideal. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.lean_server import start_in_process  # noqa: E402
from runner.cli import main as cli  # noqa: E402 - after the path is set

VERDICT = json.dumps({"explanation": "The response meets the criterion.", "criteria_met": True})


def main() -> int:
    """Answer, grade, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=100)
    parser.add_argument("--items", type=int, default=10)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        rubric = [{"criterion": f"Criterion {i} of the answer", "points": 5 - i, "tags": [f"axis:a{i % 3}"]}
                  for i in range(args.items)]
        questions = workdir / "open.jsonl"
        questions.write_text("".join(json.dumps({"question": f"Open question {n}?", "rubrics": rubric}) + "\n"
                                     for n in range(args.answers)), encoding="utf-8")
        out = workdir / "out"
        os.environ["NO_PROGRESS"] = "1"
        if cli(["run", "-q", str(questions), "-m", "fake:echo", "-o", str(out)]) != 0:
            raise SystemExit("answering failed")
        server, port = start_in_process(workdir, args.delay, VERDICT)
        os.environ.update(OPENAI_API_KEY="sk-bench", OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1")
        try:
            start = time.perf_counter()
            status = cli(["grade", "-j", "openai:bench-judge", "-o", str(out), "--concurrency",
                          str(args.concurrency), "--bootstrap", "1000"])
            seconds = time.perf_counter() - start
        finally:
            server.terminate()
            server.wait(timeout=10)
        if status != 0:
            raise SystemExit(f"grade failed (exit status {status})")
    calls = args.answers * args.items
    ideal = calls * args.delay / args.concurrency
    print(f"\ngraded {args.answers} answers x {args.items} rubric items = {calls} judge calls, "
          f"{args.delay * 1000:.0f} ms each, concurrency {args.concurrency}")
    print(f"wall {seconds:.2f} s (the whole command, aggregation and outputs included); ideal {ideal:.2f} s; "
          f"ratio {seconds / ideal:.2f}x (target <= 1.5x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
