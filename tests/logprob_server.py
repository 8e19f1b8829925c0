"""A local ``/v1/completions`` server with real log-probabilities from a local model, in vLLM's wire format.

It answers ``echo: true`` + ``logprobs`` requests as vLLM does: for each prompt (text, or token ids), every prompt
token with its log-probability (``None`` for the first), the most likely token at each position
(``top_logprobs``), character offsets (``text_offset``), then ``max_tokens`` greedy tokens. ``mode`` makes it
misbehave like other servers: ``no-logprobs`` (answers without them) or ``chat-only`` (404 on completions).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LogprobServer:
    """``with LogprobServer(model, tokenizer) as server:`` then point the SDK at ``server.base_url``."""

    def __init__(self, model: Any, tokenizer: Any, mode: str = "full") -> None:
        self.model, self.tokenizer, self.mode = model, tokenizer, mode
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (ending in /v1)."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> LogprobServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                server.bodies.append(body)
                if server.mode == "chat-only" or self.path.rstrip("/") != "/v1/completions":
                    return self._send(404, {"error": {"message": "Not Found", "type": "not_found"}})
                with server._lock:
                    answer = server.complete(body)
                self._send(200, answer)

            def _send(self, status: int, data: Any) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """The completions answer for a request body."""
        prompts = body["prompt"]
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        choices, used = [], 0
        for index, prompt in enumerate(prompts):
            choice, count = self._choice(prompt, int(body.get("max_tokens", 16)), bool(body.get("echo")))
            choice["index"] = index
            if self.mode == "no-logprobs":
                choice["logprobs"] = None
            choices.append(choice)
            used += count
        return {"id": "cmpl-test", "object": "text_completion", "created": int(time.time()), "model": body["model"],
                "choices": choices, "usage": {"prompt_tokens": used, "completion_tokens": len(prompts),
                                              "total_tokens": used + len(prompts)}}

    def _choice(self, prompt: str | list[int], max_tokens: int, echo: bool) -> tuple[dict[str, Any], int]:
        import torch

        tok = self.tokenizer
        if isinstance(prompt, str):
            encoded = tok(prompt, return_offsets_mapping=True)
            ids, offsets = list(encoded["input_ids"]), [start for start, _ in encoded["offset_mapping"]]
            text = prompt
        else:
            ids = list(prompt)
            text = tok.decode(ids)
            offsets = [len(tok.decode(ids[:i])) for i in range(len(ids))]
        count = len(ids)
        with torch.no_grad():
            logprobs = torch.log_softmax(self.model(torch.tensor([ids])).logits[0].float(), dim=-1)
        values: list[float | None] = [None] + [float(logprobs[i - 1, ids[i]]) for i in range(1, len(ids))]
        top: list[dict[str, float] | None] = [None] + [
            {tok.decode([int(logprobs[i - 1].argmax())]): float(logprobs[i - 1].max())} for i in range(1, len(ids))]
        generated = ""
        for _ in range(max_tokens):  # greedy continuation, one token at a time
            with torch.no_grad():
                last = torch.log_softmax(self.model(torch.tensor([ids])).logits[0, -1].float(), dim=-1)
            nxt = int(last.argmax())
            piece = tok.decode([nxt])
            offsets.append(len(text) + len(generated))
            values.append(float(last[nxt]))
            top.append({piece: float(last[nxt])})
            ids.append(nxt)
            generated += piece
        tokens = [tok.decode([i]) for i in ids]
        block = {"tokens": tokens, "token_logprobs": values, "top_logprobs": top, "text_offset": offsets}
        if not echo:
            block = {k: v[count:] for k, v in block.items()}
        return {"text": (text if echo else "") + generated, "logprobs": block, "finish_reason": "length"}, count
