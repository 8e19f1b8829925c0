"""The ``models`` and ``personas`` listings. Nothing here imports torch or a model SDK."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from runner.providers import PROVIDERS, ProviderInfo, missing_packages, provider_info
from runner.providers.catalog import CATALOG, DEFAULT_MODELS, ModelSpec


def gpu_visible() -> bool:
    """Whether an NVIDIA GPU seems present, judged without importing torch."""
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def model_needs(spec: ModelSpec) -> tuple[list[str], list[str]]:
    """What the model needs, and which of those this machine lacks."""
    info = provider_info(spec.provider)
    needs, missing = [], []
    if info.packages:
        needs.append("pip: " + " ".join(info.packages))
        lacking = missing_packages(info)
        if lacking:
            missing.append(f"package {', '.join(lacking)} ({info.pip})")
    if spec.embedded and spec.package_dir:
        from importlib.util import find_spec

        needs.append(f"package {spec.package_dir}")
        if find_spec(spec.package_dir) is None:
            missing.append(f"package {spec.package_dir}")
    if info.key_env_vars and not spec.base_url:
        needs.append("key " + " or ".join(info.key_env_vars))
        if not any(os.environ.get(v) for v in info.key_env_vars):
            missing.append(f"set {info.key_env_vars[0]}")
    if spec.needs_gpu:
        needs.append(f"CUDA GPU ~{spec.gpu_memory_gb:g} GB" if spec.gpu_memory_gb else "CUDA GPU")
        if not gpu_visible():
            missing.append("a CUDA GPU")
    if spec.download_gb and not spec.embedded:
        needs.append(f"download ~{spec.download_gb:g} GB")
        lacking_weights = weights_missing(spec)
        if lacking_weights:
            missing.append(lacking_weights)
    if spec.gated:
        needs.append("gated licence")
    return needs, missing


def weights_missing(spec: ModelSpec) -> str | None:
    """Why a local hub model's weights are not here (not in the Hugging Face cache), or None when they are."""
    if not provider_info(spec.provider).local_flags or Path(spec.model_id).expanduser().is_dir():
        return None
    try:
        from runner.providers.local.hub import hub_offline, is_cached
    except ImportError:
        return None
    try:
        if is_cached(spec.model_id):
            return None
    except ImportError:  # huggingface_hub not installed: the package line says so
        return None
    if hub_offline():
        return "the weights: not in the Hugging Face cache, and the hub is off (HF_HUB_OFFLINE)"
    return f"the weights: not downloaded yet (hf download {spec.model_id}, or on first use; needs the hub)"


def print_models(as_json: bool = False) -> int:
    """Print the catalog with what each entry needs and whether this machine has it."""
    rows = []
    for alias, spec in CATALOG.items():
        needs, missing = model_needs(spec)
        rows.append({"alias": alias, "name": spec.name, "kind": spec.kind, "default": alias in DEFAULT_MODELS,
                     "description": spec.description, "needs": needs, "missing": missing, "notes": spec.notes,
                     "price_usd_per_mtok": [spec.price_input_per_mtok, spec.price_output_per_mtok]
                     if spec.price_input_per_mtok is not None else None})
    if as_json:
        print(json.dumps(rows, indent=1))
        return 0
    for row in rows:
        status = "ready" if not row["missing"] else "missing " + "; ".join(row["missing"])
        mark = " (default)" if row["default"] else ""
        print(f"{row['alias']}{mark}\n  {row['name']}  [{row['kind']}]  {row['description']}")
        print(f"  needs: {', '.join(row['needs']) or 'nothing'}  ->  {status}")
        if row["price_usd_per_mtok"]:
            inp, out = row["price_usd_per_mtok"]
            print(f"  price: ${inp:g} / ${out:g} per million input / output tokens")
        if row["notes"]:
            print(f"  note: {row['notes']}")
    print("\nAny other model: provider:model-id, from these providers:")
    for info in PROVIDERS.values():
        print(f"  {info.name}:{info.model_hint}  {info.description}\n    {provider_facts(info)}")
    return 0


def provider_facts(info: ProviderInfo) -> str:
    """One line of what a provider's declaration says: what it serves, how it runs, what it needs."""
    facts = ["serves " + ", ".join(info.capabilities),
             "API, concurrent" if info.concurrent else "batched"]
    if info.concurrent_models:
        facts[-1] += f" ({', '.join(info.concurrent_models)}: concurrent)"
    if info.local_flags:
        facts.append("local (--quantize, --dtype, --trust-remote-code)")
    if info.key_env_vars:
        facts.append("key " + " or ".join(info.key_env_vars))
    if info.base_url_env:
        facts.append(f"another server: {info.base_url_env}")
    if info.pip:
        facts.append(info.pip)
    if info.origin != "built-in":
        facts.append(info.origin)
    return "; ".join(facts)


def print_personas(name: str | None = None) -> int:
    """List personas with a one-line summary, or print one persona's full text."""
    from runner.core.personas import DEFAULT_PERSONA, list_personas, no_persona, resolve_persona
    from runner.core.text import sanitize

    # A persona file is anyone's text: its escape sequences must not reach the terminal.
    if name:
        persona = resolve_persona(name)
        print(f"# {sanitize(persona.name, newlines=False)} ({sanitize(persona.source, newlines=False)})\n\n"
              f"{sanitize(persona.text or persona.summary)}")
        return 0
    personas = [*list_personas(), no_persona()]  # the built-in "none" (no system prompt) last
    width = max((len(p.name) for p in personas), default=10)
    for p in personas:
        mark = "*" if p.name == DEFAULT_PERSONA else " "
        print(f"{mark} {p.name:<{width}}  {sanitize(p.summary, newlines=False)}")
    print("\n* default. Use --persona NAME, --persona a,b, --persona path/to/file.md or --system-prompt TEXT.")
    return 0
