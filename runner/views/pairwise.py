"""Pairwise preferences, MT-Bench's way: from the ``pairwise`` records (a judge's verdicts on pairs of answers, in
both orders), per judge and group (the models under one persona, or one model's personas):

- the win/tie/loss matrix (row against column), each order pair combined as ``judge_stats.combine_orders`` does:
  the two orders agreeing once the swap is undone give the winner, disagreeing ones a tie;
- each player's win rate (a win 1, a tie 1/2, a loss 0, over all its comparisons);
- the judge's position bias: the share of pairs whose two orders disagree, and of those how many went to the
  answer shown first (``[[A]]`` both times) or second;
- Bradley-Terry ratings on the Elo scale (mean 1000) with percentile bootstrap 95% intervals.

Only comparisons of the answers saved now count (both answers' keys must match); a pair with an order the judge
could not judge is left out of every statistic and listed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.core.records import Record


@dataclass
class PairGroup:
    """One judge's comparisons among the players of one group."""

    judge: str
    compare: str  # "models" (under one persona) or "personas" (of one model)
    within: str  # the persona, or the model
    players: list[str]
    matrix: dict[str, dict[str, tuple[int, int, int]]]  # [x][y]: x's wins, ties, losses against y
    win_rates: dict[str, float]
    ratings: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    pairs: int  # pairs judged in both orders (each a battle)
    inconsistent: int
    first_favoured: int
    second_favoured: int
    unjudged: list[tuple[int, str, str]] = field(default_factory=list)  # (question, player a, player b)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None

    @property
    def inconsistency_rate(self) -> float | None:
        """The position-bias rate: the share of pairs whose two orders disagree."""
        return self.inconsistent / self.pairs if self.pairs else None

    def to_json(self) -> dict[str, Any]:
        """The group as JSON."""
        return {
            "judge": self.judge, "compare": self.compare, "within": self.within, "players": self.players,
            "pairs": self.pairs,
            "position_bias": {"inconsistent": self.inconsistent, "rate": _round(self.inconsistency_rate),
                              "favoured_first": self.first_favoured, "favoured_second": self.second_favoured},
            "win_rates": {p: _round(v) for p, v in sorted(self.win_rates.items())},
            "bradley_terry": {p: {"rating": _round(self.ratings.get(p), 1),
                                  "ci95": [_round(x, 1) for x in self.intervals[p]] if p in self.intervals else None}
                              for p in self.players},
            "matrix": {x: {y: dict(zip(("wins", "ties", "losses"), counts, strict=True))
                           for y, counts in sorted(row.items())} for x, row in sorted(self.matrix.items())},
            "unjudged": [{"n": n, "a": a, "b": b} for n, a, b in self.unjudged],
            "judge_prompt_tokens": self.prompt_tokens, "judge_completion_tokens": self.completion_tokens,
            "judge_cost_usd": _round(self.cost_usd, 6),
        }


@dataclass
class Pairwise:
    """Everything ``grade --pairwise`` reports."""

    groups: list[PairGroup]
    judges: list[str]
    resamples: int = 1000


def _extra(record: Record, name: str) -> Any:
    return (record.model_extra or {}).get(name)


def _judge(record: Record) -> str:
    return str(_extra(record, "judge_label") or _extra(record, "judge") or "?")


def current_pairwise(records: Iterable[Record], answers: Iterable[Record]) -> list[Record]:
    """The comparisons made of the answers saved now: both answers' keys match those saved at their places."""
    keys = {(a.persona or "", a.label, a.n): a.key for a in answers}

    def current(side: Any, n: int) -> bool:
        return (isinstance(side, dict) and side.get("answer_key") is not None
                and keys.get((side.get("persona") or "", side.get("label"), n)) == side.get("answer_key"))

    return [r for r in records if r.kind == "pairwise"
            and current(_extra(r, "answer_a"), r.n) and current(_extra(r, "answer_b"), r.n)]


def _verdicts(record: Record) -> list[tuple[int, str, str, str | None]]:
    """The record's two verdicts as (question, shown first, shown second, letter)."""
    games = _extra(record, "games")
    out = []
    for game in games if isinstance(games, list) else []:
        if isinstance(game, dict) and isinstance(game.get("assistant_a"), str) and isinstance(
                game.get("assistant_b"), str):
            verdict = game.get("verdict")
            out.append((record.n, game["assistant_a"], game["assistant_b"],
                        verdict if verdict in ("A", "B", "C") else None))
    return out


def collect(records: Sequence[Record], resamples: int = 1000, seed: int | None = None) -> Pairwise:
    """Aggregate comparison records per judge and group (see the module's docstring)."""
    by_group: dict[tuple[str, str, str], list[Record]] = defaultdict(list)
    for r in records:
        compare = str(_extra(r, "compare") or "models")
        within = (r.persona or "") if compare == "models" else r.label
        by_group[(_judge(r), compare, within)].append(r)
    groups = [_group(judge, compare, within, rs, resamples, seed)
              for (judge, compare, within), rs in sorted(by_group.items())]
    return Pairwise(groups=groups, judges=sorted({g.judge for g in groups}), resamples=resamples)


def _group(judge: str, compare: str, within: str, records: Sequence[Record], resamples: int,
           seed: int | None) -> PairGroup:
    from runner.views import judge_stats
    from runner.views.stats import SEED

    verdicts: list[tuple[int, str, str, str | None]] = []
    unjudged: list[tuple[int, str, str]] = []
    players: set[str] = set()
    prompt = completion = 0
    costs: list[float] = []
    for r in sorted(records, key=lambda r: (r.n, str(_extra(r, "player_a")), str(_extra(r, "player_b")))):
        a, b = str(_extra(r, "player_a")), str(_extra(r, "player_b"))
        players.update((a, b))
        prompt += r.prompt_tokens or 0
        completion += r.completion_tokens or 0
        cost = _extra(r, "cost_usd")
        if isinstance(cost, int | float):
            costs.append(float(cost))
        found = _verdicts(r)
        if r.error or len(found) != 2 or any(v[3] is None for v in found):
            unjudged.append((r.n, a, b))
            continue
        verdicts.extend(found)
    combined = judge_stats.combine_orders(verdicts)
    battles = combined.battles
    matrix = {x: {y: tuple(rec) for y, rec in row.items()} for x, row in judge_stats.win_matrix(battles).items()}
    ratings = judge_stats.bradley_terry(battles) if battles else {}
    intervals = judge_stats.bradley_terry_intervals(battles, rounds=resamples,
                                                    seed=SEED if seed is None else seed) if battles else {}
    return PairGroup(judge=judge, compare=compare, within=within, players=sorted(players), matrix=matrix,
                     win_rates=judge_stats.win_rates(battles), ratings=ratings,
                     intervals={p: (i.low, i.high) for p, i in intervals.items()}, pairs=combined.both_orders,
                     inconsistent=combined.inconsistent, first_favoured=combined.first_favoured,
                     second_favoured=combined.second_favoured, unjudged=unjudged, prompt_tokens=prompt,
                     completion_tokens=completion, cost_usd=sum(costs) if costs else None)


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or value != value:  # None or nan
        return None
    return round(float(value), digits)


def to_json(result: Pairwise, set_name: str) -> dict[str, Any]:
    """``pairwise.json``."""
    from runner.tasks.pairwise import PAIR_NAME, template_hash

    return {"version": 1, "generated": datetime.now(UTC).isoformat(timespec="seconds"), "set": set_name,
            "template": f"mt-bench {PAIR_NAME}", "template_sha256": template_hash(), "judges": result.judges,
            "bootstrap_rounds": result.resamples, "groups": [g.to_json() for g in result.groups]}


def render_markdown(result: Pairwise, set_name: str) -> str:
    """``pairwise.md``: per judge and group, the ratings and win rates, the win/tie/loss matrix, position bias."""
    lines = [f"# Pairwise preferences: question set {set_name}", "",
             "MT-Bench's pairwise judge (FastChat `pair-v2` prompt): each pair of answers to a question is judged in "
             "both orders; orders that disagree once the swap is undone count as a tie (position-inconsistent). Win "
             "rate: wins + ties / 2 over comparisons. Bradley-Terry ratings on the Elo scale (mean 1000), "
             f"95% percentile intervals from {result.resamples:,} bootstrap resamples of the pairs.", ""]
    if not result.groups:
        lines.append("No comparison saved.")
    for g in result.groups:
        what = f"models under persona {g.within}" if g.compare == "models" else f"personas of {g.within}"
        lines += [f"## {_md(g.judge)}: {_md(what)}", ""]
        rate = g.inconsistency_rate
        bias = (f"{g.inconsistent} of {g.pairs} pairs ({rate:.1%}) position-inconsistent; of those, "
                f"{g.first_favoured} favoured the answer shown first and {g.second_favoured} the one shown second"
                if rate is not None else "no pair judged in both orders")
        cost = f", judge cost ${g.cost_usd:.4f}" if g.cost_usd is not None else ""
        lines += [f"Position bias: {bias}. Judge tokens {g.prompt_tokens + g.completion_tokens:,}{cost}.", "",
                  "| player | Bradley-Terry | 95% interval | win rate | wins | ties | losses |",
                  "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
        order = sorted(g.players, key=lambda p: (-g.ratings.get(p, float("-inf")), p))
        for p in order:
            totals = [sum(c[i] for c in g.matrix.get(p, {}).values()) for i in range(3)]
            rating = g.ratings.get(p)
            interval = g.intervals.get(p)
            lines.append(f"| {_md(p)} | {f'{rating:.0f}' if rating is not None else '–'} | "
                         + (f"{interval[0]:.0f} – {interval[1]:.0f}" if interval else "–") + " | "
                         + (f"{g.win_rates[p]:.3f}" if p in g.win_rates else "–")
                         + f" | {totals[0]} | {totals[1]} | {totals[2]} |")
        lines += ["", "Wins / ties / losses of the row against the column:", "",
                  "| | " + " | ".join(_md(p) for p in order) + " |", "| --- |" + " ---: |" * len(order)]
        for x in order:
            cells = ["–" if x == y else "/".join(str(c) for c in g.matrix.get(x, {}).get(y, (0, 0, 0)))
                     for y in order]
            lines.append(f"| {_md(x)} | " + " | ".join(cells) + " |")
        if g.unjudged:
            lines += ["", f"Not judged in both orders ({len(g.unjudged)}; `grade --pairwise` again asks only for the "
                      "missing order): " + ", ".join(f"question {n} ({_md(a)} vs {_md(b)})" for n, a, b in g.unjudged)]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_outputs(result: Pairwise, set_name: str, output_dir: Path) -> dict[str, Path]:
    """Write ``pairwise.json`` and ``pairwise.md`` under the output root, each atomically."""
    from runner.core.store import write_output

    output_dir = Path(output_dir)
    paths = {"json": output_dir / "pairwise.json", "markdown": output_dir / "pairwise.md"}
    write_output(paths["json"], json.dumps(to_json(result, set_name), ensure_ascii=False, indent=1) + "\n",
                 root=output_dir, mode=0o644)
    write_output(paths["markdown"], render_markdown(result, set_name), root=output_dir, mode=0o644)
    return paths
