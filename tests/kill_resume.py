"""Kill a command with SIGKILL once some records are saved, then run it again: what judge-kind tests share."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import REPO
from tests.fake_servers import FakeServer


def kill_then_resume(args: list[str], server: FakeServer, folder: Path, key: str,
                     first: int = 5) -> tuple[dict[str, Any], subprocess.CompletedProcess[str], int]:
    """Run ``medical_model_runner.py ARGS`` against ``server`` (an OpenAI-compatible judge), SIGKILL it once
    ``first`` records are in ``folder``, then run it again to the end.

    Returns the records saved before the kill (every one parses: none is torn), the second run, and how many
    requests the second run sent.
    """
    env = {**os.environ, "NO_PROGRESS": "1", "PYTHONPATH": str(REPO), "OPENAI_API_KEY": key,
           "OPENAI_BASE_URL": server.openai_base_url}
    command = [sys.executable, str(REPO / "medical_model_runner.py"), *args]
    proc = subprocess.Popen(command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(folder.glob("*.json"))) < first:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    saved = {p.name: json.loads(p.read_text()) for p in folder.glob("*.json")}
    before = server.count
    done = subprocess.run(command, env=env, text=True, capture_output=True, timeout=120)
    return saved, done, server.count - before
