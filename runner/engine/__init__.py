"""The engine: one orchestrator for every kind of request (plan, skip what is saved, lock, answer, save, summarise)."""

from runner.engine.orchestrator import backoff_delay, run
from runner.engine.plans import ModelSummary, RunReport

__all__ = ["ModelSummary", "RunReport", "backoff_delay", "run"]
