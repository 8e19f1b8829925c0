"""A local model's output taken apart: the thinking trace, the final answer, and the tokens spent thinking.

The split itself is ``runner.providers.reasoning.split`` (text level, the same for every provider); this module
feeds it the generated tokens of an ``hf:`` model. Delimiters must survive decoding for that: ``<think>`` and
``</think>`` are added tokens in Qwen3 and DeepSeek-R1 tokenizers, and a tokenizer that marks them special drops them
with ``skip_special_tokens=True``. So the output is decoded keeping special tokens, split, and each part is then
cleaned of the special tokens that ordinary decoding would have dropped (those found among the generated ids). An
output with no delimiter at all is decoded exactly as before (``skip_special_tokens=True``): non-thinking models'
answers do not change.

``reasoning_tokens`` is the number of generated tokens up to and including the end delimiter: the shortest prefix
of the output whose decoded text holds the end delimiter (found by bisection, a few decodes). A trace that never ends
counts every generated token (the EOS excluded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.providers.reasoning import DEFAULT_DELIMITERS, split


@dataclass(frozen=True)
class Parts:
    """The answer text, the trace (None: the model did not think), the trace's tokens, and whether it ended."""

    text: str
    reasoning: str | None = None
    reasoning_tokens: int | None = None
    unfinished: bool = False


def prompt_opens_trace(prompt_text: str, delimiters: tuple[str, str] | None) -> bool:
    """Whether the prompt ends with the start delimiter (DeepSeek-R1's and some Qwen3 templates open the trace in the
    prompt, so the output holds only the end delimiter)."""
    start = (delimiters or DEFAULT_DELIMITERS)[0]
    return bool(start) and prompt_text.rstrip().endswith(start.rstrip())


def take_apart(tokenizer: Any, tokens: list[int], delimiters: tuple[str, str] | None = None, opened: bool = False,
               trace_end: int | None = None) -> Parts:
    """Split the generated ``tokens`` (without the EOS) at ``delimiters`` (None: ``<think>``/``</think>``).

    ``opened``: the prompt already opened the trace. ``trace_end``: the number of output tokens up to and including
    the end delimiter when the caller knows it (budget forcing counts its inserted tokens itself).
    """
    start, end = delimiters or DEFAULT_DELIMITERS
    raw = tokenizer.decode(tokens, skip_special_tokens=False)
    begins = raw.lstrip().startswith(start)
    if end not in raw and not begins and not opened:
        return Parts(tokenizer.decode(tokens, skip_special_tokens=True).strip())
    parts = split(start + raw if opened and not begins else raw, (start, end))
    if parts.unfinished:
        count = len(tokens)
    elif trace_end is not None:
        count = trace_end
    else:
        count = _tokens_through(tokenizer, tokens, end)
    dropped = _dropped_specials(tokenizer, tokens)
    return Parts(_clean(parts.answer, dropped), _clean(parts.reasoning, dropped), count, parts.unfinished)


def _tokens_through(tokenizer: Any, tokens: list[int], end: str) -> int:
    """The length of the shortest prefix of ``tokens`` whose decoded text contains ``end`` (it must be there)."""
    low, high = 1, len(tokens)
    while low < high:
        middle = (low + high) // 2
        if end in tokenizer.decode(tokens[:middle], skip_special_tokens=False):
            high = middle
        else:
            low = middle + 1
    return low


def _dropped_specials(tokenizer: Any, tokens: list[int]) -> list[str]:
    """The texts of the generated special tokens that ``skip_special_tokens=True`` would drop, longest first."""
    found = set()
    for token in set(tokens):
        text = tokenizer.decode([token], skip_special_tokens=False)
        if text and not tokenizer.decode([token], skip_special_tokens=True):
            found.add(text)
    return sorted(found, key=len, reverse=True)


def _clean(text: str, dropped: list[str]) -> str:
    for special in dropped:
        text = text.replace(special, "")
    return text.strip()
