"""What the judge kinds share (``grading.Grade``, ``pairwise.Pairwise``): composite work over saved answers.

One piece of work is one *target* (an answer to grade, a pair of answers to compare) and takes several judge calls
(one per rubric item, one per order). The base class makes those calls through the judge's provider — all at once
under one semaphore of ``concurrency`` calls for API judges, in the judge's batches for local ones — retries each
transport failure (``retrying.answer``), and asks again, up to ``attempts`` times, when a reply cannot be read. A
subclass says what each call is (``request``), how a reply counts (``take``), what one target's outcome is
(``outcome``), and where and how it is saved (``space``, ``unit_key``, ``save``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from runner.engine.kinds import Kind, Unit
from runner.engine.retrying import answer
from runner.engine.variants import CHANGED, FAILED, MISSING, SAME
from runner.providers.base import Request, Result

if TYPE_CHECKING:
    from runner.core.personas import Persona
    from runner.core.questions import Question
    from runner.core.settings import GenerationSettings
    from runner.providers.base import Generator, OnResult
    from runner.providers.catalog import ModelSpec


@dataclass(frozen=True)
class JudgeRequest:
    """The judge calls still to make for one target (call index, prompt), the results already saved for it under
    the same key, the system message, and the kind's scheme (how replies are read)."""

    key: str
    prompts: list[tuple[int, str]]
    done: dict[int, dict[str, Any]]
    settings: GenerationSettings
    system: str
    scheme: str = ""


class Judging(Kind):
    """A composite kind whose pieces of work are targets, each judged in several calls."""

    requires: ClassVar[str] = "generate"
    composite: ClassVar[bool] = True

    def __init__(self, targets: Sequence[Any], attempts: int = 3) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.targets = list(targets)
        self.attempts = attempts

    def personas(self, personas: Sequence[Persona]) -> list[Persona]:
        """The persona folders the targets' records go under."""
        return list({t.persona.name: t.persona for t in self.targets}.values())

    def units(self, questions: Sequence[Question], personas: Sequence[Persona]) -> list[Unit]:
        """One unit per target, in its persona and folder."""
        return [Unit(t.persona, t.question, t.folder, t) for t in self.targets]

    def state(self, record: dict[str, Any] | None, key: str, question: Question) -> str:
        """Same key and fully judged: kept; a failed one is asked again (only what failed); else judged anew."""
        if not record:
            return MISSING
        if record.get("error"):
            return FAILED
        return SAME if record.get("key") == key else CHANGED

    def differences(self, record: dict[str, Any], persona: Persona, spec: ModelSpec,
                    settings: GenerationSettings) -> list[str]:
        """Judgements are never variants (a changed key is judged anew)."""
        return []

    # -- what a subclass says ----------------------------------------------------------------------------------
    def tally(self, request: JudgeRequest) -> Any:
        """A fresh record of what the calls for one target found (starting from ``request.done``)."""
        raise NotImplementedError

    def take(self, tally: Any, index: int, result: Result, attempt: int, scheme: str) -> bool:
        """Count one judge reply for call ``index``; True when that call is settled (read, or given up on)."""
        raise NotImplementedError

    def outcome(self, request: JudgeRequest, tally: Any, seconds: float) -> Result:
        """One target's result from its tally: ok when every call was read, else an error naming what was not."""
        raise NotImplementedError

    # -- the calls ----------------------------------------------------------------------------------------------
    def concurrent(self, provider: Generator) -> Callable[[Any], Awaitable[Result]]:
        """Every call of one target at once, at most ``concurrency`` judge calls in flight over all targets."""
        slots = asyncio.Semaphore(provider.settings.concurrency)

        async def judge(request: JudgeRequest) -> Result:
            start = time.perf_counter()
            tally = self.tally(request)

            async def one(index: int, prompt: str) -> None:
                call = Request(request.key, request.system, prompt, request.settings)
                for attempt in range(1, self.attempts + 1):
                    async with slots:
                        result = await answer(provider, provider.agenerate, call, request.settings)
                    if self.take(tally, index, result, attempt, request.scheme):
                        return

            await asyncio.gather(*(one(i, p) for i, p in request.prompts))
            return self.outcome(request, tally, time.perf_counter() - start)

        return judge

    def batched(self, provider: Generator) -> Callable[[Sequence[Any], OnResult], list[Result]]:
        """Every call of every target in the local judge's batches; a target is delivered once all its calls are."""

        def judge(requests: Sequence[JudgeRequest], on_result: OnResult) -> list[Result]:
            start = time.perf_counter()
            tallies = [self.tally(r) for r in requests]
            left = [len(r.prompts) for r in requests]
            results: list[Result | None] = [None] * len(requests)

            def finish(r: int) -> None:
                results[r] = self.outcome(requests[r], tallies[r], time.perf_counter() - start)
                on_result(r, results[r])

            for r, request in enumerate(requests):
                if not request.prompts:
                    finish(r)
            todo = [(r, i, p) for r, request in enumerate(requests) for i, p in request.prompts]
            for attempt in range(1, self.attempts + 1):
                if not todo:
                    break
                again: list[tuple[int, int, str]] = []

                def on_call(j: int, result: Result, todo: list[tuple[int, int, str]] = todo,
                            again: list[tuple[int, int, str]] = again, attempt: int = attempt) -> None:
                    r, index, _ = todo[j]
                    if self.take(tallies[r], index, result, attempt, requests[r].scheme):
                        left[r] -= 1
                        if left[r] == 0:
                            finish(r)
                    else:
                        again.append(todo[j])

                calls = [Request(requests[r].key, requests[r].system, p, requests[r].settings) for r, _, p in todo]
                provider.generate(calls, on_call)
                todo = again
            return [r if r is not None else Result(error="not judged") for r in results]

        return judge
