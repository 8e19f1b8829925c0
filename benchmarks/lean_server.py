"""A lean OpenAI-compatible server for the concurrency benchmark: asyncio, keep-alive, every answer after a delay.

The test suite's ``tests/fake_servers.py`` does far more (fault injection, request logs) on ``http.server``,
whose per-request CPU cost, on a 2-core machine, competes with the runner being measured. This one answers
``POST /v1/chat/completions`` with a fixed completion and does nothing else.

    python benchmarks/lean_server.py --port-file port.txt --delay 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def completion(model: str, text: str) -> bytes:
    """A chat.completion body in OpenAI's wire format."""
    return json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
    }).encode()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, counter: list[int],
                 text: str = "A benchmark answer.") -> None:
    """Serve requests on one keep-alive connection until the client closes it."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = json.loads(await reader.readexactly(length)) if length else {}
            counter[0] += 1
            await asyncio.sleep(delay)
            payload = completion(str(body.get("model", "bench")), text)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(payload)).encode() + b"\r\n\r\n" + payload)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(delay: float, port_file: str | None, text: str = "A benchmark answer.") -> None:
    """Listen on 127.0.0.1 (any free port, written to ``port_file``) until cancelled."""
    counter = [0]
    server = await asyncio.start_server(lambda r, w: handle(r, w, delay, counter, text), "127.0.0.1", 0, backlog=512)
    port = server.sockets[0].getsockname()[1]
    if port_file:
        tmp = Path(port_file + ".tmp")
        tmp.write_text(f"{port}\n", encoding="utf-8")
        os.replace(tmp, port_file)
    async with server:
        await server.serve_forever()


def start_in_process(workdir: Path, delay: float,
                     text: str = "A benchmark answer.") -> tuple[subprocess.Popen[bytes], int]:
    """Start this server in its own process (answering ``text`` after ``delay`` s); return it and its port."""
    port_file = workdir / "port"
    proc = subprocess.Popen([sys.executable, __file__, "--delay", str(delay), "--port-file", str(port_file),
                             "--text", text])
    deadline = time.monotonic() + 20
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the benchmark server did not start")
        time.sleep(0.02)
    return proc, int(port_file.read_text())


def main() -> int:
    """Run until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--port-file")
    parser.add_argument("--text", default="A benchmark answer.", help="the answer every request gets")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.delay, args.port_file, args.text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
