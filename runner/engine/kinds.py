"""Request kinds: what the engine asks a model for, and how each answer becomes a record.

The engine (``orchestrator.py``) plans, skips what is saved, locks, writes the manifest, retries, shows progress,
saves and summarises the same way for every kind. A kind supplies only what differs:

- its **key** (what must be equal for a saved record to be reused),
- the **request** a provider receives, and which provider method serves it (batched or concurrent),
- the **record** and ``.txt`` body saved for a result.

``generate`` asks for a free-text answer, ``embed`` for a vector of the question, ``loglik`` for the
log-likelihood of each multiple-choice option (lm-evaluation-harness's method). A provider declares the kinds it
serves in its registry entry (``capabilities``); the engine refuses a model that does not serve the kind asked for.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from runner.core.personas import Persona
from runner.core.questions import Question, format_user_message
from runner.engine.cache_keys import answer_key
from runner.engine.loglik import loglik_key, loglik_persona, make_loglik_record, question_score
from runner.engine.recording import make_record
from runner.engine.variants import differences, saved_state
from runner.providers.base import LoglikRequest, Request, Result
from runner.tasks.fewshot import FewshotPlan
from runner.tasks.harness import TARGET_DELIMITER, build_request

if TYPE_CHECKING:
    from runner.core.settings import GenerationSettings
    from runner.core.store import SetStore
    from runner.providers.base import Embedder, Generator, OnResult
    from runner.providers.catalog import ModelSpec


@dataclass(frozen=True)
class Work:
    """One request to make: a question under a persona, and the key its record will carry."""

    persona: Persona
    question: Question
    key: str
    folder: str | None = None  # where the record goes when not the model's own folder (grades: the graded model's)
    target: Any = None  # what a composite kind works on (grades: the answer to grade)
    previous: dict[str, Any] | None = None  # the record saved at this place before, when a kind reuses part of it


@dataclass(frozen=True)
class Unit:
    """One place a kind's record goes: under a persona folder, for a question, in a model folder (None: the
    model's own), about a target (kinds that work on something saved)."""

    persona: Persona
    question: Question
    folder: str | None = None
    target: Any = None


@dataclass(frozen=True)
class Saved:
    """What a kind turns a result into: the record (the commit marker) and the ``.txt`` body."""

    record: dict[str, Any]
    body: str | None


class Kind:
    """The default kind, ``generate``: a free-text answer per question and persona."""

    name: ClassVar[str] = "generate"
    # The capability a provider must declare to serve this kind (registry ``capabilities``).
    requires: ClassVar[str] = "generate"
    # A composite kind's provider method makes several calls per piece of work and retries each itself; the engine
    # then calls it once, without its own timeout and retries.
    composite: ClassVar[bool] = False

    def __init__(self, fewshot: FewshotPlan | None = None) -> None:
        """``fewshot``: the solved examples put in front of each question (only the ``loglik`` kind takes them)."""

    def units(self, questions: Sequence[Question], personas: Sequence[Persona]) -> list[Unit]:
        """Every place a record of this kind goes: each question under each persona, in the model's folder."""
        return [Unit(p, q) for p in personas for q in questions]

    def space(self, space: SetStore, folder: str) -> SetStore:
        """Where this kind's records are kept for one model (``folder``): the question set itself."""
        return space

    def state(self, record: dict[str, Any] | None, key: str, question: Question) -> str:
        """How a saved record stands against a new request (``variants.saved_state``)."""
        return saved_state(record, key, question)

    def unit_key(self, unit: Unit, spec: ModelSpec, settings: GenerationSettings) -> str:
        """The key of one unit's record (``key`` of its question and persona, for kinds without a target)."""
        return self.key(unit.question, unit.persona, spec, settings)

    def personas(self, personas: Sequence[Persona]) -> list[Persona]:
        """The persona folders this kind's records go under."""
        return list(personas)

    def check(self, question: Question) -> None:
        """Raise ValueError when a question cannot be asked in this kind."""

    def key(self, question: Question, persona: Persona, spec: ModelSpec, settings: GenerationSettings) -> str:
        """What must be equal for a saved record to be reused."""
        return answer_key(question, persona, spec, settings)

    def differences(self, record: dict[str, Any], persona: Persona, spec: ModelSpec,
                    settings: GenerationSettings) -> list[str]:
        """How a saved variant differs from this request, in words."""
        return differences(record, persona, spec, settings)

    def request(self, work: Work, settings: GenerationSettings) -> Any:
        """The request a provider receives for one piece of work."""
        return Request(work.key, work.persona.text, format_user_message(work.question), settings,
                       messages=work.question.messages)

    def batched(self, provider: Generator) -> Callable[[Sequence[Any], OnResult], list[Result]]:
        """The provider's method that answers a batch (local models)."""
        return provider.generate

    def concurrent(self, provider: Generator) -> Callable[[Any], Awaitable[Result]]:
        """The provider's method that answers one request (APIs)."""
        return provider.agenerate

    def save(self, work: Work, result: Result, spec: ModelSpec, settings: GenerationSettings, run_id: str,
             set_name: str, tag: str | None, embedding: list[float] | None = None) -> Saved:
        """The record and body saved for one result."""
        record = make_record(work.question, work.persona, spec, settings, result, work.key, run_id,
                             set_name=set_name, tag=tag)
        return Saved(record, record["text"])  # the text as the record holds it (cut to max_answer_chars)


class Generate(Kind):
    """Free-text answers (every generative provider)."""


class Embed(Kind):
    """A vector of each question (encoders); each distinct text is embedded once for every persona."""

    name: ClassVar[str] = "embed"
    requires: ClassVar[str] = "embed"

    def embed(self, provider: Embedder, pending: Sequence[Work],
              deliver: Callable[[Work, Result, list[float] | None], None]) -> None:
        """Embed every distinct question text once and deliver its vector to each piece of work."""
        texts = list(dict.fromkeys(w.question.question for w in pending))
        start = time.perf_counter()
        try:
            vectors = provider.embed(texts)
        except Exception as exc:  # noqa: BLE001 - recorded per answer; the run goes on
            error = provider.classify(exc)
            for w in pending:
                deliver(w, Result.failure(error), None)
            return
        per_text = (time.perf_counter() - start) / max(1, len(texts))
        by_text = dict(zip(texts, vectors, strict=True))
        for w in pending:
            deliver(w, Result(text="", latency_s=per_text, finish_reason="embedding"), by_text[w.question.question])

    def save(self, work: Work, result: Result, spec: ModelSpec, settings: GenerationSettings, run_id: str,
             set_name: str, tag: str | None, embedding: list[float] | None = None) -> Saved:
        """The record (with the vector) and the body (the vector as JSON) of one embedding."""
        record = make_record(work.question, work.persona, spec, settings, result, work.key, run_id, embedding,
                             set_name=set_name, tag=tag)
        body = json.dumps([round(float(x), 7) for x in embedding]) + "\n" if embedding is not None else None
        return Saved(record, body)


class Loglik(Kind):
    """The log-likelihood of each option of a multiple-choice question, as lm-evaluation-harness computes it.

    Records go under the persona folder ``loglik`` (``loglik-<K>shot`` with K solved examples in front).
    """

    name: ClassVar[str] = "loglik"
    requires: ClassVar[str] = "loglik"

    def __init__(self, fewshot: FewshotPlan | None = None) -> None:
        self.fewshot = fewshot or FewshotPlan()
        self.persona = loglik_persona(self.fewshot.k)

    def personas(self, personas: Sequence[Persona]) -> list[Persona]:
        """Always the one ``loglik`` persona: the harness sends no system prompt."""
        return [self.persona]

    def check(self, question: Question) -> None:
        """Only multiple-choice questions (options and answer) can be scored."""
        if not question.is_multiple_choice:
            raise ValueError(f"question {question.n} is not multiple-choice (it needs options and answer)")

    def key(self, question: Question, persona: Persona, spec: ModelSpec, settings: GenerationSettings) -> str:
        """The question, its task and answer, the model and the examples (settings do not change the scores)."""
        return loglik_key(question, spec, self.fewshot.for_question(question))

    def differences(self, record: dict[str, Any], persona: Persona, spec: ModelSpec,
                    settings: GenerationSettings) -> list[str]:
        """Model options and examples are all that can differ."""
        return differences(record, None, spec, None)

    def request(self, work: Work, settings: GenerationSettings) -> LoglikRequest:
        """The harness's context and the choices as continuations (" A" ... " D")."""
        harness = build_request(work.question, self.fewshot.for_question(work.question))
        return LoglikRequest(work.key, harness.context, tuple(TARGET_DELIMITER + c for c in harness.choices),
                             settings)

    def batched(self, provider: Generator) -> Callable[[Sequence[Any], OnResult], list[Result]]:
        """Local models score many questions per forward pass."""
        return provider.loglikelihood

    def concurrent(self, provider: Generator) -> Callable[[Any], Awaitable[Result]]:
        """Servers score one question per request (one prompt per choice)."""
        return provider.aloglikelihood

    def save(self, work: Work, result: Result, spec: ModelSpec, settings: GenerationSettings, run_id: str,
             set_name: str, tag: str | None, embedding: list[float] | None = None) -> Saved:
        """The ``loglik`` record: every choice's log-probability, the acc and acc_norm choices, the prompt."""
        if not result.error:
            try:
                harness = build_request(work.question, self.fewshot.for_question(work.question))
                score = question_score(work.question, harness, result)
            except ValueError as exc:
                result = Result(error=str(exc), latency_s=result.latency_s, attempts=result.attempts)
        if result.error:
            record = make_record(work.question, self.persona, spec, settings, result, work.key, run_id,
                                 set_name=set_name, tag=tag)
            record["kind"] = "loglik"
            return Saved(record, None)
        record, body = make_loglik_record(work.question, score, spec, settings, work.key, run_id, self.fewshot,
                                          result)
        record.update(set=set_name, tag=tag)
        return Saved(record, body)


KINDS: dict[str, type[Kind]] = {"generate": Generate, "embed": Embed, "loglik": Loglik}
