"""Attention that reads a batch's shared prompt prefix once, instead of once per row ("cascade" attention).

Every prompt of a batch starts with the same tokens (the persona and the chat header: ~170 of ~200 tokens with the
default persona). With ``enable`` the model's attention goes through ``attention`` below. Inside ``attending``, a
batch's cache holds only each row's own tokens, and the shared prefix's keys and values, one copy per layer, come
from here: the query scores against the prefix are one matrix product for the whole batch, the scores against the
row's own tokens one per row, and one softmax spans both, so the result is the same attention up to rounding. The
cache is smaller (the prefix is not copied into every row) and each decoding step reads less memory.

Outside ``attending`` the function hands over to transformers' own SDPA attention unchanged. It is used on the CPU,
where it was measured (``benchmarks/bench_local.py``); on CUDA the fused SDPA kernels stay in charge.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

NAME = "runner_shared_prefix"
# Per layer, the shared prefix's (keys, values), each shaped (1, kv heads, prefix tokens, head size); None: no prefix.
_PREFIX: ContextVar[list[tuple[Any, Any]] | None] = ContextVar("runner_shared_prefix", default=None)


def attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
              scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers' attention-function signature; the batch's shared prefix is prepended to ``key``/``value``.

    ``query`` is (batch, heads, queries, head size), ``key``/``value`` (batch, kv heads, own tokens, head size) and
    ``attention_mask`` a boolean (batch, 1, queries, prefix + own tokens) mask, or None when nothing is hidden.
    """
    layers = _PREFIX.get()
    if layers is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    import torch

    prefix_keys, prefix_values = layers[module.layer_idx]
    batch, heads, queries, size = query.shape
    kv_heads, shared = key.shape[1], prefix_keys.shape[2]
    rows = heads // kv_heads * queries  # query rows per kv head (grouped-query attention shares a kv head)
    scale = scaling if scaling is not None else size**-0.5
    grouped = query.reshape(batch, kv_heads, rows, size)
    # Against the prefix: per kv head, one product over the whole batch, so the prefix is read once.
    flat = grouped.transpose(0, 1).reshape(kv_heads, batch * rows, size)
    prefix_scores = torch.matmul(flat, prefix_keys[0].transpose(1, 2)).view(kv_heads, batch, rows, shared)
    own_scores = torch.matmul(grouped, key.transpose(2, 3))
    scores = torch.cat([prefix_scores.transpose(0, 1), own_scores], dim=-1).float() * scale
    if attention_mask is None and queries > 1:  # no padding: plain causal order among the new tokens
        total = scores.shape[-1]
        columns = torch.arange(total, device=query.device)
        attention_mask = (columns <= torch.arange(total - queries, total, device=query.device)[:, None])[None, None]
    if attention_mask is not None:
        mask = attention_mask
        if queries > 1:  # (batch, 1, queries, keys) -> one row per (head in group, query), as ``grouped`` is laid out
            mask = mask.unsqueeze(2).expand(batch, 1, rows // queries, queries, -1).reshape(batch, 1, rows, -1)
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    weights = torch.softmax(scores, dim=-1).to(value.dtype)
    output = torch.matmul(weights[..., shared:], value)
    prefix_weights = weights[..., :shared].transpose(0, 1).reshape(kv_heads, batch * rows, shared)
    output += torch.matmul(prefix_weights, prefix_values[0]).view(kv_heads, batch, rows, size).transpose(0, 1)
    return output.reshape(batch, heads, queries, size).transpose(1, 2).contiguous(), None


def enable(model: Any) -> bool:
    """Route ``model``'s attention through ``attention`` (SDPA outside ``attending``); False when it cannot be."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, sdpa_mask

    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False  # eager, flash or a kernel the user chose: left alone
    AttentionInterface.register(NAME, attention)
    if NAME not in ALL_MASK_ATTENTION_FUNCTIONS:
        AttentionMaskInterface.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)
    return model.config._attn_implementation == NAME


@contextmanager
def attending(layers: list[tuple[Any, Any]] | None) -> Iterator[None]:
    """Within this block, attention prepends ``layers`` (the shared prefix per layer) to every row's cache."""
    token = _PREFIX.set(layers)
    try:
        yield
    finally:
        _PREFIX.reset(token)
