"""Linear layers packed for oneDNN on the CPU (runner/providers/local/fastpath/packed_linear.py)."""

from __future__ import annotations

import pytest
import torch
from local_models import smollm2  # as the other test modules import it: one loaded model per session

from runner.providers.local.fastpath import packed_linear
from runner.providers.local.hf import load_model_and_tokenizer

needs_onednn = pytest.mark.skipif(not (torch.backends.mkldnn.is_available() and packed_linear.measured_here()),
                                  reason="packing is for x86-64 CPUs with a PyTorch built with oneDNN")


class Tied(torch.nn.Module):
    """Embeddings, two linear layers (one with a bias), an output layer sharing the embeddings' weight."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(50, 24)
        self.up = torch.nn.Linear(24, 40)
        self.down = torch.nn.Linear(40, 24, bias=False)
        self.head = torch.nn.Linear(24, 50, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.down(torch.relu(self.up(self.embed(ids)))))


@needs_onednn
def test_packed_layers_compute_what_the_linear_layers_did() -> None:
    model, ids = Tied(), torch.randint(0, 50, (4, 7))
    with torch.inference_mode():
        expected = model(ids)
    assert packed_linear.pack(model) == 3
    assert all(type(m) is not torch.nn.Linear for m in model.modules())
    assert "oneDNN packed" in repr(model.up)
    with torch.inference_mode():
        got = model(ids)
        single = model(ids[:1])  # any number of rows, not only the one the layout was tuned for
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(single, expected[:1], rtol=1e-4, atol=1e-4)
    assert model.embed.weight.shape == (50, 24)  # the tied weight stays with the embeddings


def test_other_dtypes_are_left_alone() -> None:
    model = Tied().to(torch.bfloat16)
    assert packed_linear.pack(model) == 0
    assert type(model.up) is torch.nn.Linear


def test_without_onednn_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    model = Tied()
    assert packed_linear.pack(model) == 0
    assert type(model.up) is torch.nn.Linear and type(model.head) is torch.nn.Linear


@needs_onednn
def test_a_disagreeing_operator_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    real = torch.ops.mkldnn._linear_pointwise

    def off_by_one(*args: object) -> torch.Tensor:
        return real(*args) + 1

    monkeypatch.setattr(packed_linear, "_linear_op", lambda: off_by_one)
    model = Tied()
    assert packed_linear.pack(model) == 0
    assert type(model.up) is torch.nn.Linear


def test_other_cpus_keep_their_linear_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("platform.machine", lambda: "arm64")
    model = Tied()
    assert packed_linear.pack(model) == 0
    assert type(model.up) is torch.nn.Linear


def test_missing_operators_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> object:
        raise AttributeError("'_OpNamespace' 'mkldnn' object has no attribute '_linear_pointwise'")

    monkeypatch.setattr(packed_linear, "_linear_op", missing)
    model = Tied()
    assert packed_linear.pack(model) == 0
    assert type(model.up) is torch.nn.Linear
    assert packed_linear.probe() is not None  # the probe says why (and fastpath turns itself off)


@needs_onednn
def test_the_probe_passes_here_and_fails_on_a_disagreeing_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    assert packed_linear.probe() is None
    real = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(packed_linear, "_linear_op", lambda: lambda *args: real(*args) * 2)
    assert "disagrees" in (packed_linear.probe() or "")
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert "without oneDNN" in (packed_linear.probe() or "")


@needs_onednn
def test_the_embedded_model_loads_packed_and_its_logits_match_the_plain_model() -> None:
    generator = smollm2()
    # 30 layers x (q, k, v, o, gate, up, down) + the output layer
    assert packed_linear.packed_layers(generator.model) == 30 * 7 + 1
    # The CPU speed path switched off: the model as transformers loads it.
    plain, tokenizer = load_model_and_tokenizer(generator.spec,
                                                generator.settings.model_copy(update={"cpu_fast_path": False}))
    assert packed_linear.packed_layers(plain) == 0
    assert all(type(m) is torch.nn.Linear for m in plain.modules() if "Linear" in type(m).__name__)
    ids = tokenizer(["Which drug class do statins belong to?", "What does BRCA1 do?"], padding=True,
                    return_tensors="pt")
    with torch.inference_mode():
        expected = plain(**ids).logits
        got = generator.model(**ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)
    assert torch.equal(got[:, -1].argmax(-1), expected[:, -1].argmax(-1))
