"""Local generation speed against the strongest simple peer, measured in alternating runs on this machine.

(a) the peer a user would try first: one ``transformers.pipeline("text-generation")`` call given ALL the questions
at once with ``batch_size`` (the runner's batch size), left padding and a pad token set (EOS when the tokenizer has
none), greedy, the model as transformers loads it (the same model and dtype, without the runner's CPU speed path);
(b) this runner's batched path: ``HFGenerator.generate`` (length-sorted batches, shared-prefix and grouped prefill,
a preallocated cache, chunked decoding that lets finished answers leave the batch, and on the CPU attention that
reads the shared prefix once and linear layers packed for oneDNN: the CPU speed path, ``--cpu-fast-path on``, the
default; ``off`` measures the runner's batching on transformers' plain path).

Both get the same questions, persona and chat template (the prompt token ids are checked to be identical), greedy
decoding and ``max_new_tokens``; both count the token ids generated after the prompt, the EOS included. The sides
run alternately, ``--repeats`` times each (runner, pipeline, runner, pipeline, ...), after one small warm-up each,
so background load on a shared machine reaches both; the report gives each side's min-max wall time and the min-max
of the per-pair ratios. Every pass's greedy answers are compared (text and token count): the answers must be
identical between the sides, and the first difference is printed when they are not.

``--per-question`` also times, once, the old reference: one pipeline call per question. The peak memory (max RSS)
of a default ``python medical_model_runner.py`` run is read from a subprocess unless ``--skip-rss``.

    .venv/bin/python benchmarks/bench_local.py --skip-rss                  # 64 questions, 128 new tokens, 2 pairs
    .venv/bin/python benchmarks/bench_local.py --repeats 3 --skip-rss
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

Answer = tuple[str, int]  # the answer's text (as the runner gives it) and its generated tokens (the EOS included)


@dataclass
class Pass:
    """One timed pass of one side: its answers, their generated tokens and the wall time."""

    answers: list[Answer]
    seconds: float

    @property
    def tokens(self) -> int:
        """Token ids generated after the prompts, the EOS included."""
        return sum(count for _, count in self.answers)


def _questions(count: int) -> list[str]:
    from runner.core.questions import format_user_message, load_questions

    base = [format_user_message(q) for q in load_questions(REPO / "questions.jsonl")]
    return [base[i % len(base)] for i in range(count)]


def _chats(persona: str, questions: list[str]) -> list[list[dict[str, str]]]:
    return [[{"role": "system", "content": persona}, {"role": "user", "content": q}] for q in questions]


def _ids(encoded: Any) -> list[int]:
    """Token ids from what ``apply_chat_template`` or a tokenizer returns (a list, a mapping, or a tensor)."""
    ids = encoded["input_ids"] if isinstance(encoded, Mapping) else encoded
    ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
    return ids[0] if ids and isinstance(ids[0], list) else ids


def _prompt_length(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    """Tokens of the chat prompt the pipeline builds for ``messages`` (as its preprocess step does)."""
    return len(_ids(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)))


def _answer(tokenizer: Any, new: list[int], stop_ids: set[int], delimiters: Any) -> Answer:
    """A row's new token ids as the runner reports them: the text before the first stop id, and the tokens through it.

    What follows the stop id is the batch's padding (rows that ended early are padded until the longest ends).
    """
    from runner.providers.local.traces import take_apart

    stop = next((k for k, t in enumerate(new) if t in stop_ids), None)
    answer, count = (new, len(new)) if stop is None else (new[:stop], stop + 1)
    return take_apart(tokenizer, answer, delimiters).text, count


def peer_pipeline(model: Any, tokenizer: Any) -> Any:
    """The text-generation pipeline a user would build: left padding and a pad token (EOS when there is none)."""
    from transformers import pipeline

    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return pipeline("text-generation", model=model, tokenizer=tokenizer)


def bench_pipeline_batched(pipe: Any, chats: list[list[dict[str, str]]], max_new_tokens: int, batch_size: int,
                           stop_ids: set[int], delimiters: Any) -> Pass:
    """One pipeline call given every question with ``batch_size``, greedy; its answers and wall time."""
    tokenizer = pipe.tokenizer
    start = time.perf_counter()
    out = pipe(chats, batch_size=batch_size, max_new_tokens=max_new_tokens, do_sample=False, return_tensors=True)
    seconds = time.perf_counter() - start
    answers = []
    for chat, record in zip(chats, out, strict=True):
        # The whole padded row comes back: the left padding (pad ids before the prompt, which starts with a
        # template token), the prompt, then the new tokens. Counting ids keeps the count exact for any model.
        sequence = record[0]["generated_token_ids"]
        pads = next((k for k, t in enumerate(sequence) if t != tokenizer.pad_token_id), len(sequence))
        new = sequence[pads + _prompt_length(tokenizer, chat) :]
        answers.append(_answer(tokenizer, new, stop_ids, delimiters))
    return Pass(answers, seconds)


def bench_per_question(model: Any, tokenizer: Any, chats: list[list[dict[str, str]]],
                       max_new_tokens: int) -> tuple[int, float]:
    """One pipeline call per question (the former reference); returns (generated tokens, seconds)."""
    from transformers import pipeline

    pipe = pipeline("text-generation", model=model, tokenizer=tokenizer)
    tokens = 0
    start = time.perf_counter()
    for messages in chats:
        out = pipe(messages, max_new_tokens=max_new_tokens, do_sample=False, return_tensors=True)
        tokens += len(out[0]["generated_token_ids"]) - _prompt_length(tokenizer, messages)
    return tokens, time.perf_counter() - start


def bench_runner(generator: Any, persona: str, questions: list[str], max_new_tokens: int) -> Pass:
    """This runner's batched path; its answers and wall time."""
    from runner.providers.base import Request

    settings = generator.settings.model_copy(update={"max_new_tokens": max_new_tokens})
    requests = [Request(str(i), persona, q, settings) for i, q in enumerate(questions)]
    start = time.perf_counter()
    results = generator.generate(requests)
    seconds = time.perf_counter() - start
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise SystemExit(f"runner path failed: {failed[0]}")
    return Pass([(r.text, r.completion_tokens or 0) for r in results], seconds)


def check_prompts(generator: Any, pipe: Any, persona: str, questions: list[str]) -> int:
    """How many prompts the runner and the pipeline tokenize to the same ids (they should: all of them)."""
    from transformers.utils.chat_template_utils import Chat

    from runner.providers.base import Request

    same = 0
    for index, (question, chat) in enumerate(zip(questions, _chats(persona, questions), strict=True)):
        ours = generator._tokenize(index, Request(str(index), persona, question, generator.settings)).ids
        theirs = _ids(pipe.preprocess(Chat(chat))["input_ids"])
        same += ours == theirs
    return same


def first_difference(runner: list[Answer], peer: list[Answer]) -> str | None:
    """The first answer that differs between the sides, described; None when all are identical."""
    for index, (ours, theirs) in enumerate(zip(runner, peer, strict=True)):
        if ours != theirs:
            cut = next((k for k, (a, b) in enumerate(zip(ours[0], theirs[0], strict=False)) if a != b),
                       min(len(ours[0]), len(theirs[0])))
            return (f"question {index + 1}: runner {ours[1]} tokens, pipeline {theirs[1]}; texts part at character "
                    f"{cut}: runner {ours[0][cut:cut + 60]!r} vs pipeline {theirs[0][cut:cut + 60]!r}")
    return None


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


def _span(values: list[float], unit: str = "", digits: int = 1) -> str:
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}{unit}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=64, help="how many questions (the samples, repeated)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", default="auto", help="prompts per batch (both sides), or auto (the "
                        "runner's choice, which the pipeline then gets too)")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per side, alternating (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="hf: model or alias (default: embedded)")
    parser.add_argument("--quantize", choices=["4bit", "8bit", "none"], help="as the runner's --quantize")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], help="as the runner's --dtype")
    parser.add_argument("--cpu-fast-path", choices=["on", "off"], default="on",
                        help="runner path: the CPU speed path (prefix attention, packed linear layers, preallocated "
                             "cache), as the runner's --cpu-fast-path (default on)")
    parser.add_argument("--per-question", action="store_true",
                        help="also time, once, one pipeline call per question (the former reference; slow)")
    parser.add_argument("--skip-rss", action="store_true", help="do not measure the default run's peak memory")
    parser.add_argument("--rss-timeout", type=float, default=1800)
    return parser


def main() -> int:
    args = _parser().parse_args()
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")

    # The default run first: its peak RSS must not include this process's own models.
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
    generator = HFGenerator(spec, GenerationSettings(batch_size=batch, cpu_fast_path=args.cpu_fast_path == "on"))
    load_start = time.perf_counter()
    generator.load()
    load_s = time.perf_counter() - load_start
    persona = resolve_persona(DEFAULT_PERSONA).text
    questions = _questions(args.questions)
    chats = _chats(persona, questions)

    placement = generator.placement
    assert placement is not None
    device = torch.cuda.get_device_name(0) if placement.cuda else f"CPU, {os.cpu_count()} cores"
    print(f"model: {spec.label} on {device} ({placement.quantize or placement.dtype}), "
          f"loaded in {load_s:.1f} s; torch threads {torch.get_num_threads()}")
    fast_on = fastpath.enabled(generator.settings, placement.device)
    # The peer's model and tokenizer as a user loads them: transformers' own (the CPU speed path off).
    peer_model, peer_tokenizer = load_model_and_tokenizer(spec, GenerationSettings(cpu_fast_path=False))
    pipe = peer_pipeline(peer_model, peer_tokenizer)
    size = min(generator.batch_size, len(questions))
    print(f"{len(questions)} questions, max_new_tokens {args.max_new_tokens}, greedy, batch size {size} (both sides), "
          f"runner's CPU speed path {'on' if fast_on else 'off'}; pipeline model {peer_model.dtype}, padding "
          f"{peer_tokenizer.padding_side}, pad token {peer_tokenizer.pad_token!r}")
    print(f"prompt token ids identical: {check_prompts(generator, pipe, persona, questions)} of {len(questions)}")

    stops, delimiters = generator.stop_ids, spec.think_delimiters
    # A small warm-up each (oneDNN primitives, first allocations), not timed.
    bench_runner(generator, persona, questions[:2], 4)
    bench_pipeline_batched(pipe, chats[:2], 4, 2, stops, delimiters)
    runs: list[tuple[Pass, Pass]] = []
    for repeat in range(args.repeats):
        ours = bench_runner(generator, persona, questions, args.max_new_tokens)
        theirs = bench_pipeline_batched(pipe, chats, args.max_new_tokens, size, stops, delimiters)
        runs.append((ours, theirs))
        same = sum(a == b for a, b in zip(ours.answers, theirs.answers, strict=True))
        print(f"pair {repeat + 1}: runner {ours.tokens} tokens in {ours.seconds:.1f} s "
              f"({ours.tokens / ours.seconds:.1f} tokens/s), pipeline {theirs.tokens} tokens in {theirs.seconds:.1f} s "
              f"({theirs.tokens / theirs.seconds:.1f} tokens/s): {theirs.seconds / ours.seconds:.2f}x; "
              f"identical answers {same} of {len(questions)}", flush=True)
        difference = first_difference(ours.answers, theirs.answers)
        if difference:
            print(f"  first difference: {difference}")
    runner_s = [ours.seconds for ours, _ in runs]
    peer_s = [theirs.seconds for _, theirs in runs]
    ratios = [(theirs.seconds / theirs.tokens) / (ours.seconds / ours.tokens) for ours, theirs in runs]
    print(f"(a) pipeline, all questions, batch_size {size}: {_span(peer_s, ' s')} "
          f"({_span([t.tokens / t.seconds for _, t in runs], ' tokens/s')})")
    print(f"(b) runner, batched generate:                 {_span(runner_s, ' s')} "
          f"({_span([o.tokens / o.seconds for o, _ in runs], ' tokens/s')})")
    print(f"speed-up (b)/(a) per pair (tokens/s): {_span(ratios, 'x', 2)} (target >= 4x)")
    identical = min(sum(a == b for a, b in zip(o.answers, t.answers, strict=True)) for o, t in runs)
    print(f"identical greedy answers: {identical} of {len(questions)} (the fewest over the pairs)")
    if args.per_question:
        ref_tokens, ref_s = bench_per_question(peer_model, peer_tokenizer, chats, args.max_new_tokens)
        print(f"one pipeline call per question (once): {ref_tokens} tokens in {ref_s:.1f} s = "
              f"{ref_tokens / ref_s:.1f} tokens/s; the runner {min(runner_s) and ref_s / min(runner_s):.1f}x faster "
              "(its best pass)")
    if rss is not None:
        peak_mb, seconds, status = rss
        print(f"default run `python medical_model_runner.py`: peak RSS {peak_mb:.0f} MB "
              f"(target < 2048 MB), {seconds:.0f} s, exit status {status}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
