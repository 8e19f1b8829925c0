"""Log-likelihood scoring as a request kind: plan, score, and save one record per question (kind ``loglik``).

Records live under the persona folder ``loglik`` (or ``loglik-<K>shot``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.core.questions import Question
from runner.providers.local.loglik import loglikelihoods
from runner.tasks.harness import TARGET_DELIMITER, TEMPLATE_VERSION, build_request


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
        return max(range(len(self.logprobs)), key=lambda i: (self.logprobs[i], -i))

    @property
    def acc_norm_index(self) -> int:
        """The choice with the highest log-probability per character of the choice string."""
        normed = [lp / len(c) for lp, c in zip(self.logprobs, self.choices, strict=True)]
        return max(range(len(normed)), key=lambda i: (normed[i], -i))


def score_questions(model: Any, tokenizer: Any, questions: Sequence[Question], fewshot: Sequence[Question] = (),
                    batch_size: int = 8) -> list[QuestionScore]:
    """Score every multiple-choice question by log-likelihood; one result per question, in order."""
    requests = [build_request(q, fewshot) for q in questions]
    pairs = [(r.context, TARGET_DELIMITER + c) for r in requests for c in r.choices]
    start = time.perf_counter()
    flat = loglikelihoods(model, tokenizer, pairs, batch_size=batch_size)
    per_question = (time.perf_counter() - start) / max(1, len(questions))
    scores, offset = [], 0
    for q, r in zip(questions, requests, strict=True):
        part = flat[offset:offset + len(r.choices)]
        offset += len(r.choices)
        scores.append(QuestionScore(n=q.n, letters=list(q.options or {}), choices=r.choices,
                                    logprobs=[lp for lp, _ in part], greedy=[g for _, g in part], gold=r.gold,
                                    prompt=r.context, seconds=per_question))
    return scores


def loglik_persona(num_fewshot: int) -> Any:
    """The persona folder log-likelihood records live under: ``loglik`` or ``loglik-<K>shot``."""
    from runner.core.personas import Persona

    name = "loglik" if num_fewshot == 0 else f"loglik-{num_fewshot}shot"
    text = (f"Log-likelihood scoring (the lm-evaluation-harness method), {num_fewshot}-shot: no system prompt; "
            "the harness's task prompt, each choice scored as a continuation.")
    return Persona(name=name, text=text, source="loglik")


def loglik_key(q: Question, spec: Any, fewshot: Sequence[Question]) -> str:
    """What must be equal for a saved log-likelihood result to be reused."""
    import hashlib
    import json

    parts = {"v": TEMPLATE_VERSION, "method": "loglik", "question": q.content_hash(), "task": q.task,
             "answer": q.answer, "model": spec.answer_key_fields(),
             "fewshot": [[ex.content_hash(), ex.answer, ex.task] for ex in fewshot]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def make_loglik_record(q: Question, score: QuestionScore, spec: Any, settings: Any, key: str, run_id: str,
                       num_fewshot: int) -> tuple[dict[str, Any], str]:
    """The store record (kind ``loglik``) and the ``.txt`` body for one scored question."""
    from runner.engine.recording import make_record
    from runner.providers.base import Result

    chosen, chosen_norm = score.letters[score.acc_index], score.letters[score.acc_norm_index]
    result = Result(text=chosen, latency_s=score.seconds, finish_reason="loglik")
    record = make_record(q, loglik_persona(num_fewshot), spec, settings, result, key, run_id)
    record["kind"] = "loglik"
    record["loglik"] = {
        "num_fewshot": num_fewshot, "letters": score.letters, "choices": score.choices,
        "logprobs": [round(x, 6) for x in score.logprobs], "greedy": score.greedy,
        "acc_choice": chosen, "acc_norm_choice": chosen_norm,
        "acc": int(score.acc_index == score.gold), "acc_norm": int(score.acc_norm_index == score.gold),
        "prompt": score.prompt, "template_version": TEMPLATE_VERSION,
    }
    lines = [f"{letter} ({choice!r}): {lp:.4f}" for letter, choice, lp in zip(score.letters, score.choices,
                                                                               score.logprobs, strict=True)]
    body = (f"Log-likelihood choice (acc): {chosen}\nPer-character choice (acc_norm): {chosen_norm}\n"
            f"Correct: {q.answer}\n\nSummed log-probability of each choice:\n" + "\n".join(lines) + "\n")
    return record, body


@dataclass
class LoglikPlan:
    """One model's log-likelihood work in one question set: what is left, what is saved, what would be replaced."""

    spec: Any
    space: Any
    tag: str | None
    folder: str
    label: str
    pending: list[tuple[Question, str]]
    skipped: int
    conflict: Any


def plan_loglik(spec: Any, questions: Sequence[Question], fewshot: Sequence[Question], space: Any,
                tag: str | None = None, force: bool = False) -> LoglikPlan:
    """What is left to score for one model in one set; results made with other examples or options are conflicts."""
    from runner.core.store import with_tag
    from runner.engine.variants import SAME, VARIANT, Conflict, differences, saved_state

    persona, folder, label = loglik_persona(len(fewshot)), with_tag(spec.slug, tag), with_tag(spec.label, tag)
    space.model_dir(persona.name, folder)  # refuses unsafe names before any work
    conflict = Conflict(space.name, persona.name, label, folder)
    pending, skipped = [], 0
    for q in questions:
        key = loglik_key(q, spec, fewshot)
        record = space.load_record(persona.name, folder, q.n)
        state = saved_state(record, key, q)
        if state == SAME and not force:
            skipped += 1
            continue
        if state == VARIANT:
            conflict.count += 1
            conflict.what.update(["; ".join(differences(record or {}, None, spec, None))])
        pending.append((q, key))
    return LoglikPlan(spec, space, tag, folder, label, pending, skipped, conflict)


def score_and_save(plan: LoglikPlan, settings: Any, run_id: str, fewshot: Sequence[Question] = (),
                   chunk: int = 64) -> dict[str, Any]:
    """Score the questions a plan left to do and save each result; returns counts.

    The model loads only when something is left to score, and is released at the end.
    """
    from runner.providers.local.devices import free_accelerator_memory
    from runner.providers.local.hf import load_model_and_tokenizer

    spec, persona = plan.spec, loglik_persona(len(fewshot))
    counts = {"model": spec.name, "set": plan.space.name, "persona": persona.name, "scored": 0,
              "skipped": plan.skipped}
    if not plan.pending:
        return counts
    model, tokenizer = load_model_and_tokenizer(spec, settings)
    batch_size = settings.batch_size if isinstance(settings.batch_size, int) else 8
    try:
        for start in range(0, len(plan.pending), chunk):
            part = plan.pending[start:start + chunk]
            scores = score_questions(model, tokenizer, [q for q, _ in part], fewshot, batch_size=batch_size)
            for (q, key), score in zip(part, scores, strict=True):
                record, body = make_loglik_record(q, score, spec, settings, key, run_id, len(fewshot))
                record.update(set=plan.space.name, tag=plan.tag)
                plan.space.save(persona.name, plan.folder, q.n, record, body)
                counts["scored"] += 1
    finally:
        del model
        free_accelerator_memory()
    return counts
