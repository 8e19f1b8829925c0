"""PubMedQA (the labelled PQA-L set): the harness task ``pubmedqa``; the choices are yes, no and maybe.

``--dataset pubmedqa`` is the split the harness scores: ``bigbio/pubmed_qa`` ``pubmed_qa_labeled_fold0_source``,
test (500 questions; its train split gives the few-shot examples). ``qiaojin/PubMedQA`` ``pqa_labeled`` (1,000
questions in one train split) is another cut of the same labelled set: ``--dataset qiaojin/PubMedQA --subset
pqa_labeled --split train`` loads it, but its numbers are not the harness's.

Records: ``question``, ``context`` ({"contexts": [...]}, a list or a string) or ``CONTEXTS``,
``final_decision`` yes/no/maybe; also the original ``ori_pqal.json`` (an object keyed by PMID).
"""

from __future__ import annotations

from typing import Any

from runner.core.questions import Question
from runner.tasks.family import Family, HubDataset, record_id, require_text

CHOICES = ("yes", "no", "maybe")


class PubMedQA(Family):
    """PubMedQA: an abstract, a question, and yes / no / maybe."""

    def convert(self, row: dict[str, Any]) -> dict[str, Any]:
        """Question fields of a record: the abstract as context, the options yes / no / maybe."""
        raw = row.get("context", row.get("CONTEXTS", row.get("contexts")))
        if isinstance(raw, dict):
            raw = raw.get("contexts", raw.get("CONTEXTS"))
        if isinstance(raw, list):
            context = "\n".join(str(c) for c in raw)
        elif isinstance(raw, str):
            context = raw
        else:
            raise ValueError("context must be {'contexts': [...]}, a list or a string")
        decision = str(row["final_decision"]).strip().lower()
        if decision not in CHOICES:
            raise ValueError(f"final_decision {row['final_decision']!r} is not yes, no or maybe")
        question = row.get("question", row.get("QUESTION"))
        return {"question": require_text(question, "question"), "context": require_text(context, "context"),
                "options": dict(zip("ABC", CHOICES, strict=True)), "answer": "ABC"[CHOICES.index(decision)],
                "id": record_id(row)}

    def doc_to_text(self, q: Question) -> str:
        """``Abstract: {context}\\nQuestion: {q}\\nAnswer:``."""
        return f"Abstract: {q.context or ''}\nQuestion: {q.question}\nAnswer:"

    def doc_to_choices(self, q: Question) -> list[str]:
        """The option texts (yes, no, maybe), not letters."""
        return list((q.options or {}).values())


FAMILY = PubMedQA(
    name="pubmedqa",
    listing_order=30,
    leaderboard_order=40,
    keys=(frozenset({"final_decision"}),),
    default_task="pubmedqa",
    tasks=(("pubmedqa", "PubMedQA"),),
    aliases={"pubmed_qa": "pubmedqa"},
    prefixes=("pubmedqa", "pubmed_qa"),
    hub={"pubmedqa": HubDataset("bigbio/pubmed_qa", "pubmed_qa_labeled_fold0_source", "test", fewshot_split="train")},
)
