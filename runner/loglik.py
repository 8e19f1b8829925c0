"""Log-likelihood scoring of multiple-choice questions, as EleutherAI's lm-evaluation-harness does it.

For each question the prompt is the harness's task prompt (``medqa_4options``: "Question: {q}\\nA. {A}\\n...
D. {D}\\nAnswer:"), each choice is a continuation after the target delimiter (" A" ... " D"; PubMedQA's are
" yes" / " no" / " maybe"), and its score is the summed log-probability of the continuation's tokens.
``acc`` takes the choice with the highest sum; ``acc_norm`` the highest sum divided by the choice string's
length in characters. Tokenization follows the harness's ``_encode_pair``: trailing whitespace of the context
moves to the continuation, context + continuation are encoded together (no special tokens unless the model
needs a BOS, as Gemma does) and split where the context's own encoding ends. Inputs are cut from the left to
the model's length, right-padded with 0 and run without an attention mask, as the harness does.

``score_and_save`` runs one model over the questions and saves one record per question into the store
(persona folder ``loglik``, or ``loglik-<K>shot``; record kind ``loglik``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.questions import Question

DEFAULT_MAX_LENGTH = 2048  # the harness's fallback when neither the config nor the tokenizer gives one
TOKENIZER_INFINITY = 1000000000000000019884624838656
TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"
TEMPLATE_VERSION = 1


@dataclass(frozen=True)
class HarnessRequest:
    """One question as the harness sees it: the prompt, the choice strings and the gold index."""

    context: str
    choices: list[str]
    gold: int


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


def task_family(task: str | None) -> str:
    """Which harness prompt a task uses: ``medmcqa``, ``pubmedqa``, ``mmlu`` or ``medqa`` (the default)."""
    name = (task or "").lower().replace("-", "_")
    if name.startswith("medmcqa"):
        return "medmcqa"
    if name.startswith(("pubmedqa", "pubmed_qa")):
        return "pubmedqa"
    if name.startswith("mmlu_"):
        return "mmlu"
    return "medqa"


def doc_to_text(q: Question) -> str:
    """The harness's prompt for one question (without description or few-shot examples)."""
    options = q.options or {}
    family = task_family(q.task)
    if family == "pubmedqa":
        return f"Abstract: {q.context or ''}\nQuestion: {q.question}\nAnswer:"
    lines = "".join(f"{letter}. {text}\n" for letter, text in options.items())
    if family == "medmcqa":
        return f"Question: {q.question}\nChoices:\n{lines}Answer:"
    if family == "mmlu":
        return f"{q.question.strip()}\n{lines}Answer:"
    context = f"Context: {q.context}\n" if q.context else ""  # not in MedQA; kept for custom questions
    return f"{context}Question: {q.question}\n{lines}Answer:"


def doc_to_choices(q: Question) -> list[str]:
    """The choice strings: the option texts for PubMedQA, the letters otherwise."""
    options = q.options or {}
    return list(options.values()) if task_family(q.task) == "pubmedqa" else list(options)


def description(task: str | None) -> str:
    """The text the harness puts before everything else (MMLU only)."""
    if task_family(task) == "mmlu":
        subject = (task or "")[len("mmlu_"):].replace("_", " ")
        return f"The following are multiple choice questions (with answers) about {subject}.\n\n"
    return ""


def build_request(q: Question, fewshot: Sequence[Question] = ()) -> HarnessRequest:
    """The harness request for a question: description, K solved examples, then the question."""
    if not q.options or q.answer is None:
        raise ValueError(f"question {q.n} is not multiple-choice")
    shots = "".join(doc_to_text(ex) + TARGET_DELIMITER + doc_to_choices(ex)[list(ex.options or {}).index(ex.answer)]
                    + FEWSHOT_DELIMITER for ex in fewshot)
    return HarnessRequest(context=description(q.task) + shots + doc_to_text(q), choices=doc_to_choices(q),
                          gold=list(q.options).index(q.answer))


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


def wants_bos(model: Any) -> bool:
    """The harness adds a BOS token for the Gemma family only (they underperform without it)."""
    return "gemma" in str(getattr(getattr(model, "config", None), "model_type", "") or "")


def encode_pair(tokenizer: Any, context: str, continuation: str, add_bos: bool = False) -> tuple[list[int], list[int]]:
    """Token ids of (context, continuation) exactly as the harness splits them."""
    if not context:  # the harness starts an empty context with the prefix token (BOS, else EOS)
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return [prefix], tokenizer.encode(continuation, add_special_tokens=add_bos)
    spaces = len(context) - len(context.rstrip())
    if spaces:
        continuation = context[-spaces:] + continuation
        context = context[:-spaces]
    whole = tokenizer.encode(context + continuation, add_special_tokens=add_bos)
    context_ids = tokenizer.encode(context, add_special_tokens=add_bos)
    return context_ids, whole[len(context_ids):]


def loglikelihoods(model: Any, tokenizer: Any, pairs: Sequence[tuple[str, str]], batch_size: int = 8,
                   add_bos: bool | None = None, max_length: int | None = None) -> list[tuple[float, bool]]:
    """(summed log-probability, is-greedy) of each continuation given its context, in input order.

    ``max_length`` overrides the model's context length (like the harness's ``max_length`` argument).
    """
    import torch
    import torch.nn.functional as F

    add_bos = wants_bos(model) if add_bos is None else add_bos
    limit = max_length or model_max_length(model, tokenizer)
    encoded = [encode_pair(tokenizer, c, x, add_bos) for c, x in pairs]
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
    order = sorted(range(len(unique)), key=lambda i: (-len(unique[i]), unique[i]))  # longest first, as the harness
    device = next(model.parameters()).device
    rows: dict[int, Any] = {}
    with torch.inference_mode():
        for start in range(0, len(order), max(1, batch_size)):
            chunk = order[start:start + batch_size]
            width = max(len(unique[i]) for i in chunk)
            batch = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                batch[row, :len(unique[i])] = torch.tensor(unique[i], dtype=torch.long)
            logprobs = F.log_softmax(model(batch.to(device)).logits, dim=-1).cpu()
            for row, i in enumerate(chunk):
                rows[i] = logprobs[row, :len(unique[i])]
    results = []
    for index, cont in plan:
        length = len(unique[index])
        picked = rows[index][length - len(cont):length]
        target = torch.tensor(cont, dtype=torch.long)
        greedy = bool((picked.argmax(dim=-1) == target).all())
        results.append((float(picked.gather(1, target.unsqueeze(-1)).sum()), greedy))
    return results


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
    from runner.personas import Persona

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
    from runner.providers.base import Result
    from runner.records import make_record

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
    from runner.store import with_tag
    from runner.variants import SAME, VARIANT, Conflict, differences, saved_state

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
    from runner.devices import free_accelerator_memory
    from runner.providers.hf import load_model_and_tokenizer

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
