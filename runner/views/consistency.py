"""Self-consistency (``--samples K``): majority vote, mean per-sample accuracy and pass@k over each question's samples.

Sample 1 of each answer is the answer itself (the store's ``<n>.json``); samples 2..K are kept apart
(``SetStore.sample_records``). Per model, variant, persona, question set and task, over the multiple-choice questions
with at least one sample answered (a failed sample is left out and counted):

- **majority-vote accuracy**: the letter most of a question's samples chose is its answer; a tie goes to the tied
  letter chosen by the earliest sample; unparseable samples do not vote; a question with no parseable sample counts
  wrong. Its 95% interval resamples questions (percentile bootstrap).
- **mean per-sample accuracy**: each question's share of right samples (unparseable = wrong), averaged over the
  questions; its 95% interval is a cluster bootstrap: questions are resampled with all their samples.
- **pass@k**: the unbiased estimator of Chen et al. (2021), per question with n samples of which c are right,
  1 - C(n - c, k) / C(n, k), averaged over the questions with at least k samples (pass@1 = c / n, the mean per-sample
  accuracy); for k = 1 and k = K (the most samples saved).

A sample made under other settings than its answer (another persona text, model options or setting, the seed
aside, e.g. an answer asked again with ``--force`` and other settings) is not counted (``stale``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.core.records import Record, as_records
from runner.core.store import with_tag
from runner.views.comparisons import task_seed
from runner.views.scores import Choice, canonical_task, record_choice, record_method, task_title
from runner.views.stats import LEVEL, RESAMPLES, SEED, percentile_interval

# The settings that must be equal between an answer and its samples (the seed differs by design).
_SAME_SETTINGS = ("max_new_tokens", "temperature", "top_p", "repetition_penalty", "frequency_penalty",
                  "reasoning_effort", "thinking_budget", "min_thinking", "wait")


@dataclass(frozen=True)
class Vote:
    """One answered sample of a question: its number, the letter it chose (None: unparseable), its token counts."""

    k: int
    letter: str | None
    reasoning_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class QuestionSamples:
    """The answered samples of one question, in sample order."""

    n: int
    answer: str
    votes: list[Vote] = field(default_factory=list)

    @property
    def majority(self) -> str | None:
        """The letter most samples chose (ties: the earliest sample's among the tied); None when none is parseable."""
        return majority_vote([v.letter for v in self.votes])

    @property
    def right(self) -> int:
        """How many samples chose the right letter."""
        return sum(v.letter == self.answer for v in self.votes)

    def counts(self) -> dict[str, int]:
        """Votes per letter, most first (ties in the order the samples chose them)."""
        tally: dict[str, int] = {}
        for v in self.votes:
            if v.letter is not None:
                tally[v.letter] = tally.get(v.letter, 0) + 1
        return dict(sorted(tally.items(), key=lambda kv: -kv[1]))


@dataclass
class SampleGroup:
    """Every answered sample of one model (and variant) under one persona, in one question set and task."""

    model: str
    label: str
    slug: str
    persona: str
    set_name: str
    task: str
    tag: str | None
    questions: dict[int, QuestionSamples] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # sample 1's settings (of the first answer read)
    samples: int = 1  # the highest sample number saved
    failed: int = 0  # samples that failed (left out)
    stale: int = 0  # samples made under other settings than their answer (left out)

    @property
    def row(self) -> str:
        """The leaderboard row name (``label (persona)``)."""
        return f"{self.label} ({self.persona})"


def majority_vote(letters: Sequence[str | None]) -> str | None:
    """The letter chosen most often (None entries, unparseable samples, do not vote); a tie goes to the tied letter
    that appears first; None when no letter is given."""
    tally: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, letter in enumerate(letters):
        if letter is None:
            continue
        tally[letter] = tally.get(letter, 0) + 1
        first.setdefault(letter, i)
    if not tally:
        return None
    return min(tally, key=lambda letter: (-tally[letter], first[letter]))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al.'s unbiased pass@k for n samples of which c are right: 1 - C(n - c, k) / C(n, k) (needs n >= k)."""
    if k < 1 or n < k:
        raise ValueError(f"pass@{k} needs at least {k} samples (got {n})")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _matches(record: Record, names: set[str] | None) -> bool:
    return names is None or bool(record.names & names)


def _same_request(sample: Record, answer: Record) -> bool:
    """Whether a sample was asked as its answer was (question, persona text, model options, settings but the seed)."""
    if (sample.question, sample.options, sample.context) != (answer.question, answer.options, answer.context):
        return False
    if sample.persona_sha256 != answer.persona_sha256 or (sample.model_options or {}) != (answer.model_options or {}):
        return False
    mine, theirs = sample.settings or {}, answer.settings or {}
    return all(mine.get(name) == theirs.get(name) for name in _SAME_SETTINGS)


def collect_samples(records: Iterable[Record | dict[str, Any]], samples: Iterable[Record | dict[str, Any]] = (),
                    models: set[str] | None = None, personas: set[str] | None = None,
                    questions: set[tuple[str, int, str]] | None = None,
                    sets: set[str] | None = None,
                    choice: Callable[[Record], Choice] = record_choice) -> list[SampleGroup]:
    """Group the free-text multiple-choice answers (``records``: sample 1) and their samples 2..K (``samples``) by
    model and variant, persona, set and task; filters as ``scores.collect_scores``. Every group is returned, those
    without samples too (one vote per question). ``choice`` reads a record's letter (``record_choice``; the
    ``scores.ChoiceMemo`` the scores used, so that no letter is extracted twice)."""
    groups: dict[tuple[str, ...], SampleGroup] = {}
    answers: dict[tuple[Any, ...], Record] = {}
    rows: list[tuple[int, Record]] = [(1, r) for r in as_records(records) if (r.sample or 1) == 1]
    rows += [(r.sample or 2, r) for r in as_records(samples) if (r.sample or 2) > 1]
    rows.sort(key=lambda kr: kr[0])  # answers first: each sample is checked against its answer
    for k, record in rows:
        if record_method(record) != "generate" or not record.options or not record.answer:
            continue
        if not _matches(record, models) or (personas and record.persona not in personas):
            continue
        set_name = record.set_name or ""
        if (sets is not None and set_name not in sets) or (
                questions is not None and (set_name, record.n, record.question) not in questions):
            continue
        task, tag = canonical_task(record.task), record.tag or None
        key = (str(record.model), tag or "", str(record.persona), set_name, task)
        group = groups.get(key)
        if group is None:
            group = groups[key] = SampleGroup(model=key[0], label=with_tag(str(record.alias or key[0]), tag),
                                              slug=str(record.slug), persona=key[2], set_name=set_name, task=task,
                                              tag=tag)
        if k == 1:
            answers[(*key, record.n)] = record
            if not group.settings:
                group.settings = dict(record.settings or {})
        else:
            answer = answers.get((*key, record.n))
            if answer is not None and not _same_request(record, answer):
                group.stale += 1
                continue
        group.samples = max(group.samples, k)
        if record.error:
            group.failed += 1
            continue
        item = group.questions.setdefault(record.n, QuestionSamples(record.n, record.answer))
        item.votes.append(Vote(k, choice(record)[0], record.reasoning_tokens, record.completion_tokens))
    for group in groups.values():
        for item in group.questions.values():
            item.votes.sort(key=lambda v: v.k)
    return sorted(groups.values(), key=lambda g: (g.label, g.persona, g.set_name, g.task))


@dataclass
class ConsistencyScore:
    """Self-consistency of one group with samples: majority vote, mean per-sample accuracy, pass@1 and pass@K."""

    model: str
    label: str
    persona: str
    set_name: str
    task: str
    tag: str | None
    samples: int  # K: the most samples saved for a question
    n: int  # questions with at least one answered sample
    answered_samples: int
    majority_accuracy: float | None
    majority_interval: list[float] | None
    mean_sample_accuracy: float | None
    mean_sample_interval: list[float] | None
    pass_at: dict[str, float | None]  # "1" and str(K): pass@k
    pass_at_n: dict[str, int]  # questions each pass@k averages over (those with at least k answered samples)
    failed: int
    stale: int
    items: list[dict[str, Any]] = field(default_factory=list)  # per question: votes, majority, right

    def to_json(self) -> dict[str, Any]:
        """The scores.json form."""
        return dict(vars(self))


def score_group(group: SampleGroup, resamples: int = RESAMPLES, seed: int = SEED,
                level: float = LEVEL) -> ConsistencyScore:
    """The statistics of one group (see the module's description)."""
    items = [group.questions[n] for n in sorted(group.questions) if group.questions[n].votes]
    majority = [float(q.majority == q.answer) for q in items]
    per_sample = [q.right / len(q.votes) for q in items]
    column = f"{group.task} ({group.set_name})"
    passes: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    for k in dict.fromkeys((1, group.samples)):
        usable = [q for q in items if len(q.votes) >= k]
        counts[str(k)] = len(usable)
        passes[str(k)] = (sum(pass_at_k(len(q.votes), q.right, k) for q in usable) / len(usable)) if usable else None

    def interval(values: list[float], what: str) -> list[float] | None:
        found = percentile_interval(values, resamples, task_seed(seed, f"{what}/{column}"), level)
        return found.to_json() if found else None

    return ConsistencyScore(
        model=group.model, label=group.label, persona=group.persona, set_name=group.set_name, task=group.task,
        tag=group.tag, samples=group.samples, n=len(items), answered_samples=sum(len(q.votes) for q in items),
        majority_accuracy=sum(majority) / len(majority) if majority else None,
        majority_interval=interval(majority, "majority"),
        mean_sample_accuracy=sum(per_sample) / len(per_sample) if per_sample else None,
        mean_sample_interval=interval(per_sample, "per-sample"),
        pass_at=passes, pass_at_n=counts, failed=group.failed, stale=group.stale,
        items=[{"n": q.n, "answer": q.answer, "votes": q.counts(),
                "unparseable": sum(v.letter is None for v in q.votes), "samples": len(q.votes),
                "majority": q.majority, "right": q.right} for q in items])


def consistency_scores(groups: Sequence[SampleGroup], resamples: int = RESAMPLES, seed: int = SEED,
                       level: float = LEVEL) -> list[ConsistencyScore]:
    """The statistics of every group that has samples saved (K > 1, or samples left out as made with other
    settings)."""
    return [score_group(g, resamples, seed, level) for g in groups if g.samples > 1 or g.stale]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _ci(interval: list[float] | None) -> str:
    return "–" if not interval else f"[{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


def markdown_section(scores: Sequence[ConsistencyScore], resamples: int = RESAMPLES, level: float = LEVEL) -> list[str]:
    """The leaderboard.md section (and terminal): one row per model, persona and task with samples."""
    if not scores:
        return []
    pct = f"{round(100 * level)}%"
    lines = ["", "## Self-consistency (--samples)", "",
             "Majority vote over each question's samples (a tie goes to the tied letter the earliest sample chose; "
             "unparseable samples do not vote; a question with no parseable sample counts wrong); the mean "
             f"per-sample accuracy (unparseable = wrong) with its {pct} cluster bootstrap interval (questions "
             f"resampled with all their samples, {resamples:,} resamples); pass@k, the unbiased estimator of Chen et "
             "al. (2021), 1 − C(n−c, k) / C(n, k) per question with n samples and c right, averaged over the "
             "questions with at least k samples. In %.", "",
             f"| Row | Task | Questions | Samples | Majority vote | {pct} interval | Mean per sample | "
             f"{pct} interval | pass@1 | pass@K | left out |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for s in scores:
        left = [f"{s.failed} failed"] if s.failed else []
        left += [f"{s.stale} made with other settings"] if s.stale else []
        k = str(s.samples)
        fewer = s.n - s.pass_at_n.get(k, 0)
        left += [f"{fewer} with fewer than {k} samples (pass@{k})"] if fewer else []
        lines.append(f"| {s.label} ({s.persona}) | {task_title(s.task)} | {s.n} | {s.samples} | "
                     f"{_pct(s.majority_accuracy)} | {_ci(s.majority_interval)} | {_pct(s.mean_sample_accuracy)} | "
                     f"{_ci(s.mean_sample_interval)} | {_pct(s.pass_at.get('1'))} | "
                     f"pass@{k} {_pct(s.pass_at.get(k))} | {'; '.join(left) or '–'} |")
    return lines


VoteIndex = dict[tuple[str, str, int], dict[str, Any]]


def vote_index(groups: Sequence[SampleGroup]) -> VoteIndex:
    """Each question's votes where samples were saved, by (persona, model label, question number): for the report's
    answer cards. ``counts`` letter → votes, ``unparseable``, ``samples`` answered, ``majority``."""
    index: VoteIndex = {}
    for g in groups:
        if g.samples <= 1:
            continue
        for q in g.questions.values():
            index[(g.persona, g.label, q.n)] = {"counts": q.counts(), "samples": len(q.votes),
                                                "unparseable": sum(v.letter is None for v in q.votes),
                                                "majority": q.majority, "answer": q.answer}
    return index


def votes_text(votes: dict[str, Any]) -> str:
    """``votes: A×3 B×2`` (with ``?×1`` for unparseable samples)."""
    parts = [f"{letter}×{count}" for letter, count in votes["counts"].items()]
    parts += [f"?×{votes['unparseable']}"] if votes.get("unparseable") else []
    return "votes: " + (" ".join(parts) or "none")
