"""Decoding threads that follow the machine's load: torch's threads, or one, whichever decodes faster now.

On a CPU that other processes share, torch's OpenMP threads (one per core) wait for each other at every operation,
and a decoding step is a few thousand small operations. When another process takes a core, each wait can last a
scheduler time slice: on the 2-core machine of ``benchmarks/bench_local.py``, with other test suites running, 64
questions x 48 tokens took 37-58 s with two threads against 12-13 s with one (7.7 s with two on an idle machine).
``ThreadTuner`` times each decoding chunk per row and token, tries the other thread count on a one-step chunk when
it has not been tried, when the current one has become slower than it was, or every ``REVISIT`` chunks, and keeps
the faster one. Greedy answers do not change (tested): the thread count changes which thread computes which rows
and columns, not the order of any sum. Used on the CPU speed path only (``batching.generate_in_chunks``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

# Tokens of a chunk that measures a thread count (one step: under load the slow count is ~7x slower).
PROBE_TOKENS = 1
# The current choice is re-examined once its cost per row and token exceeds this factor of its cost when chosen.
SLOWER = 1.3
# ... and at least every this many chunks.
REVISIT = 8


class ThreadTuner:
    """Chooses the thread count of each decoding chunk from the costs measured so far (seconds per row-token)."""

    def __init__(self, threads: int) -> None:
        self.options = [threads, 1] if threads > 1 else [threads]
        self.cost: dict[int, float] = {}  # threads -> the latest chunk's seconds per row and token
        self.chosen = threads
        self.chosen_cost: float | None = None  # the chosen count's cost when it was (last) chosen
        self.since = 0  # chunks since the last comparison

    def plan(self, tokens: int) -> tuple[int, int]:
        """The thread count for the next chunk and its tokens (``tokens``, or fewer to try the other count)."""
        if len(self.options) == 1:
            return self.chosen, tokens
        other = next(n for n in self.options if n != self.chosen)
        latest = self.cost.get(self.chosen)
        if latest is None:  # nothing measured yet: one short step with the chosen count first
            return self.chosen, min(tokens, PROBE_TOKENS)
        stale = (other not in self.cost or self.since >= REVISIT
                 or (self.chosen_cost is not None and latest > SLOWER * self.chosen_cost))
        if stale:
            return other, min(tokens, PROBE_TOKENS)
        return self.chosen, tokens

    def record(self, threads: int, seconds: float, rows: int, tokens: int) -> None:
        """One chunk's time; after a probe of the other count, the cheaper of the two latest costs is chosen."""
        if rows <= 0 or tokens <= 0:
            return
        self.cost[threads] = seconds / (rows * tokens)
        self.since += 1
        if threads != self.chosen:
            best = min(self.cost, key=self.cost.__getitem__)
            self.chosen, self.chosen_cost, self.since = best, self.cost[best], 0
        elif self.chosen_cost is None:
            self.chosen_cost = self.cost[threads]


@contextmanager
def using(threads: int) -> Iterator[None]:
    """torch runs with ``threads`` threads inside the block, and with its former count after it."""
    import torch

    before = torch.get_num_threads()
    if threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads != before:
            torch.set_num_threads(before)
