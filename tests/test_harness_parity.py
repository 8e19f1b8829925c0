"""The runner against lm-evaluation-harness's own outputs, stored once (``scripts/make_harness_fixtures.py``).

Each fixture holds, per item, the harness's prompt, continuations, per-choice log-likelihoods and acc, from the
official task definitions (0-shot and few-shot, a tokenizer with and without BOS) on the embedded SmolLM2. The
runner must build byte-identical prompts with the same examples, the same choices, and log-likelihoods within
1e-4 nats, so the same choice.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.engine.loglik import best
from runner.providers.local.loglik import encode_pair, loglikelihoods
from runner.tasks.fewshot import plan_fewshot
from runner.tasks.harness import HARNESS_VERSION, TARGET_DELIMITER, build_request
from runner.tasks.loaders import load_benchmark
from tests.harness_items import CASES, bos_adding_tokenizer, item_files
from tests.local_models import smollm2

HARNESS = Path(__file__).parent / "fixtures" / "harness"
CASE_NAMES = [case["name"] for case in CASES]


def fixture(name: str) -> dict[str, Any]:
    """The stored harness output of one case."""
    return json.loads((HARNESS / f"{name}.json").read_text(encoding="utf-8"))


def gold_index(item: dict[str, Any]) -> int:
    """The harness's target as a choice index (PubMedQA's is the choice text)."""
    gold = item["gold"]
    return item["continuations"].index(TARGET_DELIMITER + gold) if isinstance(gold, str) else gold


def runner_requests(case: dict[str, Any]) -> list[Any]:
    """The runner's harness requests for a case's scored items, examples drawn by its default sampler."""
    pool_file, scored_file = item_files(HARNESS, case["family"])
    if case["splits"].get("fewshot_split") == "test":  # the pool is the scored split itself
        pool_file = scored_file
    questions = load_benchmark(scored_file)
    plan = plan_fewshot(questions, load_benchmark(pool_file), case["num_fewshot"])
    return [build_request(q, plan.for_question(q)) for q in questions]


def test_the_fixtures_come_from_the_harness_release_the_runner_and_readme_name() -> None:
    for name in CASE_NAMES:
        assert fixture(name)["harness_version"] == HARNESS_VERSION == "0.4.13"
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert f"Matching lm-evaluation-harness {HARNESS_VERSION}" in readme


@pytest.mark.parametrize("name", CASE_NAMES)
def test_prompts_and_choices_are_byte_identical(name: str) -> None:
    case = next(c for c in CASES if c["name"] == name)
    want = fixture(name)["items"]
    got = runner_requests(case)
    assert len(got) == len(want)
    for request, item in zip(got, want, strict=True):
        assert request.context == item["context"], f"{name} item {item['doc_id']}"
        assert [TARGET_DELIMITER + c for c in request.choices] == item["continuations"]
        assert request.gold == gold_index(item)


def test_the_scored_item_is_never_its_own_example() -> None:
    case = next(c for c in CASES if c["name"] == "medqa_2shot_same_split")
    for request in runner_requests(case):
        question = request.context.rsplit("\n\n", 1)[-1]
        assert request.context.count(question) == 1


@pytest.mark.parametrize("name", CASE_NAMES)
def test_log_likelihoods_match_the_harness(name: str) -> None:
    case = next(c for c in CASES if c["name"] == name)
    generator = smollm2()
    tokenizer = bos_adding_tokenizer(copy.deepcopy(generator.tokenizer)) if case.get("bos") else generator.tokenizer
    want = fixture(name)
    pairs = [(r.context, TARGET_DELIMITER + c) for r in runner_requests(case) for c in r.choices]
    got = loglikelihoods(generator.model, tokenizer, pairs, batch_size=4)
    flat = [(lp, greedy) for item in want["items"] for lp, greedy in zip(item["logprobs"], item["greedy"],
                                                                          strict=True)]
    assert [lp for lp, _ in got] == pytest.approx([lp for lp, _ in flat], abs=1e-4)
    offset = 0
    for item in want["items"]:
        width = len(item["continuations"])
        mine = [lp for lp, _ in got[offset:offset + width]]
        assert int(best(mine) == gold_index(item)) == item["acc"], f"{name} item {item['doc_id']}"
        offset += width


def test_bos_is_the_tokenizers_default_as_in_the_harness() -> None:
    tokenizer = smollm2().tokenizer
    with_bos = bos_adding_tokenizer(copy.deepcopy(tokenizer))
    bos = with_bos.bos_token_id
    plain_ctx, plain_cont = encode_pair(tokenizer, "Question: x\nAnswer:", " B")
    ctx, cont = encode_pair(with_bos, "Question: x\nAnswer:", " B")
    assert plain_ctx[0] != bos and ctx == [bos, *plain_ctx] and cont == plain_cont
    # a context that already starts with the BOS string gets no second one (HFLM's has_bos_prefix)
    ctx2, _ = encode_pair(with_bos, with_bos.bos_token + "Question: x\nAnswer:", " B")
    assert ctx2.count(bos) == 1
    # the harness's API models (and add_bos_token=False) send none
    assert encode_pair(with_bos, "Question: x\nAnswer:", " B", add_special_tokens=False) == (plain_ctx, plain_cont)
    # an empty context is the prefix token (BOS) and the continuation without special tokens
    assert encode_pair(with_bos, "", "Hello")[0] == [bos]
    # the fixtures with a BOS tokenizer really differ from those without
    plain, bosed = fixture("medqa_3shot"), fixture("medqa_3shot_bos")
    assert max(abs(a - b) for x, y in zip(plain["items"], bosed["items"], strict=True)
               for a, b in zip(x["logprobs"], y["logprobs"], strict=True)) > 0.01


def test_score_command_reproduces_the_harness_3_shot(cli: Callable[..., subprocess.CompletedProcess[str]],
                                                     tmp_path: Path) -> None:
    pool, scored = item_files(HARNESS, "medqa")
    out = tmp_path / "out"
    result = cli("score", "--scoring", "loglik", "--data", str(scored), "--fewshot-file", str(pool),
                 "--num-fewshot", "3", "--models", "smollm2-135m-instruct", "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    want = fixture("medqa_3shot")
    records = sorted(out.glob("*/loglik-3shot/*/*.json"), key=lambda p: int(p.stem))
    assert len(records) == len(want["items"])
    for path, item in zip(records, want["items"], strict=True):
        block = json.loads(path.read_text())["loglik"]
        assert block["prompt"] == item["context"]
        assert block["logprobs"] == pytest.approx(item["logprobs"], abs=1e-4)
        assert block["acc"] == item["acc"]
        assert block["fewshot_sampler"] == "default" and block["fewshot_seed"] == 1234
    scores = json.loads((out / "scores.json").read_text())
    text = json.dumps(scores)
    assert "medqa_4options" in text
