"""Budget forcing for local ``hf:`` models, as in s1 (Muennighoff et al., 2025, "s1: Simple test-time scaling") and
med-s1: the thinking trace is cut at ``--thinking-budget`` tokens, and an early end of thinking is replaced by "Wait"
(``--min-thinking`` with ``--wait``).

Used only when ``thinking_budget`` or ``min_thinking`` is set (``active``); the default path (batching.py) does not
come here. Each batch runs in *rounds*: one ``generate`` call over the rows still going, each row watched token by
token by a stopping criterion (``_Watch``) that knows where the row stands:

- thinking: every generated token so far is trace (a trace the chat template opened, or one the model opens with the
  start delimiter). The row stops when the end delimiter appears before ``min_thinking`` trace tokens (and "Wait"s
  are left), when the trace reaches ``thinking_budget`` tokens without it, or at an EOS while the trace is open. An
  end delimiter that is acceptable needs no stop: the row simply goes on as answering within the same call.
- answering: the row stops at an EOS or at ``max_new_tokens``, like any answer.

Between rounds each stopped row is edited and goes on in the next round: an early end delimiter (the tokens that spell
it) is replaced by the tokens of "Wait" (s1's string, tokenized on its own); a trace at the budget gets the end
delimiter's tokens appended (tokenized on its own, exactly as written in the model's delimiters); an EOS inside an
open trace is treated as an end of thinking (as s1's thinking stage stops at any end token): replaced by "Wait"
under ``min_thinking``, else the end delimiter is appended. Rows advance together; finished rows leave the batch.
No cache is carried between rounds: each round re-reads the prompt and what the row has so far (left-padded, as the
plain ``generate`` path), so an edited row is exactly the sequence the model sees, and greedy answers are
deterministic. A row needs at most ``wait + 3`` rounds.

Token accounting. ``max_new_tokens`` bounds everything generated *or inserted* (the trace, the "Wait"s, the end
delimiter and the answer), as for every answer; the thinking budget is a part of it, so the answer has
``max_new_tokens - trace`` tokens of room (a budget of ``max_new_tokens`` or more is refused at load).
``reasoning_tokens`` is the trace's tokens up to and including its end delimiter, inserted "Wait"s and an inserted
delimiter included; ``completion_tokens`` counts every token generated or inserted (and the EOS, as always). A
budget of N therefore ends the trace at N tokens plus the delimiter's. Each result's ``thinking`` says how many
"Wait"s went in (``waits``) and whether the end of thinking was forced (``forced_end``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.core.errors import UsageError
from runner.providers.reasoning import DEFAULT_DELIMITERS

if TYPE_CHECKING:
    from runner.core.settings import GenerationSettings
    from runner.providers.catalog import ModelSpec

# What replaces an early end of thinking: the s1 paper's string.
WAIT = "Wait"


def active(settings: GenerationSettings) -> bool:
    """Whether ``settings`` ask for budget forcing (a thinking budget or a minimum of thinking)."""
    return settings.thinking_budget is not None or settings.min_thinking is not None


def check_settings(spec: ModelSpec, settings: GenerationSettings) -> None:
    """Refuse, before any weight is read, thinking settings a local generative model cannot honour (UsageError).

    Encoders are not checked: like the other generation settings (temperature, max_new_tokens), thinking settings
    do not apply to an embedding, so a run of a generative model beside an encoder works with them.
    """
    if settings.reasoning_effort is not None:
        raise UsageError(f"{spec.label}: local models have no reasoning effort control; use --thinking-budget N "
                         "(budget forcing) instead of --reasoning-effort")
    if settings.min_thinking is not None and settings.wait < 1:
        raise UsageError(f"--min-thinking {settings.min_thinking} needs --wait K (K >= 1): the most times 'Wait' "
                         "replaces an end of thinking that comes too early")
    budget = settings.thinking_budget
    if budget is not None and budget >= settings.max_new_tokens:
        raise UsageError(f"--thinking-budget {budget} leaves no room for the answer: --max-new-tokens "
                         f"{settings.max_new_tokens} counts the thinking too; raise --max-new-tokens above the budget "
                         "(the budget plus the answer's length)")
    if budget is not None and settings.min_thinking is not None and settings.min_thinking > budget:
        raise UsageError(f"--min-thinking {settings.min_thinking} is above --thinking-budget {budget}")


@dataclass
class Row:
    """One answer in the making: its prompt, what it has so far (generated and inserted), and where it stands."""

    prompt: list[int]
    opened: bool = False  # the prompt opened the trace
    out: list[int] = field(default_factory=list)
    thinking: bool = True
    trace_end: int | None = None  # tokens of ``out`` up to and including the end delimiter, once it is there
    waits: int = 0
    forced: bool = False
    done: bool = False
    stop: str | None = None  # why the row stopped in this round: eos, early, budget, length
    delimiter_at: int | None = None  # where an early end delimiter starts in ``out``

    @property
    def thinking_record(self) -> dict[str, Any]:
        """What the result's ``thinking`` holds."""
        return {"waits": self.waits, "forced_end": self.forced}


class Forcing:
    """Budget forcing for one batch: the settings, the delimiter and "Wait" as token ids, and the round loop."""

    def __init__(self, model: Any, tokenizer: Any, settings: GenerationSettings,
                 delimiters: tuple[str, str] | None, stop_ids: set[int]) -> None:
        self.model, self.tokenizer, self.stop_ids = model, tokenizer, stop_ids
        self.start, self.end = delimiters or DEFAULT_DELIMITERS
        self.budget, self.min_thinking, self.most_waits = settings.thinking_budget, settings.min_thinking, settings.wait
        self.limit = settings.max_new_tokens
        self.end_ids = list(tokenizer(self.end, add_special_tokens=False)["input_ids"])
        self.wait_ids = list(tokenizer(WAIT, add_special_tokens=False)["input_ids"])
        # Tokens decoded at each step to find the end delimiter: enough for it however the model spells it.
        self.window = len(self.end) + len(self.end_ids) + 2

    def run(self, prompts: list[list[int]], opened: list[bool], options: dict[str, Any],
            on_tokens: Callable[[int], None] | None = None) -> list[Row]:
        """Every row's answer, round after round until each has ended; rows in input order."""
        import torch
        from transformers import StoppingCriteriaList

        rows = [Row(list(prompt), bool(o)) for prompt, o in zip(prompts, opened, strict=True)]
        for row in rows:
            self._settle(row)
        pad = options.get("pad_token_id")
        pad = self.tokenizer.pad_token_id if pad is None else pad
        while live := [row for row in rows if not row.done]:
            sequences = [row.prompt + row.out for row in live]
            width = max(len(s) for s in sequences)
            input_ids = torch.full((len(live), width), pad, dtype=torch.long)
            mask = torch.zeros((len(live), width), dtype=torch.long)
            for i, sequence in enumerate(sequences):  # left padding, as the plain path
                input_ids[i, width - len(sequence):] = torch.tensor(sequence, dtype=torch.long)
                mask[i, width - len(sequence):] = 1
            watch = _watch_class()(self, live)
            room = max(self.limit - len(row.out) for row in live)
            self.model.generate(input_ids=input_ids.to(self.model.device), attention_mask=mask.to(self.model.device),
                                **{**options, "max_new_tokens": room, "eos_token_id": sorted(self.stop_ids) or None,
                                   "stopping_criteria": StoppingCriteriaList([watch])})
            if on_tokens is not None:
                on_tokens(watch.produced)
            for row in live:
                self._after(row)
                self._settle(row)
        return rows

    # Where a row stands, read by the watch at each step.

    def delimiter_at(self, row: Row) -> int | None:
        """Where in ``row.out`` the end delimiter starts, when its last token was just written; else None."""
        tail = row.out[-self.window:]
        if self.end not in self.tokenizer.decode(tail, skip_special_tokens=False):
            return None
        for count in range(1, len(tail) + 1):  # the fewest last tokens that spell it
            if self.end in self.tokenizer.decode(tail[-count:], skip_special_tokens=False):
                return len(row.out) - count
        return None  # not reached: the whole tail holds it

    def too_early(self, row: Row, trace: int) -> bool:
        """Whether an end of thinking after ``trace`` tokens is replaced by "Wait" (with room left for it)."""
        return (self.min_thinking is not None and trace < self.min_thinking and row.waits < self.most_waits
                and trace + len(self.wait_ids) < self.limit)

    def in_trace(self, row: Row) -> bool:
        """Whether the row's output is a trace: the prompt opened it, or the output begins with the start delimiter."""
        return row.opened or self.tokenizer.decode(row.out, skip_special_tokens=False).lstrip().startswith(self.start)

    # Between rounds.

    def _after(self, row: Row) -> None:
        """Edit a row that stopped in this round, as its reason says."""
        stop, row.stop = row.stop, None
        if stop == "early":
            del row.out[row.delimiter_at:]
            self._wait(row)
        elif stop == "budget":
            self._force(row)
        elif stop == "eos" and row.thinking and self.in_trace(row):
            row.out.pop()  # an end of thinking without the delimiter: "Wait", or the delimiter put in its place
            if self.too_early(row, len(row.out)):
                self._wait(row)
            else:
                self._force(row)
        else:
            row.done = True  # an EOS, the token limit (or a round that ended without a reason: never loop on it)

    def _settle(self, row: Row) -> None:
        """Before a round: a trace at its budget gets the end delimiter; a row out of room is done."""
        if not row.done and row.thinking and self.budget is not None and len(row.out) >= self.budget:
            self._force(row)
        if len(row.out) >= self.limit:
            row.done = True

    def _wait(self, row: Row) -> None:
        row.out.extend(self.wait_ids)
        row.waits += 1

    def _force(self, row: Row) -> None:
        """End the trace with the delimiter; with no room for it and an answer, the row was cut off while thinking."""
        if len(row.out) + len(self.end_ids) >= self.limit:
            row.done = True
            return
        row.out.extend(self.end_ids)
        row.trace_end, row.thinking, row.forced = len(row.out), False, True


@functools.cache
def _watch_class() -> type:
    from transformers import StoppingCriteria

    class Watch(StoppingCriteria):
        """Reads each row's new token at every step and stops the row where budget forcing must step in."""

        def __init__(self, forcing: Forcing, rows: list[Row]) -> None:
            self.forcing, self.rows, self.produced = forcing, rows, 0

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            forcing = self.forcing
            for row, token in zip(self.rows, input_ids[:, -1].tolist(), strict=True):
                if row.stop is not None:
                    continue  # stopped: generate pads it from here on
                row.out.append(token)
                self.produced += 1
                if token in forcing.stop_ids:
                    row.stop = "eos"
                elif row.thinking:
                    at = forcing.delimiter_at(row)
                    if at is not None and forcing.too_early(row, at):
                        row.stop, row.delimiter_at = "early", at
                    elif at is not None:
                        row.thinking, row.trace_end = False, len(row.out)  # accepted: the answer follows
                    elif forcing.budget is not None and len(row.out) >= forcing.budget:
                        row.stop = "budget"
                if row.stop is None and len(row.out) >= forcing.limit:
                    row.stop = "length"
            return torch.tensor([row.stop is not None for row in self.rows], device=input_ids.device)

    return Watch
