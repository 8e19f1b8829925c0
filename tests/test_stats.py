"""The statistics against scipy.stats and hand computations on fixed data."""

from __future__ import annotations

import numpy as np
import pytest

from runner.views.stats import (
    Interval,
    bootstrap_means,
    format_p,
    holm,
    mcnemar_exact,
    paired_interval,
    percentile_interval,
    sign_flip_p,
)

scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is the reference the statistics are checked against")


@pytest.mark.parametrize(("a_only", "b_only"), [(0, 0), (1, 0), (0, 5), (3, 3), (7, 2), (2, 11), (30, 14),
                                                 (250, 300), (1000, 1100)])
def test_mcnemar_is_scipys_exact_binomial_test(a_only: int, b_only: int) -> None:
    want = 1.0 if a_only + b_only == 0 else scipy_stats.binomtest(a_only, a_only + b_only, 0.5).pvalue
    assert mcnemar_exact(a_only, b_only) == pytest.approx(want, rel=1e-9, abs=1e-300)


def test_holm_by_hand() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4x, 3x, 2x (0.06), 1x (0.04, raised to 0.06 to stay monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([]) == []


def test_percentile_interval_agrees_with_scipy_bootstrap() -> None:
    values = [1.0] * 120 + [0.0] * 80  # 60% of 200
    mine = percentile_interval(values)
    theirs = scipy_stats.bootstrap((np.array(values),), np.mean, n_resamples=10_000, method="percentile",
                                   confidence_level=0.95, rng=np.random.default_rng(7)).confidence_interval
    assert mine is not None and 0.52 < mine.low < 0.6 < mine.high < 0.68
    assert mine.low == pytest.approx(theirs.low, abs=0.01) and mine.high == pytest.approx(theirs.high, abs=0.01)


def test_the_same_data_gives_the_same_interval_and_the_seed_matters() -> None:
    values = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0] * 5
    assert percentile_interval(values) == percentile_interval(list(values))
    assert not np.array_equal(bootstrap_means(values, seed=1), bootstrap_means(values, seed=2))
    assert percentile_interval([]) is None and percentile_interval(values, resamples=0) is None
    assert percentile_interval([1.0] * 10) == Interval(1.0, 1.0)


def test_few_distinct_values_resample_like_index_resampling() -> None:
    # the multinomial shortcut and plain index resampling give the same distribution of means
    rng = np.random.default_rng(3)
    values = rng.choice([0.0, 1.0], size=300, p=[0.3, 0.7])
    fast = bootstrap_means(values, resamples=20_000)
    slow = values[rng.integers(0, len(values), size=(20_000, len(values)))].mean(axis=1)
    assert np.percentile(fast, [2.5, 50, 97.5]) == pytest.approx(np.percentile(slow, [2.5, 50, 97.5]), abs=0.006)
    continuous = rng.normal(size=100)  # many distinct values: resampled by index
    means = bootstrap_means(continuous, resamples=3000)
    assert means.std() == pytest.approx(continuous.std() / 10, rel=0.1)


def test_paired_interval_is_the_interval_of_the_differences() -> None:
    a = [1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0] * 10
    b = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0] * 10
    assert paired_interval(a, b) == percentile_interval([x - y for x, y in zip(a, b, strict=True)])
    with pytest.raises(ValueError, match="same items"):
        paired_interval([1.0], [1.0, 0.0])


def test_sign_flip_test_is_scipys_paired_permutation_test() -> None:
    x = np.array([0.9, 0.4, 0.75, 0.3, 0.8, 0.65, 0.5, 0.95, 0.2, 0.7])
    y = np.array([0.6, 0.5, 0.55, 0.1, 0.7, 0.6, 0.45, 0.6, 0.3, 0.5])

    def statistic(u: np.ndarray, v: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(u - v, axis=axis)

    want = scipy_stats.permutation_test((x, y), statistic, permutation_type="samples", vectorized=True,
                                        n_resamples=100_000).pvalue  # 2^10 < n_resamples: exact
    assert sign_flip_p(x - y) == pytest.approx(want, rel=1e-9)
    big = np.concatenate([x - y] * 3)  # n = 30: random flips
    exact_like = scipy_stats.permutation_test((np.concatenate([x] * 3), np.concatenate([y] * 3)), statistic,
                                              permutation_type="samples", vectorized=True, n_resamples=20_000,
                                              rng=np.random.default_rng(5)).pvalue
    assert sign_flip_p(big, resamples=20_000) == pytest.approx(exact_like, abs=0.004)


def test_p_values_are_printed_not_rounded_to_thresholds() -> None:
    assert format_p(0.0412) == "0.0412" and format_p(3.0517e-05) == "3.05e-05" and format_p(1.0) == "1"
