"""The ``pairwise`` request kind: a judge model compares two saved answers to the same question, MT-Bench's way.

One piece of work is one question and one pair of answers: two models' answers under the same persona, or (one
model, several personas) one model's answers under two personas. The judge is asked twice, with the answers in
both orders (MT-Bench's position swap: game 1 shows answer a as "Assistant A", game 2 shows answer b as A), with
MT-Bench's pair-v2 prompt (``tasks/pairwise.py``). The kind is *composite*: its provider methods make both calls
(concurrently for API judges, in the judge's batches for local ones), retry each transport failure
(``retrying.answer``) and ask again, up to ``attempts`` times, when a reply has no verdict.

The record (kind ``pairwise``) holds both verdicts, each mapped back to the answer it favours, and the outcome:
the winner when the two orders agree once the swap is undone, else a tie marked ``position_inconsistent`` (a win
in one order and a tie in the other included), as ``views.judge_stats.combine_orders`` counts it.

Saved like an answer, under the judge: ``<set>/_pairwise/<judge>/<persona>/<a>+vs+<b>/<n>.json`` for two models
(``a``, ``b``: the answers' model folders, ``slug`` or ``slug@tag`` with ``@`` written ``+at+``, in name order), and
``<set>/_pairwise/<judge>/<persona-a>+vs+<persona-b>/<model>/<n>.json`` for two personas; a readable ``<n>.txt``
beside it. ``+vs+`` is the separator because the store's folder names allow only ``[A-Za-z0-9._+-]``; a name longer
than the store allows is cut and ends with a hash of the whole. The key holds the judge and its settings, the
template's hash, the question, and both answers (keys and texts): a changed answer is compared anew, an unchanged
pair is skipped. A pair with an order that could not be judged is saved as a failure that keeps the other order's
verdict: the next run asks only for the missing one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from runner.core.personas import Persona
from runner.core.questions import Question
from runner.engine.judging import JudgeRequest, Judging
from runner.engine.kinds import Saved, Unit, Work
from runner.engine.recording import model_options
from runner.providers.base import Result
from runner.tasks.pairwise import (
    EXPLANATION_START,
    PAIR_NAME,
    PAIR_SYSTEM,
    VERDICT_RULE,
    combine,
    pair_prompt,
    parse_pair_verdict,
    question_text,
    template_hash,
)

if TYPE_CHECKING:
    from runner.core.records import Record
    from runner.core.settings import GenerationSettings
    from runner.core.store import SetStore
    from runner.providers.catalog import ModelSpec

PAIRWISE_VERSION = 1
PAIR_SEPARATOR = "+vs+"
TAG_MARK = "+at+"  # ``@`` (a tagged variant's folder) inside a pair folder's name
_NAME_LIMIT = 128  # the store's longest folder name (``SAFE_PART``)
GAMES = ("a-b", "b-a")  # game 1: answer a shown as A; game 2 (the swap): answer b shown as A


def pair_folder(first: str, second: str) -> str:
    """The folder name of a pair (``first+vs+second``), within the store's safe names."""
    name = f"{first.replace('@', TAG_MARK)}{PAIR_SEPARATOR}{second.replace('@', TAG_MARK)}"
    if len(name) <= _NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
    return f"{name[:_NAME_LIMIT - len(digest) - 1]}+{digest}"


@dataclass(frozen=True)
class PairTarget:
    """Two saved answers to compare: ``a`` and ``b`` (players in name order), their question, and where the
    comparison goes (``persona`` and ``folder`` below the judge's folder)."""

    question: Question
    a: Record
    b: Record
    player_a: str  # a model label (models compared) or a persona name (personas compared)
    player_b: str
    compare: str  # "models" or "personas"
    persona: Persona
    folder: str


@dataclass
class _Tally:
    """What the calls for one pair found, game by game."""

    games: dict[int, dict[str, Any]] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Pairwise(Judging):
    """A judge's comparisons of pairs of saved answers, both orders of each."""

    name: ClassVar[str] = "pairwise"

    def space(self, space: SetStore, folder: str) -> SetStore:
        """Comparisons go under the judge's folder in the set's ``_pairwise``."""
        return space.pairwise(folder)

    def unit_key(self, unit: Unit, spec: ModelSpec, settings: GenerationSettings) -> str:
        """The judge and its settings, the template and verdict rule, the question and both answers."""
        target: PairTarget = unit.target
        parts = {"v": PAIRWISE_VERSION, "template": template_hash(), "judge": spec.answer_key_fields(),
                 "settings": settings.answer_key_fields(), "question": target.question.content_hash(),
                 "players": [target.player_a, target.player_b],
                 "a": [target.a.key, _sha(target.a.text or "")], "b": [target.b.key, _sha(target.b.text or "")]}
        return _sha(json.dumps(parts, sort_keys=True, ensure_ascii=False))

    def request(self, work: Work, settings: GenerationSettings) -> JudgeRequest:
        """A prompt for each order not already judged under this key."""
        target: PairTarget = work.target
        done: dict[int, dict[str, Any]] = {}
        previous = work.previous or {}
        if previous.get("key") == work.key and isinstance(previous.get("games"), list):
            for i, game in enumerate(previous["games"][:len(GAMES)]):
                if isinstance(game, dict) and game.get("verdict") in ("A", "B", "C"):
                    done[i] = game
        question = question_text(target.question)
        a, b = target.a.text or "", target.b.text or ""
        prompts = [(0, pair_prompt(question, a, b)), (1, pair_prompt(question, b, a))]
        return JudgeRequest(work.key, [(i, p) for i, p in prompts if i not in done], done, settings, PAIR_SYSTEM)

    def tally(self, request: JudgeRequest) -> _Tally:
        """The verdicts of one pair's orders, starting from those already saved."""
        return _Tally(games=dict(request.done))

    def take(self, tally: _Tally, index: int, result: Result, attempt: int, scheme: str) -> bool:
        """Count one judge reply for game ``index``; True when the game is settled (judged, or given up on)."""
        tally.prompt_tokens += result.prompt_tokens or 0
        tally.completion_tokens += result.completion_tokens or 0
        game = tally.games.setdefault(index, {"prompt_tokens": 0, "completion_tokens": 0})
        game["prompt_tokens"] += result.prompt_tokens or 0
        game["completion_tokens"] += result.completion_tokens or 0
        game["attempts"] = attempt
        if result.error:
            game.update(verdict=None, problem=result.error)
            return True
        verdict = parse_pair_verdict(result.text)
        if verdict.verdict is not None:
            game.update(verdict=verdict.verdict, explanation=verdict.explanation)
            game.pop("problem", None)
            game.pop("reply", None)
            return True
        game.update(verdict=None, problem=verdict.problem, reply=(result.text or "")[:EXPLANATION_START])
        return attempt >= self.attempts

    def outcome(self, request: JudgeRequest, tally: _Tally, seconds: float) -> Result:
        """One pair's outcome: ok when both orders were judged, else an error naming the one that was not."""
        bad = [i for i in range(len(GAMES)) if (tally.games.get(i) or {}).get("verdict") is None]
        error = None
        if bad:
            problem = (tally.games.get(bad[0]) or {}).get("problem") or "not judged"
            error = (f"{len(bad)} of 2 orders could not be judged (order {GAMES[bad[0]]}: {problem}); compare "
                     "again to ask for those only")
        return Result(text="", prompt_tokens=tally.prompt_tokens, completion_tokens=tally.completion_tokens,
                      latency_s=seconds, error=error, details={"games": tally.games})

    def save(self, work: Work, result: Result, spec: ModelSpec, settings: GenerationSettings, run_id: str,
             set_name: str, tag: str | None, embedding: list[float] | None = None) -> Saved:
        """The comparison record (both verdicts, the outcome, position consistency) and a readable body."""
        target: PairTarget = work.target
        found = (result.details or {}).get("games", {})
        players = {"A": (target.player_a, target.player_b), "B": (target.player_b, target.player_a)}
        games = []
        for i, order in enumerate(GAMES):
            game = dict(found.get(i) or {"verdict": None, "problem": result.error or "not judged"})
            shown = players["A"] if i == 0 else players["B"]  # (shown as A, shown as B)
            verdict = game.get("verdict")
            winner = shown[0] if verdict == "A" else shown[1] if verdict == "B" else "tie" if verdict == "C" else None
            games.append({"order": order, "assistant_a": shown[0], "assistant_b": shown[1], "verdict": verdict,
                          "winner": winner,
                          **{k: game[k] for k in ("explanation", "attempts", "problem", "reply", "prompt_tokens",
                                                  "completion_tokens") if k in game}})
        outcome, inconsistent = combine(games[0]["verdict"], games[1]["verdict"])
        judged = not result.error and outcome is not None
        winner = None if not judged else {"a": target.player_a, "b": target.player_b, "tie": "tie"}[outcome]
        shared = target.a
        record: dict[str, Any] = {
            "version": PAIRWISE_VERSION, "kind": "pairwise", "set": set_name, "n": work.question.n,
            "question_id": work.question.id, "question": work.question.question, "compare": target.compare,
            "persona": work.persona.name if target.compare == "models" else None,
            "personas": [target.a.persona, target.b.persona] if target.compare == "personas" else None,
            "model": shared.model if target.compare == "personas" else None,
            "alias": shared.alias if target.compare == "personas" else None,
            "slug": shared.slug if target.compare == "personas" else None,
            "tag": shared.tag if target.compare == "personas" else None,
            "player_a": target.player_a, "player_b": target.player_b,
            "answer_a": _answer_of(target.a), "answer_b": _answer_of(target.b),
            "games": games, "winner": winner, "position_inconsistent": inconsistent if judged else None,
            "judge": spec.name, "judge_label": spec.label, "judge_provider": spec.provider,
            "judge_options": model_options(spec), "settings": settings.model_dump(),
            "template": f"mt-bench {PAIR_NAME}", "template_sha256": template_hash(), "verdict_rule": VERDICT_RULE,
            "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "cost_usd": spec.estimate_cost(result.prompt_tokens or 0, result.completion_tokens or 0),
            "latency_s": round(result.latency_s, 4), "error": result.error,
            "time": datetime.now(UTC).isoformat(timespec="seconds"), "key": work.key, "run_id": run_id,
        }
        return Saved(record, None if result.error else readable(record))


def pair_targets(answers: Sequence[Record], questions: Sequence[Question]) -> tuple[list[PairTarget], int]:
    """Every pair of saved answers to compare, and how many answers were left out (their question changed since).

    With answers of two or more models, the models are compared under each persona (every pair of models that
    answered the question under it); with one model under two or more personas, its personas are compared. Pairs
    come question by question, players in name order (``a`` before ``b``).
    """
    by_n = {q.n: q for q in questions}
    usable: list[tuple[Record, Question]] = []
    changed = 0
    for record in answers:
        question = by_n.get(record.n)
        if question is None or question.question != record.question or not record.slug:
            changed += 1
            continue
        usable.append((record, question))
    compare = ("models" if len({r.label for r, _ in usable}) > 1 else
               "personas" if len({r.persona or "" for r, _ in usable}) > 1 else None)
    if compare is None:
        return [], changed
    groups: dict[tuple[str, int], dict[str, Record]] = {}
    for record, question in usable:
        within, player = ((record.persona or "", record.label) if compare == "models"
                          else (record.label, record.persona or ""))
        groups.setdefault((within, question.n), {})[player] = record
    targets = []
    for (within, n), by_player in sorted(groups.items()):
        players = sorted(by_player)
        for i, player_a in enumerate(players):
            for player_b in players[i + 1:]:
                a, b = by_player[player_a], by_player[player_b]
                if compare == "models":
                    persona = Persona(within, a.persona_text or "", "saved")
                    folder = pair_folder(_folder_of(a), _folder_of(b))
                else:
                    persona = Persona(pair_folder(player_a, player_b), "", "pair")
                    folder = _folder_of(a)
                targets.append(PairTarget(by_n[n], a, b, player_a, player_b, compare, persona, folder))
    return targets, changed


def _folder_of(record: Record) -> str:
    """An answer's model folder: ``slug`` or ``slug@tag``."""
    return f"{record.slug}@{record.tag}" if record.tag else str(record.slug)


def _answer_of(record: Record) -> dict[str, Any]:
    """Which saved answer a comparison is about: its place, model and key (the text is the answer's own file)."""
    return {"model": record.model, "label": record.label, "persona": record.persona, "slug": record.slug,
            "tag": record.tag, "answer_key": record.key, "answer_sha256": _sha(record.text or "")}


def readable(record: dict[str, Any]) -> str:
    """A comparison as text: the outcome, then each order's verdict and the start of the judge's explanation."""
    lines = [f"{record.get('player_a')} vs {record.get('player_b')}: "
             + ("tie" if record.get("winner") == "tie" else f"{record.get('winner')} wins")
             + (" (position-inconsistent: the two orders disagree)" if record.get("position_inconsistent") else ""),
             ""]
    for game in record.get("games", []):
        lines.append(f"[{game.get('order')}] A = {game.get('assistant_a')}, B = {game.get('assistant_b')}: "
                     f"[[{game.get('verdict')}]] -> {game.get('winner')}")
        lines.append(f"\tExplanation: {game.get('explanation', game.get('problem', ''))}")
    return "\n".join(lines) + "\n"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
