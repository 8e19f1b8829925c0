"""The gemini provider: the real google-genai SDK against a local server speaking generateContent."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from runner.core.personas import resolve_persona
from runner.core.settings import GenerationSettings, ModelEntry
from runner.engine import RunReport, run
from runner.providers.api.gemini import quota_details
from tests.conftest import run_one_model, write_jsonl
from tests.fake_servers import FakeServer, Reply

KEY = "AIzaSyTest-Zq8VbL2mN4xR7tY1uI9oP3aS6dF0gH"
FAST = {"retry_initial_wait_s": 0.01, "retry_max_wait_s": 5.0}


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fake Gemini key in the environment."""
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    return KEY


def run_model(tmp_path: Path, server: FakeServer, count: int = 1, model: str = "gemini-2.5-flash",
              **settings: object) -> tuple[RunReport, list[dict]]:
    """Run ``count`` questions through one Gemini model at the server; return the report and the records."""
    return run_one_model(tmp_path, ModelEntry(name=model, base_url=server.gemini_base_url), count, **settings)


def test_request_shape_usage_and_record(tmp_path: Path, server: FakeServer, key: str) -> None:
    report, [record] = run_model(tmp_path, server, max_new_tokens=99)
    assert report.exit_status == 0
    [request] = server.requests
    assert request.path.endswith("/models/gemini-2.5-flash:generateContent")
    assert request.headers["x-goog-api-key"] == key
    body = request.body
    persona = resolve_persona("cardiologist").text
    assert body["systemInstruction"]["parts"] == [{"text": persona}]  # the persona is not in the user turn
    assert body["contents"] == [{"parts": [{"text": "What is drug number 0?"}], "role": "user"}]
    # Gemini 2.5 thinks: its thoughts are asked for, to be kept apart from the answer.
    assert request.thinking_config == {"include_thoughts": True}
    assert body["generationConfig"] == {"temperature": 0.0, "maxOutputTokens": 99,
                                        "thinkingConfig": body["generationConfig"]["thinkingConfig"]}
    prompt_words = len(persona.split()) + 5
    # 3 completion words + 3 thinking tokens from the fake server: thinking is billed as output, so counted.
    assert (record["prompt_tokens"], record["completion_tokens"]) == (prompt_words, 6)
    assert record["text"] == "A fake answer." and record["finish_reason"] == "stop"
    assert record["served_model"] == "gemini-2.5-flash" and record["warnings"] is None  # the reply's modelVersion
    assert report.summaries[0].cost_usd == round((prompt_words * 0.30 + 6 * 2.50) / 1e6, 6)


def test_sampling_settings_are_sent_when_sampling(tmp_path: Path, server: FakeServer, key: str) -> None:
    run_model(tmp_path, server, temperature=0.8, top_p=0.5, seed=4, frequency_penalty=0.3)
    config = dict(server.requests[0].body["generationConfig"])
    assert config.pop("thinkingConfig") and server.requests[0].thinking_config == {"include_thoughts": True}
    assert config == {"temperature": 0.8, "topP": 0.5, "seed": 4, "frequencyPenalty": 0.3, "maxOutputTokens": 512}


def test_google_api_key_accepted(tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", KEY)
    report, _ = run_model(tmp_path, server)
    assert report.exit_status == 0 and server.requests[0].headers["x-goog-api-key"] == KEY


def test_missing_key_names_the_variables(tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    report, _ = run_model(tmp_path, server)
    assert report.exit_status == 1 and server.count == 0
    assert "set GEMINI_API_KEY or GOOGLE_API_KEY" in report.summaries[0].error


def test_rate_limit_retried_after_retry_info_delay(tmp_path: Path, server: FakeServer, key: str) -> None:
    server.push(Reply.error(429))  # a per-minute limit: RetryInfo asks for 1 s, no Retry-After header
    report, [record] = run_model(tmp_path, server, **FAST)
    assert report.exit_status == 0 and server.count == 2 and record["attempts"] == 2
    assert 0.9 <= server.requests[1].received - server.requests[0].received < 4


def test_retry_after_header_wins(tmp_path: Path, server: FakeServer, key: str) -> None:
    server.push(Reply.error(503, retry_after=1.5))
    report, _ = run_model(tmp_path, server, **FAST)
    assert report.exit_status == 0 and server.count == 2
    assert 1.4 <= server.requests[1].received - server.requests[0].received < 4


@pytest.mark.parametrize(("reply", "expected"), [
    (Reply.quota_exhausted(), "quota exhausted"),
    (Reply.error(400, message="API key not valid: {credential}"), "HTTP 400"),
    (Reply.error(401), "HTTP 401"),
    (Reply.error(403), "HTTP 403"),
    (Reply.invalid_json(), "not JSON"),
])
def test_not_retried(tmp_path: Path, server: FakeServer, key: str, reply: Reply, expected: str) -> None:
    server.default = reply
    report, [record] = run_model(tmp_path, server, **FAST)
    assert server.count == 1 and report.exit_status == 1 and record["attempts"] == 1
    assert expected in record["error"] and KEY not in record["error"]


def test_timeout_ends_in_bounded_time(tmp_path: Path, server: FakeServer, key: str) -> None:
    server.default = Reply.hang()
    start = time.monotonic()
    report, [record] = run_model(tmp_path, server, timeout_s=0.5, max_attempts=2, **FAST)
    assert time.monotonic() - start < 5
    assert server.count == 2 and report.exit_status == 1
    assert "timed out" in record["error"] and "gave up after 2 attempts" in record["error"]


def test_connection_refused_is_retried_and_recorded(tmp_path: Path, key: str) -> None:
    closed = FakeServer()  # bound, never started, then closed: nothing listens on its port
    closed.stop()
    report, [record] = run_model(tmp_path, closed, max_attempts=2, **FAST)
    assert report.exit_status == 1 and record["attempts"] == 2
    assert f"cannot connect to {closed.gemini_base_url}" in record["error"]
    assert "ConnectError: " in record["error"] and "[Errno 111]" in record["error"]
    assert "gave up after 2 attempts" in record["error"] and KEY not in record["error"]


def test_token_limit_used_up_by_thinking_warns(tmp_path: Path, server: FakeServer, key: str) -> None:
    server.default = Reply.ok(text="", finish="length")
    _, [record] = run_model(tmp_path, server)
    assert record["finish_reason"] == "length" and record["text"] == ""  # Gemini's MAX_TOKENS, as others say it
    assert "raise --max-new-tokens" in record["warnings"][0]


def test_concurrency_reaches_its_limit(tmp_path: Path, key: str) -> None:
    with FakeServer(delay=0.5) as server:  # long enough for all 6 to be in flight together on a busy machine
        report, records = run_model(tmp_path, server, count=12, concurrency=6)
    assert report.exit_status == 0 and len(records) == 12 and server.max_in_flight == 6


def test_quota_details() -> None:
    per_minute = {"error": {"details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
         "violations": [{"quotaId": "GenerateContentInputTokensPerModelPerMinute-FreeTier", "quotaValue": "250000"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "26s"}]}}
    assert quota_details(per_minute) == (False, 26.0)
    per_day = {"error": {"details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                                      "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel"}]}]}}
    assert quota_details(per_day) == (True, None)
    no_quota = {"error": {"details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                                       "violations": [{"quotaId": "X-PerMinute", "quotaValue": "0"}]}]}}
    assert quota_details(no_quota) == (True, None)
    assert quota_details("not a dict") == (False, None)


def test_cli_base_url_from_environment_and_key_never_written(cli, tmp_path: Path, questions_file: Path) -> None:
    with FakeServer(text="Atorvastatin.") as server:
        server.push(Reply.ok(), Reply.error(400, message="API key not valid: {credential}"))
        proc = cli("--models", "gemini-3-pro,fake:echo", "--concurrency", "1",
                   env={"GEMINI_API_KEY": KEY, "GOOGLE_GEMINI_BASE_URL": server.gemini_base_url})
    assert proc.returncode == 1, proc.stderr
    assert server.count == 4 and {r.model for r in server.requests} == {"gemini-3-pro-preview"}
    written = "\n".join(p.read_text(errors="replace") for p in (tmp_path / "outputs").rglob("*") if p.is_file())
    for where in (written, proc.stdout, proc.stderr):
        assert KEY not in where and KEY[10:26] not in where
    assert "HTTP 400" in proc.stderr
    line = next(row for row in proc.stdout.splitlines() if row.startswith("gemini-3-pro"))
    assert line.split()[2:5] == ["3", "0", "1"] and line.split()[-1] != "-"


@pytest.mark.skipif(not (os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY"))
                    or bool(os.environ.get("GOOGLE_GEMINI_BASE_URL")),
                    reason="live test: set a real GEMINI_API_KEY (and no GOOGLE_GEMINI_BASE_URL) to run it")
def test_live_gemini(tmp_path: Path) -> None:
    questions = write_jsonl(tmp_path / "q.jsonl", [{"question": "Name one statin."}])
    report = run(questions, ["gemini-2.5-flash"], ["general-physician"], GenerationSettings(max_new_tokens=256),
                 output_dir=tmp_path / "out", progress=False)
    assert report.exit_status == 0 and report.summaries[0].completion_tokens > 0
