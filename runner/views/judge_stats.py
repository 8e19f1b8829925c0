"""Statistics of grading open answers with judge models: HealthBench's rubric scores and their clipped mean, the
agreement between judges (Fleiss' and Cohen's kappa), a judge's agreement with physicians (HealthBench's
meta-evaluation), and pairwise preferences (win rates, position bias, Bradley-Terry ratings on the Elo scale).

Pure functions on plain data (numpy only, imported where it is used). Every random draw comes from
``numpy.random.default_rng(seed)`` with a fixed default seed (``runner.views.stats.SEED``), so the same data gives
the same numbers on every run and machine. HealthBench's own code draws from numpy's unseeded global generator;
the statistic is the same, only the draws differ.

A kappa that is undefined (every rating in one and the same category, so the agreement expected by chance is 1)
is None, as is any statistic with nothing to compute it from.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from runner.views.stats import LEVEL, SEED, Interval

if TYPE_CHECKING:  # numpy is imported where it is used, so the CLI starts without it
    import numpy as np

HEALTHBENCH_RESAMPLES = 1000  # HealthBench's bootstrap of the clipped mean
BT_RESAMPLES = 1000  # bootstrap rounds of the Bradley-Terry ratings
ELO_SCALE = 400.0  # Elo points per factor ELO_BASE in the odds of winning (LMSYS's compute_mle_elo)
ELO_BASE = 10.0
ELO_INITIAL = 1000.0  # the mean rating (or the anchor model's rating)
BT_PRIOR = 1e-6  # the L2 penalty on the natural-log strengths: keeps a model that wins or loses everything finite
_NEWTON_STEPS = 200
_NEWTON_TOLERANCE = 1e-9  # in natural-log strength (about 2e-7 Elo)
_DRAWS_PER_CHUNK = 1_000_000  # resampled values held at once by the bootstrap of the clipped mean


# --- HealthBench: rubric scores and their clipped mean ----------------------------------------------------------

@dataclass(frozen=True)
class ClippedStats:
    """HealthBench's summary of one metric over the answers: the mean clipped to [0, 1], how many values, and the
    standard deviation of the clipped means of bootstrap resamples."""

    mean: float
    n_samples: int
    bootstrap_std: float


def clipped_stats(values: Sequence[float], resamples: int = HEALTHBENCH_RESAMPLES,
                  seed: int = SEED) -> ClippedStats | None:
    """HealthBench's ``_compute_clipped_stats`` (None for no values): the mean clipped to [0, 1], the number of
    values, and the population standard deviation (``np.std``) of ``resamples`` bootstrap means, each mean of
    ``len(values)`` values drawn with replacement and clipped to [0, 1]. Resample ``r`` holds the values at the
    indices ``numpy.random.default_rng(seed).integers(0, n, size=(resamples, n))[r]`` (drawn in chunks of rows,
    which gives the same indices)."""
    import numpy as np

    if resamples < 1:
        raise ValueError("the bootstrap needs at least one resample")
    data = np.asarray(values, dtype=float)
    n = len(data)
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    rows = max(1, _DRAWS_PER_CHUNK // n)
    for start in range(0, resamples, rows):
        size = min(rows, resamples - start)
        means[start:start + size] = data[rng.integers(0, n, size=(size, n))].mean(axis=1)
    return ClippedStats(mean=float(np.clip(data.mean(), 0, 1)), n_samples=n,
                        bootstrap_std=float(np.std(np.clip(means, 0, 1))))


def aggregate_scores(answers: Iterable[Mapping[str, float]], resamples: int = HEALTHBENCH_RESAMPLES,
                     seed: int = SEED) -> dict[str, ClippedStats]:
    """HealthBench's aggregation over answers: each metric (``overall_score``, each tag) summarised by
    ``clipped_stats`` over the answers that have it. Every metric's bootstrap starts from the same ``seed``, so a
    metric's numbers do not depend on which other metrics there are."""
    values: dict[str, list[float]] = {}
    for scores in answers:
        for name, value in scores.items():
            values.setdefault(name, []).append(value)
    summary: dict[str, ClippedStats] = {}
    for name, metric_values in values.items():
        stats = clipped_stats(metric_values, resamples, seed)
        if stats is not None:
            summary[name] = stats
    return summary


# --- Agreement between judges ------------------------------------------------------------------------------------

def fleiss_kappa(ratings: Iterable[Iterable[Hashable | None]]) -> float | None:
    """Fleiss' kappa of several raters: ``ratings`` holds, for each subject (a rubric item of one answer), the
    labels its raters gave (booleans or any hashable categories). None is a missing rating and is dropped; a
    subject left with fewer than two ratings is skipped. Subjects may have different numbers of ratings: subject
    i's agreement is sum_j n_ij (n_ij - 1) / (n_i (n_i - 1)), and category j's share is its count over all
    ratings, which is Fleiss (1971) when every subject has the same number. None when no subject is left or all
    the ratings fall in one category (chance agreement 1: kappa undefined)."""
    tables = []
    for subject in ratings:
        counts = Counter(label for label in subject if label is not None)
        if sum(counts.values()) >= 2:
            tables.append(counts)
    totals: Counter[Hashable] = Counter()
    for counts in tables:
        totals.update(counts)
    if len(totals) < 2:
        return None
    observed = 0.0
    for counts in tables:
        n = sum(counts.values())
        observed += sum(c * (c - 1) for c in counts.values()) / (n * (n - 1))
    observed /= len(tables)
    rated = sum(totals.values())
    expected = sum((c / rated) ** 2 for c in totals.values())
    return (observed - expected) / (1 - expected)


def cohen_kappa(a: Sequence[Hashable | None], b: Sequence[Hashable | None]) -> float | None:
    """Cohen's kappa of two raters' labels for the same subjects, (p_o - p_e) / (1 - p_e) with p_e from each
    rater's own category shares. A subject either rater left None is dropped. None when no subject is left or
    both raters gave one and the same category throughout (p_e = 1: kappa undefined; scikit-learn gives nan)."""
    if len(a) != len(b):
        raise ValueError(f"the raters labelled {len(a)} and {len(b)} subjects")
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    n = len(pairs)
    first, second = Counter(x for x, _ in pairs), Counter(y for _, y in pairs)
    chance = sum(count * second[label] for label, count in first.items())  # p_e * n^2, in integers
    if n == 0 or chance == n * n:
        return None
    observed = sum(x == y for x, y in pairs) / n
    expected = chance / (n * n)
    return (observed - expected) / (1 - expected)


# --- A judge against physicians (HealthBench's meta-evaluation) -------------------------------------------------

@dataclass(frozen=True)
class ClassAgreement:
    """Agreement on one class (met, or not met): precision over the rater's own labels of that class, recall over
    the other raters' labels of that class, and their harmonic mean (0 when both are 0). None: no such label."""

    precision: float | None
    recall: float | None
    f1: float | None


@dataclass(frozen=True)
class RaterAgreement:
    """A rater's pairwise agreement with the other raters, per class, and the balanced F1: the mean of the two
    classes' F1 (None unless both are defined). ``pairs`` is how many (own label, other's label) pairs there
    were."""

    met: ClassAgreement
    not_met: ClassAgreement
    balanced_f1: float | None
    pairs: int


def rater_agreement(labels: Iterable[tuple[bool, Sequence[bool]]]) -> RaterAgreement:
    """HealthBench's meta-evaluation metric (``compute_metrics_for_rater_by_class``): ``labels`` pairs, for each
    rubric item of a graded answer, the rater's label (criterion met or not) with the physicians' labels of it.
    Every physician label is its own comparison (the labels are not aggregated by majority): with TP, FP, FN, TN
    counted over all (rater, physician) pairs, met precision = TP / (TP + FP), met recall = TP / (TP + FN),
    not-met precision = TN / (TN + FN), not-met recall = TN / (TN + FP). HealthBench ranks graders by the
    balanced F1 (``pairwise_model_f1_balanced``) and reports no bootstrap for it. Per category ("cluster") it is
    this function over that category's items."""
    tp = fp = fn = tn = 0
    for own, others in labels:
        for other in others:
            if own and other:
                tp += 1
            elif own:
                fp += 1
            elif other:
                fn += 1
            else:
                tn += 1
    met = _class_agreement(tp, tp + fp, tp + fn)
    not_met = _class_agreement(tn, tn + fn, tn + fp)
    balanced = None if met.f1 is None or not_met.f1 is None else (met.f1 + not_met.f1) / 2
    return RaterAgreement(met=met, not_met=not_met, balanced_f1=balanced, pairs=tp + fp + fn + tn)


def _class_agreement(agreed: int, own: int, others: int) -> ClassAgreement:
    precision = agreed / own if own else None
    recall = agreed / others if others else None
    if precision is None or recall is None:
        f1 = None
    elif precision == 0 and recall == 0:
        f1 = 0.0
    else:
        f1 = 2 * (precision * recall) / (precision + recall)
    return ClassAgreement(precision=precision, recall=recall, f1=f1)


def physician_agreement(items: Iterable[Mapping[Hashable, bool]]) -> dict[Hashable, RaterAgreement]:
    """Each physician's agreement with the other physicians (HealthBench's physician baseline): ``items`` maps,
    for each graded rubric item, physician id -> label; each physician is scored by ``rater_agreement`` against
    the other physicians' labels of the items they labelled."""
    per_physician: dict[Hashable, list[tuple[bool, list[bool]]]] = {}
    for item in items:
        for physician, label in item.items():
            others = [other for who, other in item.items() if who != physician]
            per_physician.setdefault(physician, []).append((label, others))
    return {physician: rater_agreement(pairs) for physician, pairs in per_physician.items()}


# --- Pairwise preferences ----------------------------------------------------------------------------------------

class Verdict(NamedTuple):
    """A judge's pairwise verdict on one question, as MT-Bench asks for it: ``first`` was shown as assistant A,
    ``second`` as B; ``winner`` is "A", "B" or "C" (a tie), with or without the ``[[ ]]``; None: no verdict."""

    question: Hashable
    first: str
    second: str
    winner: str | None


class Battle(NamedTuple):
    """The combined outcome for one question and pair of models (``model_a`` sorts before ``model_b``):
    ``score_a`` is 1 when model_a won, 0.5 for a tie, 0 when model_b won."""

    question: Hashable
    model_a: str
    model_b: str
    score_a: float


@dataclass(frozen=True)
class Combined:
    """Verdicts combined over the two orders. ``both_orders``: the (question, pair)s judged in both orders;
    ``inconsistent``: those whose two verdicts disagree once the swap is undone; of them, ``first_favoured`` went
    the first-shown model's way more (e.g. [[A]] both times) and ``second_favoured`` the other way."""

    battles: list[Battle]
    both_orders: int
    inconsistent: int
    first_favoured: int
    second_favoured: int

    @property
    def inconsistency_rate(self) -> float | None:
        """The position-bias rate: inconsistent / judged in both orders (None when none was)."""
        return self.inconsistent / self.both_orders if self.both_orders else None


class Record(NamedTuple):
    """A model's wins, ties and losses against one other model."""

    wins: int
    ties: int
    losses: int


_FIRST_SCORE = {"A": 1.0, "B": 0.0, "C": 0.5}


def combine_orders(verdicts: Iterable[Verdict | tuple[Hashable, str, str, str | None]]) -> Combined:
    """Combine each (question, pair)'s verdicts in the two orders (MT-Bench's position swap): when they agree
    once the swap is undone that is the outcome; when they disagree (a tie in one order and a win in the other
    included) it is a tie and counts as position-inconsistent. A pair judged in one order only (the other verdict
    missing or None) keeps that verdict and is not counted in the inconsistency rate. Battles come in the order
    their (question, pair) first appears. Two verdicts for the same question and order are an error."""
    orders: dict[tuple[Hashable, str, str], dict[str, float]] = {}
    for question, first, second, winner in verdicts:
        if first == second:
            raise ValueError(f"question {question!r}: {first!r} cannot be compared with itself")
        if winner is None:
            continue
        letter = winner.strip().strip("[]").strip().upper()
        if letter not in _FIRST_SCORE:
            raise ValueError(f"question {question!r}: verdict {winner!r} is not A, B or C")
        model_a, model_b = sorted((first, second))
        seen = orders.setdefault((question, model_a, model_b), {})
        if first in seen:
            raise ValueError(f"question {question!r}: two verdicts with {first!r} shown first")
        seen[first] = _FIRST_SCORE[letter]
    battles: list[Battle] = []
    both = inconsistent = first_favoured = second_favoured = 0
    for (question, model_a, model_b), seen in orders.items():
        a_first, b_first = seen.get(model_a), seen.get(model_b)  # the score of whichever was shown first
        if a_first is None:
            score = 1 - seen[model_b]
        elif b_first is None:
            score = a_first
        else:
            both += 1
            if a_first + b_first == 1:  # model_a's score is the same in both orders
                score = a_first
            else:
                score = 0.5
                inconsistent += 1
                first_favoured += a_first + b_first > 1
                second_favoured += a_first + b_first < 1
        battles.append(Battle(question, model_a, model_b, score))
    return Combined(battles, both, inconsistent, first_favoured, second_favoured)


def win_matrix(battles: Iterable[Battle]) -> dict[str, dict[str, Record]]:
    """``matrix[x][y]``: x's wins, ties and losses against y (both ``[x][y]`` and ``[y][x]`` are filled)."""
    tallies: dict[str, dict[str, list[int]]] = {}
    for _, model_a, model_b, score_a in battles:
        for me, other, score in ((model_a, model_b, score_a), (model_b, model_a, 1 - score_a)):
            counts = tallies.setdefault(me, {}).setdefault(other, [0, 0, 0])
            counts[0 if score == 1 else 1 if score == 0.5 else 2] += 1
    return {me: {other: Record(*counts) for other, counts in row.items()} for me, row in tallies.items()}


def win_rates(battles: Iterable[Battle]) -> dict[str, float]:
    """Each model's share of points over all its battles: a win 1, a tie 1/2, a loss 0."""
    points: dict[str, float] = {}
    games: Counter[str] = Counter()
    for _, model_a, model_b, score_a in battles:
        points[model_a] = points.get(model_a, 0.0) + score_a
        points[model_b] = points.get(model_b, 0.0) + 1 - score_a
        games.update((model_a, model_b))
    return {model: points[model] / games[model] for model in points}


def bradley_terry(battles: Sequence[Battle], anchor: str | None = None, prior: float = BT_PRIOR) -> dict[str, float]:
    """Bradley-Terry ratings on the Elo scale, as LMSYS's ``compute_mle_elo`` fits them: P(x beats y) =
    1 / (1 + ELO_BASE ** ((r_y - r_x) / ELO_SCALE)), the maximum of the log-likelihood of the battles, a tie
    counting as half a win for each side. The fit is Newton's method (with a backtracking line search) on the
    natural-log strengths t = r ln(ELO_BASE) / ELO_SCALE, penalised by prior / 2 * sum(t ** 2): a tiny penalty
    (like LMSYS's C = 1e6) that keeps a model that wins or loses everything finite (though far off, thousands of
    points) and changes the other ratings by far less than 0.001 point. The ratings' mean is ELO_INITIAL, or
    ``anchor``'s rating is. Models never compared with each other, directly or through others, are not on a
    common scale. Models sort by name."""
    import numpy as np

    models, incidence, cells = _battle_cells(battles)
    if not models:
        return {}
    games = np.bincount(cells[0], minlength=incidence.shape[0])[None, :].astype(float)
    wins = np.bincount(cells[0], weights=cells[1], minlength=incidence.shape[0])[None, :]
    ratings = _ratings(_fit_strengths(incidence, games, wins, prior), models, anchor)[0]
    return {model: float(rating) for model, rating in zip(models, ratings, strict=True)}


def bradley_terry_intervals(battles: Sequence[Battle], rounds: int = BT_RESAMPLES, seed: int = SEED,
                            level: float = LEVEL, anchor: str | None = None,
                            prior: float = BT_PRIOR) -> dict[str, Interval]:
    """Percentile bootstrap intervals of the ``bradley_terry`` ratings: ``rounds`` resamples of the battles with
    replacement (drawn as the multinomial counts of each distinct (pair, outcome), which is the same
    distribution), each refitted and centred the same way. A model absent from a resample (or every model, when
    the anchor is) has no rating in it; a model with no rating in any resample is left out."""
    import numpy as np

    models, incidence, cells = _battle_cells(battles)
    if not models or rounds < 1:
        return {}
    pairs, scores = cells
    pair_count = incidence.shape[0]
    distinct, counts = np.unique(pairs * 3 + np.rint(scores * 2).astype(int), return_counts=True)
    cell_pair, cell_score = distinct // 3, (distinct % 3) / 2
    draws = np.random.default_rng(seed).multinomial(len(pairs), counts / len(pairs), size=rounds)
    to_pair = np.zeros((len(distinct), pair_count))
    to_pair[np.arange(len(distinct)), cell_pair] = 1.0
    games = draws @ to_pair
    wins = draws @ (to_pair * cell_score[:, None])
    ratings = _ratings(_fit_strengths(incidence, games, wins, prior), models, anchor, played=games @ abs(incidence))
    tail = (1 - level) / 2 * 100
    intervals: dict[str, Interval] = {}
    for column, model in enumerate(models):
        values = ratings[:, column]
        values = values[np.isfinite(values)]
        if len(values):
            low, high = np.percentile(values, [tail, 100 - tail])
            intervals[model] = Interval(float(low), float(high))
    return intervals


def _battle_cells(battles: Sequence[Battle]) -> tuple[list[str], np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The models (by name), the pairs' incidence matrix (+1 for the pair's first model, -1 for its second) and
    each battle's pair index and first-model score."""
    import numpy as np

    models = sorted({name for battle in battles for name in (battle.model_a, battle.model_b)})
    column = {model: i for i, model in enumerate(models)}
    pair_index: dict[tuple[int, int], int] = {}
    battle_pairs, battle_scores = [], []
    for _, model_a, model_b, score_a in battles:
        i, j = column[model_a], column[model_b]
        if i > j:
            i, j, score_a = j, i, 1 - score_a
        battle_pairs.append(pair_index.setdefault((i, j), len(pair_index)))
        battle_scores.append(float(score_a))
    incidence = np.zeros((len(pair_index), len(models)))
    for (i, j), p in pair_index.items():
        incidence[p, i], incidence[p, j] = 1.0, -1.0
    return models, incidence, (np.asarray(battle_pairs, dtype=int), np.asarray(battle_scores, dtype=float))


def _fit_strengths(incidence: np.ndarray, games: np.ndarray, wins: np.ndarray, prior: float) -> np.ndarray:
    """The penalised maximum-likelihood natural-log strengths, one row per row of ``games``/``wins`` (the pairs'
    battle counts and first-model points), all fitted at once by Newton's method."""
    import numpy as np

    rounds, size = games.shape[0], incidence.shape[1]
    strengths = np.zeros((rounds, size))
    penalty = prior * np.eye(size)

    def objective(t: np.ndarray) -> np.ndarray:
        d = t @ incidence.T
        nll = wins * np.logaddexp(0, -d) + (games - wins) * np.logaddexp(0, d)
        return nll.sum(axis=1) + prior / 2 * (t ** 2).sum(axis=1)

    current = objective(strengths)
    for _ in range(_NEWTON_STEPS):
        p = 0.5 * (1 + np.tanh(strengths @ incidence.T / 2))  # P(the pair's first model wins)
        gradient = (games * p - wins) @ incidence + prior * strengths
        curvature = games * p * (1 - p)
        hessian = np.einsum("pi,rp,pj->rij", incidence, curvature, incidence) + penalty
        step = np.linalg.solve(hessian, gradient[..., None])[..., 0]
        centred = step - step.mean(axis=1, keepdims=True)  # the mean strength is set aside (ratings are centred)
        if np.max(np.abs(centred)) < _NEWTON_TOLERANCE:
            return strengths - step
        slope = (gradient * step).sum(axis=1)
        scale = np.ones(rounds)
        for _ in range(40):  # halve each row's step until the objective falls enough (Armijo)
            trial = strengths - scale[:, None] * step
            value = objective(trial)
            short = value > current - 1e-4 * scale * slope + 1e-12 * (1 + np.abs(current))  # rounding allowed
            if not short.any():
                break
            scale = np.where(short, scale / 2, scale)
        strengths, current = trial, value
    return strengths


def _ratings(strengths: np.ndarray, models: list[str], anchor: str | None,
             played: np.ndarray | None = None) -> np.ndarray:
    """Strengths as Elo-scale ratings, centred on ELO_INITIAL (mean, or the anchor's rating); models that
    ``played`` no battle in a row get nan there."""
    import numpy as np

    ratings = strengths * (ELO_SCALE / math.log(ELO_BASE))
    if played is not None:
        ratings = np.where(played > 0, ratings, np.nan)
    if anchor is None:
        return ratings - np.nanmean(ratings, axis=1, keepdims=True) + ELO_INITIAL
    if anchor not in models:
        raise ValueError(f"the anchor {anchor!r} is in no battle")
    return ratings - ratings[:, [models.index(anchor)]] + ELO_INITIAL
