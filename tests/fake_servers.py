"""A local HTTP server speaking OpenAI's and Gemini's wire formats, for testing the real SDKs offline.

In a test::

    with FakeServer(text="Metformin lowers glucose.", delay=0.05) as server:
        ...  # point the SDK at server.openai_base_url or server.gemini_base_url
        server.push(Reply.error(429, retry_after=1), Reply.ok())   # the next two requests
        assert server.count == 2 and server.max_in_flight <= 8

From another process (a run that is killed, a benchmark)::

    python tests/fake_servers.py --port-file port.txt --delay 0.1 --count-file count.txt --log-file log.jsonl

writes the port once it listens, the number of requests received after each one arrives, and one JSON line per
request, and serves until SIGTERM or SIGINT.

Endpoints: ``POST /v1/chat/completions`` (OpenAI chat completions; also without the ``/v1``; ``/v1/completions``
answers the same unless scripted) and
``POST /{v1,v1beta}/models/{model}:generateContent`` (Gemini). Every request is recorded (path, headers, body)
and counted on arrival; ``max_in_flight`` is the most requests the server held at once. Replies come from a
script (``push``, consumed in arrival order) and then from ``default``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

GEMINI_PATH = re.compile(r"^/(?:v1|v1beta|v1alpha)/models/(?P<model>[^/:]+):generateContent$")
# Chat completions, and /completions (log-likelihood scoring: answer it with Reply.raw or a fault).
OPENAI_PATHS = ("/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions")
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                408: "DEADLINE_EXCEEDED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


@dataclass
class Reply:
    """What the server answers to one request. Build with the class methods."""

    status: int = 200
    text: str | None = None  # None: the server's default text
    delay: float | None = None  # None: the server's default delay
    headers: dict[str, str] = field(default_factory=dict)
    # answer | error | quota | hang | invalid-json | body | empty | safety | truncated | cut-json | reset
    kind: str = "answer"
    body: Any = None  # kind "body": this JSON value is the whole answer
    message: str | None = None
    finish: str = "stop"
    model: str | None = None  # the model the answer says it came from (None: the one asked for)
    refusal: str | None = None  # kind "empty": OpenAI's message.refusal
    tool_calls: bool = False  # kind "empty": OpenAI's message.tool_calls instead of content
    reason: str = "SAFETY"  # kind "safety": Gemini's finishReason (or the prompt's blockReason)
    prompt_blocked: bool = False  # kind "safety": Gemini blocks the prompt (no candidates, promptFeedback)
    keep: float = 0.5  # kinds "truncated" and "cut-json": the share of the answer's bytes sent
    # A reasoning model's trace: OpenAI's message.<reasoning_field> (vLLM's reasoning parsers), Gemini's thought part.
    reasoning: str | None = None
    reasoning_field: str = "reasoning_content"
    # OpenAI's usage.completion_tokens_details.reasoning_tokens, Gemini's thoughtsTokenCount (None: 0 and 3).
    reasoning_tokens: int | None = None

    @classmethod
    def ok(cls, text: str | None = None, delay: float | None = None, finish: str = "stop",
           model: str | None = None, reasoning: str | None = None, reasoning_tokens: int | None = None,
           reasoning_field: str = "reasoning_content") -> Reply:
        """A normal answer (``finish`` is the OpenAI finish_reason; Gemini gets its own spelling), saying it was
        served by ``model`` (OpenAI's ``model``, Gemini's ``modelVersion``) when given; with ``reasoning``, a trace
        apart from the answer (OpenAI's ``message.reasoning_content``, or ``reasoning_field``; Gemini's thought
        part before the answer's), and ``reasoning_tokens`` the thinking tokens reported."""
        return cls(text=text, delay=delay, finish=finish, model=model, reasoning=reasoning,
                   reasoning_tokens=reasoning_tokens, reasoning_field=reasoning_field)

    @classmethod
    def empty(cls, finish: str = "stop", refusal: str | None = None, tool_calls: bool = False) -> Reply:
        """A 200 answer with no text: OpenAI ``content: null`` (with ``message.refusal`` or tool calls when
        given), Gemini a candidate without parts."""
        return cls(kind="empty", finish=finish, refusal=refusal, tool_calls=tool_calls)

    @classmethod
    def safety(cls, reason: str = "SAFETY", prompt_blocked: bool = False) -> Reply:
        """A 200 answer stopped for safety, with no text: Gemini's candidate with ``finishReason`` ``reason`` and
        its safety ratings (or, ``prompt_blocked``, no candidate and ``promptFeedback.blockReason``); OpenAI's
        ``finish_reason: content_filter`` with ``content: null``."""
        return cls(kind="safety", reason=reason, prompt_blocked=prompt_blocked)

    @classmethod
    def truncated(cls, keep: float = 0.5) -> Reply:
        """A normal answer of which only ``keep`` of the bytes are sent before the connection closes, while
        Content-Length announces the whole body (a server or proxy that died mid-reply)."""
        return cls(kind="truncated", keep=keep)

    @classmethod
    def cut_json(cls, keep: float = 0.5) -> Reply:
        """A whole HTTP reply whose JSON body is cut after ``keep`` of its bytes (Content-Length matches the cut
        body, as a proxy that cut it sends); ``keep=0`` is an empty body."""
        return cls(kind="cut-json", keep=keep)

    @classmethod
    def reset(cls) -> Reply:
        """Read the request, then reset the connection (TCP RST) without answering."""
        return cls(kind="reset")

    @classmethod
    def error(cls, status: int, message: str | None = None, retry_after: str | float | None = None,
              delay: float | None = None) -> Reply:
        """An error status in the provider's own error format, with an optional Retry-After header."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return cls(status=status, kind="error", message=message, headers=headers, delay=delay)

    @classmethod
    def quota_exhausted(cls) -> Reply:
        """The 429 both providers send when the quota (not the rate) is used up: waiting does not help."""
        return cls(status=429, kind="quota")

    @classmethod
    def hang(cls) -> Reply:
        """Accept the request and never answer (until the server stops)."""
        return cls(kind="hang")

    @classmethod
    def invalid_json(cls) -> Reply:
        """A 200 whose body is not JSON (a broken proxy, a captive portal)."""
        return cls(kind="invalid-json")

    @classmethod
    def raw(cls, body: Any) -> Reply:
        """A 200 whose JSON body is ``body`` as given (a server that speaks something else)."""
        return cls(kind="body", body=body)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reply:
        """Build from ``{"status": 429, "retry_after": 1}``, ``{"kind": "hang"}`` ... (the --script option)."""
        data = dict(data)
        kind = data.pop("kind", None)
        if kind == "hang":
            return cls.hang()
        if kind == "quota":
            return cls.quota_exhausted()
        if kind == "invalid-json":
            return cls.invalid_json()
        if kind == "empty":
            return cls.empty(data.get("finish", "stop"), data.get("refusal"))
        if kind == "safety":
            return cls.safety(data.get("reason", "SAFETY"), bool(data.get("prompt_blocked")))
        if kind in ("truncated", "cut-json"):
            return cls(kind=kind, keep=float(data.get("keep", 0.5)))
        if kind == "reset":
            return cls.reset()
        status = int(data.pop("status", 200))
        if status != 200:
            return cls.error(status, data.get("message"), data.get("retry_after"), data.get("delay"))
        return cls.ok(data.get("text"), data.get("delay"), model=data.get("model"))


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    n: int
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any
    received: float

    @property
    def dialect(self) -> str:
        """``openai`` or ``gemini``."""
        return "gemini" if GEMINI_PATH.match(self.path) else "openai"

    @property
    def model(self) -> str | None:
        """The model the request named (in the body for OpenAI, in the path for Gemini)."""
        match = GEMINI_PATH.match(self.path)
        if match:
            return match.group("model")
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def thinking_config(self) -> dict[str, Any] | None:
        """A Gemini request's ``generationConfig.thinkingConfig`` with snake_case keys (google-genai sends them as
        the ThinkingConfig's field names, which Gemini's JSON accepts like the camelCase ones); None when absent."""
        config = (self.body.get("generationConfig") or {}) if isinstance(self.body, dict) else {}
        thinking = config.get("thinkingConfig")
        if not isinstance(thinking, dict):
            return None
        return {re.sub(r"(?<=[a-z])([A-Z])", r"_\1", k).lower(): v for k, v in thinking.items()}


class FakeServer:
    """A threaded HTTP server on 127.0.0.1 (ephemeral port by default), scriptable and recording."""

    def __init__(self, text: str = "A fake answer.", delay: float = 0.0, port: int = 0,
                 reject_params: tuple[str, ...] = (), count_file: str | Path | None = None,
                 log_file: str | Path | None = None) -> None:
        self.default = Reply.ok()
        self.text = text
        self.delay = delay
        # Parameters the server refuses with a 400, like an OpenAI-compatible server that predates them.
        self.reject_params = tuple(reject_params)
        self.count_file = Path(count_file) if count_file else None
        self.log_file = Path(log_file) if log_file else None
        self.requests: list[RecordedRequest] = []
        # Chooses the reply from the request (e.g. a judge's verdict per rubric item); None: the script or default.
        self.responder: Callable[[RecordedRequest], Reply | None] | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """The base URL for the openai SDK (``OPENAI_BASE_URL``)."""
        return self.url + "/v1"

    @property
    def gemini_base_url(self) -> str:
        """The base URL for google-genai (``HttpOptions(base_url=...)`` or ``GOOGLE_GEMINI_BASE_URL``)."""
        return self.url

    def start(self) -> FakeServer:
        """Serve in a background daemon thread."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests left hanging are dropped without an answer."""
        self._stopping.set()
        if self._thread:  # shutdown() waits for serve_forever, which never ran if the server was not started
            self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour and inspection --------------------------------------------------------------------
    def push(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in arrival order; then ``default`` answers."""
        with self._lock:
            self._script.extend(replies)

    @property
    def count(self) -> int:
        """How many requests have arrived."""
        with self._lock:
            return len(self.requests)

    def reset(self) -> None:
        """Forget recorded requests, the script and the in-flight peak."""
        with self._lock:
            self.requests.clear()
            self._script.clear()
            self.max_in_flight = 0

    # -- called by the handler -----------------------------------------------------------------------
    def _arrive(self, path: str, headers: dict[str, str], body: Any) -> tuple[RecordedRequest, Reply]:
        with self._lock:
            record = RecordedRequest(len(self.requests) + 1, path, headers, body, time.time())
            self.requests.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            reply = self._script.popleft() if self._script else None
            if reply is None and self.responder is not None:
                reply = self.responder(record)
            reply = reply or self.default
            self._write_files(record)
        return record, reply

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _write_files(self, record: RecordedRequest) -> None:
        # Called under the lock, on arrival: a process killed mid-run has still counted what it sent.
        if self.count_file:
            tmp = self.count_file.with_name(self.count_file.name + ".tmp")
            tmp.write_text(f"{record.n}\n", encoding="utf-8")
            os.replace(tmp, self.count_file)
        if self.log_file:
            line = {"n": record.n, "time": record.received, "path": record.path, "model": record.model,
                    "body": record.body}
            with open(self.log_file, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")

    def _wait(self, seconds: float) -> bool:
        """Sleep unless the server stops first; False when it stopped."""
        return not self._stopping.wait(seconds) if seconds > 0 else not self._stopping.is_set()


class _Server(ThreadingHTTPServer):
    request_queue_size = 512  # the default listen backlog of 5 drops connections when many clients start at once


def _handler_for(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        fake = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    fake: FakeServer

    def setup(self) -> None:
        super().setup()
        # No Nagle: otherwise a small body written after the headers waits for the client's delayed ACK (~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the records
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        path = self.path.split("?", 1)[0]
        headers = {name.lower(): value for name, value in self.headers.items()}
        record, reply = self.fake._arrive(path, headers, body)
        try:
            self._respond(record, reply)
        finally:
            self.fake._leave()

    def _respond(self, record: RecordedRequest, reply: Reply) -> None:
        gemini = GEMINI_PATH.match(record.path)
        if not gemini and record.path not in OPENAI_PATHS:
            self._send(404, {"error": {"message": f"no route {record.path}", "type": "invalid_request_error"}})
            return
        if reply.kind == "hang":
            self.fake._stopping.wait()
            self.close_connection = True
            return
        delay = self.fake.delay if reply.delay is None else reply.delay
        if not self.fake._wait(delay):
            self.close_connection = True
            return
        if reply.kind == "invalid-json":
            self._send(200, b"<html>502 Bad Gateway: upstream sent garbage</html>", content_type="text/html")
            return
        if reply.kind == "reset":  # no FIN, no answer: the client reads ECONNRESET
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()  # closed for good once the handler's files close: an RST, not a FIN
            self.close_connection = True
            return
        if reply.kind == "body":
            self._send(200, reply.body)
            return
        if reply.kind in ("error", "quota"):
            body = _gemini_error(reply) if gemini else _openai_error(reply)
            # "{credential}" in a message echoes the key the client sent, as OpenAI's 401 does (partly masked).
            credential = record.headers.get("authorization") or record.headers.get("x-goog-api-key") or ""
            body["error"]["message"] = body["error"]["message"].replace("{credential}", credential)
            self._send(reply.status, body, reply.headers)
            return
        rejected = [p for p in self.fake.reject_params if isinstance(record.body, dict) and p in record.body]
        if rejected and not gemini:
            self._send(400, {"error": {"message": f"Unrecognized request argument supplied: {rejected[0]}",
                                       "type": "invalid_request_error", "param": rejected[0],
                                       "code": "unsupported_parameter"}})
            return
        text = self.fake.text if reply.text is None else reply.text
        body = _gemini_answer(record, text, reply) if gemini else _openai_answer(record, text, reply)
        if reply.kind in ("truncated", "cut-json"):
            data = json.dumps(body).encode("utf-8")
            cut = data[:int(len(data) * reply.keep)]
            if reply.kind == "cut-json":
                self._send(200, cut, reply.headers)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))  # more than is sent
            self.end_headers()
            self.wfile.write(cut)
            self.close_connection = True
            return
        self._send(200, body, reply.headers)

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self._headers_buffer.append(b"\r\n")  # end_headers() without its flush: one write for all
            self.wfile.write(b"".join(self._headers_buffer) + data)
            self._headers_buffer = []
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout): nothing to do
            self.close_connection = True


def _words(value: Any) -> int:
    """A crude, deterministic token count: the words of every ``content`` or ``text`` string in a JSON value."""
    if isinstance(value, dict):
        return sum(len(v.split()) if k in ("content", "text") and isinstance(v, str) else _words(v)
                   for k, v in value.items())
    if isinstance(value, list):
        return sum(_words(v) for v in value)
    return 0


def _openai_answer(record: RecordedRequest, text: str, reply: Reply) -> dict[str, Any]:
    body = record.body if isinstance(record.body, dict) else {}
    prompt, completion = _words(body.get("messages")), len(text.split())
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if reply.reasoning is not None:
        message[reply.reasoning_field] = reply.reasoning
    finish = reply.finish
    if reply.kind in ("empty", "safety"):
        message["content"], completion = None, 0
        message["refusal"] = reply.refusal
        if reply.tool_calls:
            message["tool_calls"] = [{"id": "call_fake", "type": "function",
                                      "function": {"name": "lookup_drug", "arguments": "{}"}}]
        if reply.kind == "safety":
            finish = "content_filter"
    return {"id": f"chatcmpl-fake{record.n}", "object": "chat.completion", "created": int(record.received),
            "model": reply.model or body.get("model", "unknown"), "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                      "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens or 0}}}


def _gemini_answer(record: RecordedRequest, text: str, reply: Reply) -> dict[str, Any]:
    body = record.body if isinstance(record.body, dict) else {}
    prompt = _words(body.get("contents")) + _words(body.get("systemInstruction"))
    completion, thoughts = len(text.split()), 3 if reply.reasoning_tokens is None else reply.reasoning_tokens
    finish = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY"}.get(reply.finish, "STOP")
    parts: list[dict[str, Any]] = [{"text": text}]
    if reply.reasoning is not None:  # a thought summary first (include_thoughts); no answer part when cut off
        parts = [{"text": reply.reasoning, "thought": True}, *([{"text": text}] if text else [])]
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": 0}
    if reply.kind in ("empty", "safety"):
        completion = 0
        candidate["content"] = {"role": "model"}  # no parts, as Gemini sends an empty answer
    if reply.kind == "safety":
        ratings = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
                   {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
        candidate = {"finishReason": reply.reason, "index": 0, "safetyRatings": ratings}
    answer: dict[str, Any] = {"candidates": [candidate]}
    if reply.kind == "safety" and reply.prompt_blocked:
        answer = {"promptFeedback": {"blockReason": reply.reason, "safetyRatings": ratings}}
    return {**answer,
            "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": completion,
                              "thoughtsTokenCount": thoughts, "totalTokenCount": prompt + completion + thoughts},
            "modelVersion": reply.model or record.model, "responseId": f"fake{record.n}"}


def _openai_error(reply: Reply) -> dict[str, Any]:
    if reply.kind == "quota":  # what OpenAI sends when the account is out of credit
        return {"error": {"message": "You exceeded your current quota, please check your plan and billing details.",
                          "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}
    codes = {401: "invalid_api_key", 429: "rate_limit_exceeded", 404: "model_not_found"}
    types = {429: "requests", 401: "invalid_request_error", 400: "invalid_request_error"}
    message = reply.message or {401: "Incorrect API key provided.",
                                429: "Rate limit reached for requests. Please try again in 1s."}.get(
        reply.status, f"fake error {reply.status}")
    return {"error": {"message": message, "type": types.get(reply.status, "server_error"), "param": None,
                      "code": codes.get(reply.status)}}


def _gemini_error(reply: Reply) -> dict[str, Any]:
    status = STATUS_NAMES.get(reply.status, "UNKNOWN")
    if reply.kind == "quota":  # a daily quota: Google says the same words as for a per-minute limit
        return {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                          "message": "You exceeded your current quota, please check your plan and billing details.",
                          "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                                       "violations": [{"quotaMetric": "generativelanguage.googleapis.com/"
                                                                      "generate_content_free_tier_requests",
                                                       "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                                                       "quotaValue": "250"}]}]}}
    details: list[dict[str, Any]] = []
    if reply.status == 429:  # a per-minute limit, with the wait Google asks for
        details = [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                                    "quotaValue": "10"}]},
                   {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]
    message = reply.message or ("API key not valid. Please pass a valid API key." if reply.status in (400, 401)
                                else f"fake error {reply.status}")
    return {"error": {"code": reply.status, "message": message, "status": status, "details": details}}


def spawn(folder: str | Path, *args: str, startup_timeout: float = 20.0) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``python tests/fake_servers.py --port-file FOLDER/fake-server.port ARGS``; return it and its port.

    Stop it with ``proc.terminate(); proc.wait()`` (or SIGKILL: the count and log files are already written).
    """
    port_file = Path(folder) / "fake-server.port"
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--port-file", str(port_file), *args],
                            stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + startup_timeout
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the fake server did not start (exit status {proc.poll()})")
        time.sleep(0.02)
    return proc, int(port_file.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    """Run a standalone server until SIGTERM/SIGINT (for tests that run the tool in a subprocess)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free port)")
    parser.add_argument("--port-file", help="write the port here once listening")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--text", default="A fake answer.", help="the answer text")
    parser.add_argument("--count-file", help="rewritten with the number of requests after each arrives")
    parser.add_argument("--log-file", help="one JSON line per request (path, model, body)")
    parser.add_argument("--reject-param", action="append", default=[], help="answer 400 when this body key is sent")
    parser.add_argument("--script", default="[]",
                        help='JSON list of replies for the first requests, e.g. \'[{"status": 429, '
                             '"retry_after": 1}, {"kind": "hang"}]\'')
    parser.add_argument("--default", default=None, help="JSON reply for every request after the script")
    args = parser.parse_args(argv)
    server = FakeServer(text=args.text, delay=args.delay, port=args.port, reject_params=tuple(args.reject_param),
                        count_file=args.count_file, log_file=args.log_file)
    server.push(*(Reply.from_dict(r) for r in json.loads(args.script)))
    if args.default:
        server.default = Reply.from_dict(json.loads(args.default))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    if args.port_file:
        tmp = Path(args.port_file + ".tmp")
        tmp.write_text(f"{server.port}\n", encoding="utf-8")
        os.replace(tmp, args.port_file)  # atomic: a reader never sees an empty file
    print(f"fake server listening on {server.url}", flush=True)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
