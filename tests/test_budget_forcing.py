"""Thinking traces kept apart and budget forcing (s1) for local ``hf:`` models (issue 21, items 1 and 2).

A tiny Llama with random weights and a word-level tokenizer is saved in a temporary folder and loaded as
``hf:<folder>`` (no hub), the way a user points the runner at a checkpoint. ``<think>`` and ``</think>`` are added
*special* tokens, as in tokenizers that drop them when decoding with ``skip_special_tokens``. To make its answers
known in advance, the model's forward pass is wrapped so its logits always pick one next token for the last token
it sees (a scripted Markov chain, ``SCRIPT``); everything else — ``generate``, the cache, the batching, the stopping
criterion and the rounds of budget forcing — runs for real.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from local_models import TEST_SETTINGS, restored, smollm2

from runner.core.errors import UsageError
from runner.core.settings import GenerationSettings
from runner.providers.base import Request
from runner.providers.catalog import resolve_model
from runner.providers.local import budget, traces
from runner.providers.local.hf import HFGenerator

WORDS = ["[UNK]", "<pad>", "<eos>", "go", "skip", "stop", "halt", "a", "b", "c", "d", "x", "y", "Wait", "##",
         "Thinking", "Final", "Response", "user", "system", ":", "q"]
# The chat template ends with the user's message, so its last word picks where the script starts.
TEMPLATE = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }}{% if not loop.last %}\n{% endif %}"
            "{% endfor %}")
# Which token follows which (anything else: the EOS).
SCRIPT = {
    "go": "<think>", "<think>": "a", "a": "b", "b": "c", "c": "a",  # thinks forever
    "stop": "<think>", "halt": "<think>",  # think briefly (SHORT below)
    "</think>": "x", "skip": "y",  # answers; y, x -> EOS
    "Thinking": "a",  # HuatuoGPT-o1 style, the prompt opening the trace with "## Thinking"
    "##": "Final", "Final": "Response", "Response": "x",
    "Wait": "a",
}
# A model that ends its thinking early: a b </think>
SHORT = {**SCRIPT, "b": "</think>"}
# A model that stops (EOS) inside its trace: <think> a <eos>
EOS_IN_TRACE = {**SCRIPT, "a": "<eos>"}
# HuatuoGPT-o1 style: a b c ## Final Response x
HUATUO = {**SCRIPT, "c": "##"}
PERSONA = "system"


def build_checkpoint(folder: Path) -> Path:
    """Save a tiny random Llama and a word-level tokenizer with <think>/</think> as added special tokens."""
    import transformers
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    word_level = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=word_level, eos_token="<eos>",
                                                     pad_token="<pad>", unk_token="[UNK]")
    tokenizer.add_tokens([AddedToken("<think>", special=True), AddedToken("</think>", special=True)],
                         special_tokens=True)
    tokenizer.chat_template = TEMPLATE
    tokenizer.save_pretrained(folder)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=512, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None, tie_word_embeddings=False)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    return folder


class Scripted:
    """Wraps a loaded model's forward: the logits pick ``script[last token]`` (the EOS when unscripted)."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.tokenizer, self.real = tokenizer, model.forward
        self.use(SCRIPT)
        model.forward = self.forward

    def use(self, script: dict[str, str]) -> None:
        ids = self.tokenizer.convert_tokens_to_ids
        table = torch.full((len(self.tokenizer),), ids("<eos>"), dtype=torch.long)
        for source, target in script.items():
            table[ids(source)] = ids(target)
        self.table = table

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.real(*args, **kwargs)
        input_ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        chosen = self.table[input_ids[:, -1].cpu()].to(out.logits.device)
        logits = torch.zeros((input_ids.shape[0], 1, out.logits.shape[-1]), device=out.logits.device)
        logits[torch.arange(input_ids.shape[0]), 0, chosen] = 10.0
        out.logits = logits
        return out


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[HFGenerator, Scripted]:
    folder = build_checkpoint(tmp_path_factory.mktemp("thinker"))
    generator = HFGenerator(resolve_model(f"hf:{folder}"), GenerationSettings(max_new_tokens=30))
    generator.load()
    return generator, Scripted(generator.model, generator.tokenizer)


@pytest.fixture
def thinker(loaded: tuple[HFGenerator, Scripted]) -> Iterator[tuple[HFGenerator, Scripted]]:
    generator, scripted = loaded
    spec = generator.spec
    with restored(generator):
        yield generator, scripted
    generator.spec, generator.token_meter = spec, None
    scripted.use(SCRIPT)


def ask(generator: HFGenerator, *questions: str, **settings: Any) -> list[Any]:
    given = GenerationSettings(**{"max_new_tokens": 30, **settings})
    results = generator.generate([Request(f"k{i}", PERSONA, q, given) for i, q in enumerate(questions)])
    assert all(r.ok for r in results), [r.error for r in results]
    return results


def words(generator: HFGenerator, text: str) -> list[str]:
    return generator.tokenizer.convert_ids_to_tokens(generator.tokenizer(text, add_special_tokens=False).input_ids)


# Traces kept apart (no budget: the default path).

def test_the_trace_is_split_off_although_its_delimiters_are_special_tokens(thinker: Any) -> None:
    generator, scripted = thinker
    scripted.use(SHORT)  # <think> a b </think> x <eos>
    tokens = generator.tokenizer("<think> a b </think> x", add_special_tokens=False).input_ids
    assert "think" not in generator.tokenizer.decode(tokens, skip_special_tokens=True)  # the trap being tested
    (result,) = ask(generator, "q stop")
    assert (result.text, result.reasoning) == ("x", "a b")
    assert result.reasoning_tokens == 4  # <think> a b </think>
    assert result.completion_tokens == 6 and result.finish_reason == "stop"  # ... x <eos>
    assert result.thinking is None and not result.warnings


def test_an_answer_cut_off_while_thinking_is_saved_empty_with_its_trace(thinker: Any) -> None:
    generator, _ = thinker
    (result,) = ask(generator, "q go", max_new_tokens=6)  # <think> a b c a b ... never ends
    assert result.text == "" and result.reasoning == "a b c a b"
    assert result.reasoning_tokens == 6 and result.completion_tokens == 6 and result.finish_reason == "length"
    assert any("--max-new-tokens" in w and "still thinking" in w for w in result.warnings)


def test_a_trace_the_prompt_opened_is_split_at_the_end_delimiter(thinker: Any) -> None:
    generator, scripted = thinker
    scripted.use(SHORT)  # the prompt ends with <think>: a b </think> x
    (result,) = ask(generator, "q <think>")
    assert (result.text, result.reasoning, result.reasoning_tokens) == ("x", "a b", 3)


def test_a_model_without_delimiters_is_unchanged(thinker: Any) -> None:
    generator, _ = thinker
    (result,) = ask(generator, "q skip")
    assert (result.text, result.reasoning, result.reasoning_tokens, result.thinking) == ("y", None, None, None)
    assert result.completion_tokens == 2 and result.finish_reason == "stop" and not result.warnings


def test_custom_delimiters_huatuogpt_style(thinker: Any) -> None:
    generator, scripted = thinker
    generator.spec = generator.spec.model_copy(update={"think_delimiters": ("## Thinking", "## Final Response")})
    scripted.use(HUATUO)  # the prompt ends with "## Thinking": a b c ## Final Response x
    (result,) = ask(generator, "q ## Thinking")
    assert (result.text, result.reasoning, result.reasoning_tokens) == ("x", "a b c", 6)
    # The model writing "## Thinking" itself, then the multi-token end delimiter.
    tokens = generator.tokenizer("## Thinking a b ## Final Response x", add_special_tokens=False).input_ids
    parts = traces.take_apart(generator.tokenizer, tokens, generator.spec.think_delimiters)
    assert (parts.text, parts.reasoning, parts.reasoning_tokens, parts.unfinished) == ("x", "a b", 7, False)
    # Budget forcing appends the multi-token delimiter; "Wait" replaces all three tokens of an early one.
    (forced,) = ask(generator, "q ## Thinking", thinking_budget=2)
    assert (forced.text, forced.reasoning, forced.reasoning_tokens, forced.thinking) == \
           ("x", "a b", 5, {"waits": 0, "forced_end": True})
    (waited,) = ask(generator, "q ## Thinking", min_thinking=6, wait=1)
    assert (waited.text, waited.reasoning, waited.reasoning_tokens, waited.thinking) == \
           ("x", "a b c Wait a b c", 10, {"waits": 1, "forced_end": False})
    assert waited.completion_tokens == 12


# Budget forcing.

@pytest.mark.parametrize("budget_tokens", [0, 1, 5, 9])
def test_the_end_delimiter_is_forced_at_exactly_the_budget(thinker: Any, budget_tokens: int) -> None:
    generator, _ = thinker
    (result,) = ask(generator, "q go", thinking_budget=budget_tokens)  # <think> a b c a b c ... never ends
    trace = ["<think>", "a", "b", "c", "a", "b", "c", "a", "b"][:budget_tokens]
    assert result.reasoning == " ".join(trace[1:]) and result.text == "x"
    assert result.reasoning_tokens == budget_tokens + 1  # the trace and the inserted </think>
    assert result.completion_tokens == budget_tokens + 3  # ... x <eos>
    assert result.thinking == {"waits": 0, "forced_end": True} and result.finish_reason == "stop"


def test_wait_replaces_an_early_end_of_thinking_at_most_k_times(thinker: Any) -> None:
    generator, scripted = thinker
    scripted.use(SHORT)  # <think> a b </think>, and after "Wait": a b </think>
    (result,) = ask(generator, "q stop", min_thinking=20, wait=2)
    assert result.reasoning == "a b Wait a b Wait a b" and result.text == "x"
    assert result.reasoning_tokens == 10  # <think> a b Wait a b Wait a b </think>: the Waits count
    assert result.completion_tokens == 12 and result.finish_reason == "stop"
    assert result.thinking == {"waits": 2, "forced_end": False}


def test_wait_stops_once_the_trace_is_long_enough(thinker: Any) -> None:
    generator, scripted = thinker
    scripted.use(SHORT)
    (result,) = ask(generator, "q stop", min_thinking=5, wait=3)  # 3 trace tokens: Wait; then 6: accepted
    assert result.reasoning == "a b Wait a b" and result.thinking == {"waits": 1, "forced_end": False}
    (enough,) = ask(generator, "q stop", min_thinking=3, wait=3)  # 3 trace tokens are enough
    assert enough.reasoning == "a b" and enough.thinking == {"waits": 0, "forced_end": False}


def test_the_budget_cuts_a_trace_made_longer_by_waits(thinker: Any) -> None:
    generator, scripted = thinker
    scripted.use(SHORT)
    (result,) = ask(generator, "q stop", min_thinking=20, wait=5, thinking_budget=8)
    assert result.reasoning == "a b Wait a b Wait a" and result.reasoning_tokens == 9
    assert result.thinking == {"waits": 2, "forced_end": True} and result.text == "x"


def test_an_eos_inside_the_trace_is_an_end_of_thinking(thinker: Any) -> None:
    generator, scripted = thinker
    scripted.use(EOS_IN_TRACE)  # <think> a <eos>: "Wait" once, then the delimiter put in place of the EOS
    (result,) = ask(generator, "q stop", min_thinking=10, wait=1)
    assert result.reasoning == "a Wait a" and result.text == "x" and result.reasoning_tokens == 5
    assert result.thinking == {"waits": 1, "forced_end": True} and result.completion_tokens == 7


def test_a_model_that_does_not_think_is_left_alone_by_budget_forcing(thinker: Any) -> None:
    generator, _ = thinker
    (result,) = ask(generator, "q skip", thinking_budget=5, min_thinking=3, wait=2)
    assert (result.text, result.reasoning, result.reasoning_tokens) == ("y", None, None)
    assert result.thinking == {"waits": 0, "forced_end": False} and result.completion_tokens == 2


def test_out_of_room_while_thinking_is_a_cut_off_answer(thinker: Any) -> None:
    generator, scripted = thinker
    scripted.use(SHORT)  # Waits fill the limit before the trace may end
    (result,) = ask(generator, "q stop", min_thinking=25, wait=9, max_new_tokens=12)
    assert result.text == "" and result.finish_reason == "length" and result.completion_tokens <= 12
    assert result.reasoning.startswith("a b Wait a b Wait") and result.reasoning_tokens == result.completion_tokens
    assert any("--max-new-tokens" in w for w in result.warnings)


def test_rows_at_different_stages_share_a_batch(thinker: Any) -> None:
    generator, scripted = thinker
    scripted.use(SHORT)
    questions = ("q go", "q skip", "q stop", "q <think>", "q halt")
    settings = {"thinking_budget": 7, "min_thinking": 5, "wait": 1}
    generator.batch_size = 1
    single = ask(generator, *questions, **settings)
    metered: list[int] = []
    generator.batch_size, generator.token_meter = len(questions), metered.append
    calls: list[int] = []
    generate = generator.model.generate

    def counting(**kwargs: Any) -> Any:
        calls.append(kwargs["input_ids"].shape[0])
        return generate(**kwargs)

    generator.model.generate = counting
    try:
        batched = ask(generator, *questions, **settings)
    finally:
        del generator.model.generate
    assert [(r.text, r.reasoning, r.reasoning_tokens, r.completion_tokens, r.thinking) for r in batched] == \
           [(r.text, r.reasoning, r.reasoning_tokens, r.completion_tokens, r.thinking) for r in single]
    assert calls[0] == len(questions) and calls == sorted(calls, reverse=True)  # finished rows leave
    assert len(calls) <= settings["wait"] + 3
    # SHORT: go/stop/halt think "a b </think>"; with a minimum of 5, one Wait each, then accepted at 6 tokens.
    assert [r.text for r in batched] == ["x", "y", "x", "x", "x"]
    assert [r.thinking["waits"] for r in batched] == [1, 0, 1, 1, 1]
    # The meter hears of generated tokens (the progress's tokens per second): each of the 4 Waits was inserted in
    # place of a generated </think>, so here they add up to the completion tokens.
    assert sum(metered) == sum(r.completion_tokens for r in batched)


def test_greedy_budget_forcing_repeats(thinker: Any) -> None:
    generator, scripted = thinker
    scripted.use(SHORT)
    first = ask(generator, "q stop", "q go", min_thinking=6, wait=2, thinking_budget=9)
    again = ask(generator, "q stop", "q go", min_thinking=6, wait=2, thinking_budget=9)
    assert [(r.text, r.reasoning, r.thinking) for r in first] == [(r.text, r.reasoning, r.thinking) for r in again]


def test_streaming_still_works(thinker: Any) -> None:
    generator, scripted = thinker
    scripted.use(SHORT)
    plain = "".join(generator.stream(Request("s", PERSONA, "q stop", GenerationSettings(max_new_tokens=30))))
    assert plain.split() == ["a", "b", "x"]  # streamed as written (the special delimiters are not shown)
    forced = "".join(generator.stream(Request("s", PERSONA, "q stop",
                                              GenerationSettings(max_new_tokens=30, min_thinking=5, wait=1))))
    assert forced.split() == ["<think>", "a", "b", "Wait", "a", "b", "</think>", "x"]


# Settings a model cannot honour: refused at load, before any weight is read.

@pytest.mark.parametrize(("settings", "message"), [
    ({"reasoning_effort": "high"}, "local models have no reasoning effort control; use --thinking-budget"),
    ({"min_thinking": 100}, "--min-thinking 100 needs --wait K"),
    ({"thinking_budget": 512}, "--thinking-budget 512 leaves no room for the answer"),
    ({"thinking_budget": 50, "min_thinking": 60, "wait": 1}, "--min-thinking 60 is above --thinking-budget 50"),
])
def test_local_generators_refuse_settings_they_cannot_honour(tmp_path: Path, settings: dict[str, Any],
                                                            message: str) -> None:
    generator = HFGenerator(resolve_model(f"hf:{tmp_path / 'nothing-here'}"), GenerationSettings(**settings))
    with pytest.raises(UsageError, match=message):
        generator.load()


def test_encoders_ignore_thinking_settings_like_other_generation_settings(tmp_path: Path) -> None:
    # The default pair (a generative model beside an encoder) runs with a thinking budget: the encoder's embeddings
    # do not depend on it, as they do not on the temperature.
    from runner.engine import run

    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "What is aspirin?"}\n', encoding="utf-8")
    report = run(questions, ["fake:echo", "all-minilm-l6-v2"], settings=GenerationSettings(thinking_budget=8),
                 output_dir=tmp_path / "out", progress=False)
    assert report.exit_status == 0, [s.error for s in report.summaries]


def test_budget_forcing_is_only_on_when_asked() -> None:
    assert not budget.active(GenerationSettings(wait=3))
    assert budget.active(GenerationSettings(thinking_budget=0)) and budget.active(GenerationSettings(min_thinking=1))


# The default path, on the embedded SmolLM2: unchanged.

def test_the_default_path_is_unchanged_without_a_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("budget forcing used without a budget")

    monkeypatch.setattr(budget.Forcing, "run", refuse)
    with restored(smollm2()) as generator:
        request = Request("k", PERSONA, "What is aspirin?", TEST_SETTINGS)
        (result,) = generator.generate([request])
        ids = torch.tensor([generator._tokenize(0, request).ids])
        with torch.inference_mode():
            output = generator.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                              max_new_tokens=TEST_SETTINGS.max_new_tokens, temperature=None,
                                              top_p=None, top_k=None, pad_token_id=generator.tokenizer.pad_token_id)
        expected = generator.tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True).strip()
    assert result.ok and result.text == expected
    assert (result.reasoning, result.reasoning_tokens, result.thinking) == (None, None, None)
