"""The manifest each run writes: settings, models, personas, package versions, questions hash. Never a key."""

from __future__ import annotations

import functools
import platform
import secrets
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.core.credentials import redact

if TYPE_CHECKING:
    from runner.core.personas import Persona
    from runner.core.questions import Question
    from runner.core.settings import GenerationSettings
    from runner.providers.catalog import ModelSpec

PACKAGES = ("medical-model-runner", "torch", "transformers", "accelerate", "bitsandbytes", "sentence-transformers",
            "gguf", "openai", "google-genai", "pydantic", "numpy")


def new_run_id() -> str:
    """A sortable, unique run id: UTC time (to the millisecond, so runs in one second keep their order) and a
    random suffix."""
    now = datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z-" + secrets.token_hex(3)


@functools.cache
def _versions() -> tuple[tuple[str, str | None], ...]:
    found = []
    for name in PACKAGES:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            found.append((name, None))
    return tuple(found)


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape answers (read from metadata once per process)."""
    return dict(_versions())


def build_manifest(run_id: str, questions: Sequence[Question], questions_path: str | Path | None,
                   specs: Sequence[ModelSpec], personas: Sequence[Persona], settings: GenerationSettings,
                   argv: Sequence[str] | None) -> dict[str, Any]:
    """The manifest written at the start of a run (completed with counts at its end)."""
    from runner.core.questions import file_sha256

    path = Path(questions_path) if questions_path else None
    return {
        "run_id": run_id,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": "running",
        "argv": [redact(a) for a in argv] if argv is not None else None,
        "questions": {
            "path": str(path) if path else None,
            "sha256": file_sha256(path) if path and path.is_file() else None,
            "count": len(questions),
        },
        "personas": [{"name": p.name, "sha256": p.sha256, "source": p.source} for p in personas],
        "models": [_model_entry(s) for s in specs],
        "settings": settings.model_dump(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def _model_entry(spec: ModelSpec) -> dict[str, Any]:
    data = spec.model_dump(exclude_none=True)
    if "base_url" in data:
        data["base_url"] = redact(data["base_url"])
    data["name"] = spec.name
    return data
