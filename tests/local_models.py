"""The embedded models, loaded once per test session (loading SmolLM2 takes ~20-30 s on two cores).

Test modules share these through ``functools.cache``: whichever test needs a model first pays for the load.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

from runner.core.settings import GenerationSettings
from runner.providers.catalog import resolve_model
from runner.providers.local.encoder import EncoderEmbedder
from runner.providers.local.hf import HFGenerator

# Small answers keep the suite fast; float32 (the catalog's dtype for SmolLM2) makes batched == unbatched exact.
TEST_SETTINGS = GenerationSettings(max_new_tokens=12)


@functools.cache
def smollm2() -> HFGenerator:
    """The embedded SmolLM2-135M-Instruct generator, loaded."""
    generator = HFGenerator(resolve_model("smollm2-135m-instruct"), TEST_SETTINGS)
    generator.load()
    return generator


@functools.cache
def minilm() -> EncoderEmbedder:
    """The embedded all-MiniLM-L6-v2 encoder, loaded."""
    embedder = EncoderEmbedder(resolve_model("all-minilm-l6-v2"), TEST_SETTINGS)
    embedder.load()
    return embedder


@contextmanager
def restored(generator: HFGenerator) -> Iterator[HFGenerator]:
    """``generator`` for one test: what the test changes (batch size, context, model, switches) is put back."""
    names = ("batch_size", "context", "model", "prefix_caching", "own_prefill", "share_prefix", "thread_tuner")
    saved = {name: getattr(generator, name) for name in names}
    try:
        yield generator
    finally:
        for name, value in saved.items():
            setattr(generator, name, value)
