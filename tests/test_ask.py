"""``ask``: one question, one model, the answer streamed to the terminal and not saved."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from runner.core.personas import DEFAULT_PERSONA, resolve_persona
from runner.core.settings import GenerationSettings
from runner.providers.base import Request
from tests.conftest import write_jsonl
from tests.local_models import restored, smollm2


def test_ask_prints_what_run_would_save_and_saves_nothing(cli: Callable[..., subprocess.CompletedProcess[str]],
                                                          tmp_path: Path) -> None:
    asked = cli("ask", "How does metformin work?", "-m", "fake:echo", "-p", "cardiologist")
    assert asked.returncode == 0, asked.stderr
    assert not (tmp_path / "outputs").exists()
    write_jsonl(tmp_path / "q.jsonl", [{"question": "How does metformin work?"}])
    assert cli("run", "-q", "q.jsonl", "-m", "fake:echo", "-p", "cardiologist").returncode == 0
    (saved,) = (tmp_path / "outputs").glob("q/cardiologist/echo/1.txt")
    assert asked.stdout.strip() == saved.read_text(encoding="utf-8").strip()


def test_ask_refuses_what_cannot_answer(cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    empty = cli("ask", "  ")
    assert empty.returncode == 2 and "the question is empty" in empty.stderr
    encoder = cli("ask", "hi", "-m", "all-minilm-l6-v2")
    assert encoder.returncode == 2 and "returns embeddings" in encoder.stderr
    keyless = cli("ask", "hi", "-m", "gpt-4o")
    assert keyless.returncode == 1 and "no API key" in keyless.stderr and "Traceback" not in keyless.stderr


def test_a_local_model_streams_the_answer_it_would_give() -> None:
    settings = GenerationSettings(max_new_tokens=16)
    request = Request("k", resolve_persona(DEFAULT_PERSONA).text, "How does metformin work?", settings)
    with restored(smollm2()) as generator:
        pieces = list(generator.stream(request))
        (whole,) = generator.generate([request])
    assert len(pieces) > 1  # it arrives in pieces
    assert "".join(pieces).strip() == whole.text  # greedy: the same answer as the batched path
