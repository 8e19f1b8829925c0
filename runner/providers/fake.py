"""A deterministic offline provider, selectable as ``fake:<behaviour>``; tests and demos use it.

Behaviours (the model id):
- ``echo``: the answer is derived from the prompt (a hash of the system prompt and the user message).
- ``canned``: pops answers from ``FakeGenerator.canned`` (then falls back to echo).
- ``fail``: every request fails with a non-retryable error.
- ``flaky``: the first attempt of each request fails with a retryable error, the second succeeds.
- ``async-echo``: like ``echo`` but concurrent (the engine's API path), answering after 20 ms.

Every request received is appended to ``FakeGenerator.history`` for assertions.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from typing import ClassVar

from runner.core.errors import ModelUnavailable, ProviderError
from runner.providers.base import Generator, Request, Result

BEHAVIOURS = ("echo", "canned", "fail", "flaky", "async-echo")


class FakeGenerator(Generator):
    """The test double: a real, registered provider with canned answers and a request history."""

    name: ClassVar[str] = "fake"
    history: ClassVar[list[Request]] = []
    canned: ClassVar[deque[str]] = deque()
    _attempts: ClassVar[dict[str, int]] = {}

    def load(self) -> None:
        """Check the behaviour name; nothing to load."""
        if self.spec.model_id not in BEHAVIOURS:
            raise ModelUnavailable(f"unknown fake model {self.spec.model_id!r}; choose one of {', '.join(BEHAVIOURS)}")
        self.concurrent = self.spec.model_id == "async-echo"

    @classmethod
    def reset(cls) -> None:
        """Forget the history and canned answers (between tests)."""
        cls.history.clear()
        cls.canned.clear()
        cls._attempts.clear()

    def generate_one(self, request: Request) -> Result:
        """Answer one request according to the behaviour."""
        FakeGenerator.history.append(request)
        behaviour = self.spec.model_id
        if behaviour == "fail":
            raise ProviderError("fake failure (fake:fail always fails)", retryable=False)
        if behaviour == "flaky":
            seen = FakeGenerator._attempts.get(request.key, 0)
            FakeGenerator._attempts[request.key] = seen + 1
            if seen == 0:
                raise ProviderError("fake transient failure (fake:flaky fails once)", retryable=True, retry_after=0)
        if behaviour == "canned" and FakeGenerator.canned:
            return self._result(request, FakeGenerator.canned.popleft())
        return self._result(request, echo_answer(request))

    async def agenerate(self, request: Request) -> Result:
        """Concurrent variant of ``generate_one``."""
        await asyncio.sleep(0.02)
        return self.generate_one(request)

    @staticmethod
    def _result(request: Request, text: str) -> Result:
        words = len(text.split())
        limited = text if words <= request.settings.max_new_tokens else " ".join(
            text.split()[: request.settings.max_new_tokens])
        return Result(
            text=limited,
            prompt_tokens=len(request.system_prompt.split()) + len(request.user_message.split()),
            completion_tokens=min(words, request.settings.max_new_tokens),
            finish_reason="length" if words > request.settings.max_new_tokens else "stop",
        )


def echo_answer(request: Request) -> str:
    """The deterministic answer ``fake:echo`` gives: a tag of the system prompt and the question."""
    tag = hashlib.sha256(request.system_prompt.encode("utf-8")).hexdigest()[:8]
    return f"[persona {tag}] You asked: {request.user_message}"
