"""Log-likelihood scoring through an OpenAI-compatible /v1/completions server, against the local computation.

The server (tests/logprob_server.py) serves the embedded SmolLM2's real log-probabilities in vLLM's wire format;
the runner's ``openai:`` provider scores through it with the engine's ``loglik`` kind, in text mode (split by
``text_offset``) and in token-id mode (split as the harness splits), and both must equal the local ``hf:``
log-likelihoods of the same questions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from runner.core.settings import GenerationSettings, ModelEntry
from runner.engine import run
from runner.engine.loglik import score_questions
from runner.providers.api.openai import OpenAIGenerator
from runner.tasks.loaders import load_benchmark
from tests.logprob_server import LogprobServer

FIXTURES = Path(__file__).parent / "fixtures"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm() -> Any:
    from tests.local_models import smollm2

    return smollm2()


def _score(server: LogprobServer, out: Path, questions: list[Any]) -> Any:
    entry = ModelEntry(name="openai:smollm2-served", base_url=server.base_url)
    return run(questions, [entry], settings=GenerationSettings(concurrency=2), output_dir=out, progress=False,
               question_set="medqa", kind="loglik")


def _records(out: Path) -> dict[int, dict[str, Any]]:
    folder = out / "medqa" / "loglik" / "smollm2-served"
    return {r["n"]: r for r in (json.loads(p.read_text()) for p in folder.glob("*.json"))}


@pytest.mark.parametrize("token_ids", [False, True], ids=["text", "token-ids"])
def test_server_loglik_equals_local_loglik(tmp_path: Path, smollm: Any, token_ids: bool,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    questions = load_benchmark(FIXTURES / "medqa_hf.jsonl", limit=4)
    if token_ids:  # the model's tokenizer is available here: token ids go to the server
        monkeypatch.setattr(OpenAIGenerator, "_tokenizer", lambda self: smollm.tokenizer)
    local = score_questions(smollm.model, smollm.tokenizer, questions)
    with LogprobServer(smollm.model, smollm.tokenizer) as server:
        report = _score(server, tmp_path, questions)
        bodies = list(server.bodies)
    assert report.exit_status == 0 and report.summaries[0].answered == 4
    assert len(bodies) == 4 and all(b["echo"] and b["logprobs"] == 1 and len(b["prompt"]) == 4 for b in bodies)
    assert all(isinstance(p, list) == token_ids for b in bodies for p in b["prompt"])
    records = _records(tmp_path)
    for q, mine in zip(questions, local, strict=True):
        record = records[q.n]
        assert record["kind"] == "loglik" and record["provider"] == "openai"
        assert record["loglik"]["logprobs"] == pytest.approx(mine.logprobs, abs=1e-3)
        assert record["loglik"]["acc_choice"] == mine.letters[mine.acc_index]
        assert record["loglik"]["acc_norm_choice"] == mine.letters[mine.acc_norm_index]
        assert record["prompt_tokens"] > 0


@pytest.mark.parametrize(("mode", "message"), [
    ("no-logprobs", "/completions returned no log-probabilities"),
    ("chat-only", "/completions: 404: log-likelihood scoring needs a server with the completions endpoint"),
])
def test_servers_that_cannot_score_are_a_clear_error(tmp_path: Path, smollm: Any, mode: str, message: str) -> None:
    questions = load_benchmark(FIXTURES / "medqa_hf.jsonl", limit=2)
    with LogprobServer(smollm.model, smollm.tokenizer, mode=mode) as server:
        report = _score(server, tmp_path, questions)
        where = server.base_url
    assert report.exit_status == 1 and report.summaries[0].failed == 2
    errors = {r["error"] for r in _records(tmp_path).values()}
    assert len(errors) == 1
    error = errors.pop()
    assert message in error and where in error and "gave up" not in error  # not retried
