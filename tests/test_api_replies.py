"""Replies from API servers that are not plain answers: empty, refused or stopped for safety, truncated, reset,
or from another model than the one asked for. The real SDKs (openai, google-genai) against the local server.

Each must end as a record that says what happened: a failed answer (retried within the run when asking again can
help, and always by the next run) or a saved answer with a warning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.core.settings import ModelEntry
from runner.engine import RunReport, run
from runner.providers.api.openai import body_error, served_model_warning
from tests.conftest import run_one_model, write_jsonl
from tests.fake_servers import FakeServer, Reply

OPENAI_KEY = "sk-test-Rk3Vq8nW2mZ5xL7tY1uJ9oP4aS6dF0gH"
GEMINI_KEY = "AIzaSyTest-Rk3Vq8nW2mZ5xL7tY1uJ9oP4aS6dF"
FAST = {"retry_initial_wait_s": 0.01, "retry_max_wait_s": 0.05}
DIALECTS = ["openai", "gemini"]


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake keys for both providers; no base URL from the environment."""
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    for name in ("OPENAI_BASE_URL", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def ask(tmp_path: Path, server: FakeServer, dialect: str, count: int = 1, model: str | None = None,
        **settings: Any) -> tuple[RunReport, list[dict[str, Any]]]:
    """Run ``count`` questions through gpt-4o or gemini-2.5-flash at the server; the report and the records."""
    if dialect == "openai":
        entry = ModelEntry(name=model or "openai:gpt-4o", base_url=server.openai_base_url)
    else:
        entry = ModelEntry(name=model or "gemini-2.5-flash", base_url=server.gemini_base_url)
    return run_one_model(tmp_path, entry, count, **{**FAST, **settings})


def answer_file(tmp_path: Path, record: dict[str, Any]) -> Path:
    return next((tmp_path / "out").glob(f"*/cardiologist/*/{record['n']}.txt"), tmp_path / "none")


# -- empty replies ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "expected"), [
    ("openai", "empty reply: content null, finish_reason stop"),
    ("gemini", "empty reply: no text, finish_reason stop"),
])
def test_empty_reply_fails_after_retries_and_next_run_asks_again(tmp_path: Path, server: FakeServer, dialect: str,
                                                                  expected: str) -> None:
    server.default = Reply.empty()
    report, [record] = ask(tmp_path, server, dialect, max_attempts=3)
    assert report.exit_status == 1 and server.count == 3  # retried within the run: a glitch may not repeat
    assert expected in record["error"] and "gave up after 3 attempts" in record["error"]
    assert record["attempts"] == 3 and not answer_file(tmp_path, record).exists()
    assert report.summaries[0].failed == 1 and report.summaries[0].answered == 0  # never scored as an answer
    server.default = Reply.ok()
    report, [record] = ask(tmp_path, server, dialect, max_attempts=3)
    assert report.exit_status == 0 and server.count == 4  # the next run asked again
    assert record["error"] is None and record["text"] == "A fake answer."


@pytest.mark.parametrize("dialect", DIALECTS)
def test_empty_reply_then_an_answer_within_the_run(tmp_path: Path, server: FakeServer, dialect: str) -> None:
    server.push(Reply.empty())
    report, [record] = ask(tmp_path, server, dialect)
    assert report.exit_status == 0 and server.count == 2
    assert record["attempts"] == 2 and record["text"] == "A fake answer." and record["error"] is None


def chat_completion(content: Any, finish: str = "stop", **message: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-x", "object": "chat.completion", "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, **message},
                         "finish_reason": finish}]}


@pytest.mark.parametrize(("body", "expected"), [
    (chat_completion(""), "empty reply: content empty, finish_reason stop"),
    (chat_completion(" \n "), "empty reply: content blank, finish_reason stop"),
    (chat_completion(None, finish=None), "empty reply: content null, finish_reason None"),
    ({"choices": [{"index": 0, "finish_reason": "stop"}]}, "empty reply: content null, finish_reason stop"),
])
def test_openai_empty_contents_are_retried(tmp_path: Path, server: FakeServer, body: dict[str, Any],
                                           expected: str) -> None:
    server.default = Reply.raw(body)
    report, [record] = ask(tmp_path, server, "openai", max_attempts=2)
    assert server.count == 2 and report.exit_status == 1
    assert expected in record["error"] and "gave up after 2 attempts" in record["error"]


# -- refusals and safety stops: final for the run, asked again by the next -------------------------------------


@pytest.mark.parametrize(("dialect", "reply", "expected"), [
    ("openai", Reply.safety(), "empty reply: content null, finish_reason content_filter: stopped by the content "
                               "filter"),
    ("openai", Reply.empty(refusal="I'm sorry, I can't help with dosing questions."),
     "the model refused: I'm sorry, I can't help with dosing questions. (empty reply: content null"),
    ("openai", Reply.empty(tool_calls=True), "the model called tools (lookup_drug) instead of answering"),
    ("gemini", Reply.safety(), "Gemini stopped for SAFETY: no text (DANGEROUS_CONTENT: HIGH, blocked)"),
    ("gemini", Reply.safety("PROHIBITED_CONTENT"), "Gemini stopped for PROHIBITED_CONTENT: no text"),
    ("gemini", Reply.safety("BLOCKLIST"), "Gemini stopped for BLOCKLIST: no text"),
    ("gemini", Reply.safety("RECITATION"), "Gemini stopped for RECITATION: no text"),
    ("gemini", Reply.safety(prompt_blocked=True), "Gemini blocked the prompt (SAFETY): no text (DANGEROUS_CONTENT: "
                                                  "HIGH, blocked)"),
], ids=["content-filter", "refusal", "tool-calls", "safety", "prohibited", "blocklist", "recitation",
        "prompt-blocked"])
def test_final_stop_is_a_failure_not_retried_in_the_run(tmp_path: Path, server: FakeServer, dialect: str,
                                                        reply: Reply, expected: str) -> None:
    server.default = reply
    report, [record] = ask(tmp_path, server, dialect, max_attempts=3)
    assert server.count == 1 and record["attempts"] == 1  # asking again at once gives the same
    assert report.exit_status == 1 and expected in record["error"] and "gave up" not in record["error"]
    assert "HARASSMENT" not in record["error"]  # only the ratings that matter
    assert not answer_file(tmp_path, record).exists()
    server.default = Reply.ok()
    report, [record] = ask(tmp_path, server, dialect, max_attempts=3)
    assert server.count == 2 and report.exit_status == 0 and record["error"] is None  # the next run asks again


@pytest.mark.parametrize(("dialect", "expected"), [
    ("openai", "the answer was cut short by the content filter"),
    ("gemini", "Gemini stopped for SAFETY after 14 characters: the answer is cut short"),
])
def test_text_cut_short_by_a_safety_stop_is_kept_with_a_warning(tmp_path: Path, server: FakeServer, dialect: str,
                                                                expected: str) -> None:
    server.default = Reply.ok(finish="content_filter")
    report, [record] = ask(tmp_path, server, dialect)
    assert report.exit_status == 0 and server.count == 1
    assert record["text"] == "A fake answer." and record["error"] is None
    assert any(expected in w for w in record["warnings"])


@pytest.mark.parametrize("dialect", DIALECTS)
def test_empty_at_the_token_limit_stays_an_answer_with_a_warning(tmp_path: Path, server: FakeServer,
                                                                 dialect: str) -> None:
    # Asking again with the same limit gives the same: kept (with its finish reason), the warning says what to do.
    server.default = Reply.empty(finish="length")
    report, [record] = ask(tmp_path, server, dialect)
    assert report.exit_status == 0 and server.count == 1 and record["error"] is None
    assert "raise --max-new-tokens" in record["warnings"][0]


# -- truncated and empty bodies, connection resets --------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("fault", "expected"), [
    (Reply.truncated(), "truncated reply: the connection to http://127.0.0.1:"),
    (Reply.cut_json(), "truncated reply: the server's JSON stops before its end"),
    (Reply.cut_json(0.95), "truncated reply: the server's JSON stops before its end"),
    (Reply.cut_json(0), "empty reply"),
    (Reply.reset(), "connection reset by the server (http://127.0.0.1:"),
], ids=["content-length", "cut-json", "cut-json-late", "empty-body", "reset"])
def test_broken_reply_is_retried(tmp_path: Path, server: FakeServer, dialect: str, fault: Reply,
                                 expected: str) -> None:
    server.default = fault
    report, [record] = ask(tmp_path, server, dialect, max_attempts=2)
    assert server.count == 2 and report.exit_status == 1  # retried, to the bound
    assert expected in record["error"] and "gave up after 2 attempts" in record["error"]
    assert "not JSON" not in record["error"] and "base URL" not in record["error"]
    server.reset()
    server.push(fault)
    server.default = Reply.ok()
    report, [record] = ask(tmp_path, server, dialect, max_attempts=2)  # the next run asks again, and recovers
    assert server.count == 2 and report.exit_status == 0 and record["attempts"] == 2


@pytest.mark.parametrize("dialect", DIALECTS)
def test_connection_reset_gives_the_cause(tmp_path: Path, server: FakeServer, dialect: str) -> None:
    server.default = Reply.reset()
    _, [record] = ask(tmp_path, server, dialect, max_attempts=1)
    assert "while reading the reply (" in record["error"]
    assert "ReadError: [Errno 104] Connection reset by peer)" in record["error"]


@pytest.mark.parametrize(("dialect", "hint"), [("openai", "ending in /v1?"), ("gemini", "a Gemini API endpoint?")])
def test_html_is_not_retried_and_keeps_the_base_url_hint(tmp_path: Path, server: FakeServer, dialect: str,
                                                         hint: str) -> None:
    server.default = Reply.invalid_json()
    report, [record] = ask(tmp_path, server, dialect, max_attempts=3)
    assert server.count == 1 and report.exit_status == 1
    assert "the server's answer is not JSON" in record["error"] and hint in record["error"]
    assert "truncated" not in record["error"]


def test_body_error_tells_cut_json_from_other_bodies() -> None:
    whole = json.dumps(chat_completion('He said "stop {now}" [1]'))
    for end in (1, 10, len(whole) // 2, whole.index("now"), len(whole) - 1):
        error = body_error(whole[:end])
        assert error.retryable and str(error).startswith("truncated reply"), (end, str(error))
    assert body_error("").retryable and "empty reply" in str(body_error("  \n"))
    for text in ('{"a": 1} trailing', '{"a": 1]', "[1, 2]]", '{"a": nope}'):
        error = body_error(text)
        assert not error.retryable and "malformed JSON" in str(error) and "base URL" in str(error), text
    html = body_error("<!doctype html><title>Login</title>")
    assert not html.retryable and "not JSON (is the base URL" in str(html)


# -- the model that served --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "served", "warned"), [
    ("openai", None, False),  # the fake server names the model asked for
    ("openai", "gpt-4o-2024-08-06", False),
    ("openai", "gpt-3.5-turbo", True),
    ("openai", "gpt-4o-mini", True),
    ("gemini", None, False),
    ("gemini", "models/gemini-2.5-flash-001", False),
    ("gemini", "gemini-2.0-flash-lite", True),
])
def test_served_model_is_recorded_and_a_different_one_warned(tmp_path: Path, server: FakeServer, dialect: str,
                                                             served: str | None, warned: bool) -> None:
    server.default = Reply.ok(model=served)
    report, [record] = ask(tmp_path, server, dialect)
    requested = "gpt-4o" if dialect == "openai" else "gemini-2.5-flash"
    assert report.exit_status == 0 and record["error"] is None and record["text"] == "A fake answer."
    assert record["served_model"] == (served or requested)
    if warned:
        assert record["warnings"] == [f"the server says it served model {served!r}, not the requested {requested!r}"]
    else:
        assert record["warnings"] is None


def test_served_model_warning_rules() -> None:
    same = [("gpt-4o", "gpt-4o"), ("gpt-4o", "GPT-4o"), ("gpt-4o", "gpt-4o-2024-08-06"), ("gpt-4", "gpt-4-0613"),
            ("o3-mini", "o3-mini-2025-01-31"), ("gemini-1.5-flash", "models/gemini-1.5-flash-002"),
            ("claude-3-5-sonnet", "claude-3-5-sonnet@20240620"), ("llama3", "llama3:latest"),
            ("openai/gpt-4o", "gpt-4o-2024-08-06"), ("gpt-4o", None), ("gpt-4o", "")]
    for requested, served in same:
        assert served_model_warning(requested, served) is None, (requested, served)
    different = [("gpt-4o", "gpt-3.5-turbo"), ("gpt-4o", "gpt-4o-mini"), ("gpt-4o", "gpt-4o-mini-2024-07-18"),
                 ("gpt-4", "gpt-4-turbo-2024-04-09"), ("gpt-4o-2024-05-13", "gpt-4o-2024-08-06"),
                 ("gemini-2.5-flash", "gemini-2.5-flash-lite"), ("llama3", "llama3:70b")]
    for requested, served in different:
        assert served_model_warning(requested, served), (requested, served)


# -- log-likelihoods over /v1/completions --------------------------------------------------------------------


def completions_body(questions: list[Any], served: str = "served-model") -> dict[str, Any]:
    """A vLLM-style echo + logprobs answer for the first question's choices, sent as text (no tokenizer)."""
    from runner.providers.api.completions_loglik import build_prompts
    from runner.tasks.harness import TARGET_DELIMITER, build_request

    harness = build_request(questions[0])
    prompts = build_prompts(harness.context, tuple(TARGET_DELIMITER + c for c in harness.choices), None)
    choices = []
    for i, prompt in enumerate(prompts):
        assert isinstance(prompt.prompt, str)
        lp = -1.0 - i
        choices.append({"index": i, "text": prompt.prompt, "finish_reason": "length",
                        "logprobs": {"tokens": [prompt.prompt[:prompt.start], prompt.prompt[prompt.start:]],
                                     "token_logprobs": [None, lp], "top_logprobs": [None, {"x": lp}],
                                     "text_offset": [0, prompt.start]}})
    return {"id": "cmpl-x", "object": "text_completion", "model": served, "choices": choices,
            "usage": {"prompt_tokens": 40, "completion_tokens": 4, "total_tokens": 44}}


def score(tmp_path: Path, server: FakeServer, **settings: Any) -> tuple[RunReport, dict[str, Any], list[Any]]:
    from runner.core.questions import load_questions
    from runner.core.settings import GenerationSettings

    questions = load_questions(write_jsonl(tmp_path / "mc.jsonl", [
        {"id": "q1", "question": "Which drug is a statin?", "options": {"A": "Atorvastatin", "B": "Insulin",
                                                                        "C": "Warfarin", "D": "Heparin"},
         "answer": "A"}]))
    entry = ModelEntry(name="openai:served-model", base_url=server.openai_base_url)
    report = run(questions, [entry], settings=GenerationSettings(**{**FAST, **settings}),
                 output_dir=tmp_path / "out", progress=False, question_set="mc", kind="loglik")
    [path] = (tmp_path / "out" / "mc" / "loglik" / "served-model").glob("*.json")
    return report, json.loads(path.read_text()), questions


@pytest.fixture
def no_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send text prompts (no local tokenizer lookup, which would import transformers)."""
    from runner.providers.api.openai import OpenAIGenerator

    monkeypatch.setattr(OpenAIGenerator, "_tokenizer", lambda self: None)


@pytest.mark.parametrize(("fault", "expected"), [
    (Reply.truncated(), "truncated reply: the connection to http://127.0.0.1:"),
    (Reply.cut_json(), "truncated reply: the server's JSON stops before its end"),
    (Reply.cut_json(0), "empty reply: the server answered HTTP 200 with an empty body"),
    (Reply.reset(), "connection reset by the server"),
], ids=["content-length", "cut-json", "empty-body", "reset"])
def test_loglik_broken_reply_is_retried(tmp_path: Path, server: FakeServer, no_tokenizer: None, fault: Reply,
                                        expected: str) -> None:
    server.default = fault
    report, record, questions = score(tmp_path, server, max_attempts=2)
    assert server.count == 2 and report.exit_status == 1
    assert all(r.path == "/v1/completions" for r in server.requests)
    assert expected in record["error"] and "gave up after 2 attempts" in record["error"]
    server.push(fault)
    server.default = Reply.raw(completions_body(questions, served="served-model"))
    report, record, _ = score(tmp_path, server, max_attempts=2)  # the next run asks again, and recovers
    assert server.count == 4 and report.exit_status == 0 and record["attempts"] == 2
    assert record["loglik"]["logprobs"] == [-1.0, -2.0, -3.0, -4.0] and record["loglik"]["acc_choice"] == "A"
    assert record["served_model"] == "served-model" and record["warnings"] is None


def test_loglik_html_is_not_retried_and_other_model_is_warned(tmp_path: Path, server: FakeServer,
                                                              no_tokenizer: None) -> None:
    server.default = Reply.invalid_json()
    report, record, questions = score(tmp_path, server, max_attempts=3)
    assert server.count == 1 and report.exit_status == 1
    assert "not JSON (is the base URL an OpenAI-compatible API ending in /v1?)" in record["error"]
    server.default = Reply.raw(completions_body(questions, served="some-other-model"))
    report, record, _ = score(tmp_path, server)
    assert report.exit_status == 0 and record["served_model"] == "some-other-model"
    assert record["warnings"] == ["the server says it served model 'some-other-model', not the requested "
                                  "'served-model'"]


# -- through the real command line ---------------------------------------------------------------------------


def test_cli_records_each_reply_and_the_next_run_retries_only_failures(cli, tmp_path: Path,
                                                                       questions_file: Path) -> None:
    with FakeServer() as server:
        # One request at a time, in question order: question 1 gets two empty replies (both attempts), question 2
        # a content-filter stop (final), question 3 a truncated body then an answer, question 4 another model.
        server.push(Reply.empty(), Reply.empty(), Reply.safety(), Reply.truncated(), Reply.ok(),
                    Reply.ok(model="gpt-3.5-turbo"))
        (tmp_path / "run.toml").write_text(
            f'models = [{{ name = "openai:gpt-4o", base_url = "{server.openai_base_url}" }}]\n'
            "[settings]\nconcurrency = 1\nmax_attempts = 2\nretry_initial_wait_s = 0.01\nretry_max_wait_s = 0.05\n")
        first = cli("--config", "run.toml", env={"OPENAI_API_KEY": OPENAI_KEY})
        assert server.count == 6
        folder = tmp_path / "outputs" / "questions" / "oncology-researcher" / "gpt-4o"
        records = {n: json.loads((folder / f"{n}.json").read_text()) for n in range(1, 5)}
        texts_after_first = sorted(p.name for p in folder.glob("*.txt"))
        second = cli("--config", "run.toml", env={"OPENAI_API_KEY": OPENAI_KEY})
        asked_again = [r.body["messages"][-1]["content"] for r in server.requests[6:]]
    assert first.returncode == 1, first.stderr
    assert "empty reply: content null, finish_reason stop (gave up after 2 attempts)" in records[1]["error"]
    assert "stopped by the content filter" in records[2]["error"] and records[2]["attempts"] == 1
    assert records[3]["error"] is None and records[3]["attempts"] == 2 and records[3]["served_model"] == "gpt-4o"
    assert records[4]["error"] is None and records[4]["served_model"] == "gpt-3.5-turbo"
    assert "not the requested 'gpt-4o'" in records[4]["warnings"][0]
    assert "empty reply" in first.stderr and "content filter" in first.stderr
    assert texts_after_first == ["3.txt", "4.txt"]  # failures have no answer file
    # The next run asks again for the two failures only, and they are answered now.
    assert second.returncode == 0, second.stderr
    assert len(asked_again) == 2 and "2 answer(s) already saved, skipped" in second.stderr
    assert all("symptoms of type 2 diabetes" in q or "metformin" in q for q in asked_again)
    assert (folder / "1.txt").read_text() == (folder / "2.txt").read_text() == "A fake answer."
