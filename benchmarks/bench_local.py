"""Local generation speed and memory, measured in one run on this machine.

(a) the reference tool's way: one ``transformers.pipeline("text-generation")`` call per question;
(b) this runner's batched path: ``HFGenerator.generate`` (length-sorted batches, shared-prefix and grouped
prefill, a preallocated cache, chunked decoding that lets finished answers leave the batch, and on the CPU
attention that reads the shared prefix once and linear layers packed for oneDNN: the CPU speed path,
``--cpu-fast-path on``, the default; ``off`` measures the runner's batching on transformers' plain path).

Both use the same model (by default the embedded SmolLM2-135M-Instruct, float32; the pipeline gets it as
transformers loads it, i.e. loaded with the CPU speed path off), the same questions, persona, greedy decoding and
``max_new_tokens``; both count the token ids generated after the prompt, the EOS included.
Then the peak memory (max RSS) of a default ``python medical_model_runner.py`` run is read from a subprocess.

    .venv/bin/python benchmarks/bench_local.py                     # defaults: 64 questions, 128 new tokens
    .venv/bin/python benchmarks/bench_local.py --questions 16 --max-new-tokens 32 --batch-size 8 --skip-rss
    python benchmarks/bench_local.py --model hf:/path/to/checkpoint --quantize 4bit --skip-rss   # any local model
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _questions(count: int) -> list[str]:
    from runner.core.questions import format_user_message, load_questions

    base = [format_user_message(q) for q in load_questions(REPO / "questions.jsonl")]
    return [base[i % len(base)] for i in range(count)]


def _prompt_length(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    """Tokens of the chat prompt the pipeline builds for ``messages`` (as its preprocess step does)."""
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = encoded["input_ids"] if isinstance(encoded, Mapping) else encoded
    return len(ids)


def bench_reference(model: Any, tokenizer: Any, persona: str, questions: list[str],
                    max_new_tokens: int) -> tuple[int, float]:
    """One pipeline call per question, as the reference tool does; returns (generated tokens, seconds)."""
    from transformers import pipeline

    pipe = pipeline("text-generation", model=model, tokenizer=tokenizer)
    tokens = 0
    start = time.perf_counter()
    for question in questions:
        messages = [{"role": "system", "content": persona}, {"role": "user", "content": question}]
        out = pipe(messages, max_new_tokens=max_new_tokens, do_sample=False, return_tensors=True)
        # The whole sequence comes back; what follows the prompt was generated (the EOS included, as the runner
        # counts it). Counting ids, not re-tokenised text, keeps the count exact for any model.
        tokens += len(out[0]["generated_token_ids"]) - _prompt_length(tokenizer, messages)
    return tokens, time.perf_counter() - start


def bench_runner(generator: Any, persona: str, questions: list[str], max_new_tokens: int) -> tuple[int, float]:
    """This runner's batched path; returns (generated tokens, seconds)."""
    from runner.providers.base import Request

    settings = generator.settings.model_copy(update={"max_new_tokens": max_new_tokens})
    requests = [Request(str(i), persona, q, settings) for i, q in enumerate(questions)]
    start = time.perf_counter()
    results = generator.generate(requests)
    seconds = time.perf_counter() - start
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise SystemExit(f"runner path failed: {failed[0]}")
    return sum(r.completion_tokens or 0 for r in results), seconds


def default_run_peak_rss(timeout: float) -> tuple[float, float, int]:
    """Run ``python medical_model_runner.py`` (all defaults) in a fresh folder; (peak RSS MB, seconds, status)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NO_PROGRESS="1", PYTHONPATH=str(REPO))
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(REPO / "medical_model_runner.py"),
                               "--questions", str(REPO / "questions.jsonl"), "--output-dir", str(Path(tmp) / "out")],
                              cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kilobytes on Linux
    return peak_kb / 1024, seconds, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=64, help="how many questions (the samples, repeated)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", default="auto", help="runner path: prompts per batch, or auto")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="hf: model or alias (default: embedded)")
    parser.add_argument("--quantize", choices=["4bit", "8bit", "none"], help="as the runner's --quantize")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], help="as the runner's --dtype")
    parser.add_argument("--cpu-fast-path", choices=["on", "off"], default="on",
                        help="runner path: the CPU speed path (prefix attention, packed linear layers, preallocated "
                             "cache), as the runner's --cpu-fast-path (default on)")
    parser.add_argument("--skip-rss", action="store_true", help="do not measure the default run's peak memory")
    parser.add_argument("--rss-timeout", type=float, default=1800)
    args = parser.parse_args()

    # The default run first: its peak RSS must not include this process's own model.
    rss = None if args.skip_rss else default_run_peak_rss(args.rss_timeout)

    import torch

    from runner.core.personas import DEFAULT_PERSONA, resolve_persona
    from runner.core.settings import GenerationSettings
    from runner.providers.catalog import resolve_model
    from runner.providers.local import fastpath
    from runner.providers.local.hf import HFGenerator, load_model_and_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    batch = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
    spec = resolve_model(args.model)
    spec = spec.model_copy(update={k: getattr(args, k) for k in ("quantize", "dtype") if getattr(args, k)})
    fast = args.cpu_fast_path == "on"
    generator = HFGenerator(spec, GenerationSettings(batch_size=batch, cpu_fast_path=fast))
    load_start = time.perf_counter()
    generator.load()
    load_s = time.perf_counter() - load_start
    persona = resolve_persona(DEFAULT_PERSONA).text
    questions = _questions(args.questions)

    placement = generator.placement
    assert placement is not None
    device = torch.cuda.get_device_name(0) if placement.cuda else f"CPU, {os.cpu_count()} cores"
    print(f"model: {spec.label} on {device} ({placement.quantize or placement.dtype}), "
          f"loaded in {load_s:.1f} s; torch threads {torch.get_num_threads()}")
    fast_on = fastpath.enabled(generator.settings, placement.device)
    print(f"{len(questions)} questions, max_new_tokens {args.max_new_tokens}, greedy, "
          f"runner batch size {generator.batch_size}, CPU speed path {'on' if fast_on else 'off'}")
    # The reference tool's model as it loads it: transformers' own, with the CPU speed path off.
    reference_model = generator.model
    if fast_on:
        reference_model, _ = load_model_and_tokenizer(spec, GenerationSettings(cpu_fast_path=False))
    ref_tokens, ref_s = bench_reference(reference_model, generator.tokenizer, persona, questions, args.max_new_tokens)
    run_tokens, run_s = bench_runner(generator, persona, questions, args.max_new_tokens)
    ref_rate, run_rate = ref_tokens / ref_s, run_tokens / run_s
    print(f"(a) pipeline, one call per question: {ref_tokens} tokens in {ref_s:.1f} s = {ref_rate:.1f} tokens/s")
    print(f"(b) runner, batched generate:        {run_tokens} tokens in {run_s:.1f} s = {run_rate:.1f} tokens/s")
    print(f"speed-up (b)/(a): {run_rate / ref_rate:.1f}x (target >= 10x)")
    if rss is not None:
        peak_mb, seconds, status = rss
        print(f"default run `python medical_model_runner.py`: peak RSS {peak_mb:.0f} MB "
              f"(target < 2048 MB), {seconds:.0f} s, exit status {status}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
