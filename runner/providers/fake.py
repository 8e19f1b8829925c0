"""A deterministic offline provider, selectable as ``fake:<behaviour>``; tests and demos use it.

Behaviours (the model id):
- ``echo``: the answer is derived from the prompt (a hash of the system prompt and the user message); to a
  conversation, from its last user turn, saying which turn it is.
- ``canned``: pops answers from ``FakeGenerator.canned`` (then falls back to echo).
- ``fail``: every request fails with a non-retryable error.
- ``flaky``: the first attempt of each request fails with a retryable error, the second succeeds.
- ``async-echo``: like ``echo`` but concurrent (the engine's API path), answering after 20 ms; the provider's
  declaration lists it in ``concurrent_models``.
- ``slow``: like ``echo``, 50 ms per request (for interrupting a run half-way).

Every behaviour also scores log-likelihoods (``--scoring loglik``): a deterministic number per continuation.

Every request received is appended to ``FakeGenerator.history`` for assertions.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Sequence
from typing import ClassVar

from runner.core.errors import ModelUnavailable, ProviderError
from runner.providers.base import Generator, LoglikRequest, OnResult, Request, Result

BEHAVIOURS = ("echo", "canned", "fail", "flaky", "async-echo", "slow")


class FakeGenerator(Generator):
    """The test double: a real, registered provider with canned answers and a request history."""

    history: ClassVar[list[Request]] = []
    canned: ClassVar[deque[str]] = deque()
    _attempts: ClassVar[dict[str, int]] = {}

    def load(self) -> None:
        """Check the behaviour name; nothing to load."""
        if self.spec.model_id not in BEHAVIOURS:
            raise ModelUnavailable(f"unknown fake model {self.spec.model_id!r}; choose one of {', '.join(BEHAVIOURS)}")

    @classmethod
    def reset(cls) -> None:
        """Forget the history and canned answers (between tests)."""
        cls.history.clear()
        cls.canned.clear()
        cls._attempts.clear()

    def _behave(self, key: str) -> None:
        """Fail, fail once, or wait, as the behaviour says."""
        behaviour = self.spec.model_id
        if behaviour == "fail":
            raise ProviderError("fake failure (fake:fail always fails)", retryable=False)
        if behaviour == "flaky":
            seen = FakeGenerator._attempts.get(key, 0)
            FakeGenerator._attempts[key] = seen + 1
            if seen == 0:
                raise ProviderError("fake transient failure (fake:flaky fails once)", retryable=True, retry_after=0)
        if behaviour == "slow":
            time.sleep(0.05)

    def generate_one(self, request: Request) -> Result:
        """Answer one request according to the behaviour."""
        FakeGenerator.history.append(request)
        self._behave(request.key)
        behaviour = self.spec.model_id
        if behaviour == "canned" and FakeGenerator.canned:
            return self._result(request, FakeGenerator.canned.popleft())
        return self._result(request, echo_answer(request))

    async def agenerate(self, request: Request) -> Result:
        """Concurrent variant of ``generate_one``."""
        await asyncio.sleep(0.02)
        return self.generate_one(request)

    def loglikelihood(self, requests: Sequence[LoglikRequest], on_result: OnResult | None = None) -> list[Result]:
        """Score each request in turn (a failure fails only its own request)."""
        results = []
        for i, request in enumerate(requests):
            try:
                result = self._loglik_one(request)
            except Exception as exc:  # noqa: BLE001 - recorded per request
                result = Result.failure(self.classify(exc))
            results.append(result)
            if on_result:
                on_result(i, result)
        return results

    async def aloglikelihood(self, request: LoglikRequest) -> Result:
        """Concurrent variant of ``loglikelihood``."""
        await asyncio.sleep(0.02)
        return self._loglik_one(request)

    def _loglik_one(self, request: LoglikRequest) -> Result:
        self._behave(request.key)
        values = [fake_logprob(request.context, c) for c in request.continuations]
        return Result(logprobs=values, greedy=[False] * len(values), finish_reason="loglik",
                      prompt_tokens=len(request.context.split()))

    @staticmethod
    def _result(request: Request, text: str) -> Result:
        words = len(text.split())
        limited = text if words <= request.settings.max_new_tokens else " ".join(
            text.split()[: request.settings.max_new_tokens])
        sent = [m.content for m in request.messages] if request.messages is not None else [request.user_message]
        return Result(
            text=limited,
            prompt_tokens=len(request.system_prompt.split()) + sum(len(text.split()) for text in sent),
            completion_tokens=min(words, request.settings.max_new_tokens),
            finish_reason="length" if words > request.settings.max_new_tokens else "stop",
        )


def echo_answer(request: Request) -> str:
    """The deterministic answer ``fake:echo`` gives: a tag of the system prompt and the question (a conversation's
    last user turn, and which turn of the conversation it is)."""
    tag = hashlib.sha256(request.system_prompt.encode("utf-8")).hexdigest()[:8]
    if request.messages is not None:
        last = max(i for i, m in enumerate(request.messages) if m.role == "user")
        return f"[persona {tag}] You asked: {request.messages[last].content} (turn {last + 1} of a conversation)"
    return f"[persona {tag}] You asked: {request.user_message}"


def fake_logprob(context: str, continuation: str) -> float:
    """The deterministic log-likelihood the fake gives a continuation: between -10 and 0, from a hash."""
    digest = hashlib.sha256(f"{context}\x00{continuation}".encode()).digest()
    return -10.0 * int.from_bytes(digest[:4], "big") / 2**32
