"""API concurrency benchmark: 64 questions through an OpenAI-compatible server that answers after 100 ms.

    .venv/bin/python benchmarks/bench_api.py [--questions 64] [--delay 0.1] [--concurrency 16]
    .venv/bin/python benchmarks/bench_api.py --levels 16,64,256 [--delay 0.2] [--repeats 2] [--questions N]

Starts the local fake server (tests/fake_servers.py) in its own process on 127.0.0.1, runs the questions through
``runner.engine.run`` with the real openai SDK at concurrency 1 (the reference tool's way) and at ``--concurrency``,
each into a fresh output folder, and prints both wall times and the ratio. Targets: at least 10x, and within 1.5x
of the ideal (questions x delay / concurrency). Nothing leaves the machine.

``--levels`` (issue 18): at each number of requests in flight, 4x that many questions (at least 256; or
``--questions`` at every level) through the runner against a server answering after 200 ms (or ``--delay``), and
the same chat-completions bodies posted by a bare async HTTP client (``httpx.AsyncClient`` with the same connection
limits, reading only the JSON), alternating, ``--repeats`` times each; prints the min-max wall times, requests/s,
runner/bare, and whether each level is not slower (in requests/s) than the one below it. Targets: within 1.5x of
the bare client at 64 in flight; 256 in flight not slower than 64.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.lean_server import start_in_process  # noqa: E402
from runner.core.personas import resolve_persona  # noqa: E402
from runner.core.settings import GenerationSettings, ModelEntry  # noqa: E402
from runner.core.store import atomic_write  # noqa: E402
from runner.engine import run  # noqa: E402 - after the path is set

PERSONA = "general-physician"
MAX_NEW_TOKENS = 64


def question_text(i: int) -> str:
    return f"Benchmark question {i}: what does drug {i} do?"


def write_questions(path: Path, count: int) -> Path:
    path.write_text("".join(f'{{"question": "{question_text(i)}"}}\n' for i in range(count)), encoding="utf-8")
    return path


def timed_run(workdir: Path, name: str, questions: Path, base_url: str, concurrency: int) -> float:
    """Wall seconds for one run into a fresh output folder; fails loudly if any answer failed."""
    start = time.perf_counter()
    report = run(questions, [ModelEntry(name="openai:bench-model", base_url=base_url)], [PERSONA],
                 GenerationSettings(concurrency=concurrency, max_new_tokens=MAX_NEW_TOKENS),
                 output_dir=workdir / name, progress=False)
    seconds = time.perf_counter() - start
    answered = sum(s.answered for s in report.summaries)
    if report.exit_status != 0:
        raise SystemExit(f"run {name} failed: {[s.error for s in report.summaries]}")
    return seconds if answered else float("nan")


def bare_run(base_url: str, count: int, concurrency: int) -> float:
    """Wall seconds for a bare async HTTP client posting the runner's chat-completions bodies for ``count``
    questions, ``concurrency`` at a time over as many connections, reading only each reply's JSON."""
    import httpx2 as httpx

    system = resolve_persona(PERSONA).text

    async def main() -> None:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        slots = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:

            async def one(i: int) -> None:
                body = {"model": "bench-model", "messages": [{"role": "system", "content": system},
                                                             {"role": "user", "content": question_text(i)}],
                        "max_completion_tokens": MAX_NEW_TOKENS, "temperature": 0.0}
                async with slots:
                    reply = await client.post("/chat/completions", json=body,
                                              headers={"Authorization": "Bearer not-needed"})
                    reply.raise_for_status()
                    if not reply.json()["choices"][0]["message"]["content"]:
                        raise SystemExit("the bare client got an empty answer")

            await asyncio.gather(*(one(i) for i in range(count)))

    start = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - start


def span(values: list[float], fmt: str = "{:.2f}") -> str:
    low, high = min(values), max(values)
    return fmt.format(low) if fmt.format(low) == fmt.format(high) else f"{fmt.format(low)}-{fmt.format(high)}"


def levels_main(levels: list[int], delay: float, repeats: int, questions: int | None = None) -> int:
    """The runner against a bare async HTTP client at each level of requests in flight (issue 18); ``questions``
    at every level when given, else 4x the level (at least 256)."""
    runner: dict[int, list[float]] = {n: [] for n in levels}
    bare: dict[int, list[float]] = {n: [] for n in levels}
    counts = {n: questions or max(256, 4 * n) for n in levels}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        files = {n: write_questions(workdir / f"questions-{n}.jsonl", counts[n]) for n in levels}
        server, port = start_in_process(workdir, delay)
        base_url = f"http://127.0.0.1:{port}/v1"
        try:
            timed_run(workdir, "warm-up", files[levels[0]], base_url, levels[0])  # imports, first connections
            bare_run(base_url, counts[levels[0]], levels[0])
            for r in range(repeats):
                for n in levels:  # alternating, so background load falls on both sides
                    runner[n].append(timed_run(workdir, f"c{n}-{r}", files[n], base_url, n))
                    bare[n].append(bare_run(base_url, counts[n], n))
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"server delay {delay * 1000:.0f} ms (benchmarks/lean_server.py, its own process); "
          f"{repeats} runs each side, alternating; min-max")
    print(f"{'in flight':>9} {'questions':>9} {'ideal s':>8} {'runner s':>12} {'runner req/s':>13} "
          f"{'bare s':>12} {'bare req/s':>12} {'runner/bare':>12}")
    ratios: dict[int, list[float]] = {}
    for n in levels:
        ratios[n] = [a / b for a, b in zip(runner[n], bare[n], strict=True)]
        print(f"{n:>9} {counts[n]:>9} {counts[n] * delay / n:>8.2f} {span(runner[n]):>12} "
              f"{span([counts[n] / s for s in runner[n]], '{:.0f}'):>13} {span(bare[n]):>12} "
              f"{span([counts[n] / s for s in bare[n]], '{:.0f}'):>12} {span(ratios[n]) + 'x':>12}")
    ok = True
    if 64 in ratios:
        met = max(ratios[64]) <= 1.5
        ok &= met
        print(f"64 in flight: runner {span(ratios[64])}x the bare client "
              f"(target <= 1.5x: {'met' if met else 'NOT met'})")
    ordered = sorted(levels)
    for low, high in itertools.pairwise(ordered):
        # Per request: a level with 4x the questions is not slower when its requests/s are at least as high.
        rate_low = [counts[low] / s for s in runner[low]]
        rate_high = [counts[high] / s for s in runner[high]]
        met = min(rate_high) >= max(rate_low) * 0.95
        print(f"{high} in flight vs {low}: runner {span(rate_high, '{:.0f}')} vs {span(rate_low, '{:.0f}')} "
              f"requests/s ({'not slower' if met else 'SLOWER'})")
        if (low, high) == (64, 256):
            ok &= met
    print("targets met" if ok else "targets NOT met")
    return 0 if ok else 1


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
    parser.add_argument("--levels", help="requests in flight to compare with a bare client, e.g. 16,64,256")
    parser.add_argument("--repeats", type=int, default=2, help="--levels: runs of each side at each level")
    args = parser.parse_args()
    if args.levels:
        given = {a.split("=")[0] for a in sys.argv[1:]}
        delay = args.delay if "--delay" in given else 0.2
        return levels_main([int(n) for n in args.levels.split(",")], delay, args.repeats,
                           args.questions if "--questions" in given else None)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        questions = write_questions(workdir / "questions.jsonl", args.questions)
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
