"""Log-likelihood results as records: their persona folder, cache key, record and ``.txt`` body.

Records live under the persona folder ``loglik`` (or ``loglik-<K>shot``), with ``kind: loglik`` and a ``loglik``
block holding every choice's summed log-probability, the ``acc`` and ``acc_norm`` choices and the prompt.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.core.personas import Persona
from runner.core.questions import Question
from runner.engine.recording import make_record
from runner.providers.base import LoglikRequest, Result
from runner.tasks.fewshot import FewshotPlan
from runner.tasks.harness import HARNESS_VERSION, TARGET_DELIMITER, TEMPLATE_VERSION, HarnessRequest, build_request

if TYPE_CHECKING:
    from runner.core.settings import GenerationSettings
    from runner.providers.catalog import ModelSpec


@dataclass
class QuestionScore:
    """Log-likelihood results for one question."""

    n: int
    letters: list[str]
    choices: list[str]
    logprobs: list[float]
    greedy: list[bool]
    gold: int
    prompt: str
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def acc_index(self) -> int:
        """The choice with the highest summed log-probability (first one on ties, like numpy.argmax)."""
        return best(self.logprobs)

    @property
    def acc_norm_index(self) -> int:
        """The choice with the highest log-probability per character of the choice string."""
        return best([lp / len(c) for lp, c in zip(self.logprobs, self.choices, strict=True)])


def best(values: Sequence[float]) -> int:
    """Index of the largest value, the first one on ties (numpy.argmax's rule, which the harness uses)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def loglik_persona(num_fewshot: int) -> Persona:
    """The persona folder log-likelihood records live under: ``loglik`` or ``loglik-<K>shot``."""
    name = "loglik" if num_fewshot == 0 else f"loglik-{num_fewshot}shot"
    text = (f"Log-likelihood scoring (the lm-evaluation-harness method), {num_fewshot}-shot: no system prompt; "
            "the harness's task prompt, each choice scored as a continuation.")
    return Persona(name=name, text=text, source="loglik")


def loglik_key(q: Question, spec: ModelSpec, fewshot: Sequence[Question]) -> str:
    """What must be equal for a saved log-likelihood result to be reused."""
    parts = {"v": TEMPLATE_VERSION, "method": "loglik", "question": q.content_hash(), "task": q.task,
             "answer": q.answer, "model": spec.answer_key_fields(),
             "fewshot": [[ex.content_hash(), ex.answer, ex.task] for ex in fewshot]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def question_score(q: Question, harness: HarnessRequest, result: Result) -> QuestionScore:
    """A provider's log-likelihood result for one question, with the question's letters and gold choice."""
    if result.logprobs is None or len(result.logprobs) != len(harness.choices):
        raise ValueError(f"question {q.n}: expected {len(harness.choices)} log-likelihoods, got "
                         f"{len(result.logprobs or [])}")
    greedy = result.greedy if result.greedy is not None else [False] * len(harness.choices)
    return QuestionScore(n=q.n, letters=list(q.options or {}), choices=harness.choices, logprobs=result.logprobs,
                         greedy=greedy, gold=harness.gold, prompt=harness.context, seconds=result.latency_s)


def make_loglik_record(q: Question, score: QuestionScore, spec: ModelSpec, settings: GenerationSettings, key: str,
                       run_id: str, fewshot: FewshotPlan | None = None,
                       result: Result | None = None) -> tuple[dict[str, Any], str]:
    """The store record (kind ``loglik``) and the ``.txt`` body for one scored question; with examples in front, the
    record says how they were drawn (sampler, seed) and which they were (their ids or numbers)."""
    num_fewshot = fewshot.k if fewshot else 0
    chosen, chosen_norm = score.letters[score.acc_index], score.letters[score.acc_norm_index]
    base = result or Result()
    saved = Result(text=chosen, latency_s=score.seconds, finish_reason="loglik", prompt_tokens=base.prompt_tokens,
                   attempts=base.attempts, warnings=base.warnings, served_model=base.served_model)
    record = make_record(q, loglik_persona(num_fewshot), spec, settings, saved, key, run_id)
    record["kind"] = "loglik"
    record["loglik"] = {
        "num_fewshot": num_fewshot, "letters": score.letters, "choices": score.choices,
        "logprobs": [round(x, 6) for x in score.logprobs], "greedy": score.greedy,
        "acc_choice": chosen, "acc_norm_choice": chosen_norm,
        "acc": int(score.acc_index == score.gold), "acc_norm": int(score.acc_norm_index == score.gold),
        "prompt": score.prompt, "template_version": TEMPLATE_VERSION, "harness_version": HARNESS_VERSION,
    }
    if fewshot:
        record["loglik"].update(fewshot_sampler=fewshot.sampler_of(q), fewshot_seed=fewshot.seed,
                                fewshot_examples=[ex.id or ex.n for ex in fewshot.for_question(q)])
    lines = [f"{letter} ({choice!r}): {lp:.4f}" for letter, choice, lp in zip(score.letters, score.choices,
                                                                               score.logprobs, strict=True)]
    body = (f"Log-likelihood choice (acc): {chosen}\nPer-character choice (acc_norm): {chosen_norm}\n"
            f"Correct: {q.answer}\n\nSummed log-probability of each choice:\n" + "\n".join(lines) + "\n")
    return record, body


def score_questions(model: Any, tokenizer: Any, questions: Sequence[Question], fewshot: Sequence[Question] = (),
                    batch_size: int = 8) -> list[QuestionScore]:
    """Score questions with a loaded local model, outside the engine (tests and notebooks); one result each."""
    from runner.core.settings import GenerationSettings
    from runner.providers.local.loglik import score_requests

    harness = [build_request(q, fewshot) for q in questions]
    requests = [LoglikRequest(str(q.n), h.context, tuple(TARGET_DELIMITER + c for c in h.choices),
                              GenerationSettings()) for q, h in zip(questions, harness, strict=True)]
    start = time.perf_counter()
    results = score_requests(model, tokenizer, requests, batch_size=batch_size)
    per_question = (time.perf_counter() - start) / max(1, len(questions))
    scores = []
    for q, h, result in zip(questions, harness, results, strict=True):
        result.latency_s = per_question
        scores.append(question_score(q, h, result))
    return scores
