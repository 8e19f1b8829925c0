"""Linear layers whose weights are packed once for oneDNN, for float32 models on the CPU.

``torch.nn.Linear`` on the CPU multiplies through MKL, which re-blocks the weight on every call. oneDNN's linear
(the operator PyTorch's own compiler uses when it freezes a CPU model) takes the weight already laid out in its
blocked format, once. On the embedded model on a 2-core CPU (``benchmarks/bench_local.py``) the batched decoding is
~17% faster with packed layers, most of it in the output layer (576 x 49152): 80-85 GFLOP/s through MKL at 64 rows
against 135 through oneDNN. The results agree with ``torch.nn.functional.linear`` to float32 rounding (~1e-4).

``pack`` is used only for float32 models on an x86-64 CPU (ARM CPUs were not measured), when the CPU speed path is
on (``fastpath.enabled``, which runs ``probe`` once per process). It also checks the model's first layer and leaves
the model untouched when the operators are missing (a PyTorch built without oneDNN) or disagree.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

log = logging.getLogger("runner")

# The batch rows the weights' layout is tuned for (a batch of questions decoding together); any count works.
PACK_ROWS = 64
# How far a probe through the packed operator may be from ``torch.nn.functional.linear``.
PROBE_TOLERANCE = 1e-3


def measured_here() -> bool:
    """Whether this is an x86-64 CPU, where the gain was measured (other CPUs keep ``torch.nn.Linear``)."""
    import platform

    return platform.machine().lower() in {"x86_64", "amd64"}


def _linear_op() -> Any:
    """oneDNN's linear over a packed weight (raises AttributeError where this PyTorch lacks it)."""
    import torch

    return torch.ops.mkldnn._linear_pointwise


@functools.cache
def _packed_linear_class() -> type:
    import torch

    class PackedLinear(torch.nn.Module):
        """A linear layer computed by oneDNN from a weight packed once (``torch.ops.mkldnn`` operators)."""

        def __init__(self, linear: torch.nn.Linear, rows: int = PACK_ROWS) -> None:
            super().__init__()
            self.in_features, self.out_features = linear.in_features, linear.out_features
            self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows)
            self.bias = None if linear.bias is None else linear.bias.detach()
            self.op = _linear_op()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """``x @ weight.T + bias``, as ``torch.nn.Linear`` computes it."""
            return self.op(x, self.packed, self.bias, "none", [], "")

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, oneDNN packed"

    return PackedLinear


def _agrees(layer: Any, linear: Any) -> bool:
    """Whether ``layer`` computes what ``linear`` does on a random probe, within ``PROBE_TOLERANCE``."""
    import torch

    with torch.inference_mode():
        probe = torch.randn(3, 2, linear.in_features, generator=torch.Generator().manual_seed(0))
        expected = torch.nn.functional.linear(probe, linear.weight, linear.bias)
        return bool(torch.allclose(layer(probe), expected, rtol=PROBE_TOLERANCE, atol=PROBE_TOLERANCE))


def probe() -> str | None:
    """Why oneDNN's packed linear cannot replace ``torch.nn.Linear`` here, or None when it can.

    Packs a small random float32 layer and compares it with ``torch.nn.functional.linear``: a PyTorch built
    without oneDNN, missing operators or a disagreeing result each give a reason (``fastpath.available`` turns
    the speed path off on it).
    """
    import torch

    if not torch.backends.mkldnn.is_available():
        return "this PyTorch is built without oneDNN (torch.backends.mkldnn)"
    generator = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(24, 40)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(40, 24, generator=generator))
        linear.bias.copy_(torch.randn(40, generator=generator))
    try:
        if not _agrees(_packed_linear_class()(linear), linear):
            return "oneDNN's packed linear disagrees with torch.nn.Linear on a probe"
    except (AttributeError, RuntimeError, TypeError) as exc:  # operators missing, renamed or refusing this CPU
        return f"oneDNN's packed linear operators fail a probe ({type(exc).__name__}: {exc})"
    return None


def pack(model: Any, rows: int = PACK_ROWS) -> int:
    """Replace every float32 ``torch.nn.Linear`` of ``model`` on the CPU by a oneDNN-packed one; how many.

    Returns 0, changing nothing, when this PyTorch cannot (no oneDNN, operators missing or disagreeing). A weight
    that another module shares (an output layer tied to the input embeddings) stays there; the packed copy is
    extra memory (113 MB for the embedded model).
    """
    import torch

    targets = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
               if type(child) is torch.nn.Linear and child.weight.dtype == torch.float32
               and child.weight.device.type == "cpu"]
    if not targets or not torch.backends.mkldnn.is_available() or not measured_here():
        return 0
    packed_class = _packed_linear_class()
    first_linear = targets[0][2]
    try:
        first = packed_class(first_linear, rows)
        if not _agrees(first, first_linear):
            log.info("oneDNN's packed linear disagrees with torch.nn.Linear here; layers left as they are")
            return 0
    except (AttributeError, RuntimeError, TypeError) as exc:  # operators missing or refusing this build or CPU
        log.info("oneDNN packed linear layers unavailable (%s); layers left as they are", exc)
        return 0
    count = len(targets)
    while targets:  # the list holds the last references to the float32 weights: each goes once it is packed
        parent, name, child = targets.pop()
        setattr(parent, name, first if child is first_linear else packed_class(child, rows))
        del child
        _return_freed_memory()  # else the packed copies pile up on top of the freed weights (peak memory)
    return count


def packed_layers(model: Any) -> int:
    """How many of ``model``'s layers ``pack`` replaced."""
    return sum(isinstance(module, _packed_linear_class()) for module in model.modules())


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl) or none is found."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim  # find_library runs a subprocess: once
    except (OSError, AttributeError, TypeError):
        return None


def _return_freed_memory() -> None:
    """Hand the freed weights' memory back to the system (glibc keeps it otherwise: ~400 MB for the embedded
    model, which would count in the run's peak memory). Does nothing where the C library has no ``malloc_trim``."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
