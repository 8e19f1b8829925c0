"""OpenAI, and any OpenAI-compatible server (vLLM, Ollama, LM Studio, llama.cpp), through the official SDK.

The SDK's own retries are off (``max_retries=0``): the engine retries, once, in one place. The persona is the
system message (the ``developer`` message for o-series and gpt-5 reasoning models). ``max_completion_tokens`` is
sent, and when a compatible server refuses it, ``max_tokens`` from then on.

This module imports the SDK only inside ``load``/``classify``, so the helpers here (``parse_retry_after``,
``status_error``) are cheap to import from the Gemini provider too.
"""

from __future__ import annotations

import email.utils
import functools
import json
import logging
import os
import re
import ssl
import time
from collections.abc import Mapping
from typing import Any

from runner.core.credentials import get_key, redact
from runner.core.errors import ProviderError
from runner.providers.base import Generator, LoglikRequest, Request, Result

log = logging.getLogger("runner")

# Sent when a base URL is set and no key is: local servers (vLLM, Ollama, llama.cpp) need none, the SDK needs one.
PLACEHOLDER_KEY = "not-needed"
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
# o1, o3, o4-mini, gpt-5, gpt-5-mini ...: no temperature/top_p, the developer role, max_completion_tokens only.
REASONING_MODEL = re.compile(r"^(?:openai/)?(?:o\d|gpt-5)(?:[-.:]|$)", re.IGNORECASE)
# How servers that do not know max_completion_tokens say so (OpenAI's own, vLLM/pydantic, FastAPI, LiteLLM...).
REFUSED_PARAM = re.compile(r"unrecogni[sz]ed|unsupported|not supported|unknown|unexpected|extra|not permitted|"
                           r"not allowed|invalid (?:field|param|argument)", re.IGNORECASE)
MAX_MESSAGE = 400


def is_reasoning_model(model_id: str) -> bool:
    """True for o-series and gpt-5 models, which refuse sampling parameters and prefer the developer role."""
    return bool(REASONING_MODEL.match(model_id))


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP date; None if absent."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def status_error(status: int, message: str, *, quota_exhausted: bool = False, retry_after: float | None = None,
                 hint: str = "") -> ProviderError:
    """A ProviderError for an HTTP status: 408/409/429/5xx retryable, other statuses (and used-up quotas) not."""
    message = redact(" ".join(str(message).split()))[:MAX_MESSAGE]
    if quota_exhausted:
        return ProviderError(f"HTTP {status}: quota exhausted, not retried: {message}", retryable=False)
    retryable = status in RETRYABLE_STATUS or status >= 500
    if not retryable and hint:
        message = f"{message} ({hint})"
    return ProviderError(f"HTTP {status}: {message}", retryable=retryable,
                         retry_after=retry_after if retryable else None)


def not_json_error(detail: str, hint: str = "is the base URL an OpenAI-compatible API ending in /v1?") -> ProviderError:
    """The server answered 200 with something that is not JSON: most often a base URL that is not an API."""
    # Not retried: a wrong base URL (a web page, a proxy login) does not heal by waiting; a proxy that breaks
    # now and then sends 502/503, which are retried.
    return ProviderError(f"the server's answer is not JSON ({hint}): {redact(detail)[:200]}", retryable=False)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class OpenAIGenerator(Generator):
    """``openai:<model>``: OpenAI's chat completions, or any server that speaks them (``base_url``)."""

    def load(self) -> None:
        """Open the async client (no SDK retries, an explicit timeout); a missing key names the variable."""
        from openai import AsyncOpenAI, DefaultAsyncHttpxClient

        info = self.info  # the declaration: key variables, base-URL variable
        self.base_url = self.spec.base_url or os.environ.get(info.base_url_env, "").strip() or None
        if self.base_url and not any(os.environ.get(v, "").strip() for v in info.key_env_vars):
            key = PLACEHOLDER_KEY
        else:
            key = get_key(info.key_env_vars, self.spec.label)
        self.token_field = "max_completion_tokens"
        self.reasoning = is_reasoning_model(self.spec.model_id)
        self._client: Any = AsyncOpenAI(api_key=key, base_url=self.base_url, max_retries=0,
                                        timeout=self.settings.timeout_s,
                                        http_client=DefaultAsyncHttpxClient(verify=tls_context()))

    def messages(self, request: Request) -> list[dict[str, str]]:
        """The persona as the system (or developer) message, then the question."""
        role = "developer" if self.reasoning else "system"
        return [{"role": role, "content": request.system_prompt}, {"role": "user", "content": request.user_message}]

    def parameters(self, request: Request) -> dict[str, Any]:
        """The request body besides model and messages: the token limit and the sampling settings it accepts."""
        s = request.settings
        params: dict[str, Any] = {self.token_field: s.max_new_tokens}
        if not self.reasoning:
            params["temperature"] = s.temperature
            if not s.greedy:  # top_p and seed only matter when sampling (and only then are part of the answer key)
                if s.top_p is not None:
                    params["top_p"] = s.top_p
                if s.seed is not None:
                    params["seed"] = s.seed
        return params

    async def agenerate(self, request: Request) -> Result:
        """One chat completion; falls back to ``max_tokens`` once if the server refuses the newer field."""
        from openai import BadRequestError

        start = time.perf_counter()
        try:
            data = await self._complete(request)
        except BadRequestError as exc:
            if not self._refuses_token_field(exc):
                raise
            log.info("%s: the server refuses max_completion_tokens; sending max_tokens instead", self.spec.label)
            self.token_field = "max_tokens"
            data = await self._complete(request)
        return self._result(data, time.perf_counter() - start)

    async def _complete(self, request: Request) -> Any:
        """POST /chat/completions through the SDK client; the answer's JSON.

        The SDK's ``client.post`` (its documented way to any endpoint) keeps its authentication, base URL, timeout
        and error types, and skips re-validating a request body built here and building typed response objects
        for the four fields read: ~1 ms of Python per request, which at high concurrency queues on the event loop.
        """
        body = {"model": self.spec.model_id, "messages": self.messages(request), **self.parameters(request)}
        text = await self._client.post("/chat/completions", body=body, cast_to=str)
        try:
            return json.loads(text)
        except ValueError:
            raise not_json_error(text) from None

    async def aloglikelihood(self, request: LoglikRequest) -> Result:
        """Each choice's log-likelihood from the server's ``/completions`` endpoint (``echo``, ``logprobs``), as
        lm-evaluation-harness's ``local-completions`` asks vLLM, SGLang or llama.cpp's server."""
        import openai

        from runner.providers.api.completions_loglik import build_prompts, parse_logprobs

        start = time.perf_counter()
        prompts = build_prompts(request.context, request.continuations, self._tokenizer())
        body = {"model": self.spec.model_id, "prompt": [p.prompt for p in prompts], "echo": True, "logprobs": 1,
                "max_tokens": 1, "temperature": 0}
        where = f"{self._where().rstrip('/')}/completions"
        try:
            text = await self._client.post("/completions", body=body, cast_to=str)
        except (openai.NotFoundError, openai.UnprocessableEntityError) as exc:
            raise ProviderError(f"{where}: {exc.status_code}: log-likelihood scoring needs a server with the "
                                "completions endpoint and echo + logprobs (vLLM, SGLang, llama.cpp's server); "
                                "chat-only servers cannot score", retryable=False) from None
        try:
            data = json.loads(text)
        except ValueError:
            raise not_json_error(text) from None
        sums, greedy, tokens = parse_logprobs(data, prompts, where)
        return Result(logprobs=sums, greedy=greedy, prompt_tokens=tokens, finish_reason="loglik",
                      latency_s=time.perf_counter() - start)

    def _tokenizer(self) -> Any | None:
        """The model's tokenizer when it is available here (token ids are then sent, split as the harness splits
        them); None sends text. Looked up once, without the network."""
        if not hasattr(self, "_loglik_tokenizer"):
            self._loglik_tokenizer: Any | None = None
            try:
                from transformers import AutoTokenizer

                self._loglik_tokenizer = AutoTokenizer.from_pretrained(self.spec.model_id, local_files_only=True)
            except Exception:  # noqa: BLE001 - any failure means: not available here
                log.info("%s: no local tokenizer for %s; sending text and splitting choices by text_offset",
                         self.spec.label, self.spec.model_id)
        return self._loglik_tokenizer

    def _refuses_token_field(self, exc: Any) -> bool:
        if self.token_field != "max_completion_tokens":
            return False
        text = f"{getattr(exc, 'param', '') or ''} {getattr(exc, 'message', '') or exc}"
        return "max_completion_tokens" in text and bool(REFUSED_PARAM.search(text))

    def _result(self, data: Any, latency: float) -> Result:
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            shown = redact(json.dumps(data, ensure_ascii=False))[:200]
            raise ProviderError(f"the server's answer has no choices: {shown}", retryable=False)
        message = _mapping(choices[0].get("message"))
        text = message.get("content") or message.get("refusal") or ""
        usage = _mapping(data.get("usage"))
        result = Result(text=text if isinstance(text, str) else str(text), latency_s=latency,
                        finish_reason=choices[0].get("finish_reason"),
                        prompt_tokens=_count(usage.get("prompt_tokens")),
                        completion_tokens=_count(usage.get("completion_tokens")))
        if not result.text.strip() and result.finish_reason == "length":
            # Reasoning models spend max_completion_tokens on hidden reasoning first.
            result.warnings.append("empty answer: the token limit was reached (reasoning tokens count towards "
                                   "it); raise --max-new-tokens")
        return result

    def classify(self, error: BaseException) -> ProviderError:
        """429 (but not an exhausted quota), 408, 409, 5xx, connection errors and timeouts are retryable."""
        import openai

        if isinstance(error, ProviderError):
            return error
        if isinstance(error, openai.APITimeoutError):
            return ProviderError(f"timed out after {self.settings.timeout_s:g} s", retryable=True)
        if isinstance(error, openai.APIConnectionError):
            cause = error.__cause__ or error
            return ProviderError(redact(f"cannot connect to {self._where()}: {type(cause).__name__}: {cause}"),
                                 retryable=True)
        if isinstance(error, openai.APIStatusError):
            body = error.body if isinstance(error.body, dict) else {}
            detail = body.get("error") if isinstance(body.get("error"), dict) else body
            quota = "insufficient_quota" in (str(detail.get("code")), str(detail.get("type")), str(error.code))
            message = detail.get("message") if isinstance(detail.get("message"), str) else error.message
            return status_error(error.status_code, message, quota_exhausted=quota,
                                retry_after=parse_retry_after(error.response.headers),
                                hint=_hint(error.status_code, self.base_url))
        if isinstance(error, (openai.APIResponseValidationError, json.JSONDecodeError)):
            return not_json_error(str(error))
        return super().classify(error)

    def _where(self) -> str:
        return self.base_url or "api.openai.com"

    async def aclose(self) -> None:
        """Close the HTTP connection pool inside the event loop that opened it."""
        client = getattr(self, "_client", None)
        if client is not None:
            await client.close()

    def close(self) -> None:
        """Drop the client (its pool was closed by ``aclose``)."""
        self._client = None


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process (CA bundle: ``SSL_CERT_FILE`` or certifi's, as httpx uses).

    Building it loads the CA bundle, ~30 ms: paid once, not at every run or client.
    """
    import certifi

    return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())


def _hint(status: int, base_url: str | None) -> str:
    if status == 401:
        return f"check OPENAI_API_KEY: the key the server at {base_url} expects" if base_url else "check OPENAI_API_KEY"
    if status == 404:
        return "is the model id right, and served at this base URL?" if base_url else "is the model id right?"
    return ""
