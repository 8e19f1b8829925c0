"""Log-likelihood of continuations with a local model, exactly as lm-evaluation-harness's HFLM computes it.

Tokenization follows the harness's ``_encode_pair`` (the release in ``runner.tasks.harness.HARNESS_VERSION``):
trailing whitespace of the context moves to the continuation, context + continuation are encoded together and
split where the context's own encoding ends. Special tokens are the tokenizer's defaults, as HFLM's ``tok_encode``
leaves them since v0.4.10: a Llama, Mistral or Gemma tokenizer starts each context with BOS, a GPT-2-style one adds
nothing; a text that already starts with the BOS string gets none added, and ``add_special_tokens`` True/False
overrides the default (HFLM's ``add_bos_token`` argument; the harness's API models send none). Inputs are cut from
the left to the model's length, right-padded with 0 and run without an attention mask, as the harness does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runner.providers.base import LoglikRequest, Result

DEFAULT_MAX_LENGTH = 2048  # the harness's fallback when neither the config nor the tokenizer gives one
TOKENIZER_INFINITY = 1000000000000000019884624838656


def model_max_length(model: Any, tokenizer: Any) -> int:
    """The context length the harness uses: config attributes, then the tokenizer's, else 2048."""
    config = getattr(model, "config", None)
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, attr, None)
        if isinstance(value, int):
            return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and value != TOKENIZER_INFINITY:
        return value
    return DEFAULT_MAX_LENGTH


def prefix_token_id(tokenizer: Any) -> int:
    """The token an empty context is scored after: BOS, else EOS (HFLM's ``prefix_token_id``)."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def tok_encode(tokenizer: Any, text: str, add_special_tokens: bool | None = None) -> list[int]:
    """Token ids of ``text`` as HFLM's ``tok_encode``: the tokenizer's default special tokens (None), unless the text
    already starts with the prefix token's string; True or False forces them on or off."""
    if add_special_tokens is None:
        prefix = tokenizer.decode(prefix_token_id(tokenizer))
        if prefix and text.startswith(prefix):
            return tokenizer.encode(text, add_special_tokens=False)
        return tokenizer.encode(text)
    return tokenizer.encode(text, add_special_tokens=add_special_tokens)


def encode_pair(tokenizer: Any, context: str, continuation: str,
                add_special_tokens: bool | None = None) -> tuple[list[int], list[int]]:
    """Token ids of (context, continuation) exactly as the harness splits them (``add_special_tokens`` as in
    ``tok_encode``: None is the tokenizer's default, HFLM's; False is what the harness's API models send)."""
    if not context:  # HFLM.loglikelihood: the prefix token (BOS, else EOS) stands for the empty context
        continuation_ids = tokenizer.encode(continuation, add_special_tokens=False)
        prefix = prefix_token_id(tokenizer)
        if continuation_ids and continuation_ids[0] == prefix:
            return continuation_ids[:1], continuation_ids[1:]
        return [prefix], continuation_ids
    spaces = len(context) - len(context.rstrip())
    if spaces:
        continuation = context[-spaces:] + continuation
        context = context[:-spaces]
    whole = tok_encode(tokenizer, context + continuation, add_special_tokens)
    context_ids = tok_encode(tokenizer, context, add_special_tokens)
    return context_ids, whole[len(context_ids):]


def loglikelihoods(model: Any, tokenizer: Any, pairs: Sequence[tuple[str, str]], batch_size: int = 8,
                   add_special_tokens: bool | None = None,
                   max_length: int | None = None) -> list[tuple[float, bool]]:
    """(summed log-probability, is-greedy) of each continuation given its context, in input order.

    ``max_length`` overrides the model's context length (like the harness's ``max_length`` argument);
    ``add_special_tokens`` the tokenizer's default (like its ``add_bos_token``).
    """
    import torch
    import torch.nn.functional as F

    limit = max_length or model_max_length(model, tokenizer)
    encoded = [encode_pair(tokenizer, c, x, add_special_tokens) for c, x in pairs]
    # The forward input of a request is (context + continuation) minus its last token, cut from the left.
    # Requests with the same input (the letter choices of one question) share one forward pass.
    inputs: dict[tuple[int, ...], int] = {}
    plan = []
    for ctx, cont in encoded:
        if not cont:
            raise ValueError("a continuation encodes to no tokens")
        inp = tuple((ctx + cont)[-(limit + 1):][:-1])
        plan.append((inputs.setdefault(inp, len(inputs)), cont))
    unique = list(inputs)
    needed = [0] * len(unique)  # how many last positions of each input are scored (its longest continuation)
    for index, cont in plan:
        needed[index] = max(needed[index], len(cont))
    order = sorted(range(len(unique)), key=lambda i: (-len(unique[i]), unique[i]))  # longest first, as the harness
    device = next(model.parameters()).device
    keep = logits_to_keep_argument(model)
    rows: dict[int, Any] = {}
    with torch.inference_mode():
        for start in range(0, len(order), max(1, batch_size)):
            chunk = order[start:start + batch_size]
            width = max(len(unique[i]) for i in chunk)
            batch = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                batch[row, :len(unique[i])] = torch.tensor(unique[i], dtype=torch.long)
            wanted = [(len(unique[i]) - needed[i], len(unique[i])) for i in chunk]
            picked = None
            if keep and all(a >= 0 for a, _ in wanted):
                picked = scored_positions(model, batch.to(device), wanted, keep)
                keep = keep if picked is not None else None  # an output of another shape: the full path from now
            if picked is None:  # the model's forward cannot limit its logits: the whole output, as the harness
                logprobs = F.log_softmax(model(batch.to(device)).logits, dim=-1)
                picked = [logprobs[row, :b][a:b] for row, (a, b) in enumerate(wanted)]
            for i, part in zip(chunk, picked, strict=True):
                rows[i] = part.cpu()
    results = []
    for index, cont in plan:
        part = rows[index][needed[index] - len(cont):]  # the last len(cont) of the input's scored positions
        target = torch.tensor(cont, dtype=torch.long)
        greedy = bool((part.argmax(dim=-1) == target).all())
        results.append((float(part.gather(1, target.unsqueeze(-1)).sum()), greedy))
    return results


def logits_to_keep_argument(model: Any) -> str | None:
    """The name under which the model's forward computes logits for some positions only: ``logits_to_keep``
    (transformers >= 4.50, an int or a tensor of positions), ``num_logits_to_keep`` (earlier, an int: the last
    positions), or None when it takes neither (the whole output is computed)."""
    import inspect

    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in parameters:
            return name
    return None


def scored_positions(model: Any, batch: Any, wanted: Sequence[tuple[int, int]], keep: str) -> list[Any] | None:
    """Log-probabilities of positions ``wanted[row]`` (start, end) of each row of ``batch``, with the model's
    output layer and the softmax over the vocabulary run on those positions only (plus, for an int argument,
    those after them up to the batch's width); None when the model's output does not have the expected shape.

    Rows are right-padded, so a short row's positions are not the batch's last ones: with ``logits_to_keep`` the
    union of the rows' positions is asked for as a tensor; with ``num_logits_to_keep`` (an int) the last positions
    from the earliest one wanted. The model's own forward computes the logits (its final norm, output layer and any
    logit scaling or soft-capping), so they are the same numbers the whole output holds at those positions.
    """
    import torch
    import torch.nn.functional as F

    if keep == "logits_to_keep":
        positions = sorted({p for a, b in wanted for p in range(a, b)})
        argument: Any = torch.tensor(positions, dtype=torch.long, device=batch.device)
    else:
        first = min(a for a, _ in wanted)
        positions = list(range(first, batch.shape[1]))
        argument = len(positions)
    if not positions:
        return None
    logits = model(batch, **{keep: argument}).logits
    if tuple(logits.shape[:2]) != (batch.shape[0], len(positions)):
        return None
    column = {p: c for c, p in enumerate(positions)}
    row_index = [row for row, (a, b) in enumerate(wanted) for _ in range(a, b)]
    col_index = [column[p] for a, b in wanted for p in range(a, b)]
    gathered = logits[torch.tensor(row_index, device=logits.device), torch.tensor(col_index, device=logits.device)]
    logprobs = F.log_softmax(gathered, dim=-1)
    return list(torch.split(logprobs, [b - a for a, b in wanted]))


def score_requests(model: Any, tokenizer: Any, requests: Sequence[LoglikRequest], batch_size: int = 8,
                   max_length: int | None = None) -> list[Result]:
    """One result per request, in order: each continuation's summed log-probability and whether it is greedy.

    The requests of one call share forward passes (a question's choices share their context's).
    """
    pairs = [(r.context, c) for r in requests for c in r.continuations]
    flat = loglikelihoods(model, tokenizer, pairs, batch_size=batch_size, max_length=max_length)
    results, offset = [], 0
    for r in requests:
        part = flat[offset:offset + len(r.continuations)]
        offset += len(r.continuations)
        results.append(Result(logprobs=[lp for lp, _ in part], greedy=[g for _, g in part], finish_reason="loglik"))
    return results
