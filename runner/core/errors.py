"""Exceptions that the command line turns into exit statuses and plain messages."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` naming the closest of ``choices`` to a misspelled ``word``; empty when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class RunnerError(Exception):
    """Base class for errors this tool reports to the user as one clear line."""


class UsageError(RunnerError):
    """Bad command-line usage, configuration or input file: exit status 2, nothing written."""


class InputError(UsageError):
    """A problem in an input file, reported as ``file:line: problem``."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class ModelUnavailable(RunnerError):
    """A model cannot run here (missing key, package, GPU or weights); the run goes on without it."""


class ProviderError(RunnerError):
    """An error raised by a provider for one request, already classified.

    ``retryable`` says whether waiting and trying again can help (429, 5xx, timeouts);
    ``retry_after`` is the server's requested wait in seconds, when it gave one.
    """

    def __init__(self, message: str, *, retryable: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
