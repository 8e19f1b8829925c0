"""MedQA (USMLE, 4 options): the harness task ``medqa_4options``.

Records are either ``question`` / ``options`` {A..D} / ``answer_idx`` (the original JSONL) or ``sent1`` /
``ending0``..``ending3`` / ``label`` 0-3 (the ``-hf`` variant the harness reads). Its prompt is also the one
of questions whose task no family claims.
"""

from __future__ import annotations

from typing import Any

from runner.core.questions import Question
from runner.tasks.family import LETTERS, Family, HubDataset, answer_index, option_lines, record_id, require_text

HUB = HubDataset("GBaker/MedQA-USMLE-4-options-hf", None, "test")


class MedQA(Family):
    """MedQA 4 options."""

    def convert(self, row: dict[str, Any]) -> dict[str, Any]:
        """Question fields of either MedQA record form."""
        if "sent1" in row:
            options = {LETTERS[i]: require_text(row[f"ending{i}"], f"ending{i}") for i in range(4)
                       if f"ending{i}" in row}
            answer = LETTERS[answer_index(row["label"], len(options), "label")]
            question = row["sent1"]  # the harness's prompt uses sent1 only (sent2 is empty in the -hf files)
        else:
            raw = row["options"]
            options = ({k.strip().upper(): require_text(v, f"option {k}") for k, v in raw.items()}
                       if isinstance(raw, dict)
                       else {LETTERS[i]: require_text(v, f"option {i}") for i, v in enumerate(raw)})
            answer = str(row["answer_idx"]).strip().upper()
            if answer not in options:
                raise ValueError(f"answer_idx {row['answer_idx']!r} is not one of the options {', '.join(options)}")
            question = row["question"]
        return {"question": require_text(question, "question"), "options": options, "answer": answer,
                "id": record_id(row)}

    def doc_to_text(self, q: Question) -> str:
        """``Question: {q}\\nA. {A}\\n...Answer:`` (a ``Context:`` line first for custom questions that have one)."""
        context = f"Context: {q.context}\n" if q.context else ""  # not in MedQA; kept for custom questions
        return f"{context}Question: {q.question}\n{option_lines(q.options)}Answer:"


FAMILY = MedQA(
    name="medqa",
    listing_order=10,
    leaderboard_order=20,
    keys=(frozenset({"sent1", "ending0"}), frozenset({"options", "answer_idx"})),
    default_task="medqa_4options",
    tasks=(("medqa_4options", "MedQA"),),
    aliases={"medqa": "medqa_4options", "medqa_usmle": "medqa_4options", "medqa_4options_hf": "medqa_4options"},
    prefixes=("medqa",),
    fallback=True,
    hub={"medqa": HUB, "medqa_4options": HUB},
)
