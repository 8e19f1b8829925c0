"""The openai provider: the real SDK against a local server speaking OpenAI's chat-completions wire format."""

from __future__ import annotations

import json
import os
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from runner.core.personas import resolve_persona
from runner.core.questions import load_questions
from runner.core.settings import GenerationSettings, ModelEntry
from runner.engine import RunReport, run
from runner.providers.api.openai import PLACEHOLDER_KEY, is_reasoning_model, parse_retry_after
from tests.conftest import drug_questions, run_one_model
from tests.fake_servers import FakeServer, Reply, spawn

KEY = "sk-test-Zq8VbL2mN4xR7tY1uI9oP3aS6dF0gH5j"
FAST = {"retry_initial_wait_s": 0.01, "retry_max_wait_s": 5.0}


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fake OpenAI key in the environment (no base URL from the environment)."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return KEY


def run_model(tmp_path: Path, server: FakeServer, count: int = 1, model: str = "openai:gpt-4o",
              **settings: object) -> tuple[RunReport, list[dict]]:
    """Run ``count`` questions through one openai model at the server; return the report and the records."""
    return run_one_model(tmp_path, ModelEntry(name=model, base_url=server.openai_base_url), count, **settings)


def test_request_shape_usage_and_record(tmp_path: Path, server: FakeServer, key: str) -> None:
    report, records = run_model(tmp_path, server, max_new_tokens=77)
    assert report.exit_status == 0
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {key}"
    assert request.headers["x-stainless-retry-count"] == "0"  # the SDK does not retry behind the engine's back
    body = request.body
    assert body["model"] == "gpt-4o"
    assert body["messages"][0] == {"role": "system", "content": resolve_persona("cardiologist").text}
    assert body["messages"][1] == {"role": "user", "content": "What is drug number 0?"}
    assert body["max_completion_tokens"] == 77 and "max_tokens" not in body
    assert body["temperature"] == 0.0 and "top_p" not in body and "seed" not in body
    [record] = records
    words_sent = sum(len(m["content"].split()) for m in body["messages"])  # the fake server's token count
    assert record["text"] == "A fake answer."
    assert (record["prompt_tokens"], record["completion_tokens"]) == (words_sent, 3)
    assert record["finish_reason"] == "stop" and record["attempts"] == 1 and record["error"] is None
    assert record["served_model"] == "gpt-4o" and record["warnings"] is None  # the reply's "model"
    summary = report.summaries[0]
    assert (summary.prompt_tokens, summary.completion_tokens) == (words_sent, 3)
    assert summary.cost_usd == round((words_sent * 2.50 + 3 * 10.00) / 1e6, 6)  # gpt-4o catalog prices


def test_sampling_settings_are_sent_when_sampling(tmp_path: Path, server: FakeServer, key: str) -> None:
    run_model(tmp_path, server, temperature=0.7, top_p=0.9, seed=11, frequency_penalty=0.4)
    body = server.requests[0].body
    assert (body["temperature"], body["top_p"], body["seed"], body["frequency_penalty"]) == (0.7, 0.9, 11, 0.4)


def test_reasoning_model_gets_developer_role_and_no_sampling(tmp_path: Path, server: FakeServer, key: str) -> None:
    report, _ = run_model(tmp_path, server, model="openai:o3-mini", temperature=0.7, seed=3)
    assert report.exit_status == 0
    body = server.requests[0].body
    assert body["model"] == "o3-mini"
    assert body["messages"][0]["role"] == "developer"
    assert "max_completion_tokens" in body
    assert not {"temperature", "top_p", "seed"} & set(body)


def test_empty_answer_at_token_limit_warns(tmp_path: Path, server: FakeServer, key: str) -> None:
    server.default = Reply.ok(text="", finish="length")
    _, [record] = run_model(tmp_path, server, model="openai:o4-mini", max_new_tokens=16)
    assert record["finish_reason"] == "length" and record["error"] is None
    assert "raise --max-new-tokens" in record["warnings"][0]


def test_reasoning_model_names() -> None:
    assert all(map(is_reasoning_model, ["o1", "o1-mini", "o3", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5.1"]))
    assert not any(map(is_reasoning_model, ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "llama3", "omni-7b"]))


def test_max_tokens_fallback_is_remembered(tmp_path: Path, key: str) -> None:
    with FakeServer(reject_params=("max_completion_tokens",)) as server:
        report, records = run_model(tmp_path, server, count=3, concurrency=1, max_new_tokens=40)
    assert report.exit_status == 0 and all(r["text"] == "A fake answer." for r in records)
    sent = [("max_completion_tokens" in r.body, r.body.get("max_tokens")) for r in server.requests]
    # One refusal, then max_tokens for that request and every later one: 3 answers, 4 requests.
    assert sent == [(True, None), (False, 40), (False, 40), (False, 40)]
    assert all(r["attempts"] == 1 for r in records)


def test_retry_on_429_honours_retry_after(tmp_path: Path, server: FakeServer, key: str) -> None:
    server.push(Reply.error(429, retry_after=1))
    report, [record] = run_model(tmp_path, server, **FAST)
    assert report.exit_status == 0
    assert server.count == 2 and record["attempts"] == 2 and record["text"] == "A fake answer."
    waited = server.requests[1].received - server.requests[0].received
    assert 0.9 <= waited < 4  # the server asked for 1 s; the engine's own backoff here is ~0.01 s


@pytest.mark.parametrize(("reply", "expected"), [
    (Reply.error(401, message="Incorrect API key provided: {credential}."), "HTTP 401"),
    (Reply.error(400, message="Invalid value for 'messages'."), "HTTP 400"),
    (Reply.error(403), "HTTP 403"),
    (Reply.error(404, message="The model does not exist."), "HTTP 404"),
    (Reply.quota_exhausted(), "quota exhausted"),
    (Reply.invalid_json(), "not JSON"),
    (Reply.raw([1, 2]), "has no choices: [1, 2]"),
    (Reply.raw({"object": "chat.completion", "choices": []}), "has no choices"),
])
def test_not_retried(tmp_path: Path, server: FakeServer, key: str, reply: Reply, expected: str) -> None:
    server.default = reply
    report, [record] = run_model(tmp_path, server, **FAST)
    assert server.count == 1  # exactly one request: waiting cannot fix these
    assert report.exit_status == 1 and record["attempts"] == 1
    assert expected in record["error"] and KEY not in record["error"]


def test_server_errors_retried_then_given_up(tmp_path: Path, server: FakeServer, key: str) -> None:
    server.default = Reply.error(503)
    report, [record] = run_model(tmp_path, server, max_attempts=3, **FAST)
    assert server.count == 3 and report.exit_status == 1
    assert "HTTP 503" in record["error"] and "gave up after 3 attempts" in record["error"]


def test_timeout_ends_in_bounded_time(tmp_path: Path, server: FakeServer, key: str) -> None:
    server.default = Reply.hang()
    start = time.monotonic()
    report, [record] = run_model(tmp_path, server, timeout_s=0.5, max_attempts=2, **FAST)
    assert time.monotonic() - start < 5
    assert server.count == 2 and report.exit_status == 1
    assert "timed out after 0.5 s" in record["error"] and "gave up after 2 attempts" in record["error"]


def test_connection_refused_is_retried_and_recorded(tmp_path: Path, key: str) -> None:
    closed = FakeServer()  # bound, never started, then closed: nothing listens on its port
    closed.stop()
    report, [record] = run_model(tmp_path, closed, max_attempts=2, **FAST)
    assert report.exit_status == 1
    assert "cannot connect to http://127.0.0.1:" in record["error"] and "gave up after 2 attempts" in record["error"]
    assert "ConnectError: " in record["error"] and "[Errno 111]" in record["error"]  # the cause, not a blank


def test_concurrency_reaches_its_limit(tmp_path: Path, key: str) -> None:
    # Each answer takes 0.5 s, so all 8 requests are in flight together even on a busy machine.
    with FakeServer(delay=0.5) as server:
        report, records = run_model(tmp_path, server, count=16, concurrency=8)
    assert report.exit_status == 0 and len(records) == 16
    assert server.max_in_flight == 8


def test_rerun_retries_only_failures(tmp_path: Path, server: FakeServer, key: str) -> None:
    server.push(Reply.error(401))
    run_model(tmp_path, server, count=3, concurrency=1)
    assert server.count == 3
    report, records = run_model(tmp_path, server, count=3, concurrency=1)
    assert server.count == 4 and report.exit_status == 0 and all(r["error"] is None for r in records)


def test_base_url_without_key_sends_placeholder(tmp_path: Path, server: FakeServer,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    report, _ = run_model(tmp_path, server)
    assert report.exit_status == 0
    assert server.requests[0].headers["authorization"] == f"Bearer {PLACEHOLDER_KEY}"


def test_parse_retry_after() -> None:
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    in_ten = parse_retry_after({"retry-after": formatdate(time.time() + 10, usegmt=True)})
    assert in_ten is not None and 8 <= in_ten <= 10
    assert parse_retry_after({"retry-after": formatdate(time.time() - 60, usegmt=True)}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None and parse_retry_after({}) is None


# -- through the real command line ----------------------------------------------------------------------------


def all_text_under(folder: Path) -> str:
    """Every file's text under ``folder`` (outputs, records, manifests)."""
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in folder.rglob("*") if p.is_file())


def test_cli_mixed_run_and_key_never_written(cli, tmp_path: Path, questions_file: Path) -> None:
    with FakeServer(text="Statins lower LDL cholesterol.") as server:
        # The second request is refused with a message that echoes the key, as OpenAI's 401 does.
        server.push(Reply.ok(), Reply.error(401, message="Incorrect API key provided: {credential}."))
        proc = cli("--models", "gpt-4o,fake:echo", "--concurrency", "1", "--max-attempts", "2",
                   env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.openai_base_url})
    assert proc.returncode == 1, proc.stderr  # one answer failed, the others are kept
    assert server.count == 4 and {r.model for r in server.requests} == {"gpt-4o"}
    assert KEY in server.requests[0].headers["authorization"]  # the key did go to the server...
    written = all_text_under(tmp_path / "outputs")
    for where in (written, proc.stdout, proc.stderr):  # ...and nowhere else
        assert KEY not in where and KEY[8:24] not in where
    assert "HTTP 401" in proc.stderr
    outputs = tmp_path / "outputs" / "questions" / "oncology-researcher"  # the set of questions.jsonl
    assert len(list((outputs / "echo").glob("*.txt"))) == 4
    assert (outputs / "gpt-4o" / "1.txt").read_text() == "Statins lower LDL cholesterol."
    gpt_line = next(line for line in proc.stdout.splitlines() if line.startswith("gpt-4o"))
    assert gpt_line.split()[2:5] == ["3", "0", "1"] and gpt_line.split()[-1] != "-"  # answered, skipped, failed; $


def test_cli_missing_key_names_the_variable(cli, questions_file: Path) -> None:
    proc = cli("--models", "gpt-4o,fake:echo", env={"OPENAI_BASE_URL": ""})
    assert proc.returncode == 1
    assert "set OPENAI_API_KEY in the environment or in .env" in proc.stdout + proc.stderr
    assert "fake:echo" in proc.stdout


def test_cli_key_from_dotenv_file(cli, tmp_path: Path, questions_file: Path) -> None:
    with FakeServer() as server:
        (tmp_path / ".env").write_text(f"OPENAI_API_KEY={KEY}\nOPENAI_BASE_URL={server.openai_base_url}\n")
        proc = cli("--models", "gpt-4o-mini", "--limit", "1")
    assert proc.returncode == 0, proc.stderr
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in all_text_under(tmp_path / "outputs") + proc.stdout + proc.stderr


def test_cli_against_standalone_server_with_config_base_url(cli, tmp_path: Path, questions_file: Path) -> None:
    script = json.dumps([{"status": 429, "retry_after": 0}])
    proc, port = spawn(tmp_path, "--count-file", str(tmp_path / "count"), "--log-file", str(tmp_path / "log.jsonl"),
                       "--script", script, "--text", "From the standalone server.")
    try:
        (tmp_path / "run.toml").write_text(
            f'models = [{{ name = "openai:served-model", base_url = "http://127.0.0.1:{port}/v1" }}]\n'
            "[settings]\nretry_initial_wait_s = 0.01\nconcurrency = 2\n")
        result = cli("--config", "run.toml", "--limit", "2", env={"OPENAI_BASE_URL": ""})
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "count").read_text().strip() == "3"  # one 429, retried, plus the second question
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [entry["model"] for entry in logged] == ["served-model"] * 3
    saved = tmp_path / "outputs" / "questions" / "oncology-researcher" / "served-model"
    assert (saved / "1.txt").read_text() == (saved / "2.txt").read_text() == "From the standalone server."


@pytest.mark.skipif(not os.environ.get("OPENAI_API_KEY") or bool(os.environ.get("OPENAI_BASE_URL")),
                    reason="live test: set a real OPENAI_API_KEY (and no OPENAI_BASE_URL) to run it")
def test_live_openai(tmp_path: Path) -> None:
    questions = load_questions(drug_questions(tmp_path, 1))
    report = run(questions, ["gpt-4o-mini"], ["general-physician"], GenerationSettings(max_new_tokens=16),
                 output_dir=tmp_path / "out", progress=False)
    assert report.exit_status == 0 and report.summaries[0].completion_tokens > 0


@pytest.mark.parametrize("concurrency", [8, 128, 256])
def test_connection_pool_sized_to_concurrency_and_warning_above_measured_limit(
        concurrency: int, key: str, caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    from runner.providers.api.openai import MAX_USEFUL_CONCURRENCY, OpenAIGenerator
    from runner.providers.catalog import resolve_model

    spec = resolve_model(ModelEntry(name="openai:gpt-4o", base_url="http://127.0.0.1:9/v1"))
    generator = OpenAIGenerator(spec, GenerationSettings(concurrency=concurrency))
    with caplog.at_level("WARNING", logger="runner"):
        generator.load()
    try:
        pool = generator._client._client._transport._pool  # the SDK's httpx client's connection pool
        assert pool._max_connections == pool._max_keepalive_connections == concurrency  # not the SDK's 1000 / 100
    finally:
        asyncio.run(generator.aclose())
        generator.close()
    warnings = [r.getMessage() for r in caplog.records if "--concurrency" in r.getMessage()]
    if concurrency > MAX_USEFUL_CONCURRENCY:
        [warning] = warnings
        assert f"--concurrency {concurrency} is above {MAX_USEFUL_CONCURRENCY}" in warning
        assert "run several processes" in warning
    else:
        assert warnings == []


def test_gemini_connection_pool_sized_to_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from runner.providers.api.gemini import GeminiGenerator
    from runner.providers.catalog import resolve_model

    monkeypatch.setenv("GEMINI_API_KEY", "test-gemini-key")
    spec = resolve_model(ModelEntry(name="gemini:gemini-2.5-flash", base_url="http://127.0.0.1:9"))
    generator = GeminiGenerator(spec, GenerationSettings(concurrency=200))
    generator.load()
    try:
        pool = generator._client._api_client._async_httpx_client._transport._pool
        assert pool._max_connections == pool._max_keepalive_connections == 200  # not httpx's 100 / 20
    finally:
        asyncio.run(generator.aclose())
        generator.close()
