"""Google Gemini through ``google-genai`` (the maintained SDK; google-generativeai reached end of support in 2025).

The persona goes in ``system_instruction`` (left out when it is empty). A conversation becomes ``contents`` with the
roles ``user`` and ``model``; its system turns join the persona in ``system_instruction`` (Gemini has no system turn
in ``contents``). The SDK retries nothing unless asked (no ``retry_options`` here):
the engine retries. ``GOOGLE_GEMINI_BASE_URL`` or a ``base_url`` in the config entry points it elsewhere
(the tests' local server).

A reply with no text fails that answer (so the next run asks again): a stop for safety, recitation or a blocked
prompt is not retried within the run (asking again at once gives the same), an empty reply is. ``modelVersion``
is recorded as the served model, with a warning when it is not the model asked for. Gemini's ``MAX_TOKENS`` is
saved as ``finish_reason: length``, as every other provider says it.

Thinking: thoughts are asked for (``include_thoughts``) from every model that thinks (Gemini 2.5 and later), and
the thought parts (``part.thought``) are kept apart as the trace (``Result.reasoning``), never in the answer;
``usage_metadata.thoughts_token_count`` is ``reasoning_tokens``. An answer cut off while still thinking is kept with
an empty text, its trace, ``finish_reason: length`` and a warning. ``--thinking-budget`` is ``thinking_budget``;
``--reasoning-effort`` is the thinking level on Gemini 3 (``low``/``medium``/``high``; Gemini 3 Pro has low and
high only) and, on Gemini 2.5, which has no levels, the thinking budget Google's OpenAI-compatible endpoint gives each
effort (1,024 / 8,192 / 24,576 tokens). Giving both, a control to a model that does not think (Gemini 1.x, 2.0) or
budget forcing (``--min-thinking``, ``--wait``) means the model cannot run, said once when it is loaded
(``thinking_controls_problem``).
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from runner.core.credentials import get_key
from runner.core.errors import ModelUnavailable, ProviderError
from runner.core.settings import GenerationSettings
from runner.providers.api.openai import (
    BUDGET_FORCING_ONLY_LOCAL,
    CUT_OFF_WHILE_THINKING,
    decode_error,
    parse_retry_after,
    served_model_warning,
    status_error,
    transport_error,
)
from runner.providers.base import Generator, Request, Result

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
GEMINI_HINT = "is the base URL a Gemini API endpoint?"
# Finish reasons that are the model's (or its filters') final word on this question: no text, and asking again at
# once gives the same.
FINAL_STOPS = frozenset({"safety", "prohibited_content", "blocklist", "recitation", "spii", "image_safety",
                         "image_prohibited_content", "image_recitation", "language"})
NOTABLE = frozenset({"MEDIUM", "HIGH"})
# gemini-2.5-flash, models/gemini-3-pro-preview, gemini-1.5-pro-002: the family's version.
GEMINI_VERSION = re.compile(r"^(?:models/)?gemini-(\d+)(?:\.(\d+))?(?:-|$)", re.IGNORECASE)
# Gemini 2.5 has no thinking level: an effort becomes the budget Google's OpenAI-compatible endpoint maps it to.
EFFORT_BUDGETS = {"low": 1024, "medium": 8192, "high": 24576}
# Models whose documented thinking levels are fewer than low, medium and high.
LEVELS_ONLY = ((re.compile(r"^(?:models/)?gemini-3-pro(?:-|$)", re.IGNORECASE), ("low", "high")),)


def thinking_style(model_id: str) -> str:
    """How a Gemini model takes thinking controls: ``level`` (Gemini 3 and later: ``thinking_level``), ``budget``
    (Gemini 2.5: ``thinking_budget`` only), ``none`` (Gemini 1.x and 2.0 do not think), or ``unknown`` (another
    model served by the Gemini API, such as Gemma: controls are sent as given, thoughts not asked for)."""
    match = GEMINI_VERSION.match(model_id)
    if not match:
        return "level" if model_id.lower().removeprefix("models/").startswith("gemini-") else "unknown"
    major, minor = int(match.group(1)), int(match.group(2) or 0)
    if major >= 3:
        return "level"
    return "budget" if (major, minor) >= (2, 5) else "none"


def thinking_controls_problem(model_id: str, settings: GenerationSettings) -> str | None:
    """Why ``model_id`` cannot take the thinking settings asked for; None when it can."""
    if settings.min_thinking is not None or settings.wait:
        return BUDGET_FORCING_ONLY_LOCAL
    effort, budget = settings.reasoning_effort, settings.thinking_budget
    if effort is None and budget is None:
        return None
    style = thinking_style(model_id)
    if style == "none":
        flag = "--reasoning-effort" if effort is not None else "--thinking-budget"
        return (f"model {model_id} does not think: it has no reasoning effort control or thinking budget (Gemini "
                f"2.5 and later have); drop {flag} for it")
    if effort is not None and budget is not None:
        return ("--reasoning-effort and --thinking-budget both set how much Gemini thinks (its thinking level or "
                "budget), and Gemini refuses both at once: give one")
    for pattern, levels in LEVELS_ONLY:
        if effort is not None and effort not in levels and pattern.match(model_id):
            return (f"model {model_id} has the thinking levels {' and '.join(levels)} only (Google's documentation): "
                    f"use --reasoning-effort {' or '.join(levels)}")
    return None


def quota_details(details: Any) -> tuple[bool, float | None]:
    """From a Gemini error body: (is the quota used up for the day or absent, RetryInfo's wait in seconds).

    Google sends "You exceeded your current quota" with RESOURCE_EXHAUSTED for per-minute limits too; only the
    QuotaFailure's quota id (``...PerDay...``) or a limit of 0 says that waiting within a run cannot help.
    """
    error = details.get("error", details) if isinstance(details, dict) else {}
    items = error.get("details") if isinstance(error, dict) else None
    exhausted, retry_after = False, None
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        kind = str(item.get("@type", ""))
        if kind.endswith("QuotaFailure"):
            for violation in item.get("violations") or []:
                quota_id = str(violation.get("quotaId", ""))
                if "PerDay" in quota_id or str(violation.get("quotaValue", "")).strip() == "0":
                    exhausted = True
        elif kind.endswith("RetryInfo"):
            match = DURATION.match(str(item.get("retryDelay", "")))
            if match:
                retry_after = float(match.group(1))
    return exhausted, retry_after


class GeminiGenerator(Generator):
    """``gemini:<model>``: Google's Gemini API (``GEMINI_API_KEY``; ``GOOGLE_API_KEY`` also accepted)."""

    def load(self) -> None:
        """Create the client (kept: it closes its HTTP pool when garbage-collected) with an explicit timeout."""
        from google import genai
        from google.genai import types

        problem = thinking_controls_problem(self.spec.model_id, self.settings)
        if problem:  # before any request: the whole model cannot run with these settings
            raise ModelUnavailable(problem)
        key = get_key(self.info.key_env_vars, self.spec.label)
        # The async pool sized to --concurrency, keep-alive included (httpx's default keeps 20 connections alive and
        # opens at most 100); aiohttp, when google-genai uses it instead, drops the argument.
        concurrency = self.settings.concurrency
        limits = _httpx_limits(concurrency)
        options = types.HttpOptions(timeout=max(1, round(self.settings.timeout_s * 1000)),
                                    base_url=self.spec.base_url or None, async_client_args={"limits": limits})
        # vertexai=False: a GOOGLE_GENAI_USE_VERTEXAI in the environment must not silently switch backends.
        self._client: Any = genai.Client(api_key=key, vertexai=False, http_options=options)

    def config(self, request: Request) -> Any:
        """The GenerateContentConfig: persona, token limit, and the sampling settings."""
        from google.genai import types

        s = request.settings
        sampling: dict[str, Any] = {}
        if not s.greedy:  # only then are top_p and seed part of the answer key
            sampling = {k: v for k, v in (("top_p", s.top_p), ("seed", s.seed)) if v is not None}
        if s.frequency_penalty is not None:
            sampling["frequency_penalty"] = s.frequency_penalty
        thinking = self.thinking_config(s)
        if thinking is not None:
            sampling["thinking_config"] = thinking
        return types.GenerateContentConfig(system_instruction=system_instruction(request) or None,
                                           temperature=s.temperature, max_output_tokens=s.max_new_tokens, **sampling)

    def thinking_config(self, s: GenerationSettings) -> Any:
        """The ThinkingConfig: thoughts asked for from models that think, and the thinking level or budget asked
        for (``load`` has refused what the model cannot take); None for a model that does not think."""
        from google.genai import types

        style = thinking_style(self.spec.model_id)
        fields: dict[str, Any] = {"include_thoughts": True} if style in ("level", "budget") else {}
        if s.thinking_budget is not None:
            fields["thinking_budget"] = s.thinking_budget
        elif s.reasoning_effort is not None and style == "budget":
            fields["thinking_budget"] = EFFORT_BUDGETS[s.reasoning_effort]
        elif s.reasoning_effort is not None:
            fields["thinking_level"] = types.ThinkingLevel(s.reasoning_effort.upper())
        return types.ThinkingConfig(**fields) if fields else None

    def contents(self, request: Request) -> Any:
        """The question as the one user turn, or a conversation's user and assistant turns (roles ``user`` and
        ``model``)."""
        if request.messages is None:
            return request.user_message
        from google.genai import types

        return [types.Content(role="model" if m.role == "assistant" else "user", parts=[types.Part(text=m.content)])
                for m in request.messages if m.role != "system"]

    async def agenerate(self, request: Request) -> Result:
        """One generateContent call through the async client."""
        start = time.perf_counter()
        response = await self._client.aio.models.generate_content(
            model=self.spec.model_id, contents=self.contents(request), config=self.config(request))
        return self._result(response, time.perf_counter() - start)

    def _result(self, response: Any, latency: float) -> Result:
        candidates = response.candidates or []
        if not candidates:
            feedback = getattr(response, "prompt_feedback", None)
            reason = getattr(feedback, "block_reason", None)
            if reason:  # the prompt itself was refused: final for this question
                said = getattr(feedback, "block_reason_message", None)
                raise ProviderError(f"Gemini blocked the prompt ({_name(reason, upper=True)}): no text"
                                    f"{_ratings(getattr(feedback, 'safety_ratings', None))}"
                                    f"{f': {said}' if said else ''}", retryable=False)
            headers = getattr(getattr(response, "sdk_http_response", None), "headers", None) or {}
            body = " (HTTP 200 with an empty body)" if str(headers.get("content-length", "")) == "0" else ""
            raise ProviderError(f"empty reply: the response has no candidates{body}", retryable=True)
        candidate = candidates[0]
        parts = (candidate.content.parts if candidate.content else None) or []
        # Thought summaries (part.thought) are the trace, not the answer.
        text = "".join(p.text for p in parts if getattr(p, "text", None) and not getattr(p, "thought", False))
        thoughts = "".join(p.text for p in parts if getattr(p, "text", None) and getattr(p, "thought", False))
        finish = _name(candidate.finish_reason)
        if finish == "max_tokens":
            finish = "length"  # as every other provider says it (views count such answers as cut off)
        if not text.strip() and finish != "length":
            if finish in FINAL_STOPS:
                raise ProviderError(f"Gemini stopped for {_name(candidate.finish_reason, upper=True)}: no text"
                                    f"{_ratings(candidate.safety_ratings)}", retryable=False)
            after = f", after {len(thoughts.strip()):,} characters of thoughts" if thoughts.strip() else ""
            raise ProviderError(f"empty reply: no text, finish_reason {finish}{after}", retryable=True)
        usage = response.usage_metadata
        completion = None
        if usage is not None and (usage.candidates_token_count is not None or usage.thoughts_token_count):
            # Thinking tokens are billed as output: count them as completion tokens (for the cost estimate).
            completion = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
        result = Result(text=text, latency_s=latency, finish_reason=finish, reasoning=thoughts.strip() or None,
                        reasoning_tokens=usage.thoughts_token_count if usage else None,
                        prompt_tokens=usage.prompt_token_count if usage else None, completion_tokens=completion)
        if not text.strip() and (result.reasoning or result.reasoning_tokens):  # finish_reason length
            # Kept, with a warning (the same limit gives the same): the thinking counts towards max_output_tokens.
            result.warnings.append(CUT_OFF_WHILE_THINKING.format(limit=self.settings.max_new_tokens))
        elif not text.strip():  # finish_reason length, no thinking reported
            result.warnings.append("empty answer: the token limit was used up (thinking tokens count towards it); "
                                   "raise --max-new-tokens")
        elif finish in FINAL_STOPS:
            result.warnings.append(f"Gemini stopped for {_name(candidate.finish_reason, upper=True)} after "
                                   f"{len(text)} characters: the answer is cut short"
                                   f"{_ratings(candidate.safety_ratings)}")
        served = getattr(response, "model_version", None)
        if isinstance(served, str) and served.strip():
            result.served_model = served.strip()[:200]
            warning = served_model_warning(self.spec.model_id, served)
            if warning:
                result.warnings.append(warning)
        return result

    def classify(self, error: BaseException) -> ProviderError:
        """429 (except a daily or absent quota), 408, 5xx, connection errors and timeouts are retryable."""
        from google.genai import errors

        if isinstance(error, ProviderError):
            return error
        if isinstance(error, errors.APIError):
            exhausted, retry_info = quota_details(error.details)
            headers = getattr(getattr(error, "response", None), "headers", None)
            retry_after = parse_retry_after(headers)
            message = error.message or str(error)
            hint = "check GEMINI_API_KEY" if error.code in (400, 401, 403) and "key" in message.lower() else ""
            return status_error(error.code or 0, f"{error.status or ''} {message}".strip(),
                                quota_exhausted=error.code == 429 and exhausted,
                                retry_after=retry_after if retry_after is not None else retry_info, hint=hint)
        if isinstance(error, (errors.UnknownApiResponseError, json.JSONDecodeError)):
            return decode_error(error, GEMINI_HINT)
        name = type(error).__name__
        if "Timeout" in name:  # httpx2.TimeoutException and subclasses (the SDK lets them through)
            return ProviderError(f"timed out after {self.settings.timeout_s:g} s", retryable=True)
        if _is_transport_error(error):
            where = (self.spec.base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL", "").strip()
                     or "the Gemini API")
            return transport_error(error, where)
        return super().classify(error)

    async def aclose(self) -> None:
        """Close the async HTTP pool inside the event loop that opened it."""
        client = getattr(self, "_client", None)
        if client is not None:
            await client.aio.aclose()

    def close(self) -> None:
        """Close the sync side too and drop the client."""
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()
        self._client = None


def system_instruction(request: Request) -> str:
    """The persona and a conversation's system turns, in order, one paragraph each; empty when there are none."""
    turns = [m.content for m in request.messages or () if m.role == "system"]
    return "\n\n".join(text for text in (request.system_prompt, *turns) if text.strip())


def _name(value: Any, upper: bool = False) -> str | None:
    """An SDK enum (FinishReason.STOP) as plain lower-case text ("stop"), or as Google spells it ("STOP")."""
    if value is None:
        return None
    name = str(getattr(value, "name", value))
    return name.upper() if upper else name.lower()


def _ratings(ratings: Any) -> str:
    """`` (DANGEROUS_CONTENT: HIGH, blocked)``: the safety ratings that blocked, or rated MEDIUM or HIGH."""
    shown = []
    for rating in ratings or []:
        probability = _name(getattr(rating, "probability", None), upper=True)
        blocked = bool(getattr(rating, "blocked", False))
        if blocked or probability in NOTABLE:
            category = (_name(getattr(rating, "category", None), upper=True) or "?").removeprefix("HARM_CATEGORY_")
            shown.append(f"{category}: {probability or '?'}{', blocked' if blocked else ''}")
    return f" ({'; '.join(shown)})" if shown else ""


def _httpx_limits(connections: int) -> Any:
    """``httpx.Limits`` of ``connections`` connections, all kept alive (google-genai runs on httpx2 or httpx)."""
    try:
        import httpx2 as httpx
    except ImportError:
        import httpx  # type: ignore[no-redef]
    return httpx.Limits(max_connections=connections, max_keepalive_connections=connections)


def _is_transport_error(error: BaseException) -> bool:
    try:
        import httpx2
    except ImportError:  # google-genai may run on httpx or aiohttp instead
        httpx2 = None  # type: ignore[assignment]
    if httpx2 is not None and isinstance(error, httpx2.TransportError):
        return True
    return isinstance(error, (ConnectionError, OSError))
