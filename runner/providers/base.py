"""The provider interface: Generator (batch of requests -> results in input order) and Embedder.

Providers know nothing of files. They classify their own errors (``classify``); retrying,
concurrency and progress live in the engine.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.core.errors import ProviderError
from runner.core.questions import Message
from runner.core.settings import GenerationSettings
from runner.providers.registry import ProviderInfo, provider_info

if TYPE_CHECKING:
    from runner.providers.catalog import ModelSpec


@dataclass(frozen=True)
class Request:
    """One question for one model under one persona. ``key`` identifies the answer in the store."""

    key: str
    system_prompt: str
    user_message: str
    settings: GenerationSettings
    # A conversation to continue in place of the one user turn (``user_message`` is then its last user turn); the
    # system prompt, when not empty, goes in front of it as the system message.
    messages: tuple[Message, ...] | None = None


@dataclass(frozen=True)
class LoglikRequest:
    """One multiple-choice question to score by log-likelihood: each continuation's log-probability after ``context``.

    ``context`` and ``continuations`` are exactly what lm-evaluation-harness scores (the continuations start with the
    target delimiter, " A" ... " D"). ``key`` identifies the result in the store.
    """

    key: str
    context: str
    continuations: tuple[str, ...]
    settings: GenerationSettings


@dataclass
class Result:
    """What a provider returns for one request: an answer, or an error."""

    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float = 0.0
    finish_reason: str | None = None
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    attempts: int = 1
    warnings: list[str] = field(default_factory=list)
    # The model the server says it served (an API's ``model`` or ``modelVersion``), when it says.
    served_model: str | None = None
    # Log-likelihood requests: per continuation, the summed log-probability and whether it is the greedy output.
    logprobs: list[float] | None = None
    greedy: list[bool] | None = None
    # Generate requests: the user message sent, and the whole prompt text where the provider formats one itself
    # (local models: the chat template or prompt format applied). The engine fills these in (``note_prompt``).
    user_message: str | None = None
    prompt_text: str | None = None
    # Reasoning models: the thinking trace kept apart from the answer (``text``), and the tokens spent thinking
    # (reported by the API, or counted locally); None when the model does not say or does not think.
    reasoning: str | None = None
    reasoning_tokens: int | None = None
    # Local budget forcing (--thinking-budget, --min-thinking): {"waits": "Wait"s inserted, "forced_end": whether
    # the end-of-thinking delimiter was inserted}; None otherwise.
    thinking: dict[str, Any] | None = None
    # Composite kinds (grading): what the calls behind one result found (the verdict of each rubric item).
    details: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """True when the request produced an answer."""
        return self.error is None

    @classmethod
    def failure(cls, error: ProviderError, latency_s: float = 0.0) -> Result:
        """A failed result carrying the provider's classification."""
        return cls(error=str(error), retryable=error.retryable, retry_after=error.retry_after, latency_s=latency_s)


OnResult = Callable[[int, Result], None]


class Provider(ABC):  # noqa: B024 - a base with default hooks; abstract methods live in its subclasses
    """What every backend shares: construction from a spec, loading, closing, credentials."""

    def __init__(self, spec: ModelSpec, settings: GenerationSettings) -> None:
        self.spec = spec
        self.settings = settings

    @property
    def info(self) -> ProviderInfo:
        """This provider's declaration (key variables, base-URL variable, ...): the one place its facts live."""
        return provider_info(self.spec.provider)

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load weights or open clients; raise ModelUnavailable when the model cannot run here."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release memory (GPU included) and clients."""

    def classify(self, error: BaseException) -> ProviderError:
        """Map any exception raised while answering to a ProviderError (retryable or not)."""
        if isinstance(error, ProviderError):
            return error
        return ProviderError(f"{type(error).__name__}: {error}", retryable=False)


class Generator(Provider):
    """A generative model.

    Batched providers (local models) implement ``generate``. Concurrent providers (APIs) are declared
    ``concurrent=True`` in their ``ProviderInfo`` and implement ``agenerate`` for one request; the engine
    runs those up to ``settings.concurrency`` at a time and retries what ``classify`` calls retryable.
    """

    # Set by the engine for a local run: called with the number of tokens generated since the last call, so the
    # progress can show tokens per second inside a batch (providers that cannot tell leave it uncalled).
    token_meter: Callable[[int], None] | None = None

    def generate(self, requests: Sequence[Request], on_result: OnResult | None = None) -> list[Result]:
        """Answer every request; results in input order. ``on_result(i, result)`` fires as each is ready."""
        results = []
        for i, request in enumerate(requests):
            start = time.perf_counter()
            try:
                result = self.generate_one(request)
            except Exception as exc:  # noqa: BLE001 - recorded per answer or model; the run goes on
                result = Result.failure(self.classify(exc), time.perf_counter() - start)
            if not result.latency_s:
                result.latency_s = time.perf_counter() - start
            results.append(result)
            if on_result:
                on_result(i, result)
        return results

    def prompt_text(self, request: Request) -> str | None:
        """The exact prompt text the model receives for ``request``, when the provider formats one itself (local
        models apply a chat template or prompt format); None for providers that send the system prompt and the user
        message as they are (APIs)."""
        return None

    def stream(self, request: Request) -> Iterator[str]:
        """The answer to one request in pieces as they come (``ask``); by default the whole answer at once, from
        ``agenerate`` for concurrent providers and ``generate`` otherwise. A failure is raised as ProviderError."""
        if self.info.concurrent:
            import asyncio

            result = asyncio.run(self.agenerate(request))
        else:
            (result,) = self.generate([request])
        if result.error:
            raise ProviderError(result.error, retryable=False)
        yield result.text or ""

    def generate_one(self, request: Request) -> Result:
        """Answer one request (used by the default ``generate``); raise on failure."""
        raise NotImplementedError(f"{type(self).__name__} implements neither generate nor generate_one")

    async def agenerate(self, request: Request) -> Result:
        """Answer one request asynchronously (concurrent providers); raise on failure."""
        raise NotImplementedError(f"{type(self).__name__} is not a concurrent provider")

    def loglikelihood(self, requests: Sequence[LoglikRequest], on_result: OnResult | None = None) -> list[Result]:
        """Score every request (batched providers that serve ``loglik``); results in input order, with ``logprobs``
        and ``greedy`` set. ``on_result(i, result)`` fires as each is ready."""
        raise NotImplementedError(f"{type(self).__name__} does not score log-likelihoods")

    async def aloglikelihood(self, request: LoglikRequest) -> Result:
        """Score one request asynchronously (concurrent providers that serve ``loglik``); raise on failure."""
        raise NotImplementedError(f"{type(self).__name__} does not score log-likelihoods")


class Embedder(Provider):
    """An encoder model: texts in, one L2-normalised vector per text out. Subclasses implement
    ``embed_batch``; chunking into ``batch_size`` pieces is done here."""

    default_batch_size: int = 32

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed every text, in order, in chunks of the configured batch size."""
        size = self.settings.batch_size if isinstance(self.settings.batch_size, int) else self.default_batch_size
        vectors: list[list[float]] = []
        for start in range(0, len(texts), size):
            vectors.extend(self.embed_batch(list(texts[start : start + size])))
        return vectors

    @abstractmethod
    def embed_batch(self, texts: list[str]) -> list[list[float]]:
        """Embed one chunk of texts."""
