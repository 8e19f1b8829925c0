"""Log-likelihoods from an OpenAI-compatible ``/v1/completions`` endpoint, as lm-evaluation-harness's
``local-completions`` model gets them from vLLM, SGLang or llama.cpp's server.

Each choice is one prompt, context + continuation, sent with ``echo: true``, ``logprobs: 1`` and ``max_tokens: 1``:
the server returns every prompt token's log-probability (``token_logprobs``) and the most likely token at each
position (``top_logprobs``). The continuation's tokens are summed; it is greedy when each of its tokens is the most
likely one. All choices of a question go in one request (``prompt`` is a list).

Where the model's tokenizer is available here, the prompt is sent as token ids split exactly as the harness splits
them (``encode_pair``, with no special tokens: the harness's API models add none unless told to), so the numbers
are the harness's. Otherwise the prompt is text and the continuation is the
tokens whose ``text_offset`` lies at or after the context's end (the context's trailing whitespace moves to the
continuation first, as the harness does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.core.errors import ProviderError

GREEDY_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Prompt:
    """One choice as sent: the prompt (text or token ids) and where its continuation lies."""

    prompt: str | list[int]
    start: int  # text: character offset of the continuation; ids: index of its first token
    end: int  # text: length of the prompt in characters; ids: index after its last token


def split_whitespace(context: str, continuation: str) -> tuple[str, str]:
    """Move the context's trailing whitespace to the continuation (the harness's rule)."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        return context[:-spaces], context[-spaces:] + continuation
    return context, continuation


def build_prompts(context: str, continuations: tuple[str, ...], tokenizer: Any | None) -> list[Prompt]:
    """The prompts for one question's choices: token ids with a tokenizer, else text."""
    from runner.providers.local.loglik import encode_pair

    prompts = []
    for continuation in continuations:
        if tokenizer is not None:
            ctx_ids, cont_ids = encode_pair(tokenizer, context, continuation, add_special_tokens=False)
            prompts.append(Prompt(ctx_ids + cont_ids, len(ctx_ids), len(ctx_ids) + len(cont_ids)))
        else:
            ctx, cont = split_whitespace(context, continuation)
            prompts.append(Prompt(ctx + cont, len(ctx), len(ctx) + len(cont)))
    return prompts


def parse_logprobs(data: Any, prompts: list[Prompt], where: str) -> tuple[list[float], list[bool], int | None]:
    """Each choice's summed log-probability and greediness from a completions answer, and the prompt tokens used.

    An answer without log-probabilities (a server that ignores ``echo`` or ``logprobs``) is a ProviderError
    naming the endpoint.
    """
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or len(choices) != len(prompts):
        raise ProviderError(f"{where}: expected {len(prompts)} choices in the completions answer, got "
                            f"{len(choices) if isinstance(choices, list) else 'none'}", retryable=False)
    ordered = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
    sums, greedy = [], []
    for choice, prompt in zip(ordered, prompts, strict=True):
        block = choice.get("logprobs") if isinstance(choice, dict) else None
        values = block.get("token_logprobs") if isinstance(block, dict) else None
        if not isinstance(values, list) or not values:
            raise ProviderError(f"{where} returned no log-probabilities: the server must support echo and "
                                "logprobs on /v1/completions (vLLM, SGLang and llama.cpp's server do; chat-only "
                                "servers and OpenAI's current models do not)", retryable=False)
        top = block.get("top_logprobs") or [None] * len(values)
        picked = _continuation(block, values, prompt, where)
        if any(values[i] is None for i in picked):
            raise ProviderError(f"{where}: a continuation token has no log-probability", retryable=False)
        sums.append(float(sum(values[i] for i in picked)))
        greedy.append(all(isinstance(top[i], dict) and top[i] and
                          values[i] >= max(top[i].values()) - GREEDY_TOLERANCE for i in picked))
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    tokens = usage.get("prompt_tokens")
    return sums, greedy, tokens if isinstance(tokens, int) else None


def _continuation(block: dict[str, Any], values: list[Any], prompt: Prompt, where: str) -> list[int]:
    """Indices of the continuation's tokens among the echoed ones."""
    if isinstance(prompt.prompt, list):
        if len(values) < prompt.end:
            raise ProviderError(f"{where}: the server echoed {len(values)} tokens of a {prompt.end}-token prompt",
                                retryable=False)
        return list(range(prompt.start, prompt.end))
    offsets = block.get("text_offset")
    if not isinstance(offsets, list) or len(offsets) != len(values):
        raise ProviderError(f"{where} returned no text_offset for the echoed tokens; give the model's tokenizer "
                            "(so token ids are sent) or use a server that returns text offsets", retryable=False)
    picked = [i for i, offset in enumerate(offsets) if prompt.start <= offset < prompt.end]
    if not picked or offsets[picked[0]] != prompt.start:
        raise ProviderError(f"{where}: the continuation does not start on a token boundary", retryable=False)
    return picked
