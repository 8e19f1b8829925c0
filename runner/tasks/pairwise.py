"""What a judge model is asked to compare two answers, and how its verdict is read: MT-Bench's pairwise judge.

The prompt is MT-Bench's "pair-v2" (lm-sys/FastChat, ``fastchat/llm_judge/data/judge_prompts.jsonl``, Apache-2.0):
the system prompt below, and one user message holding the question and the two answers, shown as "Assistant A"
and "Assistant B". FastChat fills the template with ``str.format`` (so do we: braces in an answer stay as they
are). The judge explains, then ends with ``[[A]]``, ``[[B]]`` or ``[[C]]`` (a tie).

The verdict is read as FastChat's ``run_judge_pair`` reads it (``fastchat/llm_judge/common.py``): ``[[A]]`` when
the reply contains it anywhere, else ``[[B]]``, else ``[[C]]``; a reply with none of them is an error (asked again
here, up to ``--judge-attempts`` times). FastChat checks the three in that order, not by position in the reply, so
a reply that quotes the format ("[[A]]" if assistant A is better...) reads as A: kept, so that verdicts and the
position bias measured are MT-Bench's.

The question shown is the user message the models were sent (context, question and lettered options); for a
conversation, its turns as ``role: content`` joined by blank lines (MT-Bench's single-turn template has one
question slot; its multi-turn template needs the models' own earlier turns, which a fixed conversation does not
have).

The templates are reproduced word for word; their hash, with the verdict rule's name, is part of every
comparison's key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from runner.core.questions import Question, format_user_message

PAIR_NAME = "pair-v2"  # the FastChat judge prompt's name
# MT-Bench's pair-v2 (lm-sys/FastChat, fastchat/llm_judge/data/judge_prompts.jsonl): "system_prompt".
PAIR_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to "
    "the user question displayed below. You should choose the assistant that follows the user's instructions and "
    "answers the user's question better. Your evaluation should consider factors such as the helpfulness, "
    "relevance, accuracy, depth, creativity, and level of detail of their responses. Begin your evaluation by "
    "comparing the two responses and provide a short explanation. Avoid any positional biases and ensure that the "
    "order in which the responses were presented does not influence your decision. Do not allow the length of the "
    "responses to influence your evaluation. Do not favor certain names of the assistants. Be as objective as "
    "possible. After providing your explanation, output your final verdict by strictly following this format: "
    "\"[[A]]\" if assistant A is better, \"[[B]]\" if assistant B is better, and \"[[C]]\" for a tie."
)
# ... and its "prompt_template".
PAIR_TEMPLATE = (
    "[User Question]\n{question}\n\n"
    "[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
)
# How a reply is read (part of the key: another rule would read saved replies differently).
VERDICT_RULE = "fastchat: [[A]] if present, else [[B]], else [[C]] (tie), else error"
VERDICTS = ("A", "B", "C")  # C: a tie
EXPLANATION_START = 400  # characters of each reply kept in the record


@dataclass(frozen=True)
class PairVerdict:
    """A judge's reading of one comparison: ``verdict`` "A", "B" or "C" (a tie), or None when the reply has no
    verdict; ``explanation`` is the start of the reply (before the verdict, where it comes after the text)."""

    verdict: str | None
    explanation: str = ""
    problem: str | None = None


def template_hash() -> str:
    """A short hash of the system prompt, the template and the verdict rule: part of every comparison's key."""
    parts = [PAIR_NAME, PAIR_SYSTEM, PAIR_TEMPLATE, VERDICT_RULE]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def question_text(question: Question) -> str:
    """The question as the judge is shown it: the user message the models were sent; a conversation's turns."""
    if question.messages:
        return "\n\n".join(f"{m.role}: {m.content}" for m in question.messages)
    return format_user_message(question)


def pair_prompt(question: str, answer_a: str, answer_b: str) -> str:
    """MT-Bench's pair-v2 user message, filled in as FastChat fills it (``str.format``)."""
    return PAIR_TEMPLATE.format(question=question, answer_a=answer_a, answer_b=answer_b)


def parse_pair_verdict(reply: str) -> PairVerdict:
    """Read a pairwise judge reply the way FastChat does (``[[A]]``, else ``[[B]]``, else ``[[C]]``)."""
    text = reply or ""
    for letter in VERDICTS:
        marker = f"[[{letter}]]"
        if marker in text:
            last = max(text.rfind(f"[[{v}]]") for v in VERDICTS)  # the verdict usually closes the reply
            return PairVerdict(letter, _start(text[:last] if last > 0 else text))
    return PairVerdict(None, _start(text), problem="the reply has no verdict [[A]], [[B]] or [[C]]")


def combine(first: str | None, swapped: str | None) -> tuple[str | None, bool]:
    """The outcome of the two orders, as ``views.judge_stats.combine_orders`` combines them: ``first`` is the verdict
    with answer a shown as A, ``swapped`` the verdict with answer b shown as A. Returns ("a", "b" or "tie", whether
    the two orders disagree once the swap is undone). Disagreeing orders (a win and a tie included) are a tie and
    position-inconsistent; with one verdict missing, the other stands (None, False when both are missing)."""
    score = {"A": 1.0, "B": 0.0, "C": 0.5}
    a_first = score.get(first) if first else None
    a_second = 1 - score[swapped] if swapped in score else None  # answer a's score in the swapped order
    if a_first is None and a_second is None:
        return None, False
    if a_first is None or a_second is None:
        value = a_first if a_first is not None else a_second
        return _outcome(value), False
    if a_first == a_second:
        return _outcome(a_first), False
    return "tie", True


def _outcome(score: float | None) -> str:
    return "a" if score == 1.0 else "b" if score == 0.0 else "tie"


def _start(text: str) -> str:
    text = text.strip()
    return text if len(text) <= EXPLANATION_START else text[:EXPLANATION_START - 1] + "…"
