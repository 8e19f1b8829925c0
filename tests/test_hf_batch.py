"""Batch prefill, the preallocated cache and chunked decoding (runner/providers/local/batching.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from local_models import restored, smollm2

from runner.core.personas import DEFAULT_PERSONA, resolve_persona
from runner.core.settings import GenerationSettings
from runner.providers.base import Request
from runner.providers.local import batching as hf_batch
from runner.providers.local.hf import HFGenerator

PERSONA = resolve_persona(DEFAULT_PERSONA).text
QUESTIONS = [
    "What are the symptoms of type 2 diabetes?",
    "Is aspirin an anticoagulant? Answer yes or no only.",
    "What do statins do, and which side effects should a patient with chronic kidney disease watch for?",
    "Reply with the single word OK.",
    "Name one vaccine given to infants.",
]


@pytest.fixture
def generator() -> Iterator[HFGenerator]:
    with restored(smollm2()) as gen:
        yield gen


class _CountingGenerate:
    """The real model, recording how many rows each ``generate`` call is given."""

    def __init__(self, model: object) -> None:
        self.model, self.rows = model, []

    def __getattr__(self, name: str) -> object:
        return getattr(self.model, name)

    def generate(self, **kwargs: object) -> object:
        self.rows.append(kwargs["input_ids"].shape[0])
        return self.model.generate(**kwargs)


def test_prefill_groups_bound_padding_and_size() -> None:
    lengths = [90, 88, 80, 41, 40, 40, 39, 12, 3, 0, 0]
    groups = hf_batch.prefill_groups(lengths)
    assert [i for g in groups for i in g] == list(range(len(lengths)))  # every row once, in order
    for group in groups:
        rows = [lengths[i] for i in group]
        if len(rows) > 1:
            assert len(rows) * rows[0] <= hf_batch.PAD_WASTE * sum(rows)
            assert len(rows) * rows[0] <= hf_batch.GROUP_TOKENS
    assert len(hf_batch.prefill_groups([100] * 100)) == 3  # 4096 tokens at most per pass: 40 + 40 + 20 rows


def test_preallocated_layer_writes_in_place_grows_and_keeps_selected_rows() -> None:
    keys = torch.zeros(2, 1, 4, 2)
    cache = hf_batch._cache([(keys, keys.clone())], length=1)
    layer = cache.layers[0]
    new = torch.arange(8, dtype=torch.float32).reshape(2, 1, 2, 2)
    got_keys, _ = layer.update(new, new + 100)
    assert got_keys.shape == (2, 1, 3, 2) and got_keys.data_ptr() == keys.data_ptr()  # written in place
    assert torch.equal(got_keys[:, :, 1:], new) and cache.get_seq_length() == 3
    more = torch.ones(2, 1, 3, 2)
    got_keys, got_values = layer.update(more, more)  # 6 tokens > room for 4: the buffer grows
    assert got_keys.shape == (2, 1, 6, 2) and torch.equal(got_keys[:, :, 1:3], new)
    assert torch.equal(got_values[:, :, 1:3], new + 100)
    layer.batch_select_indices(torch.tensor([1]))
    assert layer.keys.shape == (1, 1, 6, 2) and torch.equal(layer.keys[0, :, 1:3], new[1])
    layer.crop(-2)
    assert cache.get_seq_length() == 4


@pytest.mark.parametrize("share_prefix", [True, False], ids=["prefix-attention", "prefix-copied"])
def test_prefilled_chunked_answers_equal_one_plain_generate(generator: HFGenerator, monkeypatch: pytest.MonkeyPatch,
                                                            share_prefix: bool) -> None:
    assert generator.share_prefix  # on the CPU, load() routes attention through prefix_attention
    generator.share_prefix = share_prefix
    settings = GenerationSettings(max_new_tokens=24)
    requests = [Request(f"k{i}", PERSONA, q, settings) for i, q in enumerate(QUESTIONS)]
    generator.batch_size = len(QUESTIONS)
    generator.own_prefill = False  # one model.generate call on the padded batch
    plain = generator.generate(requests)
    monkeypatch.setattr(hf_batch, "CHUNK_TOKENS", 4)
    monkeypatch.setattr(hf_batch, "DROP_SHARE", 0.01)
    counting = _CountingGenerate(generator.model)
    generator.model, generator.own_prefill = counting, True
    chunked = generator.generate(requests)
    assert [r.text for r in chunked] == [r.text for r in plain]
    assert [(r.completion_tokens, r.finish_reason) for r in chunked] == \
           [(r.completion_tokens, r.finish_reason) for r in plain]
    # several chunks, and the answers that had ended left the batch
    assert len(counting.rows) > 2 and counting.rows[0] == len(QUESTIONS) and counting.rows[-1] < len(QUESTIONS)
    assert any(r.finish_reason == "stop" for r in chunked) and any(r.finish_reason == "length" for r in chunked)


def test_the_preallocated_cache_follows_the_cpu_switch_and_stays_on_cuda(generator: HFGenerator) -> None:
    on, off = GenerationSettings(), GenerationSettings(cpu_fast_path=False)
    assert hf_batch.preallocate(generator.model, on, "cpu") == hf_batch.supported(generator.model)
    assert not hf_batch.preallocate(generator.model, off, "cpu")  # off: one plain generate on the padded batch
    assert hf_batch.preallocate(generator.model, off, "cuda")  # CUDA keeps it whatever the switch says
    assert hf_batch.preallocate(generator.model, on, "cuda:0")


def test_with_prefix_attention_rows_hold_only_their_own_tokens(generator: HFGenerator) -> None:
    tokenizer = generator.tokenizer
    prompts = [tokenizer.apply_chat_template([{"role": "system", "content": PERSONA}, {"role": "user", "content": q}],
                                             add_generation_prompt=True, tokenize=False) for q in QUESTIONS[:3]]
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    prefix = hf_batch.shared_prefix(ids)
    suffixes = [i[len(prefix) :] for i in ids]
    width = max(len(s) for s in suffixes)
    for share, stored in ((True, width - 1), (False, len(prefix) + width - 1)):
        prefill = hf_batch.BatchPrefill(generator.model, prefix, tokenizer.pad_token_id, share_prefix=share)
        inputs, cache = prefill.prepare(suffixes, max_new_tokens=8)
        assert inputs["input_ids"].shape == (3, len(prefix) + width)
        assert cache.layers[0].keys.shape[2] == stored  # the prefix is not copied into each row
        assert cache.get_seq_length() == len(prefix) + width - 1  # but the cache stands for it (positions, mask)


def test_answers_that_end_early_are_delivered_before_their_batch_ends(generator: HFGenerator,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # the same answers as one plain generate, but each delivered (saved, counted) as soon as its row ends
    settings = GenerationSettings(max_new_tokens=24)
    requests = [Request(f"k{i}", PERSONA, q, settings) for i, q in enumerate(QUESTIONS)]
    generator.batch_size = len(QUESTIONS)
    generator.own_prefill = False
    plain = generator.generate(requests)
    monkeypatch.setattr(hf_batch, "CHUNK_TOKENS", 4)
    generator.own_prefill = True
    chunks: list[int] = []
    delivered: list[tuple[int, int]] = []  # (answer, chunks generated before it was delivered)
    generator.token_meter = chunks.append
    try:
        results = generator.generate(requests, on_result=lambda i, r: delivered.append((i, len(chunks))))
    finally:
        generator.token_meter = None
    assert [r.text for r in results] == [r.text for r in plain]
    assert sorted(i for i, _ in delivered) == list(range(len(QUESTIONS)))  # each answer exactly once
    stopped = {i for i, r in enumerate(results) if r.finish_reason == "stop"}
    early = {i for i, seen in delivered if seen < len(chunks)}
    assert stopped and early == stopped - {i for i, seen in delivered if seen == len(chunks)}
    assert min(seen for _, seen in delivered) < len(chunks)  # progress moved inside the batch
    assert sum(chunks) == sum(r.completion_tokens for r in results)  # the meter counts every token once
