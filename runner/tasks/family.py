"""What a benchmark family is: the base class each module of ``runner.tasks.families`` fills in.

A family (MedQA, MedMCQA, PubMedQA, MMLU) knows how its records look as distributed (the keys that show its
format, how a record becomes a question), where the datasets library finds it, the harness task names it
scores under and their leaderboard columns, and the harness's prompt for its questions.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.core.questions import Question

LETTERS = string.ascii_uppercase
DEFAULT_PERSONA = "medical-exam"


@dataclass(frozen=True)
class HubDataset:
    """Where the datasets library finds a benchmark: hub path, configuration, the split the harness scores and the
    split its few-shot examples come from."""

    path: str
    config: str | None
    split: str
    fewshot_split: str | None = None

    def describe(self, split: str | None = None) -> str:
        """``path (config), split NAME`` for messages that say where questions came from."""
        return f"{self.path}{f' ({self.config})' if self.config else ''}, split {split or self.split}"


@dataclass(frozen=True, eq=False)
class Family:
    """A benchmark family. Its module subclasses this for ``convert`` and ``doc_to_text`` (and whatever else
    differs) and defines ``FAMILY``, an instance holding the attributes below."""

    name: str  # the --format name
    listing_order: int  # place in the --format list; formats are detected in this order too
    leaderboard_order: int  # place of this family's tasks among the leaderboard columns
    keys: tuple[frozenset[str], ...]  # a record is of this format when it has every key of one set
    tasks: tuple[tuple[str, str], ...]  # (harness task name, display name), in leaderboard order
    prefixes: tuple[str, ...]  # task names starting with one of these use this family's prompt
    default_task: str | None = None  # the task of its questions when neither the record nor --task names one
    aliases: Mapping[str, str] = field(default_factory=dict)  # other spellings of task names -> harness name
    hub: Mapping[str, HubDataset] = field(default_factory=dict)  # --dataset short names
    dataset_hint: str = ""  # how the --dataset help names its datasets (default: the family's name)
    fallback: bool = False  # its prompt is the one of tasks no family claims (custom questions)
    persona: str = DEFAULT_PERSONA  # the persona free-text answers are asked under
    fewshot_sampler: str = "default"  # the harness's sampler of its tasks: "default" (seeded random) or "first_n"

    def matches(self, row: dict[str, Any]) -> bool:
        """True when a record's keys show this family's format."""
        present = set(row)
        return any(needed <= present for needed in self.keys)

    def owns(self, task: str | None) -> bool:
        """True when a task name is one of this family's (by prefix)."""
        return bool(self.prefixes) and normal_task(task).startswith(self.prefixes)

    def convert(self, row: dict[str, Any]) -> dict[str, Any]:
        """The Question fields of one raw record (``task`` included when the record names one)."""
        raise NotImplementedError

    def finish(self, questions: list[Question], name: str) -> list[Question]:
        """Questions after a whole file is read (a family may fix what only the whole file shows)."""
        return questions

    def check(self, fields: dict[str, Any], task: str | None, task_given: bool) -> None:
        """ValueError when a converted record cannot be scored as ``task`` (``task_given``: --task named it)."""

    def hub_task(self, name: str) -> str | None:
        """The task of questions loaded as ``--dataset name`` (None: from the records or the default)."""
        return None

    def doc_to_text(self, q: Question) -> str:
        """The harness's prompt for one question (without description or few-shot examples)."""
        raise NotImplementedError

    def doc_to_choices(self, q: Question) -> list[str]:
        """The choice strings the harness scores: the option letters."""
        return list(q.options or {})

    def description(self, task: str | None) -> str:
        """The text the harness puts before everything else (none)."""
        return ""


def normal_task(task: str | None) -> str:
    """A task name lower-cased with ``-`` as ``_``, as family prefixes are written."""
    return (task or "").lower().replace("-", "_")


def option_lines(options: Mapping[str, str] | None) -> str:
    """The options as the harness lists them: ``A. text`` lines, each ending in a newline."""
    return "".join(f"{letter}. {text}\n" for letter, text in (options or {}).items())


def require_text(value: Any, what: str) -> str:
    """``value`` when it is a non-empty string, else ValueError."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string")
    return value


def record_id(row: dict[str, Any]) -> str | None:
    """A record's id from the keys the benchmarks use for one."""
    for key in ("id", "pubid", "PMID", "qid"):
        if row.get(key) is not None:
            return str(row[key])
    return None


def answer_index(value: Any, count: int, what: str) -> int:
    """An answer given as 0-based index or as a letter."""
    if isinstance(value, str) and value.strip().upper() in LETTERS[:count]:
        return LETTERS.index(value.strip().upper())
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < count:
        raise ValueError(f"{what} {value!r} is not an option index 0-{count - 1} or a letter")
    return value
