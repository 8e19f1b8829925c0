"""The exact prompt of each answer: kept in its record, shown by ``compare --show-prompt`` and folded in the report."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from runner.core.personas import resolve_persona
from runner.core.questions import format_user_message, load_questions
from runner.core.settings import GenerationSettings
from runner.engine import run
from runner.engine.recording import note_prompt
from runner.providers.base import LoglikRequest, Request, Result
from runner.providers.fake import FakeGenerator


def _records(out: Path, persona: str, slug: str) -> dict[int, dict]:
    folder = out / "questions" / persona / slug
    return {int(p.stem): json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("*.json")}


def test_records_keep_the_user_message_sent_batched_and_concurrent(tmp_path: Path, questions_file: Path) -> None:
    run(questions_file, ["fake:echo", "fake:async-echo"], ["cardiologist"], output_dir=tmp_path, progress=False)
    questions = {q.n: q for q in load_questions(questions_file)}
    sent = {r.key: r for r in FakeGenerator.history}
    for slug in ("echo", "async-echo"):
        records = _records(tmp_path, "cardiologist", slug)
        assert sorted(records) == [1, 2, 3, 4]
        for n, record in records.items():
            assert record["user_message"] == format_user_message(questions[n]) == sent[record["key"]].user_message
            assert record["persona_text"] == sent[record["key"]].system_prompt
            assert record["prompt_text"] is None  # the fake formats no prompt text of its own
    assert "A. Atorvastatin\nB. Insulin" in _records(tmp_path, "cardiologist", "echo")[4]["user_message"]


def test_a_provider_that_formats_its_prompt_has_it_recorded(tmp_path: Path, questions_file: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def template(self: FakeGenerator, request: Request) -> str:
        return f"<|system|>{request.system_prompt}<|user|>{request.user_message}<|assistant|>"

    monkeypatch.setattr(FakeGenerator, "prompt_text", template)
    run(questions_file, ["fake:echo", "fake:async-echo", "fake:fail"], ["patient-educator"], output_dir=tmp_path,
        progress=False, settings=GenerationSettings(max_attempts=1))
    persona = resolve_persona("patient-educator").text
    for slug in ("echo", "async-echo", "fail"):  # a failed answer keeps what it was sent too
        for record in _records(tmp_path, "patient-educator", slug).values():
            assert record["prompt_text"] == f"<|system|>{persona}<|user|>{record['user_message']}<|assistant|>"


def test_note_prompt_leaves_other_kinds_alone_and_survives_a_failing_formatter() -> None:
    class Broken:
        def prompt_text(self, request: Request) -> str:
            raise RuntimeError("no tokenizer")

    result = Result(text="x")
    note_prompt(Broken(), LoglikRequest("k", "Question: q\nAnswer:", (" A", " B"), GenerationSettings()), result)
    assert result.user_message is None and result.prompt_text is None
    note_prompt(Broken(), Request("k", "sys", "user turn", GenerationSettings()), result)
    assert result.user_message == "user turn" and result.prompt_text is None


def test_hf_records_the_formatted_prompt_text() -> None:
    from local_models import smollm2

    from runner.providers.local.prompt_formats import build_prompt

    generator = smollm2()
    request = Request("k", "You are a cardiologist.", "What do statins do?", GenerationSettings(max_new_tokens=4))
    result = Result(text="")
    note_prompt(generator, request, result)
    assert result.prompt_text == build_prompt(generator.prompt_format, generator.tokenizer, request.system_prompt,
                                              request.user_message).text
    assert "You are a cardiologist." in result.prompt_text and "What do statins do?" in result.prompt_text
    assert result.prompt_text != request.user_message  # the chat template applied


@pytest.fixture
def saved(cli, questions_file: Path, tmp_path: Path) -> Path:
    """fake:echo's answers under an inline persona with markup in it; one record from before user_message."""
    proc = cli("--models", "fake:echo,fake:fail", "--system-prompt", "Be <b>brief</b> & exact.", "-o", "out")
    assert proc.returncode == 1, proc.stderr
    old = tmp_path / "out" / "questions" / "custom" / "echo" / "3.json"
    record = json.loads(old.read_text(encoding="utf-8"))
    del record["user_message"], record["prompt_text"]  # as saved by an earlier version
    old.write_text(json.dumps(record), encoding="utf-8")
    return tmp_path / "out"


def test_compare_show_prompt(cli, saved: Path) -> None:
    proc = cli("compare", "4", "-o", "out", "--show-prompt", "--stacked", "--width", "100")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.count("system prompt:") == 2 and out.count("Be <b>brief</b> & exact.") == 2  # echo and the failure
    assert "user message:\nWhich is a statin?\n\nA. Atorvastatin\nB. Insulin\n\nAnswer with the letter" in out
    assert out.index("system prompt:") < out.index("user message:") < out.index("answer:")
    plain = cli("compare", "4", "-o", "out", "--stacked", "--width", "100")
    assert "system prompt:" not in plain.stdout and "Be <b>brief</b>" not in plain.stdout
    rebuilt = cli("compare", "3", "-o", "out", "--show-prompt", "-m", "fake:echo", "--width", "100")
    assert "user message (rebuilt from the saved question):\nWhat do statins do?" in rebuilt.stdout
    data = json.loads(cli("compare", "3", "-o", "out", "--json").stdout)["question"]["answers"]
    echo = next(a for a in data if a["model"] == "fake:echo")
    assert (echo["system_prompt"], echo["user_message"], echo["user_message_rebuilt"]) == (
        "Be <b>brief</b> & exact.", "What do statins do?", True)
    proc = cli("compare", "-o", "out", "--show-prompt")
    assert proc.returncode == 2 and "--show-prompt is used with a question number" in proc.stderr


def test_report_folds_the_prompt_under_each_answer(cli, saved: Path) -> None:
    proc = cli("report", "-o", "out")
    assert proc.returncode == 0, proc.stderr
    page = (saved / "report.html").read_text(encoding="utf-8")
    assert page.count('<details class="prompt"><summary>Prompt sent</summary>') == 8  # 4 questions x 2 models
    assert "Be &lt;b&gt;brief&lt;/b&gt; &amp; exact." in page and "<b>brief</b>" not in page
    section = page[page.index('id="q4"'):]
    folded = section[section.index('<details class="prompt">'):]
    folded = folded[:folded.index("</details>")]
    assert html.escape("Which is a statin?\n\nA. Atorvastatin\nB. Insulin", quote=True) in folded
    assert "user message (rebuilt from the saved question)" in page
