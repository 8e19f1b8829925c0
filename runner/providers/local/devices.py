"""Where a local model runs: the GPU/CUDA decision, made before any weights load.

``torch`` is imported only inside functions, so importing this module stays cheap. bitsandbytes 0.50 runs
4-bit on a CPU (slowly) instead of failing, so the decision is taken from ``torch.cuda.is_available()``,
never by waiting for an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

from runner.core.errors import ModelUnavailable

if TYPE_CHECKING:
    from runner.providers.catalog import ModelSpec

# The most prompts per batch when --batch-size is auto and the model runs on the CPU. Measured on the embedded 135M
# model (benchmarks/bench_local.py): a decoding step reads every weight once, so 64 rows cost ~2.5x the time of 16.
CPU_AUTO_BATCH = 64
# On the CPU, --batch-size auto also keeps a batch's key/value cache within an eighth of the machine's memory, and
# never below this many bytes (the budget where the memory size cannot be read).
CPU_CACHE_BUDGET = 1 << 30
CPU_CACHE_SHARE = 8
# Starting point on CUDA; an out-of-memory halves it.
CUDA_AUTO_BATCH = 64


@dataclass(frozen=True)
class Placement:
    """The decision for one model: the device, whether to quantize, and the dtype name to load with."""

    device: str  # "cuda" or "cpu"
    quantize: str | None  # "4bit", "8bit" or None
    dtype: str  # "auto", "float32", "bfloat16", "float16"
    note: str = ""  # something the user should hear about the decision (logged when the model loads)

    @property
    def cuda(self) -> bool:
        """True when the model goes on a CUDA GPU."""
        return self.device == "cuda"


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (imports torch)."""
    import torch

    return bool(torch.cuda.is_available())


def plan_placement(spec: ModelSpec, cuda: bool | None = None) -> Placement:
    """Decide device, quantization and dtype for ``spec``; raise ModelUnavailable when it cannot run here.

    ``cuda`` defaults to ``torch.cuda.is_available()``. A model that needs a GPU, or asks for 4-/8-bit
    quantization, is refused without CUDA, so 27B parameters are never loaded onto a CPU.
    """
    cuda = cuda_available() if cuda is None else cuda
    quantize = spec.quantize if spec.quantize in ("4bit", "8bit") else None
    note = ""
    if quantize and (spec.weights_file or "").lower().endswith(".gguf"):
        # transformers dequantizes GGUF weights when it loads them and refuses to combine that with bitsandbytes.
        note = (f"{spec.name}: its GGUF weights are loaded dequantized; {quantize} quantization does not apply "
                "to GGUF files, so it loads without it")
        quantize = None
    if not cuda:
        if spec.needs_gpu:
            size = f" (~{spec.gpu_memory_gb:g} GB of GPU memory)" if spec.gpu_memory_gb else ""
            raise ModelUnavailable(f"{spec.name} needs a CUDA GPU{size} and none is available here "
                                   "(torch.cuda.is_available() is False); skipped without loading its weights")
        if quantize:
            raise ModelUnavailable(f"{spec.name}: {quantize} quantization needs a CUDA GPU and none is available "
                                   "here; run it without --quantize (quantize = \"none\") or on a GPU machine")
    if quantize and find_spec("bitsandbytes") is None:
        raise ModelUnavailable(f"{spec.name}: {quantize} quantization needs bitsandbytes: pip install bitsandbytes")
    dtype = spec.dtype or ("auto" if cuda else "float32")
    if quantize == "4bit" and spec.dtype in (None, "auto"):
        dtype = "bfloat16"  # matches the 4-bit compute dtype
    return Placement(device="cuda" if cuda else "cpu", quantize=quantize, dtype=dtype, note=note)


def auto_batch_size(placement: Placement, cache_bytes_per_prompt: int | None = None) -> int:
    """The batch size ``--batch-size auto`` starts with.

    On CUDA an out-of-memory halves it later. On the CPU, where memory simply runs out, the batch's key/value cache
    (``cache_bytes_per_prompt`` per prompt, when known) is kept within ``cpu_cache_budget()``.
    """
    if placement.cuda:
        return CUDA_AUTO_BATCH
    if not cache_bytes_per_prompt:
        return CPU_AUTO_BATCH
    return max(1, min(CPU_AUTO_BATCH, cpu_cache_budget() // cache_bytes_per_prompt))


def cpu_cache_budget() -> int:
    """Bytes a CPU batch's key/value cache may take: an eighth of physical memory, at least ``CPU_CACHE_BUDGET``."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX (Windows), or the value is not available
        return CPU_CACHE_BUDGET
    return max(CPU_CACHE_BUDGET, physical // CPU_CACHE_SHARE)


def cache_bytes_per_token(config: Any, dtype_bytes: int) -> int | None:
    """Bytes of key/value cache one token takes in a model with ``config`` (None when the config does not say)."""
    layers = getattr(config, "num_hidden_layers", None)
    heads = getattr(config, "num_attention_heads", None)
    hidden = getattr(config, "hidden_size", None)
    if not all(isinstance(v, int) and v > 0 for v in (layers, heads, hidden)):
        return None
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    return 2 * layers * kv_heads * head_dim * dtype_bytes


def is_out_of_memory(error: BaseException) -> bool:
    """True for a CUDA (or accelerator) out-of-memory error."""
    try:
        import torch

        if isinstance(error, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    text = str(error).lower()
    return "out of memory" in text and ("cuda" in text or "gpu" in text or "hip" in text)


def free_accelerator_memory() -> None:
    """Return cached GPU memory to the driver (no-op without CUDA)."""
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
