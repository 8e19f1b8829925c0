"""The JSON record saved beside each answer (the machine-readable form of ``<n>.txt``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.core.personas import Persona
    from runner.core.questions import Question
    from runner.core.settings import GenerationSettings
    from runner.providers.base import Result
    from runner.providers.catalog import ModelSpec

# 2: the record names its question set and variant tag, and holds the persona text and model options.
RECORD_VERSION = 2


def make_record(question: Question, persona: Persona, spec: ModelSpec, settings: GenerationSettings,
                result: Result, key: str, run_id: str, embedding: list[float] | None = None, *,
                set_name: str | None = None, tag: str | None = None) -> dict[str, Any]:
    """Everything known about one answer; never contains a credential.

    The persona's full text is kept with each answer, so a variant made with another text stays readable.
    """
    record: dict[str, Any] = {
        "version": RECORD_VERSION,
        "set": set_name,
        "tag": tag,
        "n": question.n,
        "question_id": question.id,
        "question": question.question,
        # A conversation's turns, the last being ``question``; None for a plain question.
        "messages": None if question.messages is None else [{"role": m.role, "content": m.content}
                                                              for m in question.messages],
        "context": question.context,
        "options": question.options,
        "answer": question.answer,
        "task": question.task,
        "extra": question.extra or None,
        "persona": persona.name,
        "persona_sha256": persona.sha256,
        "persona_text": persona.text,
        "model": spec.name,
        "alias": spec.alias,
        "provider": spec.provider,
        "model_id": spec.model_id,
        "slug": spec.slug,
        "kind": spec.kind,
        "model_options": model_options(spec),
        "settings": settings.model_dump(),
        "text": result.text,
        # Reasoning models: the thinking trace apart from the answer, and the tokens spent thinking.
        "reasoning": result.reasoning,
        "reasoning_tokens": result.reasoning_tokens,
        # Self-consistency (--samples K): which of the question's K answers this is (1: the answer); None without.
        "sample": None,
        # Local budget forcing: the "Wait"s inserted and whether the end of thinking was forced; None otherwise.
        "thinking": result.thinking,
        # What a generate request sent (the system prompt is persona_text); local models: the whole prompt text.
        "user_message": result.user_message,
        "prompt_text": result.prompt_text,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "latency_s": round(result.latency_s, 4),
        "finish_reason": result.finish_reason,
        "error": result.error,
        "attempts": result.attempts,
        "warnings": result.warnings or None,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "key": key,
        "run_id": run_id,
    }
    cap_text(record, settings.max_answer_chars)
    if result.served_model:  # the model the server says it served, when it says
        record["served_model"] = result.served_model
    if embedding is not None:
        record["embedding_dim"] = len(embedding)
        record["embedding"] = [round(float(x), 7) for x in embedding]
    return record


def note_prompt(provider: Any, request: Any, result: Result) -> None:
    """Put on ``result`` what a generate request sent: its user message and, where the provider formats the prompt
    itself (local models), the prompt text the model received. Other kinds' requests are left alone.

    The system prompt sent is the persona's text, which every record keeps (``persona_text``). Failing to format
    the prompt text again never fails the answer: the record then has the user message alone.
    """
    from runner.providers.base import Request

    if not isinstance(request, Request):
        return
    result.user_message = request.user_message
    if result.prompt_text is None:
        try:
            result.prompt_text = provider.prompt_text(request)
        except Exception:  # noqa: BLE001 - the answer stands without it
            result.prompt_text = None


def cap_text(record: dict[str, Any], limit: int) -> None:
    """Cut an answer longer than ``limit`` characters (``max_answer_chars``) in place.

    The record keeps the full length (``text_chars_full``) and a warning that says how to keep whole answers;
    the ``.txt`` body is the record's (cut) text.
    """
    text = record.get("text")
    if not isinstance(text, str) or len(text) <= limit:
        return
    record["text"] = text[:limit]
    record["text_chars_full"] = len(text)
    warning = (f"answer cut to its first {limit:,} of {len(text):,} characters when saved (max_answer_chars); "
               "to keep whole answers, raise it (--max-answer-chars N, or max_answer_chars in the config's "
               "[settings]) and answer again with --force")
    record["warnings"] = [*(record.get("warnings") or []), warning]


def model_options(spec: ModelSpec) -> dict[str, Any]:
    """The model's answer-changing options that are set (a URL's password scrubbed), for the record."""
    from runner.core.credentials import redact

    options = {k: v for k, v in spec.answer_key_fields().items() if k != "model" and v is not None}
    if isinstance(options.get("base_url"), str):
        options["base_url"] = redact(options["base_url"])
    return options
