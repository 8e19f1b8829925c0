"""Running one batch of prompts through a local model: prefill the cache, then decode in chunks.

Four things make this faster than one ``generate`` call on the padded batch (measured on the embedded model on a
2-core CPU with ``benchmarks/bench_local.py``; the figures are in the README):

- the shared prefix (persona and chat header: ~170 of ~200 tokens with the default persona) is computed once per
  group of requests and copied into each batch, or, with ``share_prefix`` (prefix_attention.py, the CPU), kept
  once and read by the attention once per batch step;
- the prompts' own tokens run through the model in groups of similar length, so little arithmetic goes to
  padding (a batch otherwise pads every prompt to its longest);
- the cache is allocated once for the whole answer and filled in place. transformers' ``DynamicCache``
  concatenates at every step, copying the whole cache twice per layer per token: 45% of the batched time here;
- ``generate`` runs in chunks of ``CHUNK_TOKENS`` and answers that have ended leave the batch between chunks
  (otherwise every finished answer keeps being computed, as padding, until the longest one ends).

Each row is laid out ``[shared prefix][left padding][own tokens]`` (without the prefix when it is shared). The
padding's keys and values are zeros that the attention mask hides, and positions come from the mask as
``generate`` derives them, so the answers are those of the plain path. Models whose cache is not plain full
attention (sliding windows, linear attention) keep the plain path: ``supported`` says which.

The cache layer subclasses transformers' cache internals (``cache_utils.DynamicLayer``), so on the CPU this path
belongs to the CPU speed path and its switch (``fastpath``; ``preallocate`` decides); CUDA uses it whenever the
model's cache allows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.providers.local.fastpath.threads import ThreadTuner

# Below this many shared tokens, sharing a prefix is not worth it.
MIN_SHARED_PREFIX = 32
# A prefill group takes the next (shorter) prompt while its padded size stays within this factor of its real tokens.
PAD_WASTE = 1.25
# The most tokens, padding included, one prefill forward pass takes (bounds the activations' memory).
GROUP_TOKENS = 4096
# New tokens per ``generate`` call; finished answers leave the batch between calls.
CHUNK_TOKENS = 16
# Finished answers leave the batch once they are at least this share of it (leaving copies the whole cache).
DROP_SHARE = 0.125


def shared_prefix(sequences: list[list[int]]) -> list[int]:
    """The longest token prefix every sequence shares, leaving each at least one token of its own."""
    if len(sequences) < 2:
        return []
    first = sequences[0]
    limit = min(len(s) for s in sequences) - 1
    k = 0
    while k < limit and all(s[k] == first[k] for s in sequences):
        k += 1
    return first[:k] if k >= MIN_SHARED_PREFIX else []


def prefill_groups(lengths: list[int]) -> list[range]:
    """Split rows sorted longest first into consecutive groups whose padding stays small.

    A group takes the next row while ``rows x longest <= PAD_WASTE x real tokens`` and ``GROUP_TOKENS`` allows.
    """
    groups: list[range] = []
    start = 0
    while start < len(lengths):
        end, total = start + 1, lengths[start]
        while end < len(lengths):
            rows, longest = end + 1 - start, lengths[start]
            if rows * longest > min(PAD_WASTE * (total + lengths[end]), GROUP_TOKENS):
                break
            total += lengths[end]
            end += 1
        groups.append(range(start, end))
        start = end
    return groups


def supported(model: Any) -> bool:
    """Whether every layer of ``model``'s cache is plain full attention (what ``BatchPrefill`` fills)."""
    try:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        layers = DynamicCache(config=model.config).layers
    except Exception:  # noqa: BLE001 - an unusual config, or cache internals this transformers lacks: plain path
        return False
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def preallocate(model: Any, settings: Any, device: Any) -> bool:
    """Whether batches fill a preallocated cache themselves (``BatchPrefill``) rather than one padded ``generate``.

    The model's cache must be plain full attention (``supported``). On the CPU this is part of the CPU speed path
    and follows its switch (``fastpath.enabled``: ``--cpu-fast-path``, tested versions); on CUDA, where it was in
    use before the switch existed, it stays on whenever the model allows (``prepare`` failing falls back to the
    plain path at run time there, as everywhere).
    """
    from runner.providers.local import fastpath

    if fastpath.device_type(device) == "cpu" and not fastpath.enabled(settings, device):
        return False  # switched off, or turned off (untested versions): the cache internals are not touched
    return supported(model)


@functools.cache
def _preallocated_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        """A full-attention cache layer whose keys and values are views of a buffer sized for the whole answer."""

        def __init__(self, keys: Any, values: Any, length: int, offset: int = 0) -> None:
            super().__init__()
            self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
            self.offset = offset  # tokens before the buffer: a shared prefix that attention adds (prefix_attention.py)
            self._set(keys, values, length)

        def _set(self, keys: Any, values: Any, length: int) -> None:
            self._keys, self._values, self._length = keys, values, length
            self.keys, self.values = keys[:, :, :length], values[:, :, :length]

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            """Write the new keys and values in place (growing the buffer only if the answer outgrows it)."""
            start, end = self._length, self._length + key_states.shape[-2]
            keys, values = self._keys, self._values
            if end > keys.shape[-2]:
                capacity = max(end, 2 * keys.shape[-2])
                keys = keys.new_empty((*keys.shape[:2], capacity, keys.shape[-1]))
                values = values.new_empty((*values.shape[:2], capacity, values.shape[-1]))
                keys[:, :, :start], values[:, :, :start] = self.keys, self.values
            keys[:, :, start:end], values[:, :, start:end] = key_states, value_states
            self._set(keys, values, end)
            return self.keys, self.values

        def get_seq_length(self) -> int:
            """Tokens the layer stands for: the shared prefix (if any) and the buffer's filled part."""
            return self.offset + self._length

        def crop(self, tokens_to_remove: int) -> None:
            """Drop the last ``-tokens_to_remove`` tokens (transformers' convention: a negative count)."""
            if tokens_to_remove > 0:
                raise ValueError("crop takes a negative number of tokens to remove")
            self._set(self._keys, self._values, self._length - abs(tokens_to_remove))

        def batch_repeat_interleave(self, repeats: int) -> None:
            """Repeat every row ``repeats`` times."""
            keys, values = self.keys.repeat_interleave(repeats, 0), self.values.repeat_interleave(repeats, 0)
            self._set(keys, values, self._length)

        def batch_select_indices(self, indices: Any) -> None:
            """Keep only the rows ``indices``, and the buffer's room for what is still to come."""
            keys = self._keys.new_empty((len(indices), *self._keys.shape[1:]))
            values = self._values.new_empty((len(indices), *self._values.shape[1:]))
            keys[:, :, : self._length] = self.keys.index_select(0, indices)
            values[:, :, : self._length] = self.values.index_select(0, indices)
            self._set(keys, values, self._length)

        def reorder_cache(self, beam_idx: Any) -> None:
            """Reorder the rows for beam search."""
            self.batch_select_indices(beam_idx.to(self.device))

    return PreallocatedLayer


def _cache(layers: list[tuple[Any, Any]], length: int, offset: int = 0) -> Any:
    """A transformers cache whose layers are the given preallocated (keys, values) buffers, ``length`` filled.

    ``offset`` tokens (a shared prefix that ``prefix_attention.attention`` supplies) come before each buffer.
    """
    from transformers.cache_utils import Cache

    layer_class = _preallocated_layer_class()
    return Cache(layers=[layer_class(keys, values, length, offset) for keys, values in layers])


class BatchPrefill:
    """Builds, for one batch, the inputs for ``generate`` and a cache already holding all but their last token."""

    def __init__(self, model: Any, prefix: list[int], pad_id: int, share_prefix: bool = False) -> None:
        self.model, self.prefix, self.pad_id = model, prefix, pad_id
        # The model's attention adds the prefix itself (prefix_attention.enable): rows hold only their own tokens.
        self.share_prefix = share_prefix and bool(prefix)
        self._prefix_kv: list[tuple[Any, Any]] | None = None

    def attending(self) -> AbstractContextManager[None]:
        """The block to decode in: with a shared prefix, attention reads it from here, once per batch."""
        from runner.providers.local.fastpath.prefix_attention import attending

        return attending(self._prefix_layers()) if self.share_prefix else nullcontext()

    def _prefix_layers(self) -> list[tuple[Any, Any]]:
        """The shared prefix's keys and values per layer, each shaped (1, heads, prefix, head_dim); computed once."""
        if self._prefix_kv is None:
            import torch
            from transformers import DynamicCache

            cache = DynamicCache(config=self.model.config)
            with torch.inference_mode():
                self.model.base_model(input_ids=torch.tensor([self.prefix], device=self.model.device),
                                      past_key_values=cache, use_cache=True)
            self._prefix_kv = [(layer.keys, layer.values) for layer in cache.layers]
        return self._prefix_kv

    def prepare(self, suffixes: list[list[int]], max_new_tokens: int) -> tuple[dict[str, Any], Any]:
        """``input_ids`` and ``attention_mask`` for prefix + left-padded ``suffixes`` (longest first), and the cache.

        The cache holds every column but the last and has room for ``max_new_tokens`` more.
        """
        import torch

        inputs = prefixed_inputs(self.prefix, suffixes, self.pad_id, self.model.device)
        size, width, start = len(suffixes), max(len(s) for s in suffixes), len(self.prefix)
        offset = start if self.share_prefix else 0  # prefix tokens kept out of the rows' buffers
        cached = start + width - 1 - offset
        rows: dict[int, list[tuple[Any, Any]]] = {}  # first row of a group -> its layers' keys and values
        with torch.inference_mode():
            for group in prefill_groups([len(s) - 1 for s in suffixes]):
                own = [suffixes[i][:-1] for i in group]
                if own[0]:  # prompts of one token of their own have nothing to prefill
                    rows[group.start] = self._run_group(own)
            layers = []
            for index, (keys, values) in enumerate(self._template_layers(rows)):
                shape = (size, keys.shape[1], cached + max_new_tokens)
                batch_keys = keys.new_empty((*shape, keys.shape[-1]))
                batch_values = values.new_empty((*shape, values.shape[-1]))
                for buffer in (batch_keys, batch_values):
                    buffer[:, :, start - offset : cached].zero_()  # the padding: masked, but must not be NaN
                if start and not offset:
                    prefix_keys, prefix_values = self._prefix_layers()[index]
                    batch_keys[:, :, :start], batch_values[:, :, :start] = prefix_keys, prefix_values
                for first, group_layers in rows.items():
                    group_keys, group_values = group_layers[index]
                    group_width = group_keys.shape[-2]
                    for row in range(group_keys.shape[0]):
                        own = len(suffixes[first + row]) - 1
                        source = slice(group_width - own, group_width)
                        batch_keys[first + row, :, cached - own : cached] = group_keys[row, :, source]
                        batch_values[first + row, :, cached - own : cached] = group_values[row, :, source]
                layers.append((batch_keys, batch_values))
        return inputs, _cache(layers, cached, offset) if layers else None

    def _template_layers(self, rows: dict[int, list[tuple[Any, Any]]]) -> list[tuple[Any, Any]]:
        """Any per-layer keys and values at hand, for their head count, head size and dtype."""
        if rows:
            return next(iter(rows.values()))
        return self._prefix_layers() if self.prefix else []

    def _run_group(self, own: list[list[int]]) -> list[tuple[Any, Any]]:
        """Run one group's own tokens (left-padded) after the prefix; their keys and values per layer."""

        inputs = prefixed_inputs(self.prefix, own, self.pad_id, self.model.device)
        mask, start = inputs["attention_mask"], len(self.prefix)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, start:]  # as generate derives them from the mask
        width = inputs["input_ids"].shape[1]
        # With a shared prefix, the group's cache holds only its own tokens and attention adds the prefix; otherwise
        # the prefix is copied into each row of the group's cache.
        kept = 0 if self.share_prefix else start
        layers = []
        for keys, values in self._prefix_layers() if start else []:
            group_keys = keys.new_empty((len(own), keys.shape[1], width - start + kept, keys.shape[-1]))
            group_values = values.new_empty((len(own), values.shape[1], width - start + kept, values.shape[-1]))
            if kept:
                group_keys[:, :, :kept], group_values[:, :, :kept] = keys, values
            layers.append((group_keys, group_values))
        cache = _cache(layers, kept, start - kept) if layers else None
        if cache is None:
            from transformers import DynamicCache

            cache = DynamicCache(config=self.model.config)
        with self.attending():
            self.model.base_model(input_ids=inputs["input_ids"][:, start:], attention_mask=mask,
                                  position_ids=positions, past_key_values=cache, use_cache=True)
        return [(layer.keys[:, :, kept:], layer.values[:, :, kept:]) for layer in cache.layers]


def prefixed_inputs(prefix: list[int], suffixes: list[list[int]], pad_id: int, device: Any) -> dict[str, Any]:
    """``input_ids`` and ``attention_mask`` for prefix + left-padded suffixes."""
    import torch

    width = max(len(s) for s in suffixes)
    size, start = len(suffixes), len(prefix)
    input_ids = torch.full((size, start + width), pad_id, dtype=torch.long)
    mask = torch.zeros((size, start + width), dtype=torch.long)
    input_ids[:, :start] = torch.tensor(prefix, dtype=torch.long)
    mask[:, :start] = 1
    for row, suffix in enumerate(suffixes):
        if suffix:
            input_ids[row, start + width - len(suffix) :] = torch.tensor(suffix, dtype=torch.long)
            mask[row, start + width - len(suffix) :] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}


def generate_in_chunks(model: Any, inputs: dict[str, Any], cache: Any, options: dict[str, Any],
                       max_new_tokens: int, stop_ids: set[int],
                       on_done: Callable[[int, list[int]], None] | None = None,
                       on_tokens: Callable[[int], None] | None = None,
                       tuner: ThreadTuner | None = None) -> list[list[int]]:
    """Each row's new tokens: ``generate`` in chunks continuing ``cache``, finished rows leaving the batch.

    A row is finished once it has produced one of ``stop_ids``; what ``generate`` adds after that is cut off by
    the caller, as for one plain ``generate`` call. Greedy answers are the same as from one call. ``on_done(row,
    tokens)`` is called as soon as a row finishes (so its answer can be saved before the batch ends; rows still
    running at the end are not reported through it), ``on_tokens(count)`` after each chunk with the tokens the
    unfinished rows produced. ``tuner`` (the CPU speed path) picks each chunk's thread count (fastpath/threads.py).
    """
    import time

    import torch

    from runner.providers.local.fastpath.threads import using

    input_ids, mask = inputs["input_ids"], inputs["attention_mask"]
    rows = list(range(input_ids.shape[0]))  # which answer each batch row belongs to
    new: list[list[int]] = [[] for _ in rows]
    finished = [False] * len(rows)
    remaining = max_new_tokens
    while remaining > 0:
        step = min(CHUNK_TOKENS, remaining)
        threads, step = tuner.plan(step) if tuner is not None else (torch.get_num_threads(), step)
        began = time.perf_counter()
        with using(threads):
            output = model.generate(input_ids=input_ids, attention_mask=mask, past_key_values=cache,
                                    **{**options, "max_new_tokens": step})
        if tuner is not None:
            tuner.record(threads, time.perf_counter() - began, len(rows), output.shape[1] - input_ids.shape[1])
        added = output[:, input_ids.shape[1] :]
        produced = 0
        for position, tokens in enumerate(added.tolist()):
            row = rows[position]
            if finished[row]:
                continue
            new[row].extend(tokens)
            stop = next((k for k, t in enumerate(tokens) if t in stop_ids), None)
            produced += len(tokens) if stop is None else stop + 1
            if stop is not None:
                finished[row] = True
                if on_done is not None:
                    on_done(row, new[row])
        if on_tokens is not None:
            on_tokens(produced)
        remaining -= added.shape[1]
        if added.shape[1] < step or all(finished[row] for row in rows):
            break
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], added.shape[1]))], dim=1)
        input_ids = output
        keep = [position for position, row in enumerate(rows) if not finished[row]]
        if len(rows) - len(keep) >= max(1, DROP_SHARE * len(rows)):
            index = torch.tensor(keep, device=input_ids.device)
            input_ids, mask = input_ids[index], mask[index]
            cache.batch_select_indices(index)
            rows = [rows[position] for position in keep]
    return new
