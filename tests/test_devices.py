"""The GPU decision, unit-tested without a GPU: CUDA present, absent, and required."""

from __future__ import annotations

import pytest
import torch
import transformers

from runner.core.errors import ModelUnavailable
from runner.core.settings import GenerationSettings
from runner.providers.catalog import resolve_model
from runner.providers.local import devices
from runner.providers.local.devices import auto_batch_size, is_out_of_memory, plan_placement
from runner.providers.local.hf import load_model_and_tokenizer


@pytest.fixture
def no_weights_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to read weights fail the test: the decision must come before loading."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"weights were being loaded: {args}")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)


def test_gpu_model_without_cuda_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ModelUnavailable, match=r"needs a CUDA GPU \(~18 GB of GPU memory\)"):
        plan_placement(resolve_model("medgemma-27b"), cuda=False)


def test_gpu_model_with_cuda_gets_4bit_in_bfloat16() -> None:
    placement = plan_placement(resolve_model("medgemma-27b"), cuda=True)
    assert (placement.device, placement.quantize, placement.dtype) == ("cuda", "4bit", "bfloat16")


def test_cpu_model_placement_with_and_without_cuda() -> None:
    biomedlm = resolve_model("biomedlm")
    assert plan_placement(biomedlm, cuda=False) == devices.Placement("cpu", None, "float32")
    assert plan_placement(biomedlm, cuda=True) == devices.Placement("cuda", None, "auto")
    smol = resolve_model("smollm2-135m-instruct")
    assert plan_placement(smol, cuda=True).dtype == "float32"  # the catalog's choice wins


def test_quantization_asked_without_cuda_is_refused() -> None:
    spec = resolve_model("biomedlm").model_copy(update={"quantize": "4bit"})
    with pytest.raises(ModelUnavailable, match="4bit quantization needs a CUDA GPU"):
        plan_placement(spec, cuda=False)
    no_quant = resolve_model("biomedlm").model_copy(update={"quantize": "none"})
    assert plan_placement(no_quant, cuda=False).quantize is None


def test_quantization_does_not_apply_to_gguf_weights() -> None:
    # transformers refuses bitsandbytes on GGUF weights, so `--quantize 4bit` over a run that includes the embedded
    # model loads that one as it is, with a note, instead of failing it (or refusing it without a GPU).
    smol = resolve_model("smollm2-135m-instruct").model_copy(update={"quantize": "4bit"})
    for cuda in (True, False):
        placement = plan_placement(smol, cuda=cuda)
        assert placement.quantize is None and placement.dtype == "float32"
        assert "GGUF" in placement.note and "4bit" in placement.note
    assert plan_placement(resolve_model("medgemma-27b"), cuda=True).note == ""


def test_missing_bitsandbytes_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    real = devices.find_spec
    monkeypatch.setattr(devices, "find_spec", lambda name: None if name == "bitsandbytes" else real(name))
    with pytest.raises(ModelUnavailable, match="pip install bitsandbytes"):
        plan_placement(resolve_model("pmc-llama-13b"), cuda=True)


def test_cuda_decision_reads_torch(monkeypatch: pytest.MonkeyPatch, no_weights_loaded: None) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not devices.cuda_available()
    with pytest.raises(ModelUnavailable, match="needs a CUDA GPU"):
        load_model_and_tokenizer(resolve_model("medgemma-27b"), GenerationSettings())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert plan_placement(resolve_model("medgemma-27b")).cuda


def test_with_cuda_an_uncached_hub_model_says_how_to_download(monkeypatch: pytest.MonkeyPatch,
                                                               no_weights_loaded: None) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailable) as caught:
        load_model_and_tokenizer(resolve_model("medgemma-27b"), GenerationSettings())
    message = str(caught.value)
    assert "google/medgemma-27b-text-it is not in the Hugging Face cache" in message
    assert "hf download google/medgemma-27b-text-it" in message and "HF_HOME" in message
    assert "gated" in message


def test_cache_bytes_per_token_from_the_config() -> None:
    from types import SimpleNamespace

    smollm2 = SimpleNamespace(num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576)
    assert devices.cache_bytes_per_token(smollm2, 4) == 2 * 30 * 3 * 64 * 4  # keys and values, 3 KV heads of 64
    gpt2_like = SimpleNamespace(num_hidden_layers=32, num_attention_heads=20, hidden_size=2560)  # no GQA
    assert devices.cache_bytes_per_token(gpt2_like, 2) == 2 * 32 * 20 * 128 * 2
    assert devices.cache_bytes_per_token(SimpleNamespace(), 4) is None


def test_auto_batch_size_and_out_of_memory_detection() -> None:
    assert auto_batch_size(devices.Placement("cpu", None, "float32")) == devices.CPU_AUTO_BATCH
    assert auto_batch_size(devices.Placement("cuda", "4bit", "bfloat16")) == devices.CUDA_AUTO_BATCH
    cpu = devices.Placement("cpu", None, "float32")
    budget = devices.cpu_cache_budget()
    assert budget >= devices.CPU_CACHE_BUDGET
    assert auto_batch_size(cpu, cache_bytes_per_prompt=budget // 10) == 10  # the cache must fit
    assert auto_batch_size(cpu, cache_bytes_per_prompt=budget * 2) == 1
    assert auto_batch_size(cpu, cache_bytes_per_prompt=1000) == devices.CPU_AUTO_BATCH
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


@pytest.mark.parametrize(("physical_gib", "budget_gib"), [(4, 1), (8, 1), (24, 3), (64, 8)])
def test_cpu_cache_budget_is_an_eighth_of_memory(monkeypatch: pytest.MonkeyPatch, physical_gib: int,
                                                 budget_gib: int) -> None:
    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": physical_gib * (1 << 30) // 4096}
    monkeypatch.setattr(devices.os, "sysconf", lambda name: pages[name])
    assert devices.cpu_cache_budget() == budget_gib * (1 << 30)


def test_cpu_cache_budget_without_a_memory_size(monkeypatch: pytest.MonkeyPatch) -> None:
    def unknown(name: str) -> int:
        raise ValueError(name)

    monkeypatch.setattr(devices.os, "sysconf", unknown)
    assert devices.cpu_cache_budget() == devices.CPU_CACHE_BUDGET
