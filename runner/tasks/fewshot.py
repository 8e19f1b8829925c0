"""Which solved examples go in front of each question: lm-evaluation-harness's few-shot samplers.

The harness (``runner.tasks.harness.HARNESS_VERSION``) gives each task a sampler. ``default`` (MedQA, MedMCQA,
PubMedQA) draws K examples per question with one ``random.Random(1234)`` per task, question after question in
document order, so the examples of question 10 depend on the draws for questions 1-9; ``first_n`` (MMLU) takes the
first K of the pool. When the pool holds the question being scored (the pool is the scored split), the harness
draws K + 1 and drops the question itself; the same is done here whenever the pool holds it, so a question is never
shown solved in front of itself.

``--fewshot-sampler first`` takes the first K for every task instead (the runner's behaviour before it matched the
harness).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice

from runner.core.errors import UsageError
from runner.core.questions import Question
from runner.tasks.registry import family_of

FEWSHOT_SEED = 1234  # lm-evaluation-harness's default fewshot_random_seed
SAMPLERS = ("harness", "first")  # --fewshot-sampler: the task's own sampler, or the first K for every task
Identity = tuple[str, str | None, str | None]  # what makes two items the same document: content hash, answer, task


@dataclass
class FewshotPlan:
    """The examples of each question (by number), and what a user should know about how they were drawn."""

    k: int = 0
    choice: str = "harness"  # --fewshot-sampler
    seed: int = FEWSHOT_SEED
    examples: dict[int, list[Question]] = field(default_factory=dict)
    samplers: dict[str, str] = field(default_factory=dict)  # task -> "default" or "first_n"
    overlap: int = 0  # scored questions that are also in the pool (never shown as their own example)

    def __bool__(self) -> bool:
        return self.k > 0

    def for_question(self, q: Question) -> list[Question]:
        """The examples in front of question ``q``; KeyError for a question the plan was not made for."""
        if not self.k:
            return []
        return self.examples[q.n]

    def sampler_of(self, q: Question) -> str:
        """``default`` or ``first_n``: how the examples of ``q`` were drawn."""
        return self.samplers.get(str(q.task), task_sampler(q.task, self.choice))


def identity(q: Question) -> Identity:
    """What makes two items the same document for the sampler: the content sent and the answer and task."""
    return q.content_hash(), q.answer, q.task


def task_sampler(task: str | None, choice: str = "harness") -> str:
    """The harness sampler a task uses (``first_n`` for MMLU, ``default`` otherwise), or ``first_n`` for
    ``--fewshot-sampler first``."""
    if choice not in SAMPLERS:
        raise UsageError(f"unknown --fewshot-sampler {choice!r}; choose {' or '.join(SAMPLERS)}")
    return "first_n" if choice == "first" else family_of(task).fewshot_sampler


def plan_fewshot(questions: Sequence[Question], pool: Sequence[Question], k: int, choice: str = "harness",
                 seed: int = FEWSHOT_SEED, where: str = "the few-shot pool") -> FewshotPlan:
    """K examples for each question, drawn from ``pool`` as the harness draws them.

    Each task has its own pool (the pool's items of that task; ``--task`` gives both files the same one) and its own
    random stream, advanced question by question in document order.
    """
    plan = FewshotPlan(k=max(0, k), choice=choice, seed=seed)
    if k <= 0:
        return plan
    by_task: dict[str | None, list[tuple[Identity, Question]]] = {}
    for ex in pool:  # each example's identity once (a train split holds 10^5 of them)
        by_task.setdefault(ex.task, []).append((identity(ex), ex))
    counts = {task: Counter(i for i, _ in items) for task, items in by_task.items()}
    streams: dict[str | None, random.Random] = {}
    for q in questions:
        task_pool = by_task.get(q.task)
        if task_pool is None:
            raise UsageError(f"{where} has no examples of task {q.task!r} (it has "
                             f"{', '.join(sorted(str(t) for t in by_task))}); give a pool of the same task or --task")
        sampler = task_sampler(q.task, choice)
        plan.samplers[str(q.task)] = sampler
        me = identity(q)
        copies = counts[q.task][me]
        plan.overlap += copies > 0
        if len(task_pool) - copies < k:
            raise UsageError(f"--num-fewshot {k}: {where} has only {len(task_pool) - copies} example(s) of task "
                             f"{q.task!r}" + (" besides the question itself" if copies else ""))
        if sampler == "first_n":
            plan.examples[q.n] = list(islice((ex for i, ex in task_pool if i != me), k))
            continue
        rnd = streams.setdefault(q.task, random.Random(seed))
        plan.examples[q.n] = _sample(rnd, task_pool, k, me if copies else None)
    return plan


def _sample(rnd: random.Random, pool: list[tuple[Identity, Question]], k: int,
            exclude: Identity | None) -> list[Question]:
    """The harness's ``ContextSampler.sample``: K draws, or K + 1 less the scored item when the pool holds it (and a
    second draw from the pool without it when duplicates of it were drawn)."""
    if exclude is None:
        return [ex for _, ex in rnd.sample(pool, k)]
    drawn = [ex for i, ex in rnd.sample(pool, k + 1) if i != exclude][:k]
    if len(drawn) < k:
        drawn = [ex for _, ex in rnd.sample([item for item in pool if item[0] != exclude], k)]
    return drawn
