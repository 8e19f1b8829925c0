"""The CPU speed path behind one switch (runner/providers/local/fastpath/, ``--cpu-fast-path on|off``).

Off, a local model is transformers' own (``torch.nn.Linear`` layers, SDPA attention, one padded ``generate``) and
greedy answers are the same as on. An untested torch or transformers major version, or a failed probe of the packed
operators, turns the path off with one warning. The embedded SmolLM2 checks the answers; a small random Llama
checkpoint (built in a temporary folder, as in test_hf_cuda.py) keeps the loading and CLI tests quick.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from local_models import TEST_SETTINGS, smollm2
from test_hf_batch import PERSONA, QUESTIONS
from test_hf_cuda import build_checkpoint

from runner.cli import build_parser, main
from runner.commands.options import on_off
from runner.core.errors import UsageError
from runner.core.settings import GenerationSettings, load_config
from runner.providers.base import Request
from runner.providers.catalog import resolve_model
from runner.providers.local import fastpath
from runner.providers.local.fastpath import packed_linear, prefix_attention, threads
from runner.providers.local.hf import HFGenerator

needs_fast_path = pytest.mark.skipif(not fastpath.available("cpu")[0],
                                     reason=f"the CPU speed path is not available here: {fastpath.available('cpu')[1]}")


@pytest.fixture(autouse=True)
def _fresh_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no warning given yet and a fresh probe; the real probe is back afterwards."""
    monkeypatch.setattr(fastpath, "_warned", False)
    fastpath._probe.cache_clear()
    yield
    fastpath._probe.cache_clear()


@contextmanager
def runner_warnings() -> Iterator[list[str]]:
    """The warnings logged on the ``runner`` logger inside the block (whether or not it propagates)."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                messages.append(record.getMessage())

    logger, handler = logging.getLogger("runner"), _Collect()
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random Llama checkpoint (float32 on the CPU, so it would be packed)."""
    return build_checkpoint(tmp_path_factory.mktemp("tiny-llama"), layers=2)


def _loaded(spec_name: str, settings: GenerationSettings) -> HFGenerator:
    generator = HFGenerator(resolve_model(spec_name), settings)
    generator.load()
    return generator


def _pretend_version(monkeypatch: pytest.MonkeyPatch, package: str, version: str) -> None:
    """Make ``package`` (as ``import`` finds it now: transformers may replace its lazy module) report ``version``."""
    monkeypatch.setattr(importlib.import_module(package), "__version__", version)


def _is_plain(generator: HFGenerator) -> bool:
    """transformers' own model: no packed layer, ``torch.nn.Linear`` everywhere, SDPA, one padded ``generate``."""
    model = generator.model
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return (packed_linear.packed_layers(model) == 0 and len(linear) > 0
            and model.config._attn_implementation == "sdpa" and not generator.own_prefill
            and not generator.share_prefix)


def _is_fast(generator: HFGenerator) -> bool:
    return (packed_linear.packed_layers(generator.model) > 0 and generator.own_prefill and generator.share_prefix
            and generator.model.config._attn_implementation == prefix_attention.NAME)


def test_the_switch_is_recorded_but_not_part_of_the_answer_key(tmp_path: Path) -> None:
    on, off = GenerationSettings(), GenerationSettings(cpu_fast_path=False)
    assert on.cpu_fast_path is True
    assert on.answer_key_fields() == off.answer_key_fields()  # greedy answers are the same either way
    assert off.model_dump()["cpu_fast_path"] is False  # what each record's settings hold
    config = tmp_path / "run.toml"
    config.write_text("[settings]\ncpu_fast_path = false\n", encoding="utf-8")
    assert load_config(config).settings.cpu_fast_path is False


def test_the_flag_on_run_and_score() -> None:
    parser = build_parser()
    assert parser.parse_args(["run", "--cpu-fast-path", "off"]).cpu_fast_path is False
    assert parser.parse_args(["run", "--cpu-fast-path", "on"]).cpu_fast_path is True
    assert parser.parse_args(["run"]).cpu_fast_path is None  # not given: the config file (or the default) decides
    assert parser.parse_args(["score", "--cpu-fast-path", "off"]).cpu_fast_path is False
    assert [on_off(w) for w in ("ON", "yes", "1", "off", "false", "0")] == [True] * 3 + [False] * 3
    with pytest.raises(UsageError, match="expected on or off"):
        parser.parse_args(["run", "--cpu-fast-path", "maybe"])


@needs_fast_path
def test_on_by_default_on_this_cpu_and_quietly_off_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    with runner_warnings() as warned:
        assert fastpath.available("cpu") == (True, None)
        assert fastpath.enabled(GenerationSettings(), "cpu")
        assert fastpath.enabled(GenerationSettings(), torch.device("cpu"))
        assert not fastpath.enabled(GenerationSettings(cpu_fast_path=False), "cpu")  # switched off
        ok, reason = fastpath.available("cuda:0")
        assert not ok and "cuda" in (reason or "")
        assert not fastpath.enabled(GenerationSettings(), "cuda")  # CUDA keeps its own path
        monkeypatch.setattr("platform.machine", lambda: "aarch64")
        assert not fastpath.enabled(GenerationSettings(), "cpu")  # not measured there
    assert warned == []  # expected situations, nothing to warn about


@needs_fast_path
@pytest.mark.parametrize(("package", "version"), [("torch", "3.0.0"), ("transformers", "6.1.0"),
                                                  ("torch", "1.13.1+cpu")])
def test_an_untested_major_version_turns_the_path_off_with_one_warning(monkeypatch: pytest.MonkeyPatch,
                                                                        package: str, version: str) -> None:
    _pretend_version(monkeypatch, package, version)
    with runner_warnings() as warned:
        ok, reason = fastpath.available("cpu")
        assert not ok and version in (reason or "")
        assert not fastpath.enabled(GenerationSettings(), "cpu")
        assert not fastpath.enabled(GenerationSettings(), "cpu")  # asked again: no second warning
    assert len(warned) == 1 and version in warned[0] and "tested with" in warned[0]


@needs_fast_path
def test_a_failed_probe_turns_the_path_off_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> object:
        raise AttributeError("'_OpNamespace' 'mkldnn' object has no attribute '_linear_pointwise'")

    monkeypatch.setattr(packed_linear, "_linear_op", missing)
    with runner_warnings() as warned:
        assert not fastpath.enabled(GenerationSettings(), "cpu")
        assert not fastpath.enabled(GenerationSettings(), "cpu")
    assert len(warned) == 1 and "_linear_pointwise" in warned[0]


@needs_fast_path
def test_an_untested_version_loads_transformers_plain_model(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _loaded(f"hf:{tiny}", TEST_SETTINGS)
    assert _is_fast(fast)
    fast.close()
    _pretend_version(monkeypatch, "transformers", "6.0.0")
    with runner_warnings() as warned:
        plain = _loaded(f"hf:{tiny}", TEST_SETTINGS)  # the switch is on, the guard turns the path off
    assert _is_plain(plain)
    assert len(warned) == 1 and "transformers 6.0.0" in warned[0]
    answers = plain.generate([Request("k", PERSONA, QUESTIONS[0], TEST_SETTINGS)])
    assert answers[0].ok and answers[0].completion_tokens
    plain.close()


@needs_fast_path
def test_switched_off_the_model_is_transformers_own_and_greedy_answers_are_identical() -> None:
    on = smollm2()
    assert _is_fast(on)
    off = _loaded("smollm2-135m-instruct", TEST_SETTINGS.model_copy(update={"cpu_fast_path": False}))
    try:
        assert _is_plain(off)
        assert all(type(m) is torch.nn.Linear for m in off.model.modules() if "Linear" in type(m).__name__)
        settings = GenerationSettings(max_new_tokens=24)
        requests = [Request(f"k{i}", PERSONA, q, settings) for i, q in enumerate(QUESTIONS)]
        plain, fast = off.generate(requests), on.generate(requests)
        assert all(r.ok for r in plain + fast)
        assert [r.text for r in plain] == [r.text for r in fast]
        assert [(r.completion_tokens, r.finish_reason) for r in plain] == \
               [(r.completion_tokens, r.finish_reason) for r in fast]
    finally:
        off.close()


@needs_fast_path
def test_cpu_fast_path_off_reaches_the_provider_through_the_cli(tiny: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[tuple[HFGenerator, int, str]] = []  # each generator, its packed layers and its attention
    real_load = HFGenerator.load

    def recording_load(self: HFGenerator) -> None:
        real_load(self)
        loaded.append((self, packed_linear.packed_layers(self.model), self.model.config._attn_implementation))

    monkeypatch.setattr(HFGenerator, "load", recording_load)
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": QUESTIONS[0]}) + "\n", encoding="utf-8")
    common = ["run", "--questions", str(questions), "--models", f"hf:{tiny}", "--max-new-tokens", "4",
              "--no-progress"]
    found = {}
    for flag in ("off", "on", None):
        out = tmp_path / f"out-{flag}"
        assert main([*common, "--output-dir", str(out), *(["--cpu-fast-path", flag] if flag else [])]) == 0
        records = [json.loads(p.read_text()) for p in out.glob("q/*/*/*.json")]
        assert len(records) == 1 and records[0]["text"] is not None
        found[flag] = (*loaded[-1], records[0])
    off, off_packed, off_attention, off_record = found["off"]
    assert off.settings.cpu_fast_path is False and off_record["settings"]["cpu_fast_path"] is False
    assert off_packed == 0 and off_attention == "sdpa" and not off.own_prefill and not off.share_prefix
    on, on_packed, on_attention, on_record = found["on"]
    assert on.settings.cpu_fast_path is True and on_record["settings"]["cpu_fast_path"] is True
    assert on_packed > 0 and on_attention == prefix_attention.NAME and on.own_prefill and on.share_prefix
    default, default_packed, _, default_record = found[None]
    assert default.settings.cpu_fast_path is True and default_record["settings"]["cpu_fast_path"] is True
    assert default_packed > 0 and default.share_prefix  # on by default
    assert off_record["text"] == on_record["text"]


def test_the_thread_tuner_measures_both_counts_briefly_and_keeps_the_faster() -> None:
    tuner = threads.ThreadTuner(2)
    assert tuner.plan(16) == (2, threads.PROBE_TOKENS)  # nothing measured: one short step first
    tuner.record(2, seconds=6.4, rows=64, tokens=1)  # 0.1 s per row and token: a loaded machine
    assert tuner.plan(16) == (1, threads.PROBE_TOKENS)  # then the other count, as briefly
    tuner.record(1, seconds=1.28, rows=64, tokens=1)
    assert tuner.chosen == 1 and tuner.plan(16) == (1, 16)  # the faster one, for whole chunks
    for _ in range(threads.REVISIT - 1):
        tuner.record(1, seconds=20.48, rows=64, tokens=16)
        assert tuner.plan(16) == (1, 16)
    tuner.record(1, seconds=20.48, rows=64, tokens=16)
    assert tuner.plan(16) == (2, threads.PROBE_TOKENS)  # revisited every REVISIT chunks
    tuner.record(2, seconds=0.64, rows=64, tokens=1)  # the load has gone: two threads are faster again
    assert tuner.chosen == 2 and tuner.plan(16) == (2, 16)
    tuner.record(2, seconds=0.64 * 16 * threads.SLOWER * 1.1, rows=64, tokens=16)  # slower than when chosen
    assert tuner.plan(16) == (1, threads.PROBE_TOKENS)
    assert threads.ThreadTuner(1).plan(16) == (1, 16)  # one thread: nothing to choose


def test_using_sets_torch_threads_for_the_block_only() -> None:
    before = torch.get_num_threads()
    with threads.using(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


class _Alternating(threads.ThreadTuner):
    """A tuner that switches the thread count at every chunk (chunks of 1 to 4 tokens)."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.used: list[int] = []

    def plan(self, tokens: int) -> tuple[int, int]:
        count = self.options[len(self.used) % len(self.options)]
        self.used.append(count)
        return count, 1 + len(self.used) % min(tokens, 4)


@needs_fast_path
def test_greedy_answers_do_not_depend_on_the_decoding_threads() -> None:
    generator = smollm2()
    assert generator.thread_tuner is not None  # on the CPU speed path, decoding threads follow the load
    settings = GenerationSettings(max_new_tokens=24)
    requests = [Request(f"k{i}", PERSONA, q, settings) for i, q in enumerate(QUESTIONS)]
    saved = generator.thread_tuner, torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        generator.thread_tuner = None
        fixed = generator.generate(requests)
        generator.thread_tuner = alternating = _Alternating(2)
        switched = generator.generate(requests)
    finally:
        generator.thread_tuner = saved[0]
        torch.set_num_threads(saved[1])
    assert set(alternating.used) == {1, 2} and len(alternating.used) > 4
    assert [r.text for r in switched] == [r.text for r in fixed]
    assert [(r.completion_tokens, r.finish_reason) for r in switched] == \
           [(r.completion_tokens, r.finish_reason) for r in fixed]
