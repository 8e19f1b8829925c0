"""The ``hf:`` provider: local Hugging Face generative models, batched, optionally 4-bit on a GPU.

The model loads once (``load``), answers every request in length-sorted batches with left padding
(``generate``), and is released with its GPU memory (``close``). ``load_model_and_tokenizer`` is the public
loading function other parts (log-likelihood scoring) build on; it makes the same GPU decision first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.core.errors import ModelUnavailable, ProviderError
from runner.core.settings import GenerationSettings
from runner.providers.base import Generator, LoglikRequest, OnResult, Request, Result
from runner.providers.catalog import ModelSpec
from runner.providers.local import budget, fastpath
from runner.providers.local.batching import BatchPrefill, generate_in_chunks, preallocate, shared_prefix
from runner.providers.local.devices import (
    Placement,
    auto_batch_size,
    cache_bytes_per_token,
    free_accelerator_memory,
    is_out_of_memory,
    plan_placement,
)
from runner.providers.local.fastpath import prefix_attention
from runner.providers.local.fastpath.threads import ThreadTuner, using
from runner.providers.local.hub import locate_weights, not_downloadable, quiet_loading_bars
from runner.providers.local.prompt_formats import build_prompt, resolve_format
from runner.providers.local.traces import prompt_opens_trace, take_apart
from runner.providers.reasoning import DEFAULT_DELIMITERS

log = logging.getLogger("runner")

# Below this many tokens of room for the prompt, an answer is refused rather than cut to nothing.
MIN_PROMPT_ROOM = 16


def load_model_and_tokenizer(spec: ModelSpec, settings: GenerationSettings) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer for ``spec`` (embedded GGUF, local folder or cached hub id).

    The GPU decision comes first: a model that needs CUDA, or asks for 4-/8-bit, raises ModelUnavailable
    on a machine without it before any weight is read. The tokenizer comes back ready for batching: left
    padding, and a pad token (the EOS token when it has none). A float32 model on the CPU gets its linear
    layers packed for oneDNN (fastpath/packed_linear.py) when the CPU speed path is on (``fastpath.enabled``:
    ``settings.cpu_fast_path``, an x86-64 CPU, the tested versions); off, the model is as transformers loads it.
    """
    placement = plan_placement(spec)
    source = locate_weights(spec)
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ModelUnavailable(f"{spec.name}: {exc}; try: pip install torch transformers accelerate") from None
    common: dict[str, Any] = dict(source.kwargs)
    if spec.trust_remote_code:
        common["trust_remote_code"] = True  # off unless the user turns it on: it runs the repository's code
    model_kwargs: dict[str, Any] = dict(common)
    model_kwargs["dtype"] = "auto" if placement.dtype == "auto" else getattr(torch, placement.dtype)
    if placement.quantize == "4bit":
        model_kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    elif placement.quantize == "8bit":
        model_kwargs["quantization_config"] = transformers.BitsAndBytesConfig(load_in_8bit=True)
    if placement.cuda:
        model_kwargs["device_map"] = "auto"
    quiet_loading_bars()
    if placement.note:
        log.warning("%s", placement.note)
    log.info("loading %s on %s%s", spec.label, placement.device,
             f" ({placement.quantize})" if placement.quantize else "")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source.location, **common)
        model = transformers.AutoModelForCausalLM.from_pretrained(source.location, **model_kwargs)
    except OSError as exc:  # missing files, gated repository, no network
        if source.embedded or source.location != spec.model_id:
            raise ModelUnavailable(f"{spec.name}: cannot read the weights in {source.location}: {exc}") from None
        raise not_downloadable(spec, exc) from None
    except ImportError as exc:  # bitsandbytes, gguf, sentencepiece ...
        raise ModelUnavailable(f"{spec.name}: {exc}") from None
    model.eval()
    if model.dtype == torch.float32 and fastpath.enabled(settings, placement.device):
        from runner.providers.local.fastpath import packed_linear

        packed = packed_linear.pack(model)
        log.debug("%s: %d linear layers packed for oneDNN", spec.label, packed)
    prepare_tokenizer(tokenizer)
    return model, tokenizer


def prepare_tokenizer(tokenizer: Any) -> None:
    """Left padding (right padding gives wrong batched answers) and a pad token (EOS when missing)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def context_length(model: Any, tokenizer: Any) -> int | None:
    """The most tokens (prompt + answer) the model takes, or None when unknown."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and 0 < value < 10_000_000 else None


def stop_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """Token ids that end an answer: the generation config's EOS ids plus the tokenizer's EOS."""
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (configured, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    return ids


@dataclass
class _Prepared:
    index: int
    ids: list[int]
    warnings: list[str] = field(default_factory=list)
    opened: bool = False  # the prompt opens the thinking trace (the template ends with the start delimiter)


class HFGenerator(Generator):
    """A local causal language model answering in batches."""

    def __init__(self, spec: ModelSpec, settings: GenerationSettings) -> None:
        super().__init__(spec, settings)
        self.model: Any = None
        self.tokenizer: Any = None
        self.placement: Placement | None = None
        self.prompt_format = "plain"
        self.batch_size = 1
        self.context: int | None = None
        self.stop_ids: set[int] = set()
        self.prefix_caching = True  # share the prompts' common prefix across a group of requests
        self.own_prefill = False  # fill the cache before generate (hf_batch.py); decided in load()
        self.share_prefix = False  # attention reads the shared prefix once per batch (prefix_attention.py); CPU only
        self.thread_tuner: ThreadTuner | None = None  # decoding threads that follow the load (threads.py); CPU only

    def load(self) -> None:
        """Load the model and tokenizer once; raise ModelUnavailable when the model cannot run here, and UsageError
        (before any weight is read) for thinking settings it cannot honour (``budget.check_settings``)."""
        budget.check_settings(self.spec, self.settings)
        self.placement = plan_placement(self.spec)
        self.model, self.tokenizer = load_model_and_tokenizer(self.spec, self.settings)
        self.prompt_format = resolve_format(self.spec.prompt_format, self.tokenizer)
        size = self.settings.batch_size
        self.batch_size = size if isinstance(size, int) else auto_batch_size(self.placement)
        self.context = context_length(self.model, self.tokenizer)
        self.stop_ids = stop_token_ids(self.model, self.tokenizer)
        # The preallocated cache and prefix attention: on the CPU only with the CPU speed path (fastpath.enabled).
        self.own_prefill = preallocate(self.model, self.settings, self.placement.device)
        self.share_prefix = (self.own_prefill and fastpath.enabled(self.settings, self.placement.device)
                             and prefix_attention.enable(self.model))
        if self.own_prefill and fastpath.enabled(self.settings, self.placement.device):
            import torch

            self.thread_tuner = ThreadTuner(torch.get_num_threads())

    def close(self) -> None:
        """Drop the model and return its memory (GPU included) before the next model loads."""
        self.model = None
        self.tokenizer = None
        free_accelerator_memory()

    def classify(self, error: BaseException) -> ProviderError:
        """Out-of-memory at batch size 1 and load problems are not retried; the rest keeps the default."""
        if isinstance(error, ProviderError):
            return error
        if is_out_of_memory(error):
            return ProviderError("GPU out of memory even with one prompt per batch; lower --max-new-tokens, "
                                 "quantize (--quantize 4bit) or use a smaller model", retryable=False)
        if isinstance(error, ModelUnavailable):
            return ProviderError(str(error), retryable=False)
        return super().classify(error)

    def prompt_text(self, request: Request) -> str:
        """The exact prompt string the model receives for ``request``."""
        return build_prompt(self.prompt_format, self.tokenizer, request.system_prompt, request.user_message,
                            request.messages).text

    def loglikelihood(self, requests: Sequence[LoglikRequest], on_result: OnResult | None = None,
                      chunk: int = 16) -> list[Result]:
        """Score each request's continuations as lm-evaluation-harness's HFLM does, ``chunk`` questions at a time
        (``--batch-size`` rows per forward pass, 8 with ``auto``); results reported per chunk."""
        from runner.providers.local.loglik import score_requests

        if self.model is None:
            raise ModelUnavailable(f"{self.spec.name} is not loaded (call load() first)")
        rows = self.settings.batch_size if isinstance(self.settings.batch_size, int) else 8
        results: list[Result] = []
        for start in range(0, len(requests), chunk):
            began = time.perf_counter()
            part = score_requests(self.model, self.tokenizer, requests[start:start + chunk], batch_size=rows)
            each = (time.perf_counter() - began) / max(1, len(part))
            for i, result in enumerate(part, start):
                result.latency_s = each
                results.append(result)
                if on_result:
                    on_result(i, result)
        return results

    def generate(self, requests: Sequence[Request], on_result: OnResult | None = None) -> list[Result]:
        """Answer every request in length-sorted batches; results in input order, reported per batch."""
        if self.model is None:
            raise ModelUnavailable(f"{self.spec.name} is not loaded (call load() first)")
        results: list[Result | None] = [None] * len(requests)

        def deliver(i: int, result: Result) -> None:
            results[i] = result
            if on_result:
                on_result(i, result)

        groups: dict[GenerationSettings, list[_Prepared]] = {}
        for i, request in enumerate(requests):
            try:
                prepared = self._tokenize(i, request)
            except Exception as exc:  # noqa: BLE001 - one bad prompt fails only its own answer
                deliver(i, Result.failure(self.classify(exc)))
                continue
            groups.setdefault(request.settings, []).append(prepared)
        for settings, prepared in groups.items():
            self._generate_group(settings, prepared, deliver)
        return [r if r is not None else Result.failure(ProviderError("no answer produced")) for r in results]

    def _tokenize(self, index: int, request: Request) -> _Prepared:
        prompt = build_prompt(self.prompt_format, self.tokenizer, request.system_prompt, request.user_message,
                              request.messages)
        ids = list(self.tokenizer(prompt.text, add_special_tokens=prompt.add_special_tokens)["input_ids"])
        prepared = _Prepared(index, ids, opened=prompt_opens_trace(prompt.text, self.spec.think_delimiters))
        if self.context is None:
            return prepared
        room = self.context - request.settings.max_new_tokens
        if room < MIN_PROMPT_ROOM:
            raise ProviderError(f"--max-new-tokens {request.settings.max_new_tokens} leaves no room for the prompt "
                                f"in {self.spec.label}'s context of {self.context} tokens; lower it")
        if len(ids) > room:
            prepared.ids = ids[-room:]
            prepared.warnings.append(f"prompt of {len(ids)} tokens cut from the left to {room} to fit the "
                                     f"model's context of {self.context} tokens with {request.settings.max_new_tokens} "
                                     "new tokens")
        return prepared

    def _generate_group(self, settings: GenerationSettings, prepared: list[_Prepared],
                        deliver: OnResult) -> None:
        # Longest first, as lm-evaluation-harness does: similar lengths pad less, and an out-of-memory shows at once.
        order = sorted(prepared, key=lambda p: len(p.ids), reverse=True)
        prefix = shared_prefix([p.ids for p in order]) if self.prefix_caching else []
        # Budget forcing (budget.py) runs its own rounds of plain generate calls: no preallocated cache.
        prefill = BatchPrefill(self.model, prefix, self.tokenizer.pad_token_id,
                               self.share_prefix) if self.own_prefill and not budget.active(settings) else None
        size = self.batch_size
        if self.settings.batch_size == "auto" and self.placement and not self.placement.cuda:
            per_token = cache_bytes_per_token(self.model.config, self.model.dtype.itemsize)
            stored = len(order[0].ids) - (len(prefix) if prefill and prefill.share_prefix else 0)
            per_prompt = per_token * (stored + settings.max_new_tokens) if per_token else None
            size = min(size, auto_batch_size(self.placement, per_prompt))  # the cache must fit in memory
        if not settings.greedy and settings.seed is not None:
            import transformers

            transformers.set_seed(settings.seed)
        pos = 0
        delivered: set[int] = set()  # answers saved before their batch ended (see _run_batch)

        def early(item: _Prepared, result: Result) -> None:
            delivered.add(item.index)
            deliver(item.index, result)

        while pos < len(order):
            batch = [p for p in order[pos : pos + size] if p.index not in delivered]
            if not batch:
                pos += size
                continue
            try:
                answers = self._run_batch(settings, batch, prefill, early)
            except Exception as exc:  # noqa: BLE001 - decided below: shrink and retry, or fail this batch only
                if prefill is not None and not is_out_of_memory(exc):
                    log.warning("%s: prefilling the cache failed (%s: %s); generating the plain way",
                                self.spec.label, type(exc).__name__, exc)
                    self.own_prefill, prefill = False, None
                    continue
                if is_out_of_memory(exc) and len(batch) > 1:
                    self.batch_size = size = max(1, len(batch) // 2)
                    log.warning("%s: out of memory with %d prompts per batch; retrying with %d",
                                self.spec.label, len(batch), size)
                    free_accelerator_memory()
                    continue
                error = self.classify(exc)
                for item in batch:
                    if item.index not in delivered:
                        deliver(item.index, Result.failure(error))
                pos += size
                continue
            for item, result in zip(batch, answers, strict=True):
                if item.index not in delivered:
                    deliver(item.index, result)
            pos += size

    def _run_batch(self, settings: GenerationSettings, batch: list[_Prepared], prefill: BatchPrefill | None = None,
                   early: Callable[[_Prepared, Result], None] | None = None) -> list[Result]:
        """One batch's answers. On the chunked path each answer is also passed to ``early`` as soon as its row
        finishes, so it is saved (and the progress moves) before the batch ends; its latency is its share of the
        batch's time until then. ``token_meter`` (when set) hears of the tokens produced after each chunk."""
        import torch

        start = time.perf_counter()
        options = self._options(settings)
        if budget.active(settings):
            return self._run_forced(settings, batch, options, start)
        cache = None
        if prefill is not None:
            skip = len(prefill.prefix)
            # With the thread count decoding found faster of late (threads.py): a shared CPU slows both alike.
            with using(self.thread_tuner.chosen if self.thread_tuner else torch.get_num_threads()):
                enc, cache = prefill.prepare([p.ids[skip:] for p in batch], settings.max_new_tokens)
        else:
            enc = self.tokenizer.pad({"input_ids": [p.ids for p in batch]}, padding=True, return_tensors="pt")
            enc = {k: v.to(self.model.device) for k, v in enc.items()}
        with torch.inference_mode():
            if cache is not None and prefill is not None:
                def done(row: int, tokens: list[int]) -> None:
                    if early is not None:
                        share = (time.perf_counter() - start) / len(batch)
                        early(batch[row], self._result(batch[row], tokens, share, settings))

                with prefill.attending():
                    new_tokens = generate_in_chunks(self.model, enc, cache, options, settings.max_new_tokens,
                                                    self.stop_ids, on_done=done, on_tokens=self.token_meter,
                                                    tuner=self.thread_tuner)
            else:
                output = self.model.generate(**enc, **options)
                new_tokens = output[:, enc["input_ids"].shape[1] :].tolist()
        # One batch answers all its prompts at once: each answer gets an equal share of the wall time,
        # so the per-answer latencies add up to the time actually spent.
        share = (time.perf_counter() - start) / len(batch)
        return [self._result(p, tokens, share, settings) for p, tokens in zip(batch, new_tokens, strict=True)]

    def _run_forced(self, settings: GenerationSettings, batch: list[_Prepared], options: dict[str, Any],
                    start: float) -> list[Result]:
        """One batch with budget forcing (``--thinking-budget``, ``--min-thinking``): budget.py's rounds."""
        import torch

        forcing = budget.Forcing(self.model, self.tokenizer, settings, self.spec.think_delimiters, self.stop_ids)
        with torch.inference_mode():
            rows = forcing.run([p.ids for p in batch], [p.opened for p in batch], options, self.token_meter)
        share = (time.perf_counter() - start) / len(batch)
        return [self._result(p, row.out, share, settings, row) for p, row in zip(batch, rows, strict=True)]

    def _options(self, settings: GenerationSettings) -> dict[str, Any]:
        """``generate``'s options for ``settings``: the token limit, decoding, and the repetition penalty."""
        options: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens,
                                   "pad_token_id": self.tokenizer.pad_token_id}
        if settings.repetition_penalty is not None:
            options["repetition_penalty"] = settings.repetition_penalty
        if settings.greedy:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            options.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p or 1.0)
        return options

    def stream(self, request: Request) -> Iterator[str]:
        """The answer to one request, in pieces as the model writes them (transformers' TextIteratorStreamer)."""
        import threading

        import torch
        import transformers

        if self.model is None:
            raise ModelUnavailable(f"{self.spec.name} is not loaded (call load() first)")
        if budget.active(request.settings):  # budget forcing edits the output between rounds: shown when done
            yield from self._whole(request)
            return
        prepared = self._tokenize(0, request)
        settings = request.settings
        if not settings.greedy and settings.seed is not None:
            transformers.set_seed(settings.seed)
        streamer = transformers.TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        ids = torch.tensor([prepared.ids], device=self.model.device)
        options = {**self._options(settings), "eos_token_id": sorted(self.stop_ids) or None, "streamer": streamer}
        failure: list[BaseException] = []

        def work() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **options)
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        yield from streamer
        thread.join()
        if failure:
            raise self.classify(failure[0])

    def _whole(self, request: Request) -> Iterator[str]:
        """The answer at once, its trace (if any) in front between the model's delimiters."""
        (result,) = self.generate([request])
        if result.error:
            raise ProviderError(result.error, retryable=False)
        if result.reasoning is not None:
            start, end = self.spec.think_delimiters or DEFAULT_DELIMITERS
            yield f"{start}\n{result.reasoning}\n{end}\n\n"
        yield result.text

    def _result(self, prepared: _Prepared, tokens: list[int], latency: float, settings: GenerationSettings,
                forced: budget.Row | None = None) -> Result:
        """The result for one row's new ``tokens``: the answer apart from its thinking trace (traces.py).

        ``forced``: the row's budget forcing (its trace's end, "Wait"s, forced delimiter), on that path.
        """
        stop_at = next((k for k, t in enumerate(tokens) if t in self.stop_ids), None)
        if stop_at is None:
            answer, count = tokens, len(tokens)
            # Budget forcing ends a row without an EOS only at the token limit (inserted tokens may stop it short).
            finish = "length" if count >= settings.max_new_tokens or forced is not None else "stop"
        else:
            answer, count, finish = tokens[:stop_at], stop_at + 1, "stop"  # the EOS was generated too
        parts = take_apart(self.tokenizer, answer, self.spec.think_delimiters, prepared.opened,
                           forced.trace_end if forced is not None else None)
        warnings = list(prepared.warnings)
        if parts.unfinished:
            end = (self.spec.think_delimiters or DEFAULT_DELIMITERS)[1]
            if finish == "length":
                # The API providers' words (CUT_OFF_WHILE_THINKING), with the local models' other way out.
                warnings.append(f"cut off while still thinking: the token limit ({settings.max_new_tokens}) was "
                                "reached before the final answer (the thinking counts towards it); the trace is kept "
                                "and the answer is empty; raise --max-new-tokens (or cap the thinking with "
                                "--thinking-budget N: budget forcing)")
            else:
                warnings.append(f"the model stopped while still thinking (no {end!r}): no final answer")
        return Result(text=parts.text, prompt_tokens=len(prepared.ids), completion_tokens=count, latency_s=latency,
                      finish_reason=finish, warnings=warnings, reasoning=parts.reasoning,
                      reasoning_tokens=parts.reasoning_tokens,
                      thinking=forced.thinking_record if forced is not None else None)
