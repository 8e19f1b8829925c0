"""The hf: provider on the embedded SmolLM2-135M-Instruct, really run on the CPU, offline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from local_models import TEST_SETTINGS, restored, smollm2

from runner.core.personas import DEFAULT_PERSONA, resolve_persona
from runner.core.settings import GenerationSettings
from runner.providers.base import Request, Result
from runner.providers.catalog import resolve_model
from runner.providers.local.batching import shared_prefix
from runner.providers.local.devices import cuda_available
from runner.providers.local.hf import HFGenerator

REPO = Path(__file__).resolve().parent.parent
# The real default persona: long enough (~170 shared tokens) that the shared-prefix cache is in play.
PERSONA = resolve_persona(DEFAULT_PERSONA).text
QUESTIONS = [
    "What are the symptoms of type 2 diabetes?",
    "How does metformin work?",
    "What do statins do, and which side effects should a patient with chronic kidney disease watch for?",
    "Is aspirin an anticoagulant?",
    "Name one vaccine given to infants.",
]


def _requests(settings: GenerationSettings = TEST_SETTINGS, questions: list[str] = QUESTIONS,
              persona: str = PERSONA) -> list[Request]:
    return [Request(f"k{i}", persona, q, settings) for i, q in enumerate(questions)]


@pytest.fixture
def generator() -> Iterator[HFGenerator]:
    with restored(smollm2()) as gen:
        yield gen


def test_answers_are_non_empty_with_counts_and_arrive_per_index(generator: HFGenerator) -> None:
    seen: list[int] = []
    results = generator.generate(_requests(), lambda i, r: seen.append(i))
    assert sorted(seen) == list(range(len(QUESTIONS)))
    for result in results:
        assert result.ok and result.text.strip()
        assert result.prompt_tokens and result.prompt_tokens > 10
        assert 1 <= result.completion_tokens <= TEST_SETTINGS.max_new_tokens
        assert result.finish_reason in ("stop", "length")
        assert result.latency_s > 0
    # the prompt is not part of the answer
    assert all(PERSONA not in r.text and "<|im_start|>" not in r.text for r in results)


def test_greedy_reruns_are_identical(generator: HFGenerator) -> None:
    first = [r.text for r in generator.generate(_requests())]
    second = [r.text for r in generator.generate(_requests())]
    assert first == second


def test_batched_greedy_equals_unbatched_token_for_token(generator: HFGenerator) -> None:
    generator.batch_size = len(QUESTIONS)
    batched = generator.generate(_requests())
    generator.batch_size = 1
    single = generator.generate(_requests())
    tok = generator.tokenizer
    for b, s in zip(batched, single, strict=True):
        assert tok(b.text)["input_ids"] == tok(s.text)["input_ids"]
        assert (b.completion_tokens, b.prompt_tokens, b.finish_reason) == \
               (s.completion_tokens, s.prompt_tokens, s.finish_reason)


def test_shared_prefix_cache_changes_nothing_but_speed(generator: HFGenerator) -> None:
    assert len(shared_prefix([generator.tokenizer(generator.prompt_text(r))["input_ids"] for r in _requests()])) > 32
    generator.batch_size = 2
    cached = generator.generate(_requests(questions=QUESTIONS[:3]))
    generator.prefix_caching = False
    uncached = generator.generate(_requests(questions=QUESTIONS[:3]))
    assert [r.text for r in cached] == [r.text for r in uncached]
    assert [r.completion_tokens for r in cached] == [r.completion_tokens for r in uncached]


def test_shared_prefix_leaves_each_prompt_a_token_and_skips_short_ones() -> None:
    assert shared_prefix([[*list(range(40)), 1], [*list(range(40)), 2]]) == list(range(40))
    assert shared_prefix([list(range(40)), list(range(40))]) == list(range(39))
    assert shared_prefix([[*list(range(10)), 1], [*list(range(10)), 2]]) == []  # too short to be worth it
    assert shared_prefix([list(range(50))]) == []  # one prompt alone


def test_results_come_back_in_input_order(generator: HFGenerator) -> None:
    generator.batch_size = 2
    forward = generator.generate(_requests(questions=QUESTIONS[:3]))
    backward = generator.generate(_requests(questions=QUESTIONS[:3][::-1]))
    assert [r.text for r in forward] == [r.text for r in backward][::-1]


class _OutOfMemoryAbove:
    """The real model behind a GPU-like memory limit: batches larger than ``limit`` raise a CUDA OOM."""

    def __init__(self, model: object, limit: int) -> None:
        self.model, self.limit, self.sizes = model, limit, []

    def __getattr__(self, name: str) -> object:
        return getattr(self.model, name)

    def __call__(self, **kwargs: object) -> object:
        return self.model(**kwargs)

    def generate(self, **kwargs: object) -> object:
        size = kwargs["input_ids"].shape[0]
        if size > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        self.sizes.append(size)
        return self.model.generate(**kwargs)


def test_out_of_memory_halves_the_batch_and_retries(generator: HFGenerator) -> None:
    generator.batch_size = 1
    expected = [r.text for r in generator.generate(_requests(questions=QUESTIONS[:4]))]
    limited = _OutOfMemoryAbove(generator.model, limit=2)
    generator.model, generator.batch_size = limited, 8
    results = generator.generate(_requests(questions=QUESTIONS[:4]))  # 4 fail, halved to 2, which fit
    assert [r.text for r in results] == expected
    assert generator.batch_size == 2 and max(limited.sizes) == 2


def test_out_of_memory_at_batch_size_one_fails_those_answers_only(generator: HFGenerator) -> None:
    generator.model, generator.batch_size = _OutOfMemoryAbove(generator.model, limit=0), 4
    results = generator.generate(_requests())
    assert all(not r.ok and "out of memory even with one prompt" in r.error and not r.retryable for r in results)


def test_seeded_sampling_is_reproducible(generator: HFGenerator) -> None:
    sampled = GenerationSettings(max_new_tokens=12, temperature=1.0, top_p=0.95, seed=7)
    first = [r.text for r in generator.generate(_requests(sampled))]
    second = [r.text for r in generator.generate(_requests(sampled))]
    other = [r.text for r in generator.generate(_requests(sampled.model_copy(update={"seed": 8})))]
    assert first == second
    assert first != other


def test_length_finish_reason_and_short_answers(generator: HFGenerator) -> None:
    result = generator.generate(_requests(GenerationSettings(max_new_tokens=2))[:1])[0]
    assert result.completion_tokens == 2 and result.finish_reason == "length"


def test_too_long_prompt_is_cut_from_the_left_with_a_warning_or_refused(generator: HFGenerator) -> None:
    generator.context = 60  # pretend a small context instead of building a 9000-token question
    long_question = "Describe the pathophysiology of heart failure. " * 20
    settings = GenerationSettings(max_new_tokens=8)
    results = generator.generate(_requests(settings, [long_question, "Hi"], persona="Be brief."))
    cut, short = results
    assert cut.ok and cut.prompt_tokens == 52 and "cut from the left" in cut.warnings[0]
    assert short.ok and not short.warnings
    refused = generator.generate(_requests(GenerationSettings(max_new_tokens=50), ["Hi"], persona="Be brief."))[0]
    assert not refused.ok and "leaves no room" in refused.error and not refused.retryable


def test_load_model_and_tokenizer_returns_a_ready_pair(generator: HFGenerator) -> None:
    # HFGenerator.load goes through load_model_and_tokenizer: the shared, already loaded pair came from it.
    model, tokenizer = generator.model, generator.tokenizer
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    assert type(model).__name__ == "LlamaForCausalLM" and str(model.dtype) == "torch.float32"


def test_close_releases_the_model() -> None:
    gen = HFGenerator(resolve_model("smollm2-135m-instruct"), TEST_SETTINGS)
    gen.model, gen.tokenizer = object(), object()  # close must not need a real model to drop it
    gen.close()
    assert gen.model is None and gen.tokenizer is None
    with pytest.raises(Exception, match="not loaded"):
        gen.generate(_requests())


@pytest.mark.skipif(not cuda_available(), reason="4-bit loading needs a CUDA GPU (bitsandbytes); none here")
def test_four_bit_load_on_cuda() -> None:
    spec = resolve_model("smollm2-135m-instruct").model_copy(update={"quantize": "4bit", "dtype": None})
    gen = HFGenerator(spec, TEST_SETTINGS)
    gen.load()
    try:
        assert gen.placement is not None and gen.placement.cuda and gen.placement.quantize == "4bit"
        assert "4bit" in type(gen.model.model.layers[0].mlp.down_proj.weight).__name__.lower() or \
            getattr(gen.model, "is_loaded_in_4bit", False)
        result: Result = gen.generate(_requests()[:2])[0]
        assert result.ok and result.text
    finally:
        gen.close()


def test_cli_default_run_writes_answers_and_embeddings(cli, tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    proc = cli("--questions", str(REPO / "questions.jsonl"), "--limit", "2", "--max-new-tokens", "16",
               "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    set_dir = out / "questions"  # the question set is named after questions.jsonl
    assert (set_dir / "set.json").is_file()
    persona_dir = next(p for p in set_dir.iterdir() if p.is_dir())
    answers = persona_dir / "HuggingFaceTB_SmolLM2-135M-Instruct"
    for n in (1, 2):
        assert (answers / f"{n}.txt").read_text(encoding="utf-8").strip()
        record = json.loads((answers / f"{n}.json").read_text(encoding="utf-8"))
        assert 1 <= record["completion_tokens"] <= 16 and record["prompt_tokens"] > 0
    vectors = persona_dir / "sentence-transformers_all-MiniLM-L6-v2"
    first = json.loads((vectors / "1.txt").read_text(encoding="utf-8"))
    assert len(first) == 384 and abs(float(np.linalg.norm(first)) - 1) < 1e-4
    matrix = np.load(vectors / "embeddings.npy")
    assert matrix.shape == (2, 384)
    assert json.loads((vectors / "embeddings.json").read_text(encoding="utf-8"))["rows"] == [1, 2]

    # Again, plus a GPU-only model: saved answers are skipped, MedGemma is refused without touching weights.
    again = cli("--questions", str(REPO / "questions.jsonl"), "--limit", "2", "--max-new-tokens", "16",
                "--output-dir", str(out), "--models", "smollm2-135m-instruct,all-minilm-l6-v2,medgemma-27b",
                env={"CUDA_VISIBLE_DEVICES": ""})
    assert again.returncode == 1
    assert "needs a CUDA GPU" in again.stderr and "skipped" in again.stderr
