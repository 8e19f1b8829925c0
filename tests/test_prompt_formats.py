"""Prompt formats on real chat templates: SmolLM2's (system role), Gemma 3's (folds the system turn itself),
Gemma's original one (refuses a system turn), plus the Alpaca and plain formats. Nothing is downloaded: the
SmolLM2 tokenizer comes from the embedded GGUF and the Gemma templates are fixture files copied verbatim from
the models' tokenizer_config.json."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from local_models import smollm2

from runner.core.errors import ModelUnavailable
from runner.core.settings import ModelEntry
from runner.providers.catalog import resolve_model
from runner.providers.local.prompt_formats import build_prompt, resolve_format, supports_system_role

FIXTURES = Path(__file__).parent / "fixtures"
PERSONA = "You are a board-certified oncologist."
QUESTION = "What is the first-line treatment for CML?"


@pytest.fixture(scope="module")
def smol_tokenizer():
    return smollm2().tokenizer


def _with_template(tokenizer, name: str):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = (FIXTURES / name).read_text(encoding="utf-8")
    return tok


def test_smollm2_template_takes_the_persona_as_system_turn(smol_tokenizer) -> None:
    assert supports_system_role(smol_tokenizer)
    prompt = build_prompt("chat", smol_tokenizer, PERSONA, QUESTION)
    assert prompt.text == (f"<|im_start|>system\n{PERSONA}<|im_end|>\n<|im_start|>user\n{QUESTION}<|im_end|>\n"
                           "<|im_start|>assistant\n")
    assert prompt.add_special_tokens is False  # the template writes its own special tokens


def test_chat_no_system_folds_the_persona_into_the_user_turn_on_smollm2(smol_tokenizer) -> None:
    text = build_prompt("chat-no-system", smol_tokenizer, PERSONA, QUESTION).text
    assert f"<|im_start|>user\n{PERSONA}\n\n{QUESTION}<|im_end|>" in text
    assert f"<|im_start|>system\n{PERSONA}" not in text


def test_gemma3_template_puts_the_persona_in_front_of_the_first_user_turn(smol_tokenizer) -> None:
    tok = _with_template(smol_tokenizer, "gemma3_chat_template.jinja")
    expected = (f"{tok.bos_token}<start_of_turn>user\n{PERSONA}\n\n{QUESTION}<end_of_turn>\n"
                "<start_of_turn>model\n")
    assert build_prompt("chat", tok, PERSONA, QUESTION).text == expected
    # Folding ourselves (the catalog's chat-no-system) gives the very same prompt as the template's own fold.
    assert build_prompt("chat-no-system", tok, PERSONA, QUESTION).text == expected
    assert "<start_of_turn>system" not in expected


def test_gemma_template_that_refuses_a_system_turn_gets_it_folded(smol_tokenizer) -> None:
    tok = _with_template(smol_tokenizer, "gemma_it_chat_template.jinja")
    with pytest.raises(Exception, match="System role not supported"):
        tok.apply_chat_template([{"role": "system", "content": PERSONA}, {"role": "user", "content": QUESTION}],
                                tokenize=False)
    assert not supports_system_role(tok)
    text = build_prompt("chat", tok, PERSONA, QUESTION).text
    assert text == (f"{tok.bos_token}<start_of_turn>user\n{PERSONA}\n\n{QUESTION}<end_of_turn>\n"
                    "<start_of_turn>model\n")


def test_alpaca_format_is_pmc_llamas_instruction_prompt(smol_tokenizer) -> None:
    prompt = build_prompt("alpaca", smol_tokenizer, PERSONA, QUESTION)
    assert prompt.text == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        f"### Instruction:\n{PERSONA}\n\n### Input:\n{QUESTION}\n\n### Response:")
    assert prompt.add_special_tokens is True  # LLaMA's BOS comes from the tokenizer


def test_plain_format_is_a_question_answer_completion(smol_tokenizer) -> None:
    prompt = build_prompt("plain", smol_tokenizer, PERSONA, QUESTION)
    assert prompt.text == f"{PERSONA}\n\nQuestion: {QUESTION}\nAnswer:"
    assert build_prompt("plain", smol_tokenizer, "", QUESTION).text == f"Question: {QUESTION}\nAnswer:"


def test_format_defaults_to_chat_with_a_template_and_plain_without(smol_tokenizer) -> None:
    assert resolve_format(None, smol_tokenizer) == "chat"
    bare = copy.deepcopy(smol_tokenizer)
    bare.chat_template = None
    assert resolve_format(None, bare) == "plain"
    assert resolve_format("alpaca", bare) == "alpaca"
    with pytest.raises(ModelUnavailable, match="needs a chat template"):
        resolve_format("chat", bare)
    with pytest.raises(ValueError, match="unknown prompt format"):
        resolve_format("markdown", smol_tokenizer)


def test_catalog_formats_and_config_override() -> None:
    assert resolve_model("medgemma-27b").prompt_format == "chat-no-system"
    assert resolve_model("pmc-llama-13b").prompt_format == "alpaca"
    assert resolve_model("biomedlm").prompt_format == "plain"
    override = resolve_model(ModelEntry(name="smollm2-135m-instruct", prompt_format="plain"))
    assert override.prompt_format == "plain"
