"""The benchmark families, found in ``runner.tasks.families``, and the lookups everything else reads.

Loading (format detection, converters, hub datasets), the harness prompts, scoring's task names and the
leaderboard's columns, and the ``--format`` choices all come from ``FAMILIES``. A module of
``runner.tasks.families`` that defines ``FAMILY`` is a family; nothing else needs to list it.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from runner.core.errors import UsageError
from runner.tasks.family import DEFAULT_PERSONA, Family, HubDataset

__all__ = ["DEFAULT_PERSONA", "FAMILIES", "Family", "HubDataset", "dataset_hints", "discover", "family_by_format",
           "family_of", "family_of_record", "format_names", "hub_dataset", "leaderboard_tasks", "task_aliases"]


def discover(package: str = "runner.tasks.families") -> tuple[Family, ...]:
    """The ``FAMILY`` of every module in ``package``, in listing order."""
    path = importlib.import_module(package).__path__
    found = []
    for info in pkgutil.iter_modules(path):
        family = getattr(importlib.import_module(f"{package}.{info.name}"), "FAMILY", None)
        if isinstance(family, Family):
            found.append(family)
    return tuple(sorted(found, key=lambda f: (f.listing_order, f.name)))


FAMILIES: tuple[Family, ...] = discover()


def dataset_hints() -> list[str]:
    """How the ``--dataset`` help names each family's datasets (``medqa``, ``mmlu_<subject>``)."""
    return [f.dataset_hint or f.name for f in FAMILIES]


def format_names() -> list[str]:
    """The ``--format`` names, in listing order."""
    return [f.name for f in FAMILIES]


def family_by_format(name: str) -> Family:
    """The family of a ``--format`` name; UsageError for an unknown one."""
    for family in FAMILIES:
        if family.name == name:
            return family
    raise UsageError(f"unknown format {name!r}; known formats: {', '.join(format_names())}")


def family_of(task: str | None) -> Family:
    """The family whose prompt a task uses: the one claiming its name, else the fallback (MedQA's)."""
    for family in FAMILIES:
        if family.owns(task):
            return family
    for family in FAMILIES:
        if family.fallback:
            return family
    raise LookupError(f"no benchmark family claims task {task!r} and none is the fallback")


def family_of_record(row: dict[str, Any]) -> Family | None:
    """The family whose format a raw record's keys show (the first in listing order), or None."""
    for family in FAMILIES:
        if family.matches(row):
            return family
    return None


def hub_dataset(name: str) -> tuple[Family, HubDataset] | None:
    """The family and hub location of a ``--dataset`` short name (``medqa``, ``mmlu_anatomy``), or None."""
    for family in FAMILIES:
        if name in family.hub:
            return family, family.hub[name]
    return None


def leaderboard_tasks() -> list[tuple[str, str]]:
    """(harness task name, display name) of every known task, in the leaderboard's column order."""
    ordered = sorted(FAMILIES, key=lambda f: (f.leaderboard_order, f.name))
    return [task for family in ordered for task in family.tasks]


def task_aliases() -> dict[str, str]:
    """Other spellings of task names (``medqa``, ``pubmed_qa``, ``anatomy``) -> the harness name."""
    return {alias: task for family in FAMILIES for alias, task in family.aliases.items()}
