"""The prompts of lm-evaluation-harness's multiple-choice tasks (MedQA, MedMCQA, PubMedQA, MMLU).

For each question the prompt is the harness's task prompt (``medqa_4options``: "Question: {q}\\nA. {A}\\n...
D. {D}\\nAnswer:"), each choice is a continuation after the target delimiter (" A" ... " D"; PubMedQA's are
" yes" / " no" / " maybe"). K solved examples go in front, separated by a blank line. The prompt of each task
is its benchmark family's (``runner.tasks.families``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runner.core.questions import Question
from runner.tasks.registry import family_of

HARNESS_VERSION = "0.4.13"  # the lm-evaluation-harness release whose prompts, sampler and tokenization are matched
TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"
TEMPLATE_VERSION = 1


@dataclass(frozen=True)
class HarnessRequest:
    """One question as the harness sees it: the prompt, the choice strings and the gold index."""

    context: str
    choices: list[str]
    gold: int


def task_family(task: str | None) -> str:
    """Which family's prompt a task uses: ``medmcqa``, ``pubmedqa``, ``mmlu`` or ``medqa`` (the default)."""
    return family_of(task).name


def doc_to_text(q: Question) -> str:
    """The harness's prompt for one question (without description or few-shot examples)."""
    return family_of(q.task).doc_to_text(q)


def doc_to_choices(q: Question) -> list[str]:
    """The choice strings: the option texts for PubMedQA, the letters otherwise."""
    return family_of(q.task).doc_to_choices(q)


def description(task: str | None) -> str:
    """The text the harness puts before everything else (MMLU only)."""
    return family_of(task).description(task)


def build_request(q: Question, fewshot: Sequence[Question] = ()) -> HarnessRequest:
    """The harness request for a question: description, K solved examples, then the question."""
    if not q.options or q.answer is None:
        raise ValueError(f"question {q.n} is not multiple-choice")
    shots = "".join(doc_to_text(ex) + TARGET_DELIMITER + doc_to_choices(ex)[list(ex.options or {}).index(ex.answer)]
                    + FEWSHOT_DELIMITER for ex in fewshot)
    return HarnessRequest(context=description(q.task) + shots + doc_to_text(q), choices=doc_to_choices(q),
                          gold=list(q.options).index(q.answer))
