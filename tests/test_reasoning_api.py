"""Reasoning models through the API providers (issue 21): traces kept apart from answers, and thinking controls.

The real openai and google-genai SDKs talk to the local fake server (``tests/fake_servers.py``), which returns
vLLM's ``reasoning_content``, ``<think>`` blocks in the content, OpenAI's hidden reasoning tokens and Gemini's
thought parts. Letter extraction must read only the final answer: a trace that argues for another letter is never
scored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from runner.core.errors import UsageError
from runner.core.settings import GenerationSettings, ModelEntry
from runner.engine import RunReport, run
from runner.tasks.letters import extract_letter
from runner.views.answers import Answer, question_answers
from runner.views.report import build_report
from runner.views.terminal import render_question
from tests.conftest import drug_questions, run_one_model, write_jsonl
from tests.fake_servers import FakeServer, Reply

OPENAI_KEY = "sk-test-Zq8VbL2mN4xR7tY1uI9oP3aS6dF0gH5j"
GEMINI_KEY = "AIzaSyTest-Zq8VbL2mN4xR7tY1uI9oP3aS6dF0gH"
OPTIONS = {"A": "Insulin", "B": "Metformin", "C": "Aspirin", "D": "Atorvastatin"}
# The trace argues for B; the final answer is D (the right one). Read whole, the text names B.
TRACE = "The patient has diabetes. Metformin is first-line for diabetes, so the answer is B.\nBut statins lower LDL."
THINKING_REPLY = f"<think>\n{TRACE}\n</think>\n\nD. Atorvastatin"
BUDGET_MESSAGE = ("--thinking-budget has no OpenAI counterpart (OpenAI and OpenAI-compatible servers take no "
                  "thinking budget); use --reasoning-effort low|medium|high instead")
FORCING_MESSAGE = ("--min-thinking and --wait are budget forcing for local hf: models (the runner writes the trace "
                   "itself); an API model cannot be made to think longer: drop them for it")


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake keys for both providers, and no base URL from the environment."""
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    for name in ("OPENAI_BASE_URL", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def openai_run(tmp_path: Path, server: FakeServer, model: str = "openai:deepseek-r1", count: int = 1,
               **settings: object) -> tuple[RunReport, list[dict[str, Any]]]:
    return run_one_model(tmp_path, ModelEntry(name=model, base_url=server.openai_base_url), count, **settings)


def gemini_run(tmp_path: Path, server: FakeServer, model: str = "gemini:gemini-2.5-flash", count: int = 1,
               **settings: object) -> tuple[RunReport, list[dict[str, Any]]]:
    return run_one_model(tmp_path, ModelEntry(name=model, base_url=server.gemini_base_url), count, **settings)


def mcq_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "mcq.jsonl", [
        {"id": "statin", "question": "Which drug lowers LDL cholesterol?", "options": OPTIONS, "answer": "D",
         "task": "demo"}])


# -- traces kept apart ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_content_is_the_trace_and_content_the_answer(tmp_path: Path, server: FakeServer, keys: None,
                                                               field: str) -> None:
    server.default = Reply.ok(text="Atorvastatin lowers LDL.", reasoning="Statins inhibit HMG-CoA reductase.",
                              reasoning_tokens=7, reasoning_field=field)
    report, [record] = openai_run(tmp_path, server)
    assert report.exit_status == 0
    assert record["text"] == "Atorvastatin lowers LDL." and record["reasoning"] == "Statins inhibit HMG-CoA reductase."
    assert record["reasoning_tokens"] == 7 and record["finish_reason"] == "stop" and record["warnings"] is None
    [saved] = (tmp_path / "out").rglob("1.txt")
    assert saved.read_text() == "Atorvastatin lowers LDL."  # the .txt is the answer alone


def test_think_block_trace_is_never_scored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys: None,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert extract_letter(THINKING_REPLY, OPTIONS) == "B"  # read whole, the reply names the trace's letter
    monkeypatch.chdir(tmp_path)
    questions = mcq_file(tmp_path)
    with FakeServer(text=THINKING_REPLY) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
        assert main(["score", "--questions", str(questions), "--models", "openai:deepseek-r1"]) == 0
    [record_path] = (tmp_path / "outputs").rglob("1.json")
    record = json.loads(record_path.read_text())
    assert record["text"] == "D. Atorvastatin" and record["reasoning"] == TRACE
    assert record_path.with_suffix(".txt").read_text() == "D. Atorvastatin"
    # score: the final answer's letter is the one chosen
    [result] = json.loads((tmp_path / "outputs" / "scores.json").read_text())["results"]
    assert result["items"] == [{"n": 1, "chosen": "D", "answer": "D"}] and result["accuracy"] == 1.0
    # compare and export read the same
    view = question_answers(1, tmp_path / "outputs")
    assert (view.answers[0].chosen, view.answers[0].verdict) == ("D", "right")
    capsys.readouterr()
    assert main(["export", "--format", "jsonl", "--out", "-"]) == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (row["chosen"], row["correct"], row["text"], row["reasoning"]) == ("D", True, "D. Atorvastatin", TRACE)


def test_custom_think_delimiters_from_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      keys: None) -> None:
    monkeypatch.chdir(tmp_path)
    mcq_file(tmp_path)
    reply = ("## Thinking\nMetformin is for diabetes; the answer is B? No: the question asks about LDL.\n\n"
             "## Final Response\nThe answer is D.")
    with FakeServer(text=reply) as server:
        (tmp_path / "run.toml").write_text(
            'questions = "mcq.jsonl"\npersonas = ["medical-exam"]\n'
            f'models = [{{ name = "openai:FreedomIntelligence/HuatuoGPT-o1-8B", base_url = "{server.openai_base_url}",'
            ' think_delimiters = ["## Thinking", "## Final Response"] }]\n')
        assert main(["run", "--config", "run.toml"]) == 0
    [record_path] = (tmp_path / "outputs").rglob("1.json")
    record = json.loads(record_path.read_text())
    assert record["text"] == "The answer is D."
    assert record["reasoning"] == "Metformin is for diabetes; the answer is B? No: the question asks about LDL."
    assert record["model_options"]["think_delimiters"] == ["## Thinking", "## Final Response"]
    assert question_answers(1, tmp_path / "outputs").answers[0].chosen == "D"


@pytest.mark.parametrize("reply", [
    Reply.ok(text="<think>\nConsidering A, then B, then", finish="length"),  # no end delimiter
    Reply.ok(text="", reasoning="Considering A, then B, then", finish="length"),  # vLLM's parser, content empty
], ids=["think-block", "reasoning-content"])
def test_cut_off_while_thinking_keeps_the_trace(tmp_path: Path, server: FakeServer, keys: None, reply: Reply) -> None:
    server.default = reply
    report, [record] = openai_run(tmp_path, server, max_new_tokens=16)
    assert report.exit_status == 0 and server.count == 1  # saved, not retried: the same limit gives the same
    assert record["text"] == "" and record["reasoning"] == "Considering A, then B, then"
    assert record["finish_reason"] == "length" and record["error"] is None
    [warning] = record["warnings"]
    assert warning.startswith("cut off while still thinking: the token limit (16) was reached")
    assert warning.endswith("raise --max-new-tokens")


def test_stopped_inside_the_trace_is_kept_with_a_warning(tmp_path: Path, server: FakeServer, keys: None) -> None:
    server.default = Reply.ok(text="<think>Considering A, then B")  # finish_reason stop, no end delimiter
    report, [record] = openai_run(tmp_path, server)
    assert report.exit_status == 0 and server.count == 1
    assert (record["text"], record["reasoning"], record["finish_reason"]) == ("", "Considering A, then B", "stop")
    assert record["warnings"] == ["the model stopped while still thinking (finish_reason stop): there is no final "
                                  "answer after its trace"]


def test_a_finished_trace_without_an_answer_is_an_empty_reply(tmp_path: Path, server: FakeServer,
                                                              keys: None) -> None:
    server.default = Reply.ok(text="<think>Statins lower LDL.</think>\n")
    report, [record] = openai_run(tmp_path, server, max_attempts=2, retry_initial_wait_s=0.01)
    assert report.exit_status == 1 and server.count == 2  # retried, as every empty reply
    assert ("empty reply: no answer after 18 characters of reasoning (content the trace only, finish_reason stop)"
            in record["error"])


def test_openai_hidden_reasoning_tokens_are_counted(tmp_path: Path, server: FakeServer, keys: None) -> None:
    server.default = Reply.ok(text="Atorvastatin.", reasoning_tokens=384)
    report, [record] = openai_run(tmp_path, server, model="openai:o4-mini")
    assert report.exit_status == 0
    assert (record["text"], record["reasoning"], record["reasoning_tokens"]) == ("Atorvastatin.", None, 384)
    assert Answer.from_record(record).thinking_label == "thinking: 384 tokens (trace hidden)"


def test_gemini_thought_parts_are_the_trace(tmp_path: Path, server: FakeServer, keys: None) -> None:
    server.default = Reply.ok(text="Atorvastatin.", reasoning="**Weighing the options**\nStatins lower LDL.",
                              reasoning_tokens=40)
    report, [record] = gemini_run(tmp_path, server)
    assert report.exit_status == 0
    assert server.requests[0].thinking_config == {"include_thoughts": True}  # thoughts asked for, no control set
    assert record["text"] == "Atorvastatin." and record["reasoning"] == "**Weighing the options**\nStatins lower LDL."
    assert record["reasoning_tokens"] == 40 and record["completion_tokens"] == 1 + 40  # thinking billed as output


def test_gemini_cut_off_while_thinking(tmp_path: Path, server: FakeServer, keys: None) -> None:
    server.default = Reply.ok(text="", reasoning="**Weighing the options**", reasoning_tokens=500, finish="length")
    report, [record] = gemini_run(tmp_path, server, max_new_tokens=500)
    assert report.exit_status == 0 and server.count == 1
    assert (record["text"], record["reasoning"], record["finish_reason"]) == ("", "**Weighing the options**", "length")
    assert record["warnings"][0].startswith("cut off while still thinking: the token limit (500)")


# -- thinking controls --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["openai:o4-mini", "openai:Qwen/Qwen3-8B"])
def test_reasoning_effort_is_sent_to_openai(tmp_path: Path, server: FakeServer, keys: None, model: str) -> None:
    # o4-mini is one of OpenAI's reasoning models; any model of an OpenAI-compatible server gets it as asked (vLLM).
    report, [record] = openai_run(tmp_path, server, model=model, reasoning_effort="high")
    assert report.exit_status == 0 and server.requests[0].body["reasoning_effort"] == "high"
    assert record["settings"]["reasoning_effort"] == "high"


def test_no_reasoning_effort_sent_unless_asked(tmp_path: Path, server: FakeServer, keys: None) -> None:
    openai_run(tmp_path, server, model="openai:o4-mini")
    assert "reasoning_effort" not in server.requests[0].body


@pytest.mark.parametrize(("model", "settings", "expected"), [
    ("gemini:gemini-3-pro-preview", {"reasoning_effort": "high"}, {"thinking_level": "HIGH"}),
    ("gemini:gemini-3-flash-preview", {"reasoning_effort": "medium"}, {"thinking_level": "MEDIUM"}),
    ("gemini:gemini-2.5-flash", {"reasoning_effort": "high"}, {"thinking_budget": 24576}),  # 2.5: no levels
    ("gemini:gemini-2.5-flash", {"reasoning_effort": "low"}, {"thinking_budget": 1024}),
    ("gemini:gemini-2.5-flash", {"thinking_budget": 512}, {"thinking_budget": 512}),
    ("gemini:gemini-3-pro-preview", {"thinking_budget": 0}, {"thinking_budget": 0}),
])
def test_gemini_thinking_controls_are_sent(tmp_path: Path, server: FakeServer, keys: None, model: str,
                                           settings: dict[str, Any], expected: dict[str, Any]) -> None:
    report, _ = gemini_run(tmp_path, server, model=model, **settings)
    assert report.exit_status == 0
    assert server.requests[0].thinking_config == {"include_thoughts": True, **expected}


def test_gemini_model_that_does_not_think_gets_no_thinking_config(tmp_path: Path, server: FakeServer,
                                                                   keys: None) -> None:
    gemini_run(tmp_path, server, model="gemini:gemini-2.0-flash")
    assert "thinkingConfig" not in server.requests[0].body["generationConfig"]


@pytest.mark.parametrize(("model", "settings", "message"), [
    ("openai:o4-mini", {"thinking_budget": 1000}, BUDGET_MESSAGE),
    ("openai:Qwen/Qwen3-8B", {"thinking_budget": 1000}, BUDGET_MESSAGE),
    ("openai:o4-mini", {"min_thinking": 100, "wait": 2}, FORCING_MESSAGE),
    ("openai:o4-mini", {"wait": 1}, FORCING_MESSAGE),
    ("gemini:gemini-2.5-flash", {"min_thinking": 100}, FORCING_MESSAGE),
    ("gemini:gemini-2.0-flash", {"reasoning_effort": "low"},
     "model gemini-2.0-flash does not think: it has no reasoning effort control or thinking budget (Gemini 2.5 "
     "and later have); drop --reasoning-effort for it"),
    ("gemini:gemini-1.5-pro", {"thinking_budget": 100},
     "model gemini-1.5-pro does not think: it has no reasoning effort control or thinking budget (Gemini 2.5 "
     "and later have); drop --thinking-budget for it"),
    ("gemini:gemini-3-pro-preview", {"reasoning_effort": "medium"},
     "model gemini-3-pro-preview has the thinking levels low and high only (Google's documentation): use "
     "--reasoning-effort low or high"),
    ("gemini:gemini-2.5-flash", {"reasoning_effort": "high", "thinking_budget": 100},
     "--reasoning-effort and --thinking-budget both set how much Gemini thinks (its thinking level or budget), "
     "and Gemini refuses both at once: give one"),
])
def test_controls_a_model_cannot_take_fail_it_before_any_request(tmp_path: Path, server: FakeServer, keys: None,
                                                                 model: str, settings: dict[str, Any],
                                                                 message: str) -> None:
    url = server.openai_base_url if model.startswith("openai:") else server.gemini_base_url
    report, records = run_one_model(tmp_path, ModelEntry(name=model, base_url=url), 2, **settings)
    assert report.exit_status == 1 and server.count == 0 and records == []
    assert report.summaries[0].failed == 2 and report.summaries[0].error == f"cannot run: {message}"


def test_openai_model_without_reasoning_refuses_an_effort(tmp_path: Path, keys: None,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # api.openai.com (no base URL): gpt-4o has no reasoning effort control; the other model still runs.
    monkeypatch.chdir(tmp_path)
    drug_questions(tmp_path, 1)
    status = main(["run", "-q", "q1.jsonl", "-m", "gpt-4o,fake:echo", "--reasoning-effort", "low"])
    out = capsys.readouterr()
    assert status == 1
    message = ("cannot run: model gpt-4o has no reasoning effort control (OpenAI's reasoning models, o-series and "
               "gpt-5, have one); drop --reasoning-effort for it")
    assert message in " ".join((out.out + out.err).split())
    folder = tmp_path / "outputs" / "q1" / "oncology-researcher"
    assert not list(folder.glob("gpt-4o*")) and len(list(folder.glob("echo*/1.json"))) == 1


def test_another_effort_is_a_variant(tmp_path: Path, server: FakeServer, keys: None) -> None:
    entry = ModelEntry(name="openai:o4-mini", base_url=server.openai_base_url)
    questions, out = drug_questions(tmp_path, 2), tmp_path / "out"

    def again(effort: str, tag: str | None = None) -> RunReport:
        return run(questions, [entry], ["cardiologist"], GenerationSettings(reasoning_effort=effort),
                   output_dir=out, progress=False, tag=tag)

    assert again("low").exit_status == 0 and server.count == 2
    assert again("low").summaries[0].skipped == 2 and server.count == 2  # the same effort: already saved
    with pytest.raises(UsageError, match="reasoning_effort") as refused:
        again("high")
    assert "--tag NAME" in str(refused.value) and server.count == 2  # refused before any request
    assert again("high", tag="high").exit_status == 0 and server.count == 4
    folder = out / "q2" / "cardiologist"
    low, high = (json.loads((folder / name / "1.json").read_text()) for name in ("o4-mini", "o4-mini@high"))
    assert (low["settings"]["reasoning_effort"], high["settings"]["reasoning_effort"]) == ("low", "high")
    assert low["key"] != high["key"]
    view = question_answers(1, out)
    assert [a.label for a in view.answers] == ["openai:o4-mini", "openai:o4-mini@high"]  # side by side


# -- the views ------------------------------------------------------------------------------------------------------


def test_compare_and_report_fold_the_trace_under_the_answer(tmp_path: Path, server: FakeServer, keys: None) -> None:
    trace = "First, <b>weigh</b> the options.\nThen pick the statin."
    server.default = Reply.ok(text="Atorvastatin.", reasoning=trace, reasoning_tokens=1234)
    openai_run(tmp_path, server)
    view = question_answers(1, tmp_path / "out")
    answer = view.answers[0]
    assert (answer.reasoning, answer.reasoning_tokens) == (trace, 1234)
    folded = render_question(view, 100)
    assert "thinking (1,234 tokens): First, <b>weigh</b> the options.…" in folded
    assert "Then pick the statin." not in folded
    full = render_question(view, 100, show_thinking=True)
    assert "thinking (1,234 tokens):" in full and "Then pick the statin." in full
    assert full.index("Atorvastatin.") < full.index("Then pick the statin.")  # under the answer
    html = build_report(tmp_path / "out")
    assert ('<details class="prompt thinking"><summary>Thinking (1,234 tokens)</summary><div class="ptext">'
            "First, &lt;b&gt;weigh&lt;/b&gt; the options.\nThen pick the statin.</div></details>") in html
    assert "<b>weigh</b>" not in html


def test_compare_show_thinking_flag(tmp_path: Path, server: FakeServer, keys: None, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    server.default = Reply.ok(text="Atorvastatin.", reasoning="Step one.\nStep two.", reasoning_tokens=9)
    openai_run(tmp_path, server)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["compare", "1", "-o", "out", "--width", "100"]) == 0
    shown = capsys.readouterr().out
    assert "thinking (9 tokens): Step one.…" in shown and "Step two." not in shown
    assert main(["compare", "1", "-o", "out", "--width", "100", "--show-thinking"]) == 0
    assert "Step two." in capsys.readouterr().out
    assert main(["compare", "-o", "out", "--show-thinking"]) == 2
    assert "--show-thinking is used with a question number" in capsys.readouterr().err
