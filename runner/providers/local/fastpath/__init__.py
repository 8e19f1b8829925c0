"""The CPU speed path behind one switch (``--cpu-fast-path on|off``, ``GenerationSettings.cpu_fast_path``).

Four parts, each measured on the embedded model on a 2-core x86-64 CPU (``benchmarks/bench_local.py``):

- prefix ("cascade") attention (``prefix_attention.py``): a batch's shared prompt prefix is kept once and read
  once per step, registered through transformers' ``AttentionInterface``;
- packed linear layers (``packed_linear.py``): float32 ``torch.nn.Linear`` layers computed by oneDNN from weights
  packed once, through private ``torch.ops.mkldnn`` operators;
- the preallocated cache and grouped prefill (``..batching``: ``BatchPrefill``, ``PreallocatedLayer``), which
  subclass transformers' cache internals (``cache_utils.DynamicLayer``);
- decoding threads that follow the machine's load (``threads.py``): each chunk runs with torch's threads or one,
  whichever was measured faster of late (on a shared CPU, two threads waiting for each other can be 7x slower).

``enabled`` is the one decision: the switch is on, the model runs on the CPU, the CPU is x86-64 (where it was
measured), torch and transformers are of the major versions it was tested with (``TESTED_MAJORS``) and the packed
operators pass a probe. An untested major version or a failed probe turns the path off with one warning per process
(logger ``runner``) rather than failing; with it off, the model is transformers' own (``torch.nn.Linear`` layers,
SDPA attention, ``generate`` on the padded batch) and greedy answers are the same. The preallocated cache is also
used on CUDA, where the switch does not reach it (``batching.preallocate``): CUDA's behaviour does not depend on it.

This module imports torch and transformers only inside functions, and none of its siblings at import time.
"""

from __future__ import annotations

import functools
import logging
import platform
from typing import Any

log = logging.getLogger("runner")

# The major versions the speed path was tested with; another major turns it off (with one warning).
TESTED_MAJORS = {"torch": 2, "transformers": 5}
# CPUs it was measured on (``platform.machine()``, lower case); other CPUs keep the plain path, without a warning.
MEASURED_MACHINES = frozenset({"x86_64", "amd64"})

_warned = False  # one warning per process, whatever turned the path off


def device_type(device: Any) -> str:
    """``"cpu"``, ``"cuda"``, ... for a device name (``"cuda:0"``) or a ``torch.device``."""
    return str(getattr(device, "type", device)).split(":", 1)[0].lower()


def _major(version: str) -> int | None:
    """The major number of a version string (``"2.13.0+cpu"`` -> 2), or None when it has none."""
    head = version.strip().split(".", 1)[0]
    return int(head) if head.isdigit() else None


def installed_versions() -> dict[str, str]:
    """The installed torch and transformers versions (imports both)."""
    import torch
    import transformers

    return {"torch": str(torch.__version__), "transformers": str(transformers.__version__)}


def untested_versions() -> list[str]:
    """``name version`` for each of torch and transformers whose major version is not in ``TESTED_MAJORS``."""
    return [f"{name} {version}" for name, version in installed_versions().items()
            if _major(version) != TESTED_MAJORS[name]]


@functools.cache
def _probe() -> str | None:
    """Why oneDNN's packed linear cannot be used here, or None when it agrees with ``torch.nn.Linear`` (once)."""
    from runner.providers.local.fastpath import packed_linear

    return packed_linear.probe()


def available(device: Any) -> tuple[bool, str | None]:
    """Whether the CPU speed path can run for a model on ``device`` here, and if not, why.

    ``device`` is a device name (``"cpu"``, ``"cuda"``) or a ``torch.device``. Only the CPU of an x86-64 machine,
    with torch and transformers of the tested major versions and the packed operators passing their probe, says
    yes. The reason is None when the path is available.
    """
    kind = device_type(device)
    if kind != "cpu":
        return False, f"the CPU speed path is for models on the CPU, not {kind}"
    machine = platform.machine().lower()
    if machine not in MEASURED_MACHINES:
        return False, f"the CPU speed path was measured on x86-64 CPUs only, not {machine or 'this CPU'}"
    untested = untested_versions()
    if untested:
        tested = ", ".join(f"{name} {major}.x" for name, major in TESTED_MAJORS.items())
        return False, (f"the CPU speed path was tested with {tested}, not {', '.join(untested)}; "
                       "it is off and local models run transformers' plain path")
    failure = _probe()
    if failure:
        return False, f"the CPU speed path is off: {failure}; local models run transformers' plain path"
    return True, None


def enabled(settings: Any, device: Any) -> bool:
    """Whether the CPU speed path is on for a model on ``device``: the switch is on and ``available`` says yes.

    ``settings`` is a ``GenerationSettings`` (its ``cpu_fast_path``). An untested major version or a failed probe
    logs one warning per process; other reasons (the switch off, a GPU, another CPU) are expected and stay quiet.
    """
    global _warned
    if not getattr(settings, "cpu_fast_path", True):
        return False
    ok, reason = available(device)
    if not ok and reason and device_type(device) == "cpu" and platform.machine().lower() in MEASURED_MACHINES:
        if not _warned:
            _warned = True
            log.warning("%s", reason)
        else:
            log.debug("%s", reason)
    return ok
