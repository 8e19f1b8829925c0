"""Attention that reads a shared prefix once per batch (runner/providers/local/fastpath/prefix_attention.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from runner.providers.local.fastpath import prefix_attention

BATCH, HEADS, KV_HEADS, SIZE, PREFIX, OWN = 5, 6, 2, 16, 7, 9


def _inputs(queries: int) -> tuple[SimpleNamespace, torch.Tensor, tuple[torch.Tensor, torch.Tensor],
                                   tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    torch.manual_seed(queries)
    module = SimpleNamespace(layer_idx=0, num_key_value_groups=HEADS // KV_HEADS, is_causal=True)
    query = torch.randn(BATCH, HEADS, queries, SIZE)
    prefix = torch.randn(1, KV_HEADS, PREFIX, SIZE), torch.randn(1, KV_HEADS, PREFIX, SIZE)
    own = torch.randn(BATCH, KV_HEADS, OWN, SIZE), torch.randn(BATCH, KV_HEADS, OWN, SIZE)
    mask = torch.ones(BATCH, 1, queries, PREFIX + OWN, dtype=torch.bool)
    mask[1, :, :, PREFIX : PREFIX + 3] = False  # left padding of row 1
    mask[3, :, :, PREFIX : PREFIX + 5] = False
    for q in range(queries):  # causal among the last ``queries`` columns
        mask[:, :, q, PREFIX + OWN - queries + q + 1 :] = False
    return module, query, prefix, own, mask


@pytest.mark.parametrize("queries", [1, 4])
def test_equals_sdpa_over_the_prefix_copied_into_every_row(queries: int) -> None:
    module, query, (prefix_keys, prefix_values), (keys, values), mask = _inputs(queries)
    full_keys = torch.cat([prefix_keys.expand(BATCH, -1, -1, -1), keys], dim=2)
    full_values = torch.cat([prefix_values.expand(BATCH, -1, -1, -1), values], dim=2)
    expected, _ = sdpa_attention_forward(module, query, full_keys, full_values, mask, scaling=SIZE**-0.5)
    with prefix_attention.attending([(prefix_keys, prefix_values)]):
        got, weights = prefix_attention.attention(module, query, keys, values, mask, scaling=SIZE**-0.5)
    assert weights is None and got.shape == expected.shape == (BATCH, queries, HEADS, SIZE)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # No mask (nothing hidden) means every column counts.
    expected, _ = sdpa_attention_forward(module, query[:, :, :1], full_keys, full_values, None, scaling=SIZE**-0.5)
    with prefix_attention.attending([(prefix_keys, prefix_values)]):
        got, _ = prefix_attention.attention(module, query[:, :, :1], keys, values, None, scaling=SIZE**-0.5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_without_a_mask_several_queries_are_causal() -> None:
    module, query, (prefix_keys, prefix_values), (keys, values), mask = _inputs(4)
    mask[:] = True
    for q in range(4):
        mask[:, :, q, PREFIX + OWN - 4 + q + 1 :] = False
    with prefix_attention.attending([(prefix_keys, prefix_values)]):
        expected, _ = prefix_attention.attention(module, query, keys, values, mask)
        got, _ = prefix_attention.attention(module, query, keys, values, None)
    torch.testing.assert_close(got, expected)


def test_outside_attending_it_is_transformers_sdpa() -> None:
    module, query, _, (keys, values), mask = _inputs(1)
    mask = mask[..., PREFIX:]
    expected, _ = sdpa_attention_forward(module, query, keys, values, mask, scaling=0.3)
    got, _ = prefix_attention.attention(module, query, keys, values, mask, scaling=0.3)
    assert torch.equal(got, expected)


def test_enable_leaves_other_attention_implementations_alone() -> None:
    model = SimpleNamespace(config=SimpleNamespace(_attn_implementation="eager"))
    assert prefix_attention.enable(model) is False
    assert model.config._attn_implementation == "eager"
