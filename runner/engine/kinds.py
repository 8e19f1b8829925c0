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

import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from runner.core.errors import UsageError
from runner.core.personas import Persona
from runner.core.questions import Question, format_user_message
from runner.engine.cache_keys import answer_key
from runner.engine.loglik import loglik_key, loglik_persona, make_loglik_record, question_score
from runner.engine.recording import make_record
from runner.engine.variants import differences, saved_state
from runner.providers.base import LoglikRequest, Request, Result
from runner.tasks.fewshot import FewshotPlan
from runner.tasks.harness import TARGET_DELIMITER, build_request
from runner.tasks.letters import saved_choice

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
    space: SetStore | None = None  # where the record goes when not the plan's store space (a sample's ``_samples/<k>``)


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
    chosen: tuple[str | None, str] | None = None  # a multiple-choice answer's letter, for the index (saved_choice)


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

    def check_settings(self, spec: ModelSpec, settings: GenerationSettings) -> None:
        """Raise UsageError for settings (the model's, card defaults applied) this kind cannot serve."""

    def expand(self, units: list[Unit], spec: ModelSpec, settings: GenerationSettings) -> list[Unit]:
        """The units once the model's settings are known (``generate``: one per sample). Default: as they are."""
        return units

    def unit_space(self, space: SetStore, unit: Unit) -> SetStore:
        """The store space one unit's record goes to (default: the kind's ``space``, as every other unit's)."""
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
        # The text as the record holds it (cut to max_answer_chars); its letter read once, here, for the views.
        return Saved(record, record["text"], saved_choice(record))


@dataclass(frozen=True)
class Sample:
    """Which answer of a question a ``generate`` unit is, with ``--samples K`` (self-consistency): its number ``k``
    (1 is the answer itself) and its seed (``sample_seed``)."""

    k: int
    seed: int | None


def sample_seed(seed: int | None, k: int) -> int | None:
    """The seed of sample ``k`` (1-based) of a run seeded ``seed``: ``seed + k - 1`` (sample 1 keeps the run's seed,
    so its answer is the one a run without ``--samples`` makes); None without a seed."""
    return None if seed is None else seed + k - 1


def sample_key(answer: str, k: int) -> str:
    """The key of sample ``k`` >= 2: the answer key of its settings (its own seed) together with its number."""
    blob = json.dumps({"answer": answer, "sample": k}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class Generate(Kind):
    """Free-text answers (every generative provider).

    With ``samples`` K > 1 (self-consistency) each question is answered K times. Sample 1 is the answer itself
    (``<n>.json``, the same key as without ``--samples``, so earlier answers are reused); sample k >= 2 goes to
    ``<persona>/<model>/_samples/<k>/<n>.json`` (``SetStore.samples``), with its own key (``sample_key``) and seed
    (``sample_seed``), and is skipped on a re-run like an answer. Its record says which sample it is (``sample``) and
    its ``settings`` hold the seed it was asked with.
    """

    def check_settings(self, spec: ModelSpec, settings: GenerationSettings) -> None:
        """Several samples at temperature 0 are refused: every sample would be the same answer."""
        if settings.samples > 1 and settings.greedy:
            raise UsageError(f"--samples {settings.samples}: {spec.label} would answer each question "
                             f"{settings.samples} times at temperature 0 (greedy decoding), giving the same answer "
                             "every time; add --temperature above 0 (e.g. --temperature 0.7), or leave out --samples")

    def expand(self, units: list[Unit], spec: ModelSpec, settings: GenerationSettings) -> list[Unit]:
        """K units per question and persona, the samples of one question next to each other (a local model gets
        them all in the same call)."""
        if settings.samples <= 1:
            return units
        self.check_settings(spec, settings)
        return [replace(u, target=Sample(k, sample_seed(settings.seed, k))) for u in units
                for k in range(1, settings.samples + 1)]

    def unit_space(self, space: SetStore, unit: Unit) -> SetStore:
        """Samples 2..K are kept apart from the answers (``SetStore.samples``)."""
        sample = unit.target
        return space.samples(sample.k) if isinstance(sample, Sample) and sample.k > 1 else space

    def unit_key(self, unit: Unit, spec: ModelSpec, settings: GenerationSettings) -> str:
        """The answer key; for sample k >= 2, that of its own settings (its seed) with its number."""
        sample = unit.target
        if not isinstance(sample, Sample) or sample.k == 1:
            return self.key(unit.question, unit.persona, spec, settings)
        return sample_key(self.key(unit.question, unit.persona, spec, _sample_settings(settings, sample)), sample.k)

    def differences(self, record: dict[str, Any], persona: Persona, spec: ModelSpec,
                    settings: GenerationSettings) -> list[str]:
        """As for any answer; a saved sample is compared with the settings it would be asked with now (its seed)."""
        k = record.get("sample")
        if isinstance(k, int) and not isinstance(k, bool) and k > 1:
            settings = settings.model_copy(update={"seed": sample_seed(settings.seed, k)})
        return differences(record, persona, spec, settings)

    def request(self, work: Work, settings: GenerationSettings) -> Any:
        """The request, with a sample's own seed in its settings."""
        return super().request(work, _sample_settings(settings, work.target))

    def save(self, work: Work, result: Result, spec: ModelSpec, settings: GenerationSettings, run_id: str,
             set_name: str, tag: str | None, embedding: list[float] | None = None) -> Saved:
        """The answer's record; a sample's also says which sample it is, and holds the seed it was asked with."""
        sample = work.target
        saved = super().save(work, result, spec, _sample_settings(settings, sample), run_id, set_name, tag,
                             embedding)
        if isinstance(sample, Sample):
            saved.record["sample"] = sample.k
        return saved


def _sample_settings(settings: GenerationSettings, sample: Any) -> GenerationSettings:
    """The settings sample ``sample`` is asked with: the run's, with the sample's own seed (sample 1: unchanged)."""
    if not isinstance(sample, Sample) or sample.k == 1 or sample.seed == settings.seed:
        return settings
    return settings.model_copy(update={"seed": sample.seed})


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
