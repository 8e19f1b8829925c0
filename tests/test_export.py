"""``export``: every saved answer as one row of CSV, JSONL or Parquet, through the real command line."""

from __future__ import annotations

import csv
import json
import shutil
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
    import io

    from runner.views.export import write_csv, write_jsonl

    values = {"text": '=HYPERLINK("http://x","click")', "question": "-1 or +1?", "n": 1, "latency_s": -0.5}
    rows = [tuple(values.get(name) for name in columns())]
    written = io.BytesIO()
    write_csv(rows, written)
    (row,) = csv.DictReader(io.StringIO(written.getvalue().decode("utf-8")))
    assert row["text"] == '\'=HYPERLINK("http://x","click")' and row["question"] == "'-1 or +1?"
    assert row["n"] == "1" and row["latency_s"] == "-0.5"  # numbers are left alone
    written = io.BytesIO()
    write_jsonl(rows, written)
    assert json.loads(written.getvalue())["text"].startswith("=")  # JSONL keeps the value as saved


# -- the export before it read the store as a stream: the reference its files must equal, byte for byte ---------

def _former_rows(out: Path, models: list[str] | None, personas: list[str] | None, question_set: str | None,
                 prompts: bool) -> list[dict[str, Any]]:
    """The rows as the former export made them: a snapshot holding every record, ``select_records``, each letter
    extracted from its answer, the records sorted, one dict per row."""
    from runner.providers.catalog import cost_usd
    from runner.views.answers import select_records, sent_user_message
    from runner.views.report import price_table
    from runner.views.scores import record_choice

    snapshot = Store(out).snapshot()
    records = [r for r in snapshot.records_of(question_set) if r.kind in ("generate", "loglik")]
    records = select_records(records, models, personas, snapshot.root)
    prices = price_table(snapshot.manifests)
    rows = []
    for r in sorted(records, key=lambda r: (r.set_name or "", r.label, r.persona or "", r.kind, r.n)):
        settings = r.settings or {}
        row: dict[str, Any] = dict.fromkeys(columns(prompts))
        row.update({
            "set": r.set_name, "n": r.n, "question_id": r.question_id, "task": r.task, "question": r.question,
            "model": r.model_name, "alias": r.alias, "slug": r.slug, "tag": r.tag, "label": r.label,
            "provider": r.provider, "persona": r.persona, "kind": r.kind, "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens, "latency_s": r.latency_s, "finish_reason": r.finish_reason,
            "error": r.error, "attempts": r.attempts, "text": r.text, "time": r.time, "run_id": r.run_id,
            "reasoning_tokens": r.reasoning_tokens, "reasoning": r.reasoning,
        })
        row.update({name: settings.get(name) for name in ("temperature", "top_p", "max_new_tokens", "seed")})
        if r.multiple_choice and r.ok:
            chosen, chosen_norm = record_choice(r)
            row.update(correct_answer=r.answer, chosen=chosen, correct=chosen == r.answer)
            if r.kind == "loglik":
                row.update(chosen_norm=chosen_norm, correct_norm=chosen_norm == r.answer)
        elif r.multiple_choice:
            row["correct_answer"] = r.answer
        if prompts:
            user = r.user_message
            if user is None and r.kind == "generate" and r.question:
                user = sent_user_message(r)
            row.update(system_prompt=r.persona_text if r.kind == "generate" else None, user_message=user,
                       prompt_text=r.prompt_text or (r.loglik.prompt if r.loglik else None))
        price = prices.get(r.model_name) or (prices.get(r.alias) if r.alias else None)
        if price and (r.prompt_tokens is not None or r.completion_tokens is not None):
            row["cost_usd"] = cost_usd(r.prompt_tokens or 0, r.completion_tokens or 0, price)
        rows.append(row)
    return rows


def _former_bytes(rows: list[dict[str, Any]], fmt: str, prompts: bool) -> bytes:
    """The former ``render``: the whole file built in memory."""
    import io

    from runner.views.export import PROMPT_COLUMNS, spreadsheet_safe

    if fmt == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8", "backslashreplace")
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns(prompts))
        writer.writeheader()
        writer.writerows({k: spreadsheet_safe(v) for k, v in row.items()} for row in rows)
        return buffer.getvalue().encode("utf-8", "backslashreplace")
    import pyarrow as pa
    import pyarrow.parquet as pq

    from runner.views.export import COLUMNS

    types = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    spec = (*COLUMNS, *(PROMPT_COLUMNS if prompts else ()))
    schema = pa.schema([(name, types[kind]) for name, kind in spec])
    table = pa.table({name: pa.array([row[name] for row in rows], type=types[kind]) for name, kind in spec},
                     schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


@pytest.fixture(scope="module")
def varied(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store's answers, plus what the order and the encodings must get right: a second folder of fake:echo's
    answers (the same label, persona, kind and numbers: ties the sort keeps in reading order, told apart by their
    text) and an answer whose text looks like a formula, holds quotes, a line break, UTF-8 and a lone surrogate."""
    out = tmp_path_factory.mktemp("varied") / "out"
    shutil.copytree(store / "out", out)
    (out / "index.db").unlink(missing_ok=True)
    answers = out / "questions" / "cardiologist"
    shutil.copytree(answers / "echo", answers / "echo-copy")
    for path in (answers / "echo-copy").glob("*.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps({**record, "text": f"copy of {record['text']}"}), encoding="utf-8")
    odd = out / "questions" / "general-physician" / "echo" / "1.json"
    record = json.loads(odd.read_text(encoding="utf-8"))
    odd.write_text(json.dumps({**record, "text": '=SUM(A1) "caf\u00e9",\r\nthen \ud800 and \u2603'}),
                   encoding="utf-8")
    return out


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("args", [[], ["--prompts"], ["-m", "fake:echo", "-p", "cardiologist"],
                                  ["--set", "questions", "-m", "echo,fake:fail"]])
def test_the_streamed_file_is_the_former_file_byte_for_byte(varied: Path, tmp_path: Path, fmt: str,
                                                             args: list[str]) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
        if "-p" not in args:  # the former code could not write the lone surrogate (general-physician's) to Parquet
            args = [*args, "-p", "cardiologist"]
    target = tmp_path / f"export.{fmt}"
    assert main(["export", "-o", str(varied), "--format", fmt, "--out", str(target), *args]) == 0
    models = next((a.split(",") for i, a in enumerate(args) if i and args[i - 1] == "-m"), None)
    personas = next((a.split(",") for i, a in enumerate(args) if i and args[i - 1] == "-p"), None)
    question_set = "questions" if "--set" in args else None
    former = _former_rows(varied, models, personas, question_set, "--prompts" in args)
    assert target.read_bytes() == _former_bytes(former, fmt, "--prompts" in args)
    tied = [r["text"].startswith("copy of ") for r in former
            if (r["set"], r["label"], r["persona"], r["kind"], r["n"]) == ("questions", "fake:echo", "cardiologist",
                                                                          "generate", 1)]
    assert tied == [False, True]  # a tie: the folder read first (echo, then echo-copy) comes first, as before
    assert export_rows(varied, models, personas, question_set, prompts="--prompts" in args) == former


def test_parquet_writes_a_lone_surrogate_as_its_escape(varied: Path, tmp_path: Path) -> None:
    """Parquet (UTF-8 only) cannot hold a lone surrogate: the text keeps it as ``\ud800``, as CSV and JSONL write
    it, instead of a traceback."""
    pq = pytest.importorskip("pyarrow.parquet")
    target = tmp_path / "export.parquet"
    assert main(["export", "-o", str(varied), "--format", "parquet", "--out", str(target)]) == 0
    texts = pq.read_table(target).column("text").to_pylist()
    assert '=SUM(A1) "caf\u00e9",\r\nthen \\ud800 and \u2603' in texts
    csv_target = tmp_path / "export.csv"
    assert main(["export", "-o", str(varied), "--out", str(csv_target)]) == 0
    assert "then \\ud800 and" in csv_target.read_text(encoding="utf-8")


def test_standard_output_is_the_file(varied: Path, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
                                     ) -> None:
    target = tmp_path / "export.jsonl"
    assert main(["export", "-o", str(varied), "--format", "jsonl", "--out", str(target)]) == 0
    capsysbinary.readouterr()
    assert main(["export", "-o", str(varied), "--format", "jsonl", "--out", "-"]) == 0
    assert capsysbinary.readouterr().out == target.read_bytes()


def test_the_export_reads_each_record_once_and_never_holds_them_all(
        varied: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The records are read as they come (``Store.iter_records``), each file once, and no snapshot holding every
    record is taken: at the end of the read, no more than the last record is alive."""
    from tests.conftest import watch_streaming

    out = tmp_path / "out"
    shutil.copytree(varied, out)
    (out / "index.db").unlink(missing_ok=True)  # built again: the index's check reads the files too
    files = sorted(p for p in out.rglob("*.json") if p.stem.isdigit() and "runs" not in p.parts)
    parsed, alive_after = watch_streaming(monkeypatch, "export")
    assert main(["export", "-o", str(out), "--out", str(tmp_path / "export.csv")]) == 0
    assert len(files) >= 20 and sorted(parsed) == files  # every record file once, none twice
    assert alive_after == [alive_after[0]] and alive_after[0] <= 1, alive_after  # one read, at most 1 record kept


def test_a_letter_the_index_holds_is_not_extracted_again(varied: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.core.index import Index
    from tests.test_index import _count_extractions

    out = tmp_path / "out"
    shutil.copytree(varied, out)
    (out / "index.db").unlink(missing_ok=True)
    Index.forget_all()
    extracted = _count_extractions(monkeypatch)
    files = [tmp_path / "first.csv", tmp_path / "second.csv"]
    assert main(["export", "-o", str(out), "--out", str(files[0])]) == 0
    choosing = [r for r in export_rows(out) if r["kind"] == "generate" and r["correct_answer"] and not r["error"]]
    assert len(extracted) >= len(choosing) > 0  # an index without letters: each extracted once, then kept
    Index.forget_all()  # as a new process
    extracted.clear()
    assert main(["export", "-o", str(out), "--out", str(files[1])]) == 0
    assert extracted == [] and files[0].read_bytes() == files[1].read_bytes()
