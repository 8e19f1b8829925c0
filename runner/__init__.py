"""medical-model-runner: run medical questions through many language models and compare what they say.

The Python API mirrors the command line::

    from runner import run, load_questions
    report = run("questions.jsonl", models=["fake:echo"], personas=["cardiologist"])

Heavy modules (torch, model SDKs) are imported only when a model that needs them runs.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "GenerationSettings",
    "Store",
    "compare_responses",
    "load_questions",
    "resolve_model",
    "resolve_persona",
    "run",
]

_EXPORTS = {
    "run": "runner.engine",
    "load_questions": "runner.core.questions",
    "GenerationSettings": "runner.core.settings",
    "resolve_model": "runner.providers.catalog",
    "resolve_persona": "runner.core.personas",
    "Store": "runner.core.store",
    "compare_responses": "runner.views.terminal",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'runner' has no attribute {name!r}")
