"""Typed settings: one GenerationSettings object shared by every provider, and the run configuration.

Flags override a TOML config file (``--config``); an unknown key anywhere is an error.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from runner.core.errors import InputError, UsageError, did_you_mean
from runner.core.personas import is_persona_path


class GenerationSettings(BaseModel):
    """How every model is asked to generate; the same object reaches every provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(512, ge=1, le=1_000_000, description="Most tokens to generate per answer.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 means greedy, deterministic decoding.")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Nucleus sampling cut-off (sampling only).")
    seed: int | None = Field(None, ge=0, description="Seed that makes sampling reproducible.")
    repetition_penalty: float | None = Field(None, gt=0.0, le=10.0, description="Local models: divide the score of "
                                             "tokens already in the prompt or answer by this (1 = off; "
                                             "transformers' repetition_penalty). Not sent to API models.")
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0, description="API models (OpenAI, Gemini, "
                                            "OpenAI-compatible servers): penalise tokens by how often they already "
                                            "appeared. Not used by local models (see repetition_penalty).")
    reasoning_effort: Literal["low", "medium", "high"] | None = Field(
        None, description="Reasoning models: how much to think (OpenAI reasoning_effort; Gemini's thinking level); "
        "an error for a model without such a control.")
    thinking_budget: int | None = Field(None, ge=0, le=1_000_000, description="Most thinking tokens: Gemini's "
                                        "thinking_budget; local models: budget forcing (s1), the end-of-thinking "
                                        "delimiter inserted when the trace reaches this many tokens.")
    min_thinking: int | None = Field(None, ge=0, le=1_000_000, description="Local models: an end of thinking "
                                     "before this many trace tokens is replaced by 'Wait' (at most --wait times).")
    wait: int = Field(0, ge=0, le=100, description="Local models: most times 'Wait' replaces an early end of "
                      "thinking (with min_thinking; s1's budget forcing).")
    samples: int = Field(1, ge=1, le=1000, description="Answers per question (self-consistency); with a "
                         "temperature above 0, each sample has its own seed derived from seed.")
    batch_size: int | Literal["auto"] = Field("auto", description="Local models: prompts per forward pass.")
    concurrency: int = Field(8, ge=1, le=1024, description="API models: requests in flight at once.")
    max_attempts: int = Field(5, ge=1, le=50, description="Tries per answer for retryable errors.")
    timeout_s: float = Field(120.0, gt=0, description="Per-request timeout for API models, in seconds.")
    retry_initial_wait_s: float = Field(1.0, ge=0, description="First backoff wait; doubles per attempt.")
    retry_max_wait_s: float = Field(60.0, ge=0, description="Longest single backoff wait (Retry-After capped too).")
    cpu_fast_path: bool = Field(True, description="Local models on an x86-64 CPU: prefix attention, packed linear "
                                "layers and the preallocated cache (off: transformers' plain path; same answers).")
    max_answer_chars: int = Field(200_000, ge=1, le=1_000_000_000,
                                  description="Longest answer text saved; a longer one is cut when saved (the "
                                  "record keeps its full length and a warning). Not part of the answer key.")

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be a positive integer or 'auto'")
        return value

    @property
    def greedy(self) -> bool:
        """True when decoding is deterministic (temperature 0)."""
        return self.temperature == 0.0

    def answer_key_fields(self) -> dict[str, Any]:
        """The settings that change an answer (and so belong in the re-run cache key).

        Settings that change only how an answer is computed or stored (``batch_size``, ``cpu_fast_path``,
        ``max_answer_chars``, the retry and timeout settings) are not listed: changing them reuses saved answers.
        """
        fields: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature}
        if self.repetition_penalty is not None:
            fields["repetition_penalty"] = self.repetition_penalty
        if self.frequency_penalty is not None:
            fields["frequency_penalty"] = self.frequency_penalty
        if not self.greedy:
            fields["top_p"] = self.top_p
            fields["seed"] = self.seed
        for name in ("reasoning_effort", "thinking_budget", "min_thinking"):  # thinking changes answers
            if getattr(self, name) is not None:
                fields[name] = getattr(self, name)
        if self.min_thinking is not None:
            fields["wait"] = self.wait
        return fields


class ModelEntry(BaseModel):
    """A model as written in a config file: its name plus optional per-model options."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="provider:model-id or a catalog alias.")
    base_url: str | None = Field(None, description="OpenAI-compatible server URL for this model.")
    prompt_format: Literal["chat", "chat-no-system", "alpaca", "plain"] | None = None
    quantize: Literal["4bit", "8bit", "none"] | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = None
    trust_remote_code: bool | None = None
    price_input_per_mtok: float | None = Field(None, ge=0)
    price_output_per_mtok: float | None = Field(None, ge=0)
    slug: str | None = Field(None, description="Output folder name, when the default would clash.")
    think_delimiters: tuple[str, str] | None = Field(None, description="Reasoning models that think in their "
                                                     "output: the start and end of the trace (default <think>, "
                                                     "</think>; HuatuoGPT-o1: '## Thinking', '## Final Response').")


class RunConfig(BaseModel):
    """Everything a run needs besides the command line; loaded from TOML, overridden by flags."""

    model_config = ConfigDict(extra="forbid")

    questions: str = "questions.jsonl"
    output_dir: str = "outputs"
    personas: list[str] = Field(default_factory=lambda: ["oncology-researcher"])
    system_prompt: str | None = None
    models: list[str | ModelEntry] = Field(default_factory=list)
    limit: int | None = Field(None, ge=1)
    force: bool = False
    question_set: str | None = Field(None, alias="set", description="Question set the answers belong to.")
    tag: str | None = Field(None, description="Save the answers as this named variant.")
    settings: GenerationSettings = Field(default_factory=GenerationSettings)


def load_config(path: str | Path) -> RunConfig:
    """Read a TOML config file; every problem names the file (and key) at fault."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(str(path), None, "config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(str(path), None, f"not valid TOML: {exc}") from None
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(str(path), None, format_validation_error(exc)) from None
    return anchor_paths(config, path.parent)


def anchor_paths(config: RunConfig, folder: Path) -> RunConfig:
    """The config with the relative paths written in it (questions, output_dir, persona files) taken from
    ``folder``, the config file's folder, rather than the current directory; absolute paths are kept."""
    def anchored(value: str) -> str:
        return value if Path(value).is_absolute() else str(folder / value)

    given = config.model_fields_set  # defaults (questions.jsonl, outputs) stay relative to the current directory
    updates: dict[str, Any] = {name: anchored(getattr(config, name))
                               for name in ("questions", "output_dir") if name in given}
    if "personas" in given:
        updates["personas"] = [anchored(p) if is_persona_path(p) else p for p in config.personas]
    return config.model_copy(update=updates)


def format_validation_error(exc: ValidationError) -> str:
    """Turn a pydantic error into one readable part per problem; an unknown key names the closest known one."""
    errors = exc.errors()
    parts = []
    for err in errors:
        loc = tuple(p for p in err["loc"] if p != "ModelEntry")  # a model entry's union member: not a key
        if loc != err["loc"] or not _table_given_for_a_name(err, errors):
            where = ".".join(str(p) for p in loc) or "(top level)"
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key" + did_you_mean(str(loc[-1]), _known_keys(loc))
            parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def _table_given_for_a_name(err: Any, errors: list[Any]) -> bool:
    """Whether ``err`` is a model entry's "not a string" while the entry is a table with its own errors."""
    prefix = err["loc"][:-1]
    return err["loc"][-1:] == ("str",) and any(e["loc"][:len(prefix) + 1] == (*prefix, "ModelEntry")
                                               and len(e["loc"]) > len(prefix) + 1 for e in errors)


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys a config file may hold where ``loc`` (the unknown key's place) is."""
    model = {"settings": GenerationSettings, "models": ModelEntry}.get(loc[0], RunConfig) if len(loc) > 1 \
        else RunConfig
    return [field.alias or name for name, field in model.model_fields.items()]


FLAG_NAMES = {"timeout_s": "--timeout"}  # settings whose flag is not ``--`` + the name with ``-`` for ``_``


def flag_name(setting: str) -> str:
    """The command-line flag that sets ``setting`` (``max_new_tokens`` -> ``--max-new-tokens``)."""
    return FLAG_NAMES.get(setting, "--" + setting.replace("_", "-"))


def merge_settings(base: GenerationSettings, overrides: dict[str, Any]) -> GenerationSettings:
    """Return ``base`` with the given (non-None) overrides, the command line's flags, applied and validated.

    ``base`` is already valid (the defaults or a checked config file), so a problem is a flag's: it is named as typed.
    """
    data = base.model_dump(exclude_unset=True)  # what was set stays told apart from defaults (model card defaults)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return GenerationSettings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{flag_name(str(err['loc'][0]))}: {err['msg']}" if err["loc"] else err["msg"]
                             for err in exc.errors())
        raise UsageError(f"invalid setting: {problems}") from None
