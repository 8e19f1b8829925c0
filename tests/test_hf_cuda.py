"""The CUDA paths of the ``hf:`` provider, run for real where a GPU and bitsandbytes exist; skipped elsewhere.

No hub is reached: each test builds a small Llama checkpoint (random weights, a byte-level BPE tokenizer trained on
a few sentences, a ChatML template) in a temporary folder and loads it as ``hf:<folder>``, the way a user points
the runner at a local checkpoint. Random weights answer nonsense, but 4-bit loading, batching, the cache and
out-of-memory handling are the same code paths MedGemma takes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch

from runner.core.settings import GenerationSettings
from runner.providers.base import Request
from runner.providers.catalog import resolve_model
from runner.providers.local.hf import HFGenerator

pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or find_spec("bitsandbytes") is None,
                                reason="needs a CUDA GPU and bitsandbytes; none here")

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CORPUS = ["What are the first-line treatments for metastatic breast cancer?",
          "Explain the mechanism of action of pembrolizumab in plain words.",
          "You are an oncology researcher. Answer precisely and cite the evidence.",
          "Which biomarkers predict response to immune checkpoint inhibitors?",
          "How does atrial fibrillation raise the risk of stroke, and how is it prevented?"] * 20


def build_checkpoint(folder: Path, layers: int = 4, kv_heads: int = 8) -> Path:
    """Save a small random Llama (bf16-friendly sizes) and its tokenizer in ``folder``; return the folder."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=512, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>",
                                                     bos_token="<|im_start|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(folder)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=512, intermediate_size=1024, num_hidden_layers=layers,
        num_attention_heads=8, num_key_value_heads=kv_heads, head_dim=64, max_position_embeddings=2048,
        # Wide initial weights give well-separated logits, so greedy answers do not hinge on rounding.
        initializer_range=0.2, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small checkpoint whose key/value cache is large per token (16 KB in bf16), for the out-of-memory test."""
    return build_checkpoint(tmp_path_factory.mktemp("tiny-llama"), layers=8, kv_heads=8)


def loaded(folder: Path, settings: GenerationSettings, **spec_updates: object) -> HFGenerator:
    """An HFGenerator for ``hf:<folder>`` with ``spec_updates`` applied, loaded."""
    spec = resolve_model(f"hf:{folder}").model_copy(update=spec_updates)
    generator = HFGenerator(spec, settings)
    generator.load()
    return generator


@pytest.fixture(scope="module")
def four_bit(checkpoint: Path) -> Iterator[HFGenerator]:
    generator = loaded(checkpoint, GenerationSettings(max_new_tokens=24), quantize="4bit")
    yield generator
    generator.close()


def requests(count: int, settings: GenerationSettings) -> list[Request]:
    """``count`` requests of different lengths under one persona."""
    persona = "You are an oncology researcher. Answer precisely."
    return [Request(key=f"k{i}", system_prompt=persona, settings=settings,
                    user_message=f"Question {i}: " + "which biomarkers predict response? " * (i % 5))
            for i in range(count)]


def test_four_bit_load_answers_on_the_gpu(four_bit: HFGenerator) -> None:
    import bitsandbytes as bnb

    assert four_bit.placement is not None and four_bit.placement.cuda and four_bit.placement.quantize == "4bit"
    assert isinstance(four_bit.model.model.layers[0].mlp.down_proj, bnb.nn.Linear4bit)
    assert four_bit.model.model.layers[0].mlp.down_proj.weight.quant_type == "nf4"
    assert four_bit.model.device.type == "cuda"
    results = four_bit.generate(requests(6, four_bit.settings))
    assert all(r.ok and r.completion_tokens and r.prompt_tokens for r in results), [r.error for r in results]
    again = four_bit.generate(requests(6, four_bit.settings))
    assert [r.text for r in again] == [r.text for r in results]  # temperature 0 is greedy and repeatable


def test_float32_batched_answers_equal_one_at_a_time_on_the_gpu(checkpoint: Path) -> None:
    settings = GenerationSettings(max_new_tokens=20)
    generator = loaded(checkpoint, settings, dtype="float32")
    try:
        assert generator.placement is not None and generator.placement.cuda and generator.own_prefill
        asked = requests(7, settings)
        batched = generator.generate(asked)
        generator.batch_size = 1
        single = generator.generate(asked)
        assert all(r.ok for r in batched + single)
        assert [r.text for r in batched] == [r.text for r in single]
        assert [r.completion_tokens for r in batched] == [r.completion_tokens for r in single]
    finally:
        generator.close()


def _cap_memory(extra_bytes: int) -> None:
    """Let this process's CUDA allocator hold only what it holds now plus ``extra_bytes``."""
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_reserved() + extra_bytes) / total)


def test_out_of_memory_halves_the_batch_and_answers_everything(four_bit: HFGenerator,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    settings = GenerationSettings(max_new_tokens=64)
    asked = requests(32, settings)
    per_token = 2 * 8 * 8 * 64 * 2  # layers x (keys, values) x kv heads x head dim x bf16 bytes
    longest = max(len(four_bit._tokenize(0, r).ids) for r in asked) + settings.max_new_tokens
    four_bit.batch_size = 32
    _cap_memory(12 * per_token * longest)  # a cache of 32 rows cannot fit; one of a few rows can
    try:
        with caplog.at_level("WARNING", logger="runner"):
            results = four_bit.generate(asked)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert all(r.ok and r.completion_tokens for r in results), {r.error for r in results}
    halvings = [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()]
    sizes = [32 >> k for k in range(len(halvings) + 1)]
    assert halvings and halvings == [f"{four_bit.spec.label}: out of memory with {size} prompts per batch; "
                                     f"retrying with {size // 2}" for size in sizes[:-1]]
    assert four_bit.batch_size == sizes[-1] >= 1
    # The answers are the ones a run with the same batches and no memory cap gives.
    assert [r.text for r in four_bit.generate(asked)] == [r.text for r in results]


def test_out_of_memory_with_one_prompt_fails_that_answer_clearly(four_bit: HFGenerator) -> None:
    settings = GenerationSettings(max_new_tokens=64)
    four_bit.batch_size = 4
    _cap_memory(1 << 20)
    try:
        results = four_bit.generate(requests(2, settings))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert [r.ok for r in results] == [False, False]
    assert all("GPU out of memory even with one prompt" in r.error for r in results)
    assert all(not r.retryable for r in results)


def test_cli_runs_a_local_checkpoint_in_4bit(cli, checkpoint: Path, tmp_path: Path) -> None:
    questions = Path(__file__).resolve().parent.parent / "questions.jsonl"
    out = tmp_path / "outputs"
    proc = cli("--questions", str(questions), "--limit", "3", "--max-new-tokens", "8", "--output-dir", str(out),
               "--models", f"hf:{checkpoint}", "--quantize", "4bit")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(p.read_text(encoding="utf-8")) for p in out.glob("questions/*/*/[0-9]*.json")]
    assert len(records) == 3 and all(r["completion_tokens"] and not r["error"] for r in records)
