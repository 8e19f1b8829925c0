"""``compare``: saved answers side by side in the terminal, through the real command line and the Python API."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import wcwidth

from runner.core.errors import UsageError
from runner.views.answers import Answer, QuestionAnswers, answers_table, question_answers
from runner.views.terminal import render_question, sanitize, use_color, wrap
from tests.conftest import REPO, write_jsonl

MODELS = "fake:echo,fake:async-echo,fake:fail"
PERSONAS = "cardiologist,general-physician"
WIDE_TEXT = ("A β-blocker such as metoprolol 💊 slows the heart; 胰岛素 (insulin) lowers glucose. 👩‍⚕️ "
             "Pneumonoultramicroscopicsilicovolcanoconiosis is a long word.\n\nSecond paragraph: ✓ done.")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command line in a subprocess (like the ``cli`` fixture, usable from module-scoped fixtures)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update({"NO_PROGRESS": "1", "PYTHONPATH": str(REPO)})
    env.pop("NO_COLOR", None)
    return subprocess.run([sys.executable, str(REPO / "medical_model_runner.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def add_record(out: Path, persona: str, slug: str, n: int, **fields: object) -> dict:
    """Save a record beside the CLI's, copied from fake:echo's answer to the same question (then changed)."""
    record = json.loads((out / persona / "echo" / f"{n}.json").read_text(encoding="utf-8"))
    record.update({"slug": slug, "model": f"fake:{slug}", "model_id": slug, **fields})
    folder = out / persona / slug
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{n}.json").write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    return record


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Answers from three fake models under two personas, plus one answer in wide and non-ASCII text."""
    base = tmp_path_factory.mktemp("compare")
    questions = write_jsonl(base / "questions.jsonl", [
        {"id": "a", "question": "What are the symptoms of type 2 diabetes?"},
        {"id": "b", "question": "How does metformin work?"},
        {"id": "c", "question": "Which is a statin?", "options": {"A": "Atorvastatin", "B": "Insulin"}, "answer": "A"},
    ])
    done = run_cli("run", "--questions", str(questions), "--models", MODELS, "--persona", PERSONAS,
                   "--output-dir", "out", cwd=base)
    assert done.returncode == 1, done.stderr  # fake:fail fails every answer; the rest are saved
    add_record(base / "out" / "questions", "cardiologist", "wide", 1, text=WIDE_TEXT + " \x1b[31mred\x1b[0m\x07")
    return base / "out"


def widths(text: str) -> list[int]:
    return [wcwidth.width(line) for line in text.splitlines()]


@pytest.mark.parametrize("width", [40, 72, 100, 160])
def test_compare_fits_the_width_and_shows_every_answer(store: Path, width: int) -> None:
    done = run_cli("compare", "1", "--output-dir", str(store), "--width", str(width), cwd=store.parent)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert max(widths(out)) <= width
    assert "\x1b" not in out  # a pipe gets no colour codes, and the answer's own escape codes are gone
    assert "\x07" not in out
    assert "What are the symptoms of type 2 diabetes?" in " ".join(out.split())
    for label in ("fake:echo", "fake:async-echo", "fake:fail", "fake:wide", "cardiologist", "general-physician"):
        assert label in out
    assert "FAILED: fake failure" in out and "always" in out
    assert "in /" in out and " s" in out  # tokens and latency
    flat = "".join(out.split())
    for piece in ("β-blocker", "胰岛素", "💊", "👩‍⚕️", "✓done."):
        assert piece in flat.replace("│", ""), piece


def test_stacked_shows_each_answer_whole(store: Path) -> None:
    done = run_cli("compare", "1", "--output-dir", str(store), "--stacked", "--width", "200", cwd=store.parent)
    assert "FAILED: fake failure (fake:fail always fails)" in done.stdout
    assert "[persona " in done.stdout and "You asked: What are the symptoms of type 2 diabetes?" in done.stdout


def test_side_by_side_when_wide_and_stacked_when_narrow_or_asked(store: Path) -> None:
    wide = run_cli("compare", "2", "--output-dir", str(store), "--width", "120", cwd=store.parent).stdout
    header = next(line for line in wide.splitlines() if "fake:echo" in line)
    assert "fake:async-echo" in header and "│" in header  # columns
    for args in (["--width", "40"], ["--width", "120", "--stacked"]):
        out = run_cli("compare", "2", "--output-dir", str(store), *args, cwd=store.parent).stdout
        assert "│" not in out
        assert any(line.strip() == "fake:echo" for line in out.splitlines())


def test_one_model_across_personas_puts_personas_in_columns(store: Path) -> None:
    done = run_cli("compare", "2", "--output-dir", str(store), "--models", "fake:echo", "--persona", PERSONAS,
                   "--width", "100", cwd=store.parent)
    assert done.returncode == 0, done.stderr
    first = done.stdout.split("═" * 100)[1].strip().splitlines()[0]
    assert "cardiologist" in first and "general-physician" in first and "async" not in done.stdout


def test_filters_and_multiple_choice_options(store: Path) -> None:
    done = run_cli("compare", "3", "--output-dir", str(store), "--models", "echo", "--persona", "cardiologist",
                   "--width", "80", cwd=store.parent)
    assert done.returncode == 0, done.stderr
    assert "A. Atorvastatin  ✓" in done.stdout and "B. Insulin" in done.stdout
    assert "general-physician" not in done.stdout and "fake:fail" not in done.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["compare", "9"], "question 9 has no saved answers"),
    (["compare", "1", "--models", "gpt-4o"], "no saved answers from model 'gpt-4o'"),
    (["compare", "1", "--persona", "oncology-researcher"], "no saved answers under persona 'oncology-researcher'"),
    (["compare", "0"], "question numbers start at 1"),
])
def test_bad_question_or_filter_is_a_usage_error(store: Path, args: list[str], message: str) -> None:
    done = run_cli(*args, "--output-dir", str(store), cwd=store.parent)
    assert done.returncode == 2
    assert message in done.stderr


def test_missing_or_empty_output_folder(cli, tmp_path: Path) -> None:
    missing = cli("compare", "1", "--output-dir", "nowhere")
    assert missing.returncode == 2 and "output folder nowhere does not exist" in missing.stderr
    (tmp_path / "empty" / "runs").mkdir(parents=True)
    empty = cli("compare", "1", "--output-dir", "empty")
    assert empty.returncode == 2 and "no saved answers under empty" in empty.stderr


def test_without_a_number_lists_the_questions(store: Path) -> None:
    done = run_cli("compare", "--output-dir", str(store), "--width", "60", cwd=store.parent)
    assert done.returncode == 0, done.stderr
    assert "   1  What are the symptoms" in done.stdout and "(5/7 answered)" in done.stdout
    assert max(widths(done.stdout)) <= 60


def test_json_output_holds_the_data(store: Path) -> None:
    done = run_cli("compare", "2", "--output-dir", str(store), "--json", cwd=store.parent)
    data = json.loads(done.stdout)["question"]
    assert data["n"] == 2 and data["question_id"] == "b"
    assert data["models"] == ["fake:echo", "fake:async-echo", "fake:fail"]
    assert {(a["label"], a["persona"]) for a in data["answers"]} == {
        (m, p) for m in data["models"] for p in PERSONAS.split(",")}


def test_python_api(store: Path) -> None:
    from runner import compare_responses

    buffer = io.StringIO()
    view = compare_responses(1, store, width=90, file=buffer)
    assert isinstance(view, QuestionAnswers) and view.n == 1
    assert view.models == ["fake:echo", "fake:async-echo", "fake:fail", "fake:wide"]
    assert view.get("fake:fail", "cardiologist").error == "fake failure (fake:fail always fails)"
    assert view.get("fake:wide", "general-physician") is None
    assert "fake:wide" in buffer.getvalue() and max(widths(buffer.getvalue())) <= 90
    rows = answers_table(store, models=["fake:echo"])
    assert len(rows) == 6 and {r["n"] for r in rows} == {1, 2, 3}
    with pytest.raises(UsageError, match="question 7 has no saved answers"):
        question_answers(7, store)


def _view(texts: dict[str, str], error: str | None = None) -> QuestionAnswers:
    answers = [Answer(n=1, model=m, label=m, persona="p", question="q?", text=t, prompt_tokens=12,
                      completion_tokens=34, latency_s=1.5) for m, t in texts.items()]
    if error:
        answers.append(Answer(n=1, model="broken", label="broken", persona="p", question="q?", error=error))
    return QuestionAnswers(n=1, question="Is 胰岛素 insulin?", answers=answers, models=[a.label for a in answers],
                           personas=["p"])


@pytest.mark.parametrize("width", [20, 33, 59, 61, 87, 140])
def test_layout_never_exceeds_the_width_with_wide_characters(width: int) -> None:
    view = _view({"模型甲": WIDE_TEXT, "b": "胰" * 90, "c": "x" * 300, "d": "😀" * 50}, error="timeout " * 20)
    for stacked in (False, True):
        text = render_question(view, width, stacked=stacked)
        assert max(widths(text)) <= width
        assert text.count("胰") == 90 + 2 and text.count("😀") == 50 and text.count("x") == 300
        if stacked:  # nothing lost or reordered in the wrapping
            flat = "".join(text.split())
            assert "胰" * 90 in flat and "😀" * 50 in flat and "x" * 300 in flat


def test_wrap_keeps_paragraphs_and_breaks_long_words() -> None:
    lines = wrap("first line\n\nsecond paragraph with words", 12)
    assert lines == ["first line", "", "second", "paragraph", "with words"]
    assert wrap("胰岛素胰岛素", 5) == ["胰岛", "素胰", "岛素"]


def test_sanitize_removes_terminal_control_sequences() -> None:
    assert sanitize("a\x1b[2J\x1b]0;title\x07b\rc\td\u202eé") == "ab\nc   dé"


def test_colour_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert use_color(Tty()) and not use_color(io.StringIO())
    coloured = render_question(_view({"m": "hi"}, error="boom"), 80, color=True)
    assert "\x1b[1m" in coloured and "\x1b[31m" in coloured
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(Tty())


def test_columns_with_headers_of_unequal_height_keep_their_rules_and_answers_level(store: Path) -> None:
    # question 3 is multiple-choice: a verdict line under some headers, and the failing model's longer details
    out = run_cli("compare", "3", "--output-dir", str(store), "--width", "100", cwd=store.parent).stdout
    rows = [line for line in out.splitlines() if "│" in line]
    rules = [i for i, line in enumerate(rows) if "─" * 10 in line]
    assert rules, out
    first = rows[rules[0]]
    # every column's rule is on the same line: the ruled line holds a rule in each column
    assert all("─" * 10 in part for part in first.split("│")), first
