"""Each result's outcome: saved as a record, or failed alone with a message naming the file.

Saving is part of each answer's own outcome: an answer whose record cannot be written or serialised fails alone and
the run goes on; a full disk (ENOSPC, EDQUOT) stops the run (``Stop``): no further request is sent, the manifest is
still closed (rewritten in place when no new file fits) and the summary printed.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
from collections import Counter
from contextlib import suppress
from pathlib import Path
from typing import Any

from runner.core.credentials import redact
from runner.core.settings import GenerationSettings
from runner.core.store import Store, encode_record
from runner.engine.kinds import Work
from runner.engine.plans import Plan, RunReport
from runner.providers.base import Result

log = logging.getLogger("runner")
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # a save failing with these stops the run: no answer could be kept


class Stop:
    """Why a run stops early, shared by all its models: set once, when a save finds the disk full.

    From then on no request is sent; answers already in flight are still saved when they can be. It is shared by
    the local models' thread and the API models' event-loop thread: ``halt`` sets ``reason`` under a lock (one
    caller reports it), and each side reads ``reason`` (one attribute, set once) before each request or result.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.problems: list[str] = []  # run-level problems that make the exit status 1 (not one answer's)
        self._lock = threading.Lock()

    def halt(self, reason: str) -> bool:
        """Stop the run for ``reason``; True the first time (the caller reports it), False after."""
        with self._lock:
            if self.reason is not None:
                return False
            self.reason = reason
            return True


def close_manifest(store: Store, report: RunReport, manifest: dict[str, Any]) -> None:
    """Rewrite the manifest at the end of a run; a failure is reported (and makes the exit status 1), not raised."""
    try:
        store.write_manifest(report.run_id, manifest)
    except Exception as exc:  # noqa: BLE001 - the answers are saved; the run must still end with its summary
        where = report.manifest_path or store.root / "runs" / f"{report.run_id}.json"
        if isinstance(exc, OSError) and exc.errno in DISK_FULL and rewrite_in_place(where, manifest):
            return
        message = (f"could not update the run manifest {where}: {write_problem(exc)} (it will read 'interrupted or "
                   "killed'; the saved answers are not affected)")
        log.error("error: %s", message)
        report.problems.append(message)


def rewrite_in_place(path: Path, manifest: dict[str, Any]) -> bool:
    """On a full disk, where no new file can be made: rewrite the manifest in the space its file already holds.

    Only when the compact JSON fits in the file's allocated blocks (so no new block is needed); a failed write
    puts the old bytes back. True when the manifest was rewritten.
    """
    data = json.dumps(manifest, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        with os.fdopen(fd, "r+b") as fh:
            allocated = getattr(os.fstat(fh.fileno()), "st_blocks", 0) * 512
            if not allocated or len(data) > allocated:
                return False
            old = fh.read()
            try:
                fh.seek(0)
                fh.write(data)
                fh.truncate()
                fh.flush()
            except OSError:
                with suppress(OSError):
                    fh.seek(0)
                    fh.write(old)
                    fh.truncate()
                    fh.flush()
                return False
    except OSError:
        return False
    return True


def write_problem(exc: BaseException) -> str:
    """What went wrong while writing, in words (an OSError's reason without its file names)."""
    if isinstance(exc, Unwritable):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, RecursionError):
        return "nested too deeply to write as JSON"
    if isinstance(exc, UnicodeError):
        return f"text that cannot be written as UTF-8 ({exc})"
    return redact(f"{type(exc).__name__}: {exc}", limit=2000)


class Saver:
    """Turns each result into a record on disk and updates the summary and progress bar.

    Saving is part of each answer's own outcome: an answer that cannot be saved (its record cannot be written or
    serialised) fails alone, with a message naming the file and the problem, and the run goes on. A full disk
    (ENOSPC, EDQUOT) stops the run (``stop``): no further request is sent.
    """

    def __init__(self, plan: Plan, settings: GenerationSettings, run_id: str, bar: Any, stop: Stop) -> None:
        self.plan, self.spec, self.settings, self.run_id, self.bar = plan, plan.spec, settings, run_id, bar
        self.stop = stop

    def __call__(self, work: Work, result: Result, embedding: list[float] | None = None) -> None:
        if result.error:
            result.error = redact(result.error, limit=2000)  # cut (a server's error can be megabytes) and scrubbed
        summary = self.plan.summaries[work.persona.name]
        saved = True
        try:
            result = self._save(work, result, embedding)
        except Exception as exc:  # noqa: BLE001 - this answer fails alone; the others are saved
            saved = False
            self._not_saved(work, exc)
        # Paid for (or computed) whether or not it could be saved, and whether or not it failed: a failed result
        # carries tokens only when they were spent (a grade whose judge replied but not in the format asked).
        summary.prompt_tokens += result.prompt_tokens or 0
        summary.completion_tokens += result.completion_tokens or 0
        if result.ok and saved:
            summary.answered += 1
        else:
            summary.failed += 1
            summary.unsaved += not saved
            if result.error:
                log.warning("%s [%s] question %d failed: %s", summary.label, work.persona.name, work.question.n,
                            result.error)
        summary.seconds += result.latency_s
        cost = self.spec.estimate_cost(summary.prompt_tokens, summary.completion_tokens)
        summary.cost_usd = round(cost, 6) if cost is not None else None
        self.bar.update(1)

    def _save(self, work: Work, result: Result, embedding: list[float] | None) -> Result:
        """Write one result's record (and body); the result as counted (a kind may turn it into a failure)."""
        kind, space = self.plan.kind, work.space or self.plan.space
        saved = kind.save(work, result, self.spec, self.settings, self.run_id, space.name, self.plan.tag, embedding)
        if saved.record.get("error") and not result.error:
            result = Result(error=saved.record["error"], latency_s=result.latency_s)
        check_serialisable(saved.record, saved.body)  # before any file is written: no body without its record
        space.save(work.persona.name, work.folder or self.plan.folder, work.question.n, saved.record, saved.body,
                   saved.chosen)
        return result

    def _not_saved(self, work: Work, exc: Exception) -> None:
        """Report an answer that could not be saved; a full disk stops the run."""
        label, persona, n = self.plan.summaries[work.persona.name].label, work.persona.name, work.question.n
        space = work.space or self.plan.space
        try:
            folder = space.model_dir(persona, work.folder or self.plan.folder)
        except Exception:  # noqa: BLE001 - only for the message
            folder = space.path / persona / (work.folder or self.plan.folder)
        names = " ".join(str(getattr(exc, a, None) or "") for a in ("filename", "filename2"))
        path = folder / (f"{n}.txt" if f"{n}.txt" in names and f"{n}.json" not in names else f"{n}.json")
        problem = write_problem(exc)
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            if self.stop.halt(f"disk full: could not write {path}: {problem}"):
                log.error("%s [%s] question %d: could not save the answer to %s: %s. Stopping the run: no more "
                          "requests are sent; answers saved so far are kept.", label, persona, n, path, problem)
            return
        log.error("%s [%s] question %d: could not save the answer to %s: %s", label, persona, n, path, problem)


class Unwritable(Exception):
    """A record or body that cannot be written as UTF-8 JSON; the message names the field and the problem."""


def check_serialisable(record: dict[str, Any], body: str | None) -> None:
    """Raise ``Unwritable`` when the record or the body cannot be written as UTF-8 JSON, naming the field."""
    try:
        encode_record(record).encode("utf-8")
        if body is not None:
            body.encode("utf-8")
    except RecursionError:
        deepest = max(record, key=lambda name: nesting_depth(record[name]))
        raise Unwritable(f"the record's {deepest!r} field is nested too deeply to write as JSON "
                          f"({nesting_depth(record[deepest])} levels)") from None
    except UnicodeEncodeError as exc:
        where = next((f"the record's {name!r} field" for name, value in record.items() if unencodable(value)),
                     "the answer text")
        raise Unwritable(f"{where} holds text that cannot be written as UTF-8 ({exc.reason}: "
                          f"{exc.object[exc.start:exc.end]!r}, half of a UTF-16 pair?)") from None
    except (ValueError, TypeError) as exc:
        raise Unwritable(f"the record cannot be written as JSON: {type(exc).__name__}: {exc}") from None


def nesting_depth(value: Any) -> int:
    """How deeply lists and dicts nest in ``value`` (without recursion)."""
    depth, level = 0, [value]
    while level:
        depth += 1
        level = [v for x in level if isinstance(x, (dict, list)) for v in (x.values() if isinstance(x, dict) else x)]
    return depth - 1


def unencodable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except (RecursionError, ValueError, TypeError):
        return False
    return False


def count_not_asked(plan: Plan) -> None:
    """After an early stop: the work of each persona that got no outcome (neither answered nor failed)."""
    pending = Counter(w.persona.name for w in plan.pending)
    for name, summary in plan.summaries.items():
        summary.not_asked = max(0, pending[name] - summary.answered - summary.failed)
