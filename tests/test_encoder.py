"""The encoder: provider on the embedded all-MiniLM-L6-v2, really run on the CPU, offline."""

from __future__ import annotations

import numpy as np
import pytest
from local_models import TEST_SETTINGS, minilm

from runner.core.errors import ModelUnavailable
from runner.core.settings import GenerationSettings
from runner.providers.catalog import resolve_model
from runner.providers.local.encoder import EncoderEmbedder

QUESTION = "What are the symptoms of type 2 diabetes?"
PARAPHRASE = "Which signs suggest that someone has type 2 diabetes mellitus?"
UNRELATED = "How do I fix a flat bicycle tyre?"


def _plain_encoder(pooling: str) -> EncoderEmbedder:
    # The MiniLM folder is also a plain BERT checkpoint, so the cls and mean paths run on real weights too.
    spec = resolve_model("all-minilm-l6-v2").model_copy(update={"pooling": pooling})
    embedder = EncoderEmbedder(spec, TEST_SETTINGS)
    embedder.load()
    return embedder


def test_vectors_have_unit_norm_and_the_model_dimension() -> None:
    vectors = np.asarray(minilm().embed([QUESTION, PARAPHRASE, UNRELATED]))
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_a_paraphrase_scores_closer_than_an_unrelated_question() -> None:
    q, p, u = np.asarray(minilm().embed([QUESTION, PARAPHRASE, UNRELATED]))
    assert float(q @ p) > float(q @ u) + 0.3


def test_chunking_does_not_change_the_vectors() -> None:
    texts = [QUESTION, PARAPHRASE, UNRELATED, "Is aspirin an anticoagulant?", "What does insulin do?"]
    whole = np.asarray(minilm().embed(texts))
    chunked_embedder = EncoderEmbedder(minilm().spec, GenerationSettings(batch_size=2))
    chunked_embedder.model, chunked_embedder.pooling = minilm().model, minilm().pooling
    chunked = np.asarray(chunked_embedder.embed(texts))
    assert np.allclose(whole, chunked, atol=1e-5)


def test_mean_pooling_matches_sentence_transformers_own_pooling() -> None:
    # all-MiniLM-L6-v2's own modules are mean pooling + normalisation: our "mean" path must agree.
    ours = np.asarray(_plain_encoder("mean").embed([QUESTION, UNRELATED]))
    theirs = np.asarray(minilm().embed([QUESTION, UNRELATED]))
    assert np.allclose(ours, theirs, atol=1e-5)


def test_cls_pooling_gives_unit_vectors_different_from_mean() -> None:
    cls = np.asarray(_plain_encoder("cls").embed([QUESTION, UNRELATED]))
    assert np.allclose(np.linalg.norm(cls, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(cls, np.asarray(minilm().embed([QUESTION, UNRELATED])), atol=1e-3)


def test_uncached_hub_encoder_is_unavailable_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = EncoderEmbedder(resolve_model("sapbert"), TEST_SETTINGS)
    with pytest.raises(ModelUnavailable, match="hf download cambridgeltl/SapBERT-from-PubMedBERT-fulltext"):
        embedder.load()
