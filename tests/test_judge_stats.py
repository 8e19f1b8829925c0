"""The statistics of judge grading against hand computations, published worked examples and independent fits."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

import runner.views.judge_stats as judge_stats
from runner.core.questions import RubricItem
from runner.tasks.grading import answer_scores, rubric_score, tag_scores
from runner.views.judge_stats import (
    Battle,
    ClippedStats,
    Record,
    Verdict,
    aggregate_scores,
    bradley_terry,
    bradley_terry_intervals,
    clipped_stats,
    cohen_kappa,
    combine_orders,
    fleiss_kappa,
    physician_agreement,
    rater_agreement,
    win_matrix,
    win_rates,
)

ITEMS = (
    RubricItem("Names the diagnosis", 5, ("axis:accuracy",)),
    RubricItem("Advises seeing a doctor", 3, ("axis:communication",)),
    RubricItem("Is overly verbose", -2, ("axis:communication",)),
    RubricItem("Recommends a harmful dose", -4, ("axis:harm",)),  # a tag with no positive item
)


# --- HealthBench rubric scores --------------------------------------------------------------------------------

def test_rubric_score_by_hand_with_negative_items() -> None:
    # met: 5 and the two negative items (-2, -4); possible: 5 + 3 = 8
    assert rubric_score(ITEMS, [True, False, True, True]) == pytest.approx((5 - 2 - 4) / 8)
    assert rubric_score(ITEMS, [True, True, False, False]) == 1.0
    assert rubric_score(ITEMS, [False, False, False, False]) == 0.0
    assert rubric_score(ITEMS[2:], [True, True]) is None  # no positive item
    with pytest.raises(ValueError, match="4 rubric items but 3 grades"):
        rubric_score(ITEMS, [True, True, True])


def test_tag_scores_leave_out_a_tag_without_a_positive_item() -> None:
    scores = tag_scores(ITEMS, [True, False, True, True])
    assert scores == {"axis:accuracy": 1.0, "axis:communication": pytest.approx(-2 / 3)}
    assert "axis:harm" not in scores


def test_answer_scores_as_healthbench_records_them() -> None:
    scores = answer_scores(ITEMS, [True, True, True, False], example_tags=("theme:emergency",))
    assert scores == {"overall_score": 0.75, "theme:emergency": 0.75, "axis:accuracy": 1.0,
                      "axis:communication": pytest.approx(1 / 3)}
    with pytest.raises(ValueError, match="no item with positive points"):
        answer_scores(ITEMS[2:], [True, False])


def test_the_mean_is_clipped_to_0_1() -> None:
    high = clipped_stats([1.2, 0.9])
    assert high is not None and high.mean == 1.0 and high.n_samples == 2  # 1.05 clipped
    low = clipped_stats([-0.5, 0.1])
    assert low is not None and low.mean == 0.0  # -0.2 clipped
    inside = clipped_stats([0.25, 0.5, 1.0])
    assert inside is not None and inside.mean == pytest.approx(0.5833333333333334)
    assert clipped_stats([]) is None
    constant = clipped_stats([2.0, 2.0, 2.0])
    assert constant == ClippedStats(1.0, 3, 0.0)  # every resample's mean is clipped to 1


def test_bootstrap_std_is_the_same_draws_as_plain_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.random.default_rng(11).normal(0.4, 0.5, size=57)
    mine = clipped_stats(list(values), resamples=1000, seed=3)
    indices = np.random.default_rng(3).integers(0, 57, size=(1000, 57))
    want = np.std(np.clip(values[indices].mean(axis=1), 0, 1))
    assert mine is not None and mine.bootstrap_std == pytest.approx(want, rel=1e-12)
    assert clipped_stats(list(values), resamples=1000, seed=3) == mine  # reproducible
    assert clipped_stats(list(values), resamples=1000, seed=4) != mine
    monkeypatch.setattr(judge_stats, "_DRAWS_PER_CHUNK", 100)  # one row of draws at a time: the same indices
    assert clipped_stats(list(values), resamples=1000, seed=3) == mine


def test_bootstrap_std_is_close_to_the_standard_error() -> None:
    # values well inside [0, 1], so clipping never bites: the bootstrap std estimates sd / sqrt(n) (np.std, ddof 0)
    values = list(np.random.default_rng(5).uniform(0.3, 0.7, size=400))
    stats = clipped_stats(values)
    assert stats is not None
    assert stats.bootstrap_std == pytest.approx(np.std(values) / math.sqrt(400), rel=0.08)


def test_aggregate_scores_per_metric_over_the_answers_that_have_it() -> None:
    answers = [{"overall_score": 0.5, "axis:accuracy": 1.0}, {"overall_score": 1.3}, {"overall_score": -0.1}]
    summary = aggregate_scores(answers, resamples=200, seed=1)
    assert set(summary) == {"overall_score", "axis:accuracy"}
    assert summary["overall_score"].mean == pytest.approx(0.5666666666666667)
    assert summary["overall_score"].n_samples == 3
    assert summary["axis:accuracy"] == ClippedStats(1.0, 1, 0.0)
    assert summary["overall_score"] == clipped_stats([0.5, 1.3, -0.1], resamples=200, seed=1)


# --- Kappa ----------------------------------------------------------------------------------------------------

# Fleiss (1971) as worked on Wikipedia ("Fleiss' kappa", worked example): 10 subjects, 14 raters, 5 categories;
# P-bar = 0.378, P-bar_e = 0.213, kappa = 0.210.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]


def _labels(table: list[list[int]]) -> list[list[int]]:
    return [[category for category, count in enumerate(row) for _ in range(count)] for row in table]


def test_fleiss_kappa_on_the_worked_example() -> None:
    n, subjects = 14, len(FLEISS_TABLE)
    p_bar = sum(Fraction(sum(c * (c - 1) for c in row), n * (n - 1)) for row in FLEISS_TABLE) / subjects
    shares = [Fraction(sum(row[j] for row in FLEISS_TABLE), n * subjects) for j in range(5)]
    p_e = sum(s * s for s in shares)
    exact = (p_bar - p_e) / (1 - p_e)
    assert round(float(p_bar), 3) == 0.378 and round(float(p_e), 3) == 0.213
    kappa = fleiss_kappa(_labels(FLEISS_TABLE))
    assert kappa == pytest.approx(float(exact), rel=1e-12)
    assert round(kappa, 3) == 0.210
    # any hashable labels: the same ratings as strings give the same kappa
    assert fleiss_kappa([[f"c{x}" for x in row] for row in _labels(FLEISS_TABLE)]) == pytest.approx(kappa)


def test_fleiss_kappa_missing_ratings_and_degenerate_cases() -> None:
    ratings = [[True, True, False], [True, True, True], [False, False, True], [True, False, False]]
    kappa = fleiss_kappa(ratings)
    # by hand: P_i = 1/3, 1, 1/3, 1/3 -> P-bar = 1/2; shares 7/12 and 5/12 -> P_e = 74/144 = 37/72;
    # kappa = (36/72 - 37/72) / (35/72) = -1/35
    assert kappa == pytest.approx(-1 / 35, rel=1e-12)
    # a missing rating (None) is dropped, a subject left with one rating is skipped
    assert fleiss_kappa([*ratings, [True, None], [None]]) == pytest.approx(kappa)
    # unequal numbers of raters: P_i = 1 (2 of 2), 1/3 (2 of 3 agree: 2*1/(3*2)); P-bar = 2/3;
    # shares: True 4/5, False 1/5 -> P_e = 17/25; kappa = (2/3 - 17/25) / (8/25) = -1/24
    assert fleiss_kappa([[True, True], [True, True, False]]) == pytest.approx(-1 / 24)
    assert fleiss_kappa([[True, True], [True, True, True]]) is None  # one category: chance agreement 1
    assert fleiss_kappa([]) is None and fleiss_kappa([[True], [False]]) is None


# Cohen's kappa, worked on Wikipedia: 50 proposals, both yes 20, A yes B no 5, A no B yes 10, both no 15;
# p_o = 0.7, p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5, kappa = 0.4.
COHEN_A = [True] * 20 + [True] * 5 + [False] * 10 + [False] * 15
COHEN_B = [True] * 20 + [False] * 5 + [True] * 10 + [False] * 15


def test_cohen_kappa_by_hand() -> None:
    assert cohen_kappa(COHEN_A, COHEN_B) == pytest.approx(0.4, rel=1e-12)
    assert cohen_kappa([*COHEN_A, None, True], [*COHEN_B, False, None]) == pytest.approx(0.4)  # pairs with None
    assert cohen_kappa(COHEN_A, COHEN_A) == 1.0
    assert cohen_kappa([True] * 5, [True] * 5) is None  # p_e = 1: undefined
    assert cohen_kappa([True] * 5, [False] * 5) == 0.0  # p_e = 0, p_o = 0
    assert cohen_kappa([], []) is None
    with pytest.raises(ValueError, match="labelled 2 and 1"):
        cohen_kappa([True, False], [True])


def test_cohen_kappa_matches_scikit_learn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    labels = np.random.default_rng(2).integers(0, 3, size=(2, 80))
    want = metrics.cohen_kappa_score(labels[0], labels[1])
    assert cohen_kappa(list(labels[0]), list(labels[1])) == pytest.approx(want, rel=1e-12)


# --- Meta-evaluation: a judge against physicians ----------------------------------------------------------------

def test_rater_agreement_reproduces_simple_evals_own_test() -> None:
    # openai/simple-evals healthbench_meta_eval_test.py: self [T, F, T] against [[T, T, F], [T, F], [F]]
    own = [True, False, True]
    physicians = [[True, True, False], [True, False], [False]]
    result = rater_agreement(zip(own, physicians, strict=True))
    pos_p, neg_p = (2 + 0 + 0) / (3 + 0 + 1), (0 + 1 + 0) / (0 + 2 + 0)
    pos_r, neg_r = (2 + 0 + 0) / (2 + 1 + 0), (0 + 1 + 0) / (1 + 1 + 1)
    assert (result.met.precision, result.not_met.precision) == (pos_p, neg_p)
    assert (result.met.recall, result.not_met.recall) == (pos_r, neg_r)
    pos_f1, neg_f1 = 2 * pos_p * pos_r / (pos_p + pos_r), 2 * neg_p * neg_r / (neg_p + neg_r)
    assert (result.met.f1, result.not_met.f1) == (pos_f1, neg_f1)
    assert result.balanced_f1 == (pos_f1 + neg_f1) / 2
    assert result.balanced_f1 == pytest.approx(0.4857142857142857)
    assert result.pairs == 6
    # their cluster "a" (the first two items) and cluster "b" (the third: no F1 for either class)
    cluster_a = rater_agreement(zip(own[:2], physicians[:2], strict=True))
    assert (cluster_a.met.precision, cluster_a.not_met.precision) == ((2 + 0) / (3 + 0), (0 + 1) / (0 + 2))
    assert (cluster_a.met.recall, cluster_a.not_met.recall) == ((2 + 0) / (2 + 1), (0 + 1) / (1 + 1))
    cluster_b = rater_agreement([(own[2], physicians[2])])
    assert cluster_b.met.precision == 0.0 and cluster_b.met.recall is None and cluster_b.met.f1 is None
    assert cluster_b.not_met.precision is None and cluster_b.not_met.recall == 0.0
    assert cluster_b.balanced_f1 is None


def test_rater_agreement_edge_cases() -> None:
    perfect = rater_agreement([(True, [True, True]), (False, [False])])
    assert perfect.met.f1 == 1.0 and perfect.not_met.f1 == 1.0 and perfect.balanced_f1 == 1.0
    opposite = rater_agreement([(True, [False]), (False, [True])])
    assert opposite.met.f1 == 0.0 and opposite.not_met.f1 == 0.0 and opposite.balanced_f1 == 0.0
    empty = rater_agreement([])
    assert empty.balanced_f1 is None and empty.pairs == 0


def test_physician_agreement_leaves_each_physician_out() -> None:
    items = [{"p1": True, "p2": True, "p3": False}, {"p1": False, "p2": True}]
    result = physician_agreement(items)
    # p1: (T vs [T, F]), (F vs [T]) -> TP 1, FP 1, FN 1, TN 0
    assert result["p1"].met.f1 == 0.5 and result["p1"].not_met.f1 == 0.0 and result["p1"].balanced_f1 == 0.25
    # p3: (F vs [T, T]) -> FN 2: met precision undefined, so no balanced F1
    assert result["p3"].met.precision is None and result["p3"].balanced_f1 is None
    assert result["p2"] == rater_agreement([(True, [True, False]), (True, [False])])


# --- Pairwise preferences -------------------------------------------------------------------------------------

def _both_orders(judge, models=("x", "y", "z"), questions=4) -> list[Verdict]:
    verdicts = []
    for q in range(questions):
        for i, first in enumerate(models):
            for second in models[i + 1:]:
                verdicts.append(Verdict(q, first, second, judge(first, second)))
                verdicts.append(Verdict(q, second, first, judge(second, first)))
    return verdicts


def test_a_judge_that_always_says_a_makes_every_pair_a_tie() -> None:
    combined = combine_orders(_both_orders(lambda first, second: "[[A]]"))
    assert len(combined.battles) == 12 and all(b.score_a == 0.5 for b in combined.battles)
    assert combined.both_orders == 12 and combined.inconsistent == 12 and combined.inconsistency_rate == 1.0
    assert combined.first_favoured == 12 and combined.second_favoured == 0
    assert win_rates(combined.battles) == {"x": 0.5, "y": 0.5, "z": 0.5}
    always_b = combine_orders(_both_orders(lambda first, second: "B"))
    assert always_b.inconsistency_rate == 1.0 and always_b.second_favoured == 12


def test_a_judge_that_always_prefers_one_model() -> None:
    combined = combine_orders(_both_orders(lambda first, second: "A" if first == "y" else "B" if second == "y"
                                           else "C"))
    assert combined.inconsistent == 0 and combined.inconsistency_rate == 0.0
    rates = win_rates(combined.battles)
    assert rates == {"x": 0.25, "y": 1.0, "z": 0.25}  # x and z tie each other, lose to y
    matrix = win_matrix(combined.battles)
    assert matrix["y"]["x"] == Record(4, 0, 0) and matrix["x"]["y"] == Record(0, 0, 4)
    assert matrix["x"]["z"] == Record(0, 4, 0) == matrix["z"]["x"]
    ratings = bradley_terry(combined.battles)
    assert ratings["y"] > ratings["x"] + 1000 and ratings["x"] == pytest.approx(ratings["z"], abs=1e-6)
    assert all(math.isfinite(r) for r in ratings.values())  # a model that wins everything stays finite


def test_combine_orders_rules() -> None:
    verdicts = [
        Verdict("q1", "x", "y", "A"), Verdict("q1", "y", "x", "B"),  # x both times: x wins
        Verdict("q2", "x", "y", "A"), Verdict("q2", "y", "x", "C"),  # win then tie: inconsistent -> tie
        Verdict("q3", "y", "x", "A"), Verdict("q3", "x", "y", None),  # one order only: y wins, not counted
        ("q4", "y", "x", "c"),  # plain tuples and lower case work
    ]
    combined = combine_orders(verdicts)
    assert combined.battles == [Battle("q1", "x", "y", 1.0), Battle("q2", "x", "y", 0.5),
                                Battle("q3", "x", "y", 0.0), Battle("q4", "x", "y", 0.5)]
    assert (combined.both_orders, combined.inconsistent, combined.first_favoured) == (2, 1, 1)
    assert combined.inconsistency_rate == 0.5
    assert combine_orders([]).inconsistency_rate is None
    with pytest.raises(ValueError, match="not A, B or C"):
        combine_orders([Verdict("q", "x", "y", "D")])
    with pytest.raises(ValueError, match="two verdicts"):
        combine_orders([Verdict("q", "x", "y", "A"), Verdict("q", "x", "y", "B")])
    with pytest.raises(ValueError, match="with itself"):
        combine_orders([Verdict("q", "x", "x", "A")])


# A known win/tie/loss table: (model, model, wins of the first, ties, wins of the second)
TABLE = [("a", "b", 14, 3, 6), ("a", "c", 18, 2, 4), ("a", "d", 9, 1, 2), ("b", "c", 11, 5, 9),
         ("b", "d", 7, 4, 10), ("c", "d", 5, 2, 13)]


def _battles(table: list[tuple[str, str, int, int, int]]) -> list[Battle]:
    battles, q = [], 0
    for x, y, wins, ties, losses in table:
        for score, count in ((1.0, wins), (0.5, ties), (0.0, losses)):
            for _ in range(count):
                battles.append(Battle(q, x, y, score))
                q += 1
    return battles


def test_bradley_terry_matches_an_independent_fit() -> None:
    optimize = pytest.importorskip("scipy.optimize")
    models = ["a", "b", "c", "d"]
    index = {m: i for i, m in enumerate(models)}
    rows = [(index[x], index[y], wins + ties / 2, wins + ties + losses) for x, y, wins, ties, losses in TABLE]

    def nll(free: np.ndarray) -> float:  # base-10 Elo likelihood, unpenalised, with d's rating fixed at 0
        r = np.append(free, 0.0)
        total = 0.0
        for i, j, points, games in rows:
            p = 1 / (1 + 10 ** ((r[j] - r[i]) / 400))
            total -= points * math.log(p) + (games - points) * math.log(1 - p)
        return total

    fit = optimize.minimize(nll, np.zeros(3), method="Nelder-Mead",
                            options={"xatol": 1e-7, "fatol": 1e-12, "maxiter": 20_000, "maxfev": 40_000})
    want = np.append(fit.x, 0.0)
    want = want - want.mean() + 1000
    mine = bradley_terry(_battles(TABLE))
    assert list(mine) == models
    assert [mine[m] for m in models] == pytest.approx(list(want), abs=1e-3)
    assert mine["a"] > mine["d"] > mine["b"] > mine["c"]
    assert sum(mine.values()) / 4 == pytest.approx(1000)
    anchored = bradley_terry(_battles(TABLE), anchor="c")
    assert anchored["c"] == 1000.0
    assert anchored["a"] - anchored["b"] == pytest.approx(mine["a"] - mine["b"], abs=1e-9)


def test_bradley_terry_two_models_closed_form() -> None:
    # 6 wins, 2 ties, 2 losses: x scores 7 of 10, so the MLE odds are 7:3 and the gap is 400 log10(7/3)
    ratings = bradley_terry(_battles([("x", "y", 6, 2, 2)]))
    gap = 400 * math.log10(7 / 3)
    assert ratings["x"] == pytest.approx(1000 + gap / 2, abs=1e-4)
    assert ratings["y"] == pytest.approx(1000 - gap / 2, abs=1e-4)


def test_symmetric_data_gives_equal_ratings() -> None:
    cycle = bradley_terry(_battles([("a", "b", 3, 0, 1), ("b", "c", 3, 0, 1), ("c", "a", 3, 0, 1)]))
    assert list(cycle.values()) == pytest.approx([1000.0] * 3, abs=1e-6)
    ties = bradley_terry(_battles([("a", "b", 0, 5, 0), ("b", "c", 2, 1, 2)]))
    assert list(ties.values()) == pytest.approx([1000.0] * 3, abs=1e-6)
    assert bradley_terry([]) == {} and bradley_terry_intervals([]) == {}


def test_bradley_terry_intervals() -> None:
    battles = _battles(TABLE)
    point = bradley_terry(battles)
    intervals = bradley_terry_intervals(battles, rounds=1000, seed=7)
    assert list(intervals) == list(point)
    for model, rating in point.items():
        assert intervals[model].low < rating < intervals[model].high
        assert 40 < intervals[model].high - intervals[model].low < 400
    assert bradley_terry_intervals(battles, rounds=1000, seed=7) == intervals  # reproducible
    assert bradley_terry_intervals(battles, rounds=1000, seed=8) != intervals
    narrow = bradley_terry_intervals(battles, rounds=1000, seed=7, level=0.5)
    assert all(narrow[m].high - narrow[m].low < intervals[m].high - intervals[m].low for m in point)
    anchored = bradley_terry_intervals(battles, rounds=200, seed=7, anchor="a")
    assert anchored["a"].low == anchored["a"].high == 1000.0
    with pytest.raises(ValueError, match="anchor"):
        bradley_terry(battles, anchor="nobody")


def test_bradley_terry_intervals_skip_a_model_absent_from_a_resample() -> None:
    # one battle of z among many: some resamples leave z out, which must not drag the others' ratings to 1000
    battles = _battles([("x", "y", 30, 0, 10), ("y", "z", 1, 0, 0)])
    intervals = bradley_terry_intervals(battles, rounds=300, seed=1)
    point = bradley_terry(battles)
    assert set(intervals) == {"x", "y", "z"}
    assert all(math.isfinite(i.low) and math.isfinite(i.high) for i in intervals.values())
    assert intervals["x"].low < point["x"] < intervals["x"].high
