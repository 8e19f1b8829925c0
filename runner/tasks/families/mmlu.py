"""MMLU's medical subjects: the harness tasks ``mmlu_<subject>``.

Records: ``question``, ``choices`` (4 texts), ``answer`` (0-3 or a letter); the task is ``mmlu_<subject>``
from the ``subject`` key, else from ``task``.
"""

from __future__ import annotations

from typing import Any

from runner.core.questions import Question
from runner.tasks.family import LETTERS, Family, HubDataset, answer_index, option_lines, record_id, require_text

SUBJECTS = ("anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
            "professional_medicine")
PREFIX = "mmlu_"


class MMLU(Family):
    """MMLU, one task per subject; the Open Medical LLM Leaderboard scores the six medical ones."""

    def convert(self, row: dict[str, Any]) -> dict[str, Any]:
        """Question fields of a record, with its task from ``subject`` (or ``task``)."""
        choices = row["choices"]
        if not isinstance(choices, (list, tuple)) or len(choices) < 2:
            raise ValueError("choices must be a list of at least two texts")
        options = {LETTERS[i]: require_text(c, f"choice {i}") for i, c in enumerate(choices)}
        answer = LETTERS[answer_index(row["answer"], len(options), "answer")]
        fields: dict[str, Any] = {"question": require_text(row["question"], "question"), "options": options,
                                  "answer": answer, "id": record_id(row)}
        if row.get("subject"):
            fields["task"] = f"{PREFIX}{row['subject']}"
        elif row.get("task"):
            fields["task"] = row["task"]
        return fields

    def check(self, fields: dict[str, Any], task: str | None, task_given: bool) -> None:
        """A record needs its subject (the task and its prompt's description come from it) unless --task names one."""
        if not task_given and not (task or "").startswith(PREFIX):
            raise ValueError("no subject: an MMLU record needs `subject` (its task is mmlu_<subject>, and the "
                             "prompt names the subject); add it, or give --task mmlu_<subject>")

    def hub_task(self, name: str) -> str | None:
        """The dataset's short name is the task (``mmlu_anatomy``)."""
        return name if name.startswith(PREFIX) else None

    def doc_to_text(self, q: Question) -> str:
        """``{q}\\nA. {A}\\n...Answer:`` (the question stripped)."""
        return f"{q.question.strip()}\n{option_lines(q.options)}Answer:"

    def description(self, task: str | None) -> str:
        """``The following are multiple choice questions (with answers) about {subject}.`` and a blank line."""
        subject = (task or "")[len(PREFIX):].replace("_", " ")
        return f"The following are multiple choice questions (with answers) about {subject}.\n\n"


FAMILY = MMLU(
    name="mmlu",
    listing_order=40,
    leaderboard_order=30,
    keys=(frozenset({"choices", "answer"}),),
    tasks=tuple((PREFIX + s, "MMLU " + s.replace("_", " ")) for s in SUBJECTS),
    aliases={s: PREFIX + s for s in SUBJECTS},
    prefixes=(PREFIX,),
    hub={PREFIX + s: HubDataset("cais/mmlu", s, "test", fewshot_split="dev") for s in SUBJECTS},
    fewshot_sampler="first_n",
    dataset_hint=PREFIX + "<subject>",
)
