"""Statistics a paper can print: bootstrap intervals, McNemar's exact test, paired tests, Holm's adjustment.

Pure functions on plain numbers (numpy only); ``runner.views.compare_stats`` applies them to scores. Every
random draw comes from ``numpy.random.default_rng(seed)`` with a fixed default seed, so the same data gives the same
interval on every run and machine.

The bootstrap of a mean resamples the values with replacement. When the values take few distinct values (0/1
correctness, -1/0/1 paired differences) a resample's mean is drawn through the multinomial distribution of how many
times each distinct value is drawn, which is the same distribution as drawing indices and uses no n-by-resamples
array; other values are resampled by index in chunks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where it is used, so the CLI starts without it
    import numpy as np

SEED = 1234  # the default seed of every resampling here
RESAMPLES = 10_000  # the default number of bootstrap resamples (--bootstrap)
LEVEL = 0.95  # the interval's coverage
_FEW_DISTINCT = 64  # up to this many distinct values, resample through the multinomial distribution
_CHUNK = 500  # resamples per chunk when resampling by index


@dataclass(frozen=True)
class Interval:
    """A two-sided interval around a statistic."""

    low: float
    high: float

    def to_json(self) -> list[float]:
        """``[low, high]``."""
        return [self.low, self.high]


def bootstrap_means(values: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """The means of ``resamples`` bootstrap resamples of ``values`` (each the same size as ``values``)."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    n = len(data)
    if n == 0 or resamples < 1:
        return np.empty(0)
    rng = np.random.default_rng(seed)
    distinct, counts = np.unique(data, return_counts=True)
    if len(distinct) <= _FEW_DISTINCT:
        draws = rng.multinomial(n, counts / n, size=resamples)
        return draws @ distinct / n
    means = np.empty(resamples)
    for start in range(0, resamples, _CHUNK):
        size = min(_CHUNK, resamples - start)
        means[start:start + size] = data[rng.integers(0, n, size=(size, n))].mean(axis=1)
    return means


def percentile_interval(values: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED,
                        level: float = LEVEL) -> Interval | None:
    """The percentile bootstrap interval of the mean of ``values`` (None for no values or no resamples)."""
    import numpy as np

    means = bootstrap_means(values, resamples, seed)
    if not len(means):
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(low), float(high))


def paired_interval(a: Sequence[float], b: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED,
                    level: float = LEVEL) -> Interval | None:
    """The paired bootstrap interval of mean(a) - mean(b): items are resampled together, so their pairing holds."""
    if len(a) != len(b):
        raise ValueError("paired values need the same items on both sides")
    return percentile_interval([x - y for x, y in zip(a, b, strict=True)], resamples, seed, level)


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """McNemar's exact test: the two-sided binomial test of the discordant pairs (``a_only`` items A got right and
    B wrong, ``b_only`` the reverse) against p = 1/2; 1.0 when there are none. Computed exactly in integers."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    k = min(a_only, b_only)
    if 2 * k == n:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2 ** n)


def sign_flip_p(differences: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED) -> float:
    """The two-sided paired permutation test of mean(differences) = 0 (for continuous scores such as grades): each
    item's difference keeps or flips its sign. Exact (all 2^n flips) for n <= 16; otherwise ``resamples`` random
    flips, with the observed one counted ((hits + 1) / (resamples + 1))."""
    import numpy as np

    data = np.asarray(differences, dtype=float)
    n = len(data)
    if n == 0:
        return 1.0
    observed = abs(data.mean())
    tolerance = 1e-12 * max(1.0, observed)
    if n <= 16:
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
        means = np.abs(signs @ data / n)
        return float(np.mean(means >= observed - tolerance))
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, resamples, _CHUNK):
        size = min(_CHUNK, resamples - start)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(size, n))
        hits += int(np.sum(np.abs(signs @ data / n) >= observed - tolerance))
    return (hits + 1) / (resamples + 1)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input's order (step-down, kept monotone, capped at 1)."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted = [0.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def format_p(p: float) -> str:
    """A p-value as printed: three significant digits, never rounded to a threshold (``3.05e-05``, ``0.0412``)."""
    if p >= 0.001:
        return f"{p:.3g}"
    return f"{p:.2e}"
