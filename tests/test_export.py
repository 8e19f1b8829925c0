"""``export``: every saved answer as one row of CSV, JSONL or Parquet, through the real command line."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from runner.core.store import Store
from runner.views.export import columns, export_rows
from runner.views.scores import collect_scores
from tests.conftest import write_jsonl
from tests.test_compare import run_cli

PRICES = (1.5, 4.0)  # fake:async-echo's prices in the config, USD per million input / output tokens


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two question sets: free-text answers of three models under two personas (one priced in a config file, one
    failing), and log-likelihood results of a multiple-choice set."""
    work = tmp_path_factory.mktemp("export")
    write_jsonl(work / "questions.jsonl", [
        {"id": "a", "question": "What are the symptoms of type 2 diabetes?"},
        {"id": "b", "question": "Which is a statin?", "options": {"A": "Atorvastatin", "B": "Insulin"},
         "answer": "A", "task": "demo"},
        {"id": "c", "question": "Pick the letter B.", "options": {"A": "no", "B": "yes"}, "answer": "B"},
    ])
    write_jsonl(work / "mcq.jsonl", [
        {"question": "Which is a statin?", "options": {"A": "Atorvastatin", "B": "Insulin"}, "answer": "A",
         "task": "medqa_4options"},
        {"question": "Which lowers glucose?", "options": {"A": "Warfarin", "B": "Metformin"}, "answer": "B",
         "task": "medqa_4options"},
    ])
    (work / "priced.toml").write_text(
        'questions = "questions.jsonl"\noutput_dir = "out"\npersonas = ["cardiologist"]\nmodels = [\n'
        f'  {{ name = "fake:async-echo", price_input_per_mtok = {PRICES[0]}, price_output_per_mtok = {PRICES[1]} }},'
        "\n]\n", encoding="utf-8")
    for command in (["run", "-q", "questions.jsonl", "-m", "fake:echo,fake:fail", "-p",
                     "cardiologist,general-physician", "-o", "out"],
                    ["run", "--config", "priced.toml"],
                    ["score", "--scoring", "loglik", "-q", "mcq.jsonl", "-m", "fake:echo", "-o", "out"]):
        proc = run_cli(*command, cwd=work)
        assert proc.returncode in (0, 1), proc.stderr  # fake:fail's answers fail: exit status 1
    return work


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return row["set"], row["label"], row["persona"], row["kind"], int(row["n"])


def _expected(out: Path) -> dict[tuple[Any, ...], dict[str, Any]]:
    """What each row must say, read from the records themselves and the scorer's choices."""
    snapshot = Store(out).snapshot()
    chosen = {(s.set_name, s.label, s.persona, item["n"]): item for s in collect_scores(snapshot.records)
              for item in s.items}
    expected = {}
    for r in snapshot.records:
        if r.kind == "embed":
            continue
        item = chosen.get((r.set_name, r.label, r.persona, r.n), {})
        expected[(r.set_name, r.label, r.persona, r.kind, r.n)] = {
            "question_id": r.question_id, "question": r.question, "model": r.model, "slug": r.slug,
            "persona": r.persona, "text": r.text, "error": r.error, "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens, "latency_s": r.latency_s, "finish_reason": r.finish_reason,
            "temperature": r.settings["temperature"], "max_new_tokens": r.settings["max_new_tokens"],
            "correct_answer": r.answer if r.multiple_choice else None, "chosen": item.get("chosen"),
            "chosen_norm": item.get("chosen_norm"), "run_id": r.run_id, "task": r.task,
            "correct": (item.get("chosen") == r.answer) if item else None,
        }
    return expected


def _read(path: Path, fmt: str) -> list[dict[str, Any]]:
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _as_csv(value: Any) -> str:
    return "" if value is None else str(value)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_round_trip_matches_the_records(store: Path, fmt: str) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    target = store / f"all.{fmt}"
    proc = run_cli("export", "--format", fmt, "--out", str(target), "-o", "out", cwd=store)
    assert proc.returncode == 0, proc.stderr
    rows = _read(target, fmt)
    expected = _expected(store / "out")
    assert f"Exported {len(expected)} answer(s) to {target}" in proc.stdout
    assert len(rows) == len(expected) and {_key(r) for r in rows} == set(expected)
    assert list(rows[0]) == columns()
    kinds = {r["kind"] for r in rows}
    assert kinds == {"generate", "loglik"}  # no embeddings: they are vectors, not answers
    for row in rows:
        want = expected[_key(row)]
        for column, value in want.items():
            got = row[column]
            if fmt == "csv":
                assert got == _as_csv(value), (column, row)
            else:
                assert got == value, (column, row)
    # The values as written, typed (JSONL and Parquet), equal what export_rows computes.
    if fmt != "csv":
        assert sorted(rows, key=_key) == sorted(export_rows(store / "out"), key=_key)
    assert not list(store.glob(".all.*.tmp"))  # written through a temporary file, renamed


def test_multiple_choice_loglik_and_failed_rows(store: Path) -> None:
    rows = {_key(r): r for r in export_rows(store / "out")}
    right = rows[("questions", "fake:echo", "cardiologist", "generate", 3)]
    assert right["correct_answer"] == "B" and right["chosen"] is None and right["correct"] is False  # an echo
    failed = rows[("questions", "fake:fail", "cardiologist", "generate", 2)]
    assert failed["error"] and failed["chosen"] is None and failed["correct"] is None
    assert failed["correct_answer"] == "A"
    plain = rows[("questions", "fake:echo", "general-physician", "generate", 1)]
    assert plain["correct_answer"] is plain["chosen"] is plain["correct"] is None
    loglik = [r for r in rows.values() if r["kind"] == "loglik"]
    assert len(loglik) == 2 and {r["persona"] for r in loglik} == {"loglik"} and {r["set"] for r in loglik} == {"mcq"}
    record = next(r for r in Store(store / "out").snapshot().records if r.kind == "loglik" and r.n == 2)
    row = rows[("mcq", "fake:echo", "loglik", "loglik", 2)]
    assert (row["chosen"], row["chosen_norm"]) == (record.loglik.acc_choice, record.loglik.acc_norm_choice)
    assert row["correct"] == (record.loglik.acc_choice == "B")
    assert row["correct_norm"] == (record.loglik.acc_norm_choice == "B")


def test_cost_from_the_configured_prices(store: Path) -> None:
    rows = export_rows(store / "out")
    priced = [r for r in rows if r["model"] == "fake:async-echo"]
    assert priced and all(r["cost_usd"] == pytest.approx(
        (r["prompt_tokens"] * PRICES[0] + r["completion_tokens"] * PRICES[1]) / 1e6) for r in priced)
    assert all(r["cost_usd"] is None for r in rows if r["model"] != "fake:async-echo")


def test_columns_by_name_and_prompt_columns(store: Path) -> None:
    proc = run_cli("export", "--prompts", "-o", "out", "--out", "-", cwd=store)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(proc.stdout.splitlines(keepends=True)))
    assert list(rows[0]) == columns(prompts=True) == [*columns(), "system_prompt", "user_message", "prompt_text"]
    for name in ("set", "n", "question_id", "task", "model", "alias", "slug", "tag", "persona", "kind",
                 "temperature", "top_p", "max_new_tokens", "seed", "prompt_tokens", "completion_tokens",
                 "latency_s", "cost_usd", "finish_reason", "error", "text", "correct_answer", "chosen", "correct"):
        assert name in rows[0]
    echo = next(r for r in rows if r["model"] == "fake:echo" and r["persona"] == "cardiologist" and r["n"] == "2")
    assert echo["system_prompt"].startswith("You are a consultant cardiologist")
    assert echo["user_message"].startswith("Which is a statin?\n\nA. Atorvastatin\nB. Insulin")
    loglik = next(r for r in rows if r["kind"] == "loglik")
    assert loglik["system_prompt"] == "" and loglik["prompt_text"].startswith("Question: ")  # the harness prompt


@pytest.mark.parametrize(("args", "check"), [
    (["-m", "fake:echo"], lambda r: r["model"] == "fake:echo"),
    (["--models", "echo"], lambda r: r["model"] == "fake:echo"),  # a slug
    (["-p", "general-physician"], lambda r: r["persona"] == "general-physician"),
    (["--set", "mcq"], lambda r: r["set"] == "mcq" and r["kind"] == "loglik"),
    (["-m", "fake:fail", "--persona", "cardiologist", "--set", "questions"],
     lambda r: (r["model"], r["persona"], r["set"]) == ("fake:fail", "cardiologist", "questions")),
])
def test_filters(store: Path, args: list[str], check: Any) -> None:
    proc = run_cli("export", "--format", "jsonl", "--out", "-", "-o", "out", *args, cwd=store)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    everything = export_rows(store / "out")
    assert rows and all(check(r) for r in rows)
    assert len(rows) == sum(1 for r in everything if check(r))


@pytest.mark.parametrize(("args", "message"), [
    (["-m", "gpt-4o"], "no saved answers from model 'gpt-4o'"),
    (["-p", "astrologer"], "no saved answers under persona 'astrologer'"),
    (["--set", "nosuch"], "no question set 'nosuch'"),
    (["--format", "parquet", "--out", "-"], "give --out FILE"),
    (["--format", "xlsx"], "invalid choice: 'xlsx'"),
])
def test_usage_errors_write_nothing(store: Path, args: list[str], message: str) -> None:
    before = sorted(p.name for p in (store / "out").iterdir())
    proc = run_cli("export", "-o", "out", *args, cwd=store)
    assert proc.returncode == 2 and message in proc.stderr
    assert sorted(p.name for p in (store / "out").iterdir()) == before


def test_default_path_is_in_the_output_folder_and_replaced_atomically(store: Path) -> None:
    target = store / "out" / "export.jsonl"
    for _ in range(2):
        proc = run_cli("export", "--format", "jsonl", "-o", "out", cwd=store)
        assert proc.returncode == 0 and f"to {Path('out') / 'export.jsonl'}" in proc.stdout
    assert len(target.read_text(encoding="utf-8").splitlines()) == len(export_rows(store / "out"))
    assert not [p for p in (store / "out").iterdir() if p.name.endswith(".tmp")]
    target.unlink()


def test_parquet_without_pyarrow_says_how_to_get_it(store: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    target = store / "none.parquet"
    assert main(["export", "--format", "parquet", "-o", str(store / "out"), "--out", str(target)]) == 2
    assert "pip install pyarrow" in capsys.readouterr().err and not target.exists()


def test_no_answers_is_a_usage_error(cli, tmp_path: Path) -> None:
    proc = cli("export", "-o", "missing")
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_csv_cells_that_look_like_formulas_open_as_text() -> None:
    import csv
    import io

    from runner.views.export import render

    rows = [{"text": '=HYPERLINK("http://x","click")', "question": "-1 or +1?", "n": 1, "latency_s": -0.5}]
    (row,) = csv.DictReader(io.StringIO(render(rows, "csv").decode("utf-8")))
    assert row["text"] == '\'=HYPERLINK("http://x","click")' and row["question"] == "'-1 or +1?"
    assert row["n"] == "1" and row["latency_s"] == "-0.5"  # numbers are left alone
    assert json.loads(render(rows, "jsonl"))["text"].startswith("=")  # JSONL keeps the value as saved
