"""How much the models agree: cosine similarity of their saved answers, embedded by an encoder model.

For each question (and persona) every pair of models' answers gets the cosine similarity of their
embeddings; the matrix shown is the mean over the questions where both models answered. Each answer's
similarity to its own question is kept too (a rough "did it stay on topic"). With one model and several
personas the roles swap: the personas are compared, per question and model.

Embedding saved answers measures them; it never asks a model for an answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runner.core.errors import UsageError
from runner.views.answers import (
    DEFAULT_OUTPUT_DIR,
    Answer,
    StoreSource,
    choose_set,
    label_order,
    load_answers,
    open_store,
    persona_order,
)

DEFAULT_ENCODER = "all-minilm-l6-v2"
EmbedFn = Callable[[list[str]], Sequence[Sequence[float]]]
GroupKey = tuple[int, str]  # (question number, the persona - or the model when personas are compared)


@dataclass
class Agreement:
    """Pairwise answer similarities per answer set (one question under one persona) and their means."""

    by: str  # "model": columns are models; "persona": columns are personas
    labels: list[str]
    encoder: str
    pairs: dict[GroupKey, dict[tuple[int, int], float]] = field(default_factory=dict)
    to_question: dict[GroupKey, dict[int, float]] = field(default_factory=dict)

    def _groups(self, n: int | None) -> list[GroupKey]:
        return [g for g in sorted(set(self.pairs) | set(self.to_question)) if n is None or g[0] == n]

    def group_count(self, n: int | None = None) -> int:
        """How many answer sets (question x persona) hold at least two answers to compare."""
        return sum(1 for g in self._groups(n) if self.pairs.get(g))

    def matrix(self, n: int | None = None) -> list[list[float | None]]:
        """Mean cosine similarity of every pair of labels (question ``n`` only, or over all); None = no pair."""
        size = len(self.labels)
        sums, counts = np.zeros((size, size)), np.zeros((size, size), dtype=int)
        for g in self._groups(n):
            for (i, j), value in self.pairs.get(g, {}).items():
                for a, b in ((i, j), (j, i)):
                    sums[a, b] += value
                    counts[a, b] += 1
            for i in self.to_question.get(g, {}):
                sums[i, i] += 1.0
                counts[i, i] += 1
        return [[float(sums[i, j] / counts[i, j]) if counts[i, j] else None for j in range(size)]
                for i in range(size)]

    def pair_counts(self, n: int | None = None) -> list[list[int]]:
        """How many answer sets each mean in ``matrix`` is taken over."""
        size = len(self.labels)
        counts = [[0] * size for _ in range(size)]
        for g in self._groups(n):
            for i, j in self.pairs.get(g, {}):
                counts[i][j] += 1
                counts[j][i] += 1
        return counts

    def question_similarity_by_label(self, n: int | None = None) -> dict[str, float]:
        """Mean similarity of each label's answers to their questions (question ``n`` only, or over all)."""
        values: dict[int, list[float]] = {}
        for g in self._groups(n):
            for i, value in self.to_question.get(g, {}).items():
                values.setdefault(i, []).append(value)
        return {self.labels[i]: float(np.mean(v)) for i, v in sorted(values.items())}

    def answer_to_question(self, n: int, label: str, other: str) -> float | None:
        """Similarity of one answer (question ``n``, column ``label``, row ``other``) to its question."""
        if label not in self.labels:
            return None
        return self.to_question.get((n, other), {}).get(self.labels.index(label))

    def question_mean(self, n: int) -> float | None:
        """The mean of every pairwise similarity for question ``n`` (its overall agreement)."""
        values = [v for g in self._groups(n) for v in self.pairs.get(g, {}).values()]
        return float(np.mean(values)) if values else None

    def to_dict(self) -> dict[str, Any]:
        """Plain data: labels, the mean matrix, pair counts and the similarity to the questions."""
        return {"by": self.by, "encoder": self.encoder, "labels": self.labels, "matrix": self.matrix(),
                "pair_counts": self.pair_counts(), "to_question": self.question_similarity_by_label()}


def cosine(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Cosine similarity of two vectors; None when either is all zeros."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    norm = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(np.dot(x, y) / norm) if norm > 0 else None


def compute_agreement(answers: Sequence[Answer], embed: EmbedFn, *, by: str | None = None,
                      labels: Sequence[str] | None = None, encoder: str = "") -> Agreement:
    """Embed the answers (and their questions) with ``embed`` and measure every pair's similarity.

    ``by`` is "model" (compare models within each question x persona) or "persona" (compare personas
    within each question x model); by default "persona" only when there is one model and several personas.
    Failed and empty answers take no part.
    """
    usable = [a for a in answers if a.ok and a.text.strip()]
    if by is None:
        by = "persona" if len({a.label for a in answers}) == 1 and len({a.persona for a in answers}) > 1 else "model"
    if by not in ("model", "persona"):
        raise UsageError(f"agreement by {by!r}: choose 'model' or 'persona'")
    column = (lambda a: a.label) if by == "model" else (lambda a: a.persona)
    row = (lambda a: a.persona) if by == "model" else (lambda a: a.label)
    names = list(labels) if labels else list(dict.fromkeys(column(a) for a in answers))
    result = Agreement(by=by, labels=names, encoder=encoder)
    usable = [a for a in usable if column(a) in names]
    if not usable:
        return result
    texts = list(dict.fromkeys([a.text for a in usable] + [a.question for a in usable]))
    vectors = dict(zip(texts, _as_matrix(embed(texts), len(texts)), strict=True))
    groups: dict[GroupKey, list[Answer]] = {}
    for a in usable:
        groups.setdefault((a.n, row(a)), []).append(a)
    for key, members in groups.items():
        chosen = {names.index(column(a)): a for a in members}
        result.to_question[key] = {i: _dot(vectors[a.text], vectors[a.question]) for i, a in sorted(chosen.items())}
        result.pairs[key] = {(i, j): _dot(vectors[chosen[i].text], vectors[chosen[j].text])
                             for i in sorted(chosen) for j in sorted(chosen) if i < j}
    return result


def _as_matrix(vectors: Sequence[Sequence[float]], expected: int) -> np.ndarray:
    """Vectors as rows of unit length (normalised again: not every encoder promises it)."""
    array = np.asarray(vectors, dtype=float)
    if array.ndim != 2 or array.shape[0] != expected:
        raise ValueError(f"the encoder returned {array.shape[0] if array.ndim else 0} vectors for {expected} texts")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.divide(array, norms, out=np.zeros_like(array), where=norms > 0)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return round(float(np.clip(np.dot(a, b), -1.0, 1.0)), 6)


@contextmanager
def open_encoder(name: str = DEFAULT_ENCODER) -> Iterator[EmbedFn]:
    """Load encoder model ``name`` (an ``encoder:`` model or alias) and yield its ``embed`` function."""
    from runner.core.settings import GenerationSettings
    from runner.providers import load_provider_class
    from runner.providers.catalog import resolve_model

    spec = resolve_model(name)
    if spec.kind != "embedder":
        raise UsageError(f"--encoder {name!r} is a {spec.kind}, not an encoder model; use an encoder: model "
                         f"or alias such as {DEFAULT_ENCODER}")
    embedder = load_provider_class(spec.provider)(spec, GenerationSettings())
    embedder.load()
    try:
        yield embedder.embed
    finally:
        embedder.close()


def measure_agreement(source: StoreSource = DEFAULT_OUTPUT_DIR, encoder: str = DEFAULT_ENCODER, *,
                      models: Sequence[str] | None = None, personas: Sequence[str] | None = None,
                      by: str | None = None, embed: EmbedFn | None = None,
                      question_set: str | None = None) -> Agreement:
    """Agreement of one question set's saved answers, embedded with ``encoder`` (or a given ``embed``).

    ``question_set`` None: the only set, or the latest run's. ``source``: the output folder, or a snapshot of it.
    """
    snapshot = open_store(source)
    question_set, _ = choose_set(snapshot, question_set)
    answers = load_answers(snapshot, models, personas, question_set)
    labels = label_order(snapshot, answers, models)
    personas_shown = persona_order(answers, personas)
    chosen = by or ("persona" if len(labels) == 1 and len(personas_shown) > 1 else "model")
    columns = labels if chosen == "model" else personas_shown
    if embed is not None:
        return compute_agreement(answers, embed, by=chosen, labels=columns, encoder=encoder)
    with open_encoder(encoder) as embed_fn:
        return compute_agreement(answers, embed_fn, by=chosen, labels=columns, encoder=encoder)
