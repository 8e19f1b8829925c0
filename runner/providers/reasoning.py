"""Reasoning traces kept apart from answers: where a model's thinking ends and its final answer begins.

Models that think in their output (DeepSeek-R1 and Qwen3 through vLLM without a reasoning parser, local med-s1 or
HuatuoGPT-o1) write the trace between delimiters: ``<think>`` and ``</think>`` by default, or others declared per
model (HuatuoGPT-o1: ``## Thinking`` and ``## Final Response``). A provider splits its output with ``split`` and
returns the answer as ``Result.text`` and the trace as ``Result.reasoning``; letter extraction, grading and agreement
read only the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_DELIMITERS = ("<think>", "</think>")


@dataclass(frozen=True)
class Split:
    """A model's output taken apart: the trace, the final answer, and whether it stopped while still thinking."""

    reasoning: str
    answer: str
    unfinished: bool = False


def split(text: str, delimiters: tuple[str, str] = DEFAULT_DELIMITERS) -> Split:
    """Take ``text`` apart at the delimiters.

    - The end delimiter present: the trace is what comes before it (without a leading start delimiter; a chat
      template that opens the trace in the prompt leaves only the end one in the output), the answer what follows.
    - Only the start delimiter, at the beginning: the model stopped while thinking; the answer is empty.
    - Neither: no trace; the whole text is the answer.
    """
    start, end = delimiters
    stripped = text.lstrip()
    if end in text:
        before, _, after = text.partition(end)
        before = before.lstrip()
        if before.startswith(start):
            before = before[len(start):]
        return Split(before.strip(), after.strip())
    if stripped.startswith(start):
        return Split(stripped[len(start):].strip(), "", unfinished=True)
    return Split("", text)
