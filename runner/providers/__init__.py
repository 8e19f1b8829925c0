"""Provider registry: a name maps to ``module:Class``, imported only when that provider is chosen.

Listing providers, ``--help``, ``personas`` and ``models`` never import a backend (or torch).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from runner.core.errors import ModelUnavailable, UsageError


@dataclass(frozen=True)
class ProviderInfo:
    """Where a provider lives and what it needs, known without importing it."""

    name: str
    target: str
    kind: str  # "generator" or "embedder"
    packages: tuple[str, ...]  # import names that must be present
    pip: str  # what to pip install when they are not
    key_env_vars: tuple[str, ...] = ()
    description: str = ""
    concurrent: bool = False  # answered one request at a time, many in flight (APIs)
    # The request kinds it serves: "generate" (free-text answers), "embed" (vectors), "loglik" (log-likelihoods).
    capabilities: tuple[str, ...] = ("generate",)


PROVIDERS: dict[str, ProviderInfo] = {
    info.name: info
    for info in [
        ProviderInfo("fake", "runner.providers.fake:FakeGenerator", "generator", (), "",
                     description="deterministic offline test provider (fake:echo, fake:fail, ...)",
                     capabilities=("generate", "loglik")),
        ProviderInfo("hf", "runner.providers.local.hf:HFGenerator", "generator",
                     ("torch", "transformers", "accelerate"), "pip install torch transformers accelerate",
                     description="local Hugging Face generative model", capabilities=("generate", "loglik")),
        ProviderInfo("encoder", "runner.providers.local.encoder:EncoderEmbedder", "embedder",
                     ("torch", "transformers", "sentence_transformers"),
                     "pip install torch transformers sentence-transformers",
                     description="local encoder model returning embeddings", capabilities=("embed",)),
        ProviderInfo("openai", "runner.providers.api.openai:OpenAIGenerator", "generator", ("openai",),
                     "pip install openai", ("OPENAI_API_KEY",), concurrent=True,
                     description="OpenAI or any OpenAI-compatible server (vLLM, Ollama, llama.cpp)",
                     capabilities=("generate", "loglik")),
        ProviderInfo("gemini", "runner.providers.api.gemini:GeminiGenerator", "generator", ("google.genai",),
                     "pip install google-genai", ("GEMINI_API_KEY", "GOOGLE_API_KEY"), concurrent=True,
                     description="Google Gemini through the google-genai SDK"),
    ]
}


def provider_info(name: str) -> ProviderInfo:
    """The registry entry for a provider name; an unknown name lists the valid ones."""
    try:
        return PROVIDERS[name]
    except KeyError:
        raise UsageError(f"unknown provider {name!r}; known providers: {', '.join(PROVIDERS)}") from None


def is_concurrent(spec: Any) -> bool:
    """True for providers the engine drives concurrently (APIs, and the fake's ``async-`` behaviours)."""
    provider, model_id = spec.provider, spec.model_id
    return PROVIDERS[provider].concurrent or (provider == "fake" and model_id.startswith("async-"))


def missing_packages(info: ProviderInfo) -> list[str]:
    """Import names of the provider's packages that are not installed (checked without importing)."""
    from importlib.util import find_spec

    missing = []
    for pkg in info.packages:
        try:
            if find_spec(pkg) is None:
                missing.append(pkg)
        except (ImportError, ValueError):
            missing.append(pkg)
    return missing


def load_provider_class(name: str) -> type:
    """Import the provider's class; a missing package names the pip command that installs it."""
    info = provider_info(name)
    missing = missing_packages(info)
    if missing:
        raise ModelUnavailable(f"provider {name!r} needs {', '.join(missing)}, not installed: {info.pip}")
    module_name, _, class_name = info.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelUnavailable(f"provider {name!r} could not be imported ({exc}); try: {info.pip}") from None
    return getattr(module, class_name)
