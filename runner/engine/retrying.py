"""Retrying, the one place it lives: exponential backoff with jitter (never shorter than a server's Retry-After),
and one request with a timeout and bounded retries of retryable errors. The orchestrator uses it for every request;
composite kinds (grading: one judge call per rubric item) use it for each call they make.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

from runner.core.errors import ProviderError
from runner.core.settings import GenerationSettings
from runner.providers.base import Generator, Result


def backoff_delay(attempt: int, retry_after: float | None, settings: GenerationSettings) -> float:
    """Exponential backoff with full jitter, never shorter than the server's Retry-After."""
    ceiling = min(settings.retry_max_wait_s, settings.retry_initial_wait_s * (2 ** (attempt - 1)))
    delay = random.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.retry_max_wait_s))
    return delay


async def answer(provider: Generator, ask: Any, request: Any, settings: GenerationSettings,
                  stopped: Callable[[], bool] = lambda: False) -> Result | None:
    """One request (``ask(request)``) with a timeout and bounded retries of retryable errors.

    None when the run stopped (``stopped()``) before a retry: no further request is sent.
    """
    start = time.perf_counter()
    for attempt in range(1, settings.max_attempts + 1):
        if attempt > 1 and stopped():
            return None
        try:
            async with asyncio.timeout(settings.timeout_s):  # no extra task per request, unlike wait_for
                result = await ask(request)
            result.attempts = attempt
            result.latency_s = result.latency_s or time.perf_counter() - start
            return result
        except TimeoutError:
            error = ProviderError(f"timed out after {settings.timeout_s:g} s", retryable=True)
        except Exception as exc:  # noqa: BLE001 - recorded per answer or model; the run goes on
            error = provider.classify(exc)
        if not error.retryable or attempt == settings.max_attempts:
            result = Result.failure(error, time.perf_counter() - start)
            result.attempts = attempt
            if error.retryable:
                result.error = f"{result.error} (gave up after {attempt} attempts)"
            return result
        await asyncio.sleep(backoff_delay(attempt, error.retry_after, settings))
    raise AssertionError("unreachable")
