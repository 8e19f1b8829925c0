"""OpenAI, and any OpenAI-compatible server (vLLM, Ollama, LM Studio, llama.cpp), through the official SDK.

The SDK's own retries are off (``max_retries=0``): the engine retries, once, in one place. The persona is the
system message (the ``developer`` message for o-series and gpt-5 reasoning models; none when the persona is empty),
followed by the question, or by a conversation's turns as they are. ``max_completion_tokens`` is sent, and when a
compatible server refuses it, ``max_tokens`` from then on.

A reply with no text fails that answer (so the next run asks again): an empty one is retried within the run, a
refusal or a content-filter stop is not (asking again at once gives the same). The model the server says it served
is recorded, with a warning when it is not the one asked for (a dated snapshot of it is).

Reasoning models: the answer's ``text`` is only the final answer and ``reasoning`` the trace, taken from
``message.reasoning_content`` (vLLM's reasoning parsers, DeepSeek; ``message.reasoning`` in newer vLLM) or else from
the ``<think>``…``</think>`` block in the content (the model's ``think_delimiters`` when set); OpenAI's own reasoning
models hide the trace and report only its tokens (``usage.completion_tokens_details.reasoning_tokens``). An answer cut
off while still thinking is kept with an empty text, its trace, ``finish_reason: length`` and a warning.
``--reasoning-effort`` is sent as ``reasoning_effort`` to OpenAI's reasoning models and to every OpenAI-compatible
server (vLLM takes it for reasoning models); for OpenAI's other models, ``--thinking-budget``, and budget forcing
(``--min-thinking``, ``--wait``) the model cannot run, said once when it is loaded (``thinking_controls_problem``).

This module imports the SDK only inside ``load``/``classify``, so the helpers here (``parse_retry_after``,
``status_error``, ``body_error``, ``transport_error``, ``served_model_warning``) are cheap to import from the Gemini
provider too.
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
from runner.core.errors import ModelUnavailable, ProviderError
from runner.core.settings import GenerationSettings
from runner.providers.base import Generator, LoglikRequest, Request, Result
from runner.providers.reasoning import DEFAULT_DELIMITERS, split

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
OPENAI_HINT = "is the base URL an OpenAI-compatible API ending in /v1?"
OPENAI_HOST = "api.openai.com"
# The warning kept with an answer cut off while still thinking (both API providers; ``{limit}``: max_new_tokens).
CUT_OFF_WHILE_THINKING = ("cut off while still thinking: the token limit ({limit}) was reached before the final "
                          "answer (the thinking counts towards it); the trace is kept and the answer is empty; raise "
                          "--max-new-tokens")
BUDGET_FORCING_ONLY_LOCAL = ("--min-thinking and --wait are budget forcing for local hf: models (the runner writes "
                             "the trace itself); an API model cannot be made to think longer: drop them for it")
# Requests in flight past which one process stops getting faster: measured with ``benchmarks/bench_api.py --levels``
# on the 2-core development machine (issue 18), the requests/s of one runner process rose 1.3x from 64 to 128 in
# flight and little or nothing from 128 to 256, where the event loop's CPU (HTTP client, SDK, saving) is the limit.
MAX_USEFUL_CONCURRENCY = 128
TOO_MUCH_CONCURRENCY = ("--concurrency {n} is above {limit}: measured on a 2-core machine, one runner process stops "
                        "getting faster past {limit} requests in flight (at about 300-400 requests/s its own CPU, "
                        "one event loop, is the limit, not the server); higher values add open connections, not "
                        "throughput: to go faster, run several processes (on different models or question files) or "
                        "use a faster machine")
# What may follow a requested model id in the served one and still name the same model: a dated or numbered
# snapshot (gpt-4o-2024-08-06, gpt-4-0613, gemini-1.5-flash-002, claude-3-5-sonnet@20240620) or Ollama's :latest.
SNAPSHOT_SUFFIX = re.compile(r"^(?:(?:-\d+)+|@\d+|:latest)$")


def is_reasoning_model(model_id: str) -> bool:
    """True for o-series and gpt-5 models, which refuse sampling parameters and prefer the developer role."""
    return bool(REASONING_MODEL.match(model_id))


def thinking_controls_problem(model_id: str, settings: GenerationSettings, base_url: str | None) -> str | None:
    """Why ``model_id`` cannot take the thinking settings asked for (None when it can): a thinking budget (no such
    control at OpenAI or in the chat completions API), budget forcing (local models only), or a reasoning effort for
    one of OpenAI's own models that does not reason. Any OpenAI-compatible server (a ``base_url`` that is not
    api.openai.com) is sent ``reasoning_effort`` as asked: vLLM takes it for the reasoning models it serves."""
    if settings.thinking_budget is not None:
        return ("--thinking-budget has no OpenAI counterpart (OpenAI and OpenAI-compatible servers take no thinking "
                "budget); use --reasoning-effort low|medium|high instead")
    if settings.min_thinking is not None or settings.wait:
        return BUDGET_FORCING_ONLY_LOCAL
    if settings.reasoning_effort is not None and is_openai_host(base_url) and not is_reasoning_model(model_id):
        return (f"model {model_id} has no reasoning effort control (OpenAI's reasoning models, o-series and gpt-5, "
                "have one); drop --reasoning-effort for it")
    return None


def is_openai_host(base_url: str | None) -> bool:
    """True for OpenAI's own API: no base URL, or one on api.openai.com."""
    if not base_url:
        return True
    from urllib.parse import urlsplit

    return (urlsplit(base_url).hostname or "").lower() == OPENAI_HOST


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
    message = redact(" ".join(str(message).split()), limit=MAX_MESSAGE)  # cut before scanning: linear, bounded
    if quota_exhausted:
        return ProviderError(f"HTTP {status}: quota exhausted, not retried: {message}", retryable=False)
    retryable = status in RETRYABLE_STATUS or status >= 500
    if not retryable and hint:
        message = f"{message} ({hint})"
    return ProviderError(f"HTTP {status}: {message}", retryable=retryable,
                         retry_after=retry_after if retryable else None)


def not_json_error(detail: str, hint: str = OPENAI_HINT) -> ProviderError:
    """The server answered 200 with something that is not JSON: most often a base URL that is not an API."""
    # Not retried: a wrong base URL (a web page, a proxy login) does not heal by waiting; a proxy that breaks
    # now and then sends 502/503, which are retried.
    return ProviderError(f"the server's answer is not JSON ({hint}): {redact(detail, limit=200)}", retryable=False)


def body_error(text: str, hint: str = OPENAI_HINT) -> ProviderError:
    """A 200 whose body does not parse as JSON, by what it looks like.

    Empty, or JSON cut off before its end (a connection or proxy that broke mid-reply): retryable, as asking again
    gets the whole answer. JSON that is whole but malformed, or not JSON at all (a web page, a proxy login: most
    often a base URL that is not an API): not retried, with ``hint``.
    """
    body = text.strip()
    if not body:
        return ProviderError("empty reply: the server answered HTTP 200 with an empty body", retryable=True)
    if body[0] in "{[":
        if _cut_off(body):
            tail = redact(" ".join(body[-60:].split()))
            return ProviderError(f"truncated reply: the server's JSON stops before its end after {len(text)} "
                                 f"characters (…{tail})", retryable=True)
        return ProviderError(f"the server's answer is malformed JSON ({hint}): {redact(body, limit=200)}",
                             retryable=False)
    return not_json_error(text, hint)


def decode_error(error: BaseException, hint: str = OPENAI_HINT) -> ProviderError:
    """``body_error`` for an SDK's JSON decoding exception (the body is the JSONDecodeError's ``doc``)."""
    for link in _chain(error):
        if isinstance(link, json.JSONDecodeError):
            return body_error(link.doc, hint)
    return not_json_error(str(error), hint)


def _cut_off(body: str) -> bool:
    """True when ``body`` (starting with ``{`` or ``[``) stops inside a string or an open object or array, and no
    bracket closed out of turn before that: the beginning of a JSON document whose end is missing."""
    closers: list[str] = []
    in_string = escaped = False
    for ch in body:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            closers.append("}" if ch == "{" else "]")
        elif ch in "}]" and (not closers or closers.pop() != ch or not closers):
            return False  # out of turn, or the document ended: whatever is wrong is not a missing end
    return bool(closers)


def _chain(error: BaseException) -> list[BaseException]:
    """The exception and its causes (``__cause__``, else ``__context__``), outermost first."""
    chain: list[BaseException] = []
    link: BaseException | None = error
    while link is not None and all(link is not seen for seen in chain):
        chain.append(link)
        link = link.__cause__ or link.__context__
    return chain


def _type_name(error: BaseException) -> str:
    module = type(error).__module__.split(".")[0]
    return type(error).__name__ if module == "builtins" else f"{module}.{type(error).__name__}"


def describe_chain(error: BaseException) -> str:
    """``httpx.ReadError: [Errno 104] Connection reset by peer``: the outer exception's type and every distinct
    message along its causes (transport errors often carry an empty message and the detail in a cause)."""
    messages: list[str] = []
    for link in _chain(error):
        message = " ".join(str(link).split())
        if message and not any(message in seen for seen in messages):
            messages.append(message)
    return ": ".join([_type_name(error), *messages])


def transport_error(error: BaseException, where: str) -> ProviderError:
    """A connection that failed or broke, said as what happened with its cause chain; always retryable."""
    chain = _chain(error)
    names = {type(link).__name__ for link in chain}
    text = " ".join(str(link) for link in chain).lower()
    if names & {"ConnectError", "ConnectionRefusedError", "ConnectTimeout", "gaierror"}:
        what = f"cannot connect to {where}"
    elif "ConnectionResetError" in names or "connection reset" in text:
        doing = "sending the request" if "WriteError" in names else "reading the reply"
        what = f"connection reset by the server ({where}) while {doing}"
    elif "complete message body" in text or "incomplete" in text:
        what = f"truncated reply: the connection to {where} closed mid-body"
    elif "without sending a response" in text or "disconnected" in text:
        what = f"the server ({where}) closed the connection without replying"
    else:
        what = f"connection error with {where}"
    return ProviderError(redact(f"{what} ({describe_chain(error)})", limit=MAX_MESSAGE), retryable=True)


def served_model_warning(requested: str, served: Any) -> str | None:
    """A warning when the model a server says it served is not the one asked for; None when it is, or is a dated
    snapshot of it (``gpt-4o`` served as ``gpt-4o-2024-08-06``), or the server does not say."""
    if not isinstance(served, str) or not served.strip():
        return None
    want, got = requested.rsplit("/", 1)[-1].lower(), served.strip().rsplit("/", 1)[-1].lower()
    if got == want or (got.startswith(want) and SNAPSHOT_SUFFIX.match(got[len(want):])):
        return None
    return f"the server says it served model {served.strip()[:100]!r}, not the requested {requested!r}"


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
        problem = thinking_controls_problem(self.spec.model_id, self.settings, self.base_url)
        if problem:  # before any request: the whole model cannot run with these settings
            raise ModelUnavailable(problem)
        if self.base_url and not any(os.environ.get(v, "").strip() for v in info.key_env_vars):
            key = PLACEHOLDER_KEY
        else:
            key = get_key(info.key_env_vars, self.spec.label)
        self.token_field = "max_completion_tokens"
        self.reasoning = is_reasoning_model(self.spec.model_id)
        # The pool sized to --concurrency, keep-alive included (the SDK's defaults: up to 1,000 connections, 100 of
        # them kept alive), so every connection the run opens is reused and none is closed while requests wait.
        concurrency = self.settings.concurrency
        if concurrency > MAX_USEFUL_CONCURRENCY:  # once per model and run, before any request
            log.warning("warning: %s: %s", self.spec.label,
                        TOO_MUCH_CONCURRENCY.format(n=concurrency, limit=MAX_USEFUL_CONCURRENCY))
        limits = httpx_limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client: Any = AsyncOpenAI(api_key=key, base_url=self.base_url, max_retries=0,
                                        timeout=self.settings.timeout_s,
                                        http_client=DefaultAsyncHttpxClient(verify=tls_context(), limits=limits))

    def messages(self, request: Request) -> list[dict[str, str]]:
        """The persona as the system (or developer) message, then the question, or the conversation's turns as they
        are. An empty persona (``--persona none``) sends no system message."""
        role = "developer" if self.reasoning else "system"
        system = [{"role": role, "content": request.system_prompt}] if request.system_prompt else []
        if request.messages is not None:
            return system + [{"role": m.role, "content": m.content} for m in request.messages]
        return [*system, {"role": "user", "content": request.user_message}]

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
            if s.frequency_penalty is not None:
                params["frequency_penalty"] = s.frequency_penalty
        if s.reasoning_effort is not None:  # load() refused it for OpenAI's models that do not reason
            params["reasoning_effort"] = s.reasoning_effort
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
            raise body_error(text) from None

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
            raise body_error(text) from None
        sums, greedy, tokens = parse_logprobs(data, prompts, where)
        result = Result(logprobs=sums, greedy=greedy, prompt_tokens=tokens, finish_reason="loglik",
                        latency_s=time.perf_counter() - start)
        self._note_served_model(result, data)
        return result

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
            shown = redact(json.dumps(data, ensure_ascii=False), limit=200)
            raise ProviderError(f"the server's answer has no choices: {shown}", retryable=False)
        choice = choices[0]
        message = _mapping(choice.get("message"))
        content = message.get("content")
        text = content if isinstance(content, str) else "" if content is None else str(content)
        finish = choice.get("finish_reason")
        reasoning, text, unfinished = self._thinking(message, text)
        if not text.strip() and finish != "length" and not unfinished:
            raise _empty_reply(content, finish, message, choice, reasoning)
        usage = _mapping(data.get("usage"))
        result = Result(text=text, latency_s=latency, finish_reason=finish, reasoning=reasoning,
                        reasoning_tokens=_count(_mapping(usage.get("completion_tokens_details")).get(
                            "reasoning_tokens")),
                        prompt_tokens=_count(usage.get("prompt_tokens")),
                        completion_tokens=_count(usage.get("completion_tokens")))
        if not text.strip():  # finish_reason "length", or a trace that never ended
            # Kept, with a warning: asking again with the same limit gives the same.
            if finish != "length":  # the model ended (or the server stopped it) inside its trace
                result.warnings.append(f"the model stopped while still thinking (finish_reason {finish}): there is "
                                       "no final answer after its trace")
            elif reasoning is not None or result.reasoning_tokens:
                result.warnings.append(CUT_OFF_WHILE_THINKING.format(limit=self.settings.max_new_tokens))
            else:  # no trace and no count: OpenAI's reasoning models may still have spent the limit thinking
                result.warnings.append("empty answer: the token limit was reached (reasoning tokens count towards "
                                       "it); raise --max-new-tokens")
        elif finish == "content_filter":
            result.warnings.append(f"the answer was cut short by the content filter{_filtered(choice)}")
        self._note_served_model(result, data)
        return result

    def _thinking(self, message: dict[str, Any], text: str) -> tuple[str | None, str, bool]:
        """(the trace, the final answer, whether the trace never ended) of one reply.

        The trace is the message's ``reasoning_content`` (vLLM's reasoning parsers, DeepSeek) or ``reasoning``
        (newer vLLM) when the server sent one; else the part of the content inside the model's think delimiters.
        No trace: None, and the content is the answer as it came.
        """
        for field in ("reasoning_content", "reasoning"):
            value = message.get(field)
            if isinstance(value, str) and value.strip():
                return value.strip(), text, False
        delimiters = self.spec.think_delimiters or DEFAULT_DELIMITERS
        parts = split(text, delimiters)
        if parts.unfinished or delimiters[1] in text:
            return parts.reasoning, parts.answer, parts.unfinished
        return None, text, False

    def _note_served_model(self, result: Result, data: dict[str, Any]) -> None:
        """Record the model the server says it served, and warn when it is not the one asked for."""
        served = data.get("model")
        if isinstance(served, str) and served.strip():
            result.served_model = served.strip()[:200]
            warning = served_model_warning(self.spec.model_id, served)
            if warning:
                result.warnings.append(warning)

    def classify(self, error: BaseException) -> ProviderError:
        """429 (but not an exhausted quota), 408, 409, 5xx, connection errors and timeouts are retryable."""
        import openai

        if isinstance(error, ProviderError):
            return error
        if isinstance(error, openai.APITimeoutError):
            return ProviderError(f"timed out after {self.settings.timeout_s:g} s", retryable=True)
        if isinstance(error, openai.APIConnectionError):
            return transport_error(error.__cause__ or error, self._where())
        if isinstance(error, openai.APIStatusError):
            body = error.body if isinstance(error.body, dict) else {}
            detail = body.get("error") if isinstance(body.get("error"), dict) else body
            quota = "insufficient_quota" in (str(detail.get("code")), str(detail.get("type")), str(error.code))
            message = detail.get("message") if isinstance(detail.get("message"), str) else error.message
            return status_error(error.status_code, message, quota_exhausted=quota,
                                retry_after=parse_retry_after(error.response.headers),
                                hint=_hint(error.status_code, self.base_url))
        if isinstance(error, (openai.APIResponseValidationError, json.JSONDecodeError)):
            return decode_error(error)
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


def httpx_limits(**limits: int) -> Any:
    """``httpx.Limits`` of the httpx the openai SDK uses (its default limits' class)."""
    from openai._constants import DEFAULT_CONNECTION_LIMITS

    return type(DEFAULT_CONNECTION_LIMITS)(**limits)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process (CA bundle: ``SSL_CERT_FILE`` or certifi's, as httpx uses).

    Building it loads the CA bundle, ~30 ms: paid once, not at every run or client.
    """
    import certifi

    return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())


def _empty_reply(content: Any, finish: Any, message: dict[str, Any], choice: dict[str, Any],
                 reasoning: str | None = None) -> ProviderError:
    """Why a chat completion has no text. A refusal, a content-filter stop or tool calls are the model's final word
    for this question: not retried within the run (the next run asks again). A plain empty reply is retried (one
    whose model only thought, too: the trace is said, not kept)."""
    shown = "null" if content is None else "empty" if content == "" else "blank"
    said = f"empty reply: content {shown}, finish_reason {finish}"
    if reasoning:  # the model thought, then gave no answer
        shown = "the trace only" if isinstance(content, str) and content.strip() else shown
        said = (f"empty reply: no answer after {len(reasoning):,} characters of reasoning (content {shown}, "
                f"finish_reason {finish})")
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal.strip():
        return ProviderError(f"the model refused: {' '.join(refusal.split())[:MAX_MESSAGE]} ({said})",
                             retryable=False)
    if finish == "content_filter":
        return ProviderError(f"{said}: stopped by the content filter{_filtered(choice)}", retryable=False)
    calls = message.get("tool_calls") or message.get("function_call")
    if calls:
        items = calls if isinstance(calls, list) else [calls]
        names = [str(_mapping(_mapping(c).get("function", c)).get("name") or "?") for c in items]
        return ProviderError(f"{said}: the model called tools ({', '.join(names)[:200]}) instead of answering",
                             retryable=False)
    return ProviderError(said, retryable=True)


def _filtered(choice: dict[str, Any]) -> str:
    """`` (hate: high, violence: medium)``: the categories Azure's ``content_filter_results`` says were filtered."""
    results = _mapping(choice.get("content_filter_results"))
    hits = [f"{name}: {_mapping(v).get('severity') or 'filtered'}" for name, v in results.items()
            if _mapping(v).get("filtered")]
    return f" ({', '.join(hits)})" if hits else ""


def _hint(status: int, base_url: str | None) -> str:
    if status == 401:
        return f"check OPENAI_API_KEY: the key the server at {base_url} expects" if base_url else "check OPENAI_API_KEY"
    if status == 404:
        return "is the model id right, and served at this base URL?" if base_url else "is the model id right?"
    return ""
