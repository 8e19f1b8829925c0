"""The ``grade`` request kind: a judge model grades saved answers against rubrics, HealthBench's way.

One piece of work is one saved answer; the judge is asked once per rubric item (``tasks/grading.py`` builds each
prompt and reads each reply), so the kind is *composite*: its provider methods make every item's call, retry each
transport failure (``retrying.answer``) and ask again, up to ``attempts`` times, when a reply is not JSON with a
boolean ``criteria_met``. The engine plans, skips, locks, saves and summarises as for any kind.

A grade is saved like an answer, under the judge: ``<set>/_grades/<judge>/<persona>/<model>/<n>.json`` (and a
readable ``<n>.txt``). Its key holds the judge and its settings, the grader template's hash, the answer (its key and
text) and the rubric, so a changed answer or rubric is graded again and an unchanged one is skipped. An answer with
an item that could not be graded is saved as a failure that keeps the items that were graded: the next ``grade``
asks only for the others.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from runner.core.personas import Persona
from runner.core.questions import Question, RubricItem
from runner.engine.judging import JudgeRequest, Judging
from runner.engine.kinds import Saved, Unit, Work
from runner.engine.recording import model_options
from runner.providers.base import Result
from runner.tasks.grading import (
    GRADER_SYSTEM,
    REFERENCE_CRITERIA,
    conversation_of,
    grader_prompt,
    parse_reference_scores,
    parse_verdict,
    reference_prompt,
    render_conversation,
    rubric_json,
    rubric_score,
    tag_scores,
    template_hash,
)

if TYPE_CHECKING:
    from runner.core.records import Record
    from runner.core.settings import GenerationSettings
    from runner.core.store import SetStore
    from runner.providers.catalog import ModelSpec

GRADE_VERSION = 1
REPLY_START = 300  # characters of an unreadable reply kept in the grade


@dataclass(frozen=True)
class Target:
    """One saved answer to grade: its record, its question (with the conversation), its rubric, and where it is."""

    record: Record
    question: Question
    persona: Persona
    folder: str  # the answer's model folder (``slug`` or ``slug@tag``)
    rubric: tuple[RubricItem, ...]
    rubric_source: str
    # rubric: HealthBench, one call per item; reference: MedHELM's 1-5 against a reference; meta: HealthBench's
    # meta-evaluation (one criterion, put in the template as it is)
    scheme: str = "rubric"
    sample: int = 1  # self-consistency: which of the question's answers (its grade goes to ``_samples/<k>/``)


@dataclass
class _Tally:
    """What the calls for one answer found, item by item."""

    items: dict[int, dict[str, Any]] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Grade(Judging):
    """A judge's grades of saved answers, one rubric item per call."""

    name: ClassVar[str] = "grade"

    def space(self, space: SetStore, folder: str) -> SetStore:
        """Grades go under the judge's folder in the set's ``_grades``."""
        return space.grades(folder)

    def unit_space(self, space: SetStore, unit: Unit) -> SetStore:
        """The grade of a sample k >= 2 (``--samples``) goes to the graded model folder's ``_samples/<k>/``."""
        sample = unit.target.sample
        return space.samples(sample) if sample > 1 else space

    def unit_key(self, unit: Unit, spec: ModelSpec, settings: GenerationSettings) -> str:
        """The judge and its settings, the template, the answer (key and text), the conversation and the rubric."""
        target: Target = unit.target
        parts = {"v": GRADE_VERSION, "template": template_hash(target.scheme), "judge": spec.answer_key_fields(),
                 "settings": settings.answer_key_fields(), "answer_key": target.record.key,
                 "answer": _sha(target.record.text or ""), "question": target.question.content_hash(),
                 "rubric": rubric_json(target.rubric)}
        if target.scheme != "rubric":
            parts.update(scheme=target.scheme, reference=target.question.reference)
        return _sha(json.dumps(parts, sort_keys=True, ensure_ascii=False))

    def request(self, work: Work, settings: GenerationSettings) -> JudgeRequest:
        """A prompt for each rubric item not already graded under this key."""
        target: Target = work.target
        done: dict[int, dict[str, Any]] = {}
        previous = work.previous or {}
        if previous.get("key") == work.key and isinstance(previous.get("items"), list):
            for i, item in enumerate(previous["items"]):
                if isinstance(item, dict) and isinstance(item.get("met"), bool) and i < len(target.rubric):
                    done[i] = item
        if target.scheme == "reference":
            turns = conversation_of(target.question)
            asked = turns[0].content if len(turns) == 1 else "\n\n".join(f"{m.role}: {m.content}" for m in turns)
            prompts = [] if done else [(0, reference_prompt(asked, target.record.text or "",
                                                            target.question.reference or ""))]
            return JudgeRequest(work.key, prompts, done, settings, "", "reference")
        conversation = render_conversation(conversation_of(target.question), target.record.text or "")
        prompts = [(i, grader_prompt(conversation, item.criterion if target.scheme == "meta" else item))
                   for i, item in enumerate(target.rubric) if i not in done]
        return JudgeRequest(work.key, prompts, done, settings, GRADER_SYSTEM, target.scheme)

    def tally(self, request: JudgeRequest) -> _Tally:
        """The verdicts of one answer's items, starting from those already saved."""
        return _Tally(items=dict(request.done))

    def take(self, tally: _Tally, index: int, result: Result, attempt: int, scheme: str) -> bool:
        """Count one judge reply for item ``index``; True when the item is settled (graded, or given up on)."""
        tally.prompt_tokens += result.prompt_tokens or 0
        tally.completion_tokens += result.completion_tokens or 0
        if result.error:
            tally.items[index] = {"met": None, "attempts": attempt, "problem": result.error}
            return True
        if scheme == "reference":
            scores, problem = parse_reference_scores(result.text)
            if scores is not None:
                tally.items[index] = {"met": True, "scores": scores, "attempts": attempt}
                return True
        else:
            verdict = parse_verdict(result.text)
            if verdict.met is not None:
                tally.items[index] = {"met": verdict.met, "explanation": verdict.explanation, "attempts": attempt}
                return True
            problem = verdict.problem
        if attempt >= self.attempts:
            tally.items[index] = {"met": None, "attempts": attempt, "problem": problem,
                                  "reply": result.text[:REPLY_START]}
            return True
        return False

    def outcome(self, request: JudgeRequest, tally: _Tally, seconds: float) -> Result:
        """One answer's outcome: ok when every item was graded, else an error naming what was not."""
        bad = sorted(i for i, item in tally.items.items() if item.get("met") is None)
        error = None
        if bad:
            first = tally.items[bad[0]]
            error = (f"{len(bad)} rubric item(s) could not be graded (item {bad[0] + 1}: {first.get('problem')}); "
                     "grade again to ask for those only")
        return Result(text="", prompt_tokens=tally.prompt_tokens, completion_tokens=tally.completion_tokens,
                      latency_s=seconds, error=error, details={"items": tally.items})

    def save(self, work: Work, result: Result, spec: ModelSpec, settings: GenerationSettings, run_id: str,
             set_name: str, tag: str | None, embedding: list[float] | None = None) -> Saved:
        """The grade record (every item's verdict, the score, the score per rubric tag) and a readable body."""
        target: Target = work.target
        verdicts = (result.details or {}).get("items", {})
        if target.scheme == "reference":
            return self._save_reference(work, result, spec, settings, run_id, set_name, verdicts.get(0))
        items = []
        for i, item in enumerate(target.rubric):
            verdict = verdicts.get(i) or {"met": None, "problem": result.error or "not graded"}
            items.append({"criterion": item.criterion, "points": item.points, "tags": list(item.tags),
                          **{k: v for k, v in verdict.items() if k in ("met", "explanation", "attempts", "problem",
                                                                       "reply")}})
        met = [i.get("met") for i in items]
        graded = all(isinstance(m, bool) for m in met)
        record = self._base(work, result, spec, settings, run_id, set_name)
        record.update(items=items, score=rubric_score(target.rubric, met) if graded else None,
                      tag_scores=tag_scores(target.rubric, met) if graded else None)
        return Saved(record, None if result.error else readable(record))

    def _save_reference(self, work: Work, result: Result, spec: ModelSpec, settings: GenerationSettings, run_id: str,
                        set_name: str, verdict: dict[str, Any] | None) -> Saved:
        """A grade against the reference answer: each criterion's 1-5 score, and their mean."""
        record = self._base(work, result, spec, settings, run_id, set_name)
        scores = (verdict or {}).get("scores") if (verdict or {}).get("met") else None
        items = [{"criterion": name, "score": scores[name]["score"], "explanation": scores[name]["explanation"]}
                 for name in REFERENCE_CRITERIA] if scores else [{k: v for k, v in (verdict or {}).items()
                                                                   if k in ("met", "attempts", "problem", "reply")}]
        record.update(template="medhelm-reference", reference=work.question.reference, items=items,
                      score=sum(i["score"] for i in items) / len(items) if scores else None,
                      tag_scores={i["criterion"]: i["score"] for i in items} if scores else None)
        return Saved(record, None if result.error else readable(record))

    def _base(self, work: Work, result: Result, spec: ModelSpec, settings: GenerationSettings, run_id: str,
              set_name: str) -> dict[str, Any]:
        """What every grade record holds: the answer graded, the judge, tokens, cost, key."""
        target: Target = work.target
        answer_record = target.record
        return {
            "version": GRADE_VERSION, "kind": "grade", "set": set_name, "tag": answer_record.tag, "n": work.question.n,
            "question_id": work.question.id, "question": work.question.question,
            "persona": work.persona.name, "model": answer_record.model, "alias": answer_record.alias,
            "provider": answer_record.provider, "model_id": answer_record.model_id, "slug": answer_record.slug,
            "sample": target.sample if target.sample > 1 else None,
            "answer_key": answer_record.key, "answer_sha256": _sha(answer_record.text or ""),
            "judge": spec.name, "judge_label": spec.label, "judge_provider": spec.provider,
            "judge_options": model_options(spec), "settings": settings.model_dump(),
            "template": "healthbench", "template_sha256": template_hash(target.scheme),
            "rubric_source": target.rubric_source, "example_tags": list(target.question.example_tags),
            "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "cost_usd": spec.estimate_cost(result.prompt_tokens or 0, result.completion_tokens or 0),
            "latency_s": round(result.latency_s, 4), "error": result.error,
            "time": datetime.now(UTC).isoformat(timespec="seconds"), "key": work.key, "run_id": run_id,
        }


def readable(record: dict[str, Any]) -> str:
    """A grade as text: the score, then each rubric item with its verdict and the judge's explanation."""
    score = record.get("score")
    lines = [f"score: {score:.3f}" if isinstance(score, float | int) else "score: none", ""]
    for item in record.get("items", []):
        if "score" in item:  # against a reference: a 1-5 score per criterion
            lines.append(f"{item.get('criterion')}: {item.get('score')} of 5")
        else:
            lines.append(f"[{item.get('met')}] [{item.get('points')}] {item.get('criterion')}")
        lines.append(f"\tExplanation: {item.get('explanation', item.get('problem', ''))}")
    return "\n".join(lines) + "\n"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

