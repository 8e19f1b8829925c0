"""Shared fixtures. Nothing here touches the network or a model hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Belt and braces: the test suite never reaches a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _reset_fake() -> None:
    from runner.providers.fake import FakeGenerator

    FakeGenerator.reset()


def sigint_as_a_terminal_sends_it() -> None:
    """``preexec_fn`` for a child a test interrupts: SIGINT at its default, as in a terminal. A shell without job
    control starts a background job (``pytest ... &``) with SIGINT ignored, which every child would inherit: its
    Python would then never see Ctrl-C, whatever the tool does."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def write_jsonl(path: Path, rows: list[object]) -> Path:
    """Write rows (dicts, or raw strings written as-is) as a JSONL file."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def drug_questions(tmp_path: Path, count: int) -> Path:
    """A questions file of ``count`` distinct questions ("What is drug number i?")."""
    return write_jsonl(tmp_path / f"q{count}.jsonl", [{"question": f"What is drug number {i}?"}
                                                      for i in range(count)])


def run_one_model(tmp_path: Path, entry: object, count: int = 1, **settings: object) -> tuple[object, list[dict]]:
    """Run ``count`` drug questions through one model entry as the cardiologist; the report and the records."""
    from runner.core.settings import GenerationSettings
    from runner.engine import run

    out = tmp_path / "out"
    questions = drug_questions(tmp_path, count)
    report = run(questions, [entry], ["cardiologist"], GenerationSettings(**settings),
                 output_dir=out, progress=False)
    # Answers live under the question set named after the questions file (``q<count>``).
    return report, [json.loads(p.read_text()) for p in sorted(out.glob(f"{questions.stem}/cardiologist/*/*.json"))]


@pytest.fixture
def questions_file(tmp_path: Path) -> Path:
    """Three plain questions and one multiple-choice question."""
    return write_jsonl(tmp_path / "questions.jsonl", [
        {"id": "a", "question": "What are the symptoms of type 2 diabetes?"},
        {"id": "b", "question": "How does metformin work?"},
        {"id": "c", "question": "What do statins do?"},
        {"id": "d", "question": "Which is a statin?", "options": {"A": "Atorvastatin", "B": "Insulin"},
         "answer": "A", "task": "demo"},
    ])


@pytest.fixture
def server() -> Iterator[object]:
    """A local server speaking OpenAI's and Gemini's wire formats, answering "A fake answer." at once."""
    from tests.fake_servers import FakeServer

    with FakeServer() as srv:
        yield srv


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python medical_model_runner.py ARGS`` in a subprocess, in ``tmp_path`` by default."""

    def _run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        full_env.update({"NO_PROGRESS": "1", "PYTHONPATH": str(REPO)})
        full_env.update(env or {})
        return subprocess.run([sys.executable, str(REPO / "medical_model_runner.py"), *args], cwd=cwd or tmp_path,
                              env=full_env, capture_output=True, text=True, timeout=timeout)

    return _run


def watch_streaming(monkeypatch: pytest.MonkeyPatch, view: str) -> tuple[list[Path], list[int]]:
    """Watch a view read a store as a stream: every record file it parses from now on (appended to the first list)
    and, for each ``Store.iter_records`` it finishes, how many more Records are alive than when it began (the second
    list). A snapshot holding every record fails the test (``view`` names the view in that message)."""
    import gc

    import runner.core.records as records_module
    from runner.core.records import Record
    from runner.core.store import Store

    parsed: list[Path] = []
    alive_after: list[int] = []
    read_json_file, snapshot, iter_records = records_module.read_json_file, Store.snapshot, Store.iter_records

    def counting(path: Path, **kwargs: object) -> object:
        if Path(path).stem.isdigit():
            parsed.append(Path(path))
        return read_json_file(path, **kwargs)

    def light_only(self: Store, *args: object, **kwargs: object) -> object:
        assert kwargs.get("records") is False, f"the {view} took a snapshot holding every record"
        return snapshot(self, *args, **kwargs)  # type: ignore[arg-type]

    def live() -> int:
        return sum(type(o) is Record for o in gc.get_objects())  # isinstance would wake lazy module proxies

    def watched(self: Store, *args: object, **kwargs: object) -> object:
        before = live()
        yield from iter_records(self, *args, **kwargs)  # type: ignore[arg-type]
        alive_after.append(live() - before)

    monkeypatch.setattr(records_module, "read_json_file", counting)
    monkeypatch.setattr(Store, "snapshot", light_only)
    monkeypatch.setattr(Store, "iter_records", watched)
    return parsed, alive_after
