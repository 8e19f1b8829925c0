"""What a run is made of and what it reports: one model's plan in one question set, its per-persona counts, and
the run's report (exit status, manifest, why it stopped)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runner.core.personas import Persona
from runner.core.settings import GenerationSettings
from runner.core.store import SetStore
from runner.engine.kinds import Kind, Work
from runner.engine.variants import Conflict
from runner.providers.catalog import ModelSpec


@dataclass
class ModelSummary:
    """Counts for one model under one persona, for the closing table and the manifest."""

    model: str
    label: str
    persona: str
    answered: int = 0
    skipped: int = 0
    failed: int = 0
    replaced: int = 0  # saved answers this run answered anew (--force, or the question changed)
    changed: int = 0  # of those, answers to a question whose text changed since
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cost_usd: float | None = None
    error: str | None = None
    unsaved: int = 0  # of the failed, answers that arrived but could not be saved (counted failed)
    not_asked: int = 0  # answers left unasked because the run stopped early (a full disk)


@dataclass
class RunReport:
    """What a run did: per-model summaries, where its manifest is, and whether it was interrupted."""

    run_id: str
    output_dir: Path
    set_name: str = ""
    tag: str | None = None
    kind: str = "generate"  # the request kind (``grade``: the models were judges)
    summaries: list[ModelSummary] = field(default_factory=list)
    manifest_path: Path | None = None
    interrupted: bool = False
    stopped: str | None = None  # why the run stopped before asking everything (a full disk), else None
    problems: list[str] = field(default_factory=list)  # run-level problems, e.g. a manifest that was not written

    @property
    def exit_status(self) -> int:
        """0 when every answer exists, 1 when some failed (or a model could not run, or the run stopped early)."""
        failed = any(s.failed or s.error or s.not_asked for s in self.summaries)
        return 1 if failed or self.stopped or self.problems else 0


@dataclass
class Plan:
    """One model's work in one set: what is left to ask, the per-persona counts, and variants it would replace."""

    spec: ModelSpec
    kind: Kind
    space: SetStore
    tag: str | None
    label: str  # the model's label, ``label@tag`` for a variant
    folder: str
    personas: list[Persona]
    pending: list[Work]
    summaries: dict[str, ModelSummary]
    conflicts: list[Conflict] = field(default_factory=list)
    settings: GenerationSettings | None = None  # the run's settings with this model's card defaults
