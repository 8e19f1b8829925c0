"""MedMCQA: the harness task ``medmcqa`` (the validation split; the test split has no public answers).

Records: ``question``, ``opa``..``opd``, ``cop`` (0-3 as on the hub; 1-4 in the original release, recognised
when a 4 appears and no 0 anywhere in the file, whatever ``--limit`` takes; or a letter).
"""

from __future__ import annotations

from typing import Any

from runner.core.errors import InputError
from runner.core.questions import Question
from runner.tasks.family import Family, HubDataset, option_lines, record_id, require_text


class MedMCQA(Family):
    """MedMCQA, four options."""

    def convert(self, row: dict[str, Any]) -> dict[str, Any]:
        """Question fields of a record; the raw ``cop`` stays in ``extra`` until ``finish`` sees the whole file."""
        options = {letter: require_text(row[key], key)
                   for letter, key in zip("ABCD", ("opa", "opb", "opc", "opd"), strict=True)}
        cop = row["cop"]
        if cop is None or cop == -1:
            raise ValueError("cop is missing (-1): this split has no public answers")
        if isinstance(cop, str) and cop.strip().lower() in "abcd" and cop.strip():
            index = "abcd".index(cop.strip().lower())
        else:
            index = int(cop)
            if not 0 <= index <= 4:
                raise ValueError(f"cop {cop!r} is not 0-3 (or 1-4)")
        extra = {"cop": cop}
        if row.get("subject_name"):
            extra["subject"] = row["subject_name"]
        return {"question": require_text(row["question"], "question"), "options": options, "answer": "ABCDE"[index],
                "id": record_id(row), "extra": extra}

    def finish(self, questions: list[Question], name: str) -> list[Question]:
        """The answers counted from 1 when the file shows it (a 4 and no 0), and ``cop`` dropped from extra."""
        raw = [q.extra.get("cop") for q in questions]
        ints = [c for c in raw if isinstance(c, int) and not isinstance(c, bool)]
        one_based = bool(ints) and 4 in ints and 0 not in ints
        fixed = []
        for q in questions:
            cop = q.extra.get("cop")
            answer = q.answer
            if one_based and isinstance(cop, int):
                answer = "ABCD"[cop - 1]
            if answer not in "ABCD":
                raise InputError(name, q.line, f"cop {cop!r} is outside 0-3")
            extra = {k: v for k, v in q.extra.items() if k != "cop"}
            fixed.append(Question(n=q.n, question=q.question, line=q.line, id=q.id, options=q.options, answer=answer,
                                  context=q.context, task=q.task, extra=extra))
        return fixed

    def doc_to_text(self, q: Question) -> str:
        """``Question: {q}\\nChoices:\\nA. {A}\\n...Answer:``."""
        return f"Question: {q.question}\nChoices:\n{option_lines(q.options)}Answer:"


FAMILY = MedMCQA(
    name="medmcqa",
    listing_order=20,
    leaderboard_order=10,
    keys=(frozenset({"opa", "opb", "cop"}),),
    default_task="medmcqa",
    tasks=(("medmcqa", "MedMCQA"),),
    aliases={"medmcqa_validation": "medmcqa"},
    prefixes=("medmcqa",),
    hub={"medmcqa": HubDataset("openlifescienceai/medmcqa", None, "validation", fewshot_split="train")},
)
