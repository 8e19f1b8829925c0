"""MedQA (USMLE, 4 options): the harness task ``medqa_4options``.

Records are either ``question`` / ``options`` {A..D} / ``answer_idx`` (the original JSONL) or ``sent1`` /
``ending0``..``ending3`` / ``label`` 0-3 (the ``-hf`` variant the harness reads). Its prompt is also the one
of questions whose task no family claims.
"""

from __future__ import annotations

from typing import Any

from runner.core.questions import Question
from runner.tasks.family import LETTERS, Family, HubDataset, answer_index, option_lines, record_id, require_text

FOUR_OPTIONS = "medqa_4options"
HUB = HubDataset("GBaker/MedQA-USMLE-4-options-hf", None, "test", fewshot_split="train")


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
            text = row.get("answer")
            if isinstance(text, str) and text.strip() and " ".join(text.split()) != " ".join(options[answer].split()):
                raise ValueError(f"answer {text!r} is not the text of option {answer} ({options[answer]!r}) that "
                                 "answer_idx names; fix the record (or its answer_idx)")
            question = row["question"]
        return {"question": require_text(question, "question"), "options": options, "answer": answer,
                "id": record_id(row)}

    def check(self, fields: dict[str, Any], task: str | None, task_given: bool) -> None:
        """``medqa_4options`` takes four options: a 5-option record (the US set's original form) needs another task."""
        count = len(fields["options"])
        if task == FOUR_OPTIONS and count != 4:
            raise ValueError(f"{count} options, but {FOUR_OPTIONS} is the 4-option task; give --task "
                             f"medqa_{count}options to score it as a {count}-option task (the harness has no such "
                             "MedQA task, so it is not comparable with medqa_4options), or use the 4-option files")

    def doc_to_text(self, q: Question) -> str:
        """``Question: {q}\\nA. {A}\\n...Answer:`` (a ``Context:`` line first for custom questions that have one)."""
        context = f"Context: {q.context}\n" if q.context else ""  # not in MedQA; kept for custom questions
        return f"{context}Question: {q.question}\n{option_lines(q.options)}Answer:"


FAMILY = MedQA(
    name="medqa",
    listing_order=10,
    leaderboard_order=20,
    keys=(frozenset({"sent1", "ending0"}), frozenset({"options", "answer_idx"})),
    default_task=FOUR_OPTIONS,
    tasks=((FOUR_OPTIONS, "MedQA"),),
    aliases={"medqa": FOUR_OPTIONS, "medqa_usmle": FOUR_OPTIONS, "medqa_4options_hf": FOUR_OPTIONS},
    prefixes=("medqa",),
    fallback=True,
    hub={"medqa": HUB, FOUR_OPTIONS: HUB},
)
