"""Large evaluations (issue 18): a store of 50,000 multiple-choice questions x 3 personas (150,000 answers).

    .venv/bin/python benchmarks/bench_scale.py                        # 50,000 questions, every step, then the API
    .venv/bin/python benchmarks/bench_scale.py --questions 5000 --skip-api
    .venv/bin/python benchmarks/bench_scale.py --keep /tmp/scale      # keep the store (and reuse it next time)

Builds the questions file, then runs each command as a user would (``python medical_model_runner.py ...``, its own
process, timed from outside with its peak resident memory from ``os.wait4``):

1. the first run (``fake:echo``, three personas: every answer written, with the store's index);
2. the no-op re-run (everything saved: nothing asked);
3. ``compare N`` (one question of the 50,000);
4. ``report`` (written), then its first page opened in headless Chromium (``--dump-dom``, so the page is parsed and
   its scripts run) when ``chromium`` is installed;
5. ``score``, then ``export`` (CSV);
6. with the index deleted: the no-op re-run again (the index rebuilt from the files); with it deleted again,
   ``score`` (the index rebuilt by a view, every letter extracted), then ``score`` once more;

and prints each figure beside its target; then what the index costs a first run (the first 10,000 questions into
fresh folders with and without it, alternating, three pairs: a single pair favours whichever runs second). Then the
API path at 16/64/256 requests in flight against a local server
answering after 200 ms, beside a bare async HTTP client on the same server (``bench_api.levels_main``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PERSONAS = "medical-exam,general-physician,cardiologist"
MB = 1024  # ru_maxrss is in KiB on Linux


def write_questions(path: Path, count: int) -> Path:
    """``count`` four-option questions, their right letters spread over A-D."""
    with path.open("w", encoding="utf-8") as fh:
        for i in range(count):
            fh.write(json.dumps({
                "question": f"A {30 + i % 50}-year-old patient presents with symptom {i}. Which drug is first line?",
                "options": {"A": f"Drug alpha {i}", "B": f"Drug beta {i}", "C": f"Drug gamma {i}",
                            "D": f"Drug delta {i}"},
                "answer": "ABCD"[i % 4]}) + "\n")
    return path


def letters_cost(out: Path, first_run: float | None) -> str:
    """What reading each answer's letter as it is saved (``saved_choice``, for the index) costs the first run: the
    same calls over every saved record, timed in this process."""
    from runner.tasks.letters import saved_choice

    records = [json.loads(p.read_bytes()) for p in sorted(out.glob("*/*/*/*.json")) if p.stem.isdigit()]
    start = time.perf_counter()
    for record in records:
        saved_choice(record)
    seconds = time.perf_counter() - start
    share = f" ({100 * seconds / first_run:.1f}% of the first run)" if first_run else ""
    return f"letters read as answers are saved: {seconds:.2f} s for {len(records):,} records{share}"


def timed(command: list[str], cwd: Path) -> tuple[float, float, int, str]:
    """Wall seconds, peak resident MB, exit status and the last line of output of one command (its own process)."""
    env = {**os.environ, "NO_PROGRESS": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    last = next((line for line in reversed(output.splitlines()) if line.strip()), "")
    return seconds, usage.ru_maxrss / MB, proc.returncode, last


def runner(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "medical_model_runner.py"), *args]


def chromium_open(path: Path, timeout: float) -> tuple[float, float, int, str] | None:
    """Headless Chromium parsing ``path`` (scripts run; the DOM printed): wall seconds, or None without Chromium."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        return None
    command = ["timeout", str(int(timeout)), browser, "--headless", "--disable-gpu", "--no-sandbox",
               "--user-data-dir=" + tempfile.mkdtemp(prefix="bench-chromium-"), "--dump-dom", path.as_uri()]
    return timed(command, path.parent)


def index_ab(workdir: Path, questions: Path, count: int, pairs: int) -> None:
    """What the index costs a first run: the first ``count`` questions into fresh folders with the index and
    without it (``index.db`` made a folder, so it cannot be created), alternating, ``pairs`` times each."""
    sample = workdir / f"ab{count}.jsonl"
    with questions.open(encoding="utf-8") as src, sample.open("w", encoding="utf-8") as dst:
        for _, line in zip(range(count), src, strict=False):
            dst.write(line)
    seconds: dict[str, list[float]] = {"with the index": [], "without": []}
    for pair in range(pairs):
        for side in (list(seconds) if pair % 2 == 0 else list(reversed(seconds))):  # either side goes first
            out = workdir / f"ab-{pair}-{'without' if side == 'without' else 'with'}"
            shutil.rmtree(out, ignore_errors=True)
            if side == "without":
                (out / "index.db").mkdir(parents=True)
            command = runner("run", "-q", str(sample), "-m", "fake:echo", "-p", PERSONAS, "-o", str(out),
                             "--no-progress")
            os.sync()  # the previous run's files written out first: the kernel's write-back is no one's cost
            seconds[side].append(timed(command, workdir)[0])
            shutil.rmtree(out, ignore_errors=True)
    low = {side: min(values) for side, values in seconds.items()}
    spans = "; ".join(f"{side} {min(v):.2f}-{max(v):.2f} s" for side, v in seconds.items())
    print(f"first run of {count:,} questions x {len(PERSONAS.split(','))} personas, {pairs} alternating pairs: "
          f"{spans}; the index adds {low['with the index'] / low['without'] - 1:+.0%} (best of each; "
          "target <= +10%)")


def main() -> int:
    """Build the store, time each command, print the figures against the targets."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=50_000)
    parser.add_argument("--compare", type=int, default=17, help="the question compare shows")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (a store already there is reused "
                        "for the views, and its first run is not timed)")
    parser.add_argument("--skip-api", action="store_true", help="leave out the API levels")
    parser.add_argument("--skip-index-ab", action="store_true", help="leave out what the index costs a first run")
    parser.add_argument("--ab-questions", type=int, default=10_000, help="questions of each first run of the A/B")
    parser.add_argument("--ab-pairs", type=int, default=3, help="alternating pairs of the A/B")
    parser.add_argument("--api-repeats", type=int, default=2)
    args = parser.parse_args()

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    questions = workdir / f"mc{args.questions}.jsonl"
    out = workdir / "out"
    reused = args.keep is not None and questions.exists() and out.is_dir()
    if not reused:
        write_questions(questions, args.questions)
        shutil.rmtree(out, ignore_errors=True)
    run = runner("run", "-q", str(questions), "-m", "fake:echo", "-p", PERSONAS, "-o", str(out), "--no-progress")
    rows: list[tuple[str, tuple[float, float, int, str], str]] = []
    first = None
    if not reused:
        first = timed(run, workdir)
        rows.append(("first run", first, ""))

    noop = timed(run, workdir)
    rows.append(("no-op re-run", noop, f"< 10% of the first run ({0.1 * first[0]:.1f} s)" if first else "< 10%"))
    rows.append((f"compare {args.compare}", timed(runner("compare", str(args.compare), "-o", str(out)), workdir),
                 "< 1 s"))
    report = timed(runner("report", "-o", str(out)), workdir)
    rows.append(("report (write)", report, "< 15 s"))
    opened = chromium_open(out / "report.html", 120)
    if opened is not None:
        rows.append(("report (open, Chromium)", opened, "< 10 s"))
    score = runner("score", "-o", str(out), "--no-progress")
    rows.append(("score", timed(score, workdir), "< 15 s"))
    rows.append(("export (csv)", timed(runner("export", "-o", str(out), "--out", str(workdir / "export.csv")),
                                       workdir), "< 500 MB"))
    (out / "index.db").unlink(missing_ok=True)
    rows.append(("no-op re-run, no index", timed(run, workdir), "(rebuilds the index)"))
    (out / "index.db").unlink(missing_ok=True)
    rows.append(("score, no index", timed(score, workdir), "(rebuilds it; extracts every letter)"))
    rows.append(("score, again", timed(score, workdir), "< 15 s"))

    answers = args.questions * len(PERSONAS.split(","))
    print(f"{args.questions:,} questions x {len(PERSONAS.split(','))} personas = {answers:,} answers (fake:echo) "
          f"in {out}; each command in its own process")
    print(f"{'step':<26} {'seconds':>8} {'peak MB':>8} {'exit':>5}  target")
    for name, (seconds, peak, status, _), target in rows:
        memory = "" if peak < 500 else " (peak >= 500 MB)"
        print(f"{name:<26} {seconds:>8.2f} {peak:>8.0f} {status:>5}  {target}{memory}")
    report_files = [out / "report.html", *sorted((out / "report_pages").glob("*.html"))] \
        if (out / "report_pages").is_dir() else [out / "report.html"]
    size = sum(p.stat().st_size for p in report_files if p.exists())
    print(f"report: {len(report_files)} file(s), {size / 1e6:.1f} MB in all; index.db "
          f"{(out / 'index.db').stat().st_size / 1e6:.1f} MB" if (out / "index.db").exists() else "")
    print(letters_cost(out, first[0] if first else None))
    if not args.skip_index_ab:
        index_ab(workdir, questions, args.ab_questions, args.ab_pairs)
    failed = [name for name, (_, _, status, _), _ in rows if status != 0]
    if failed:
        print("commands that failed: " + ", ".join(failed))
    if not args.skip_api:
        print()
        from benchmarks.bench_api import levels_main

        levels_main([16, 64, 256], 0.2, args.api_repeats)
    if args.keep is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
