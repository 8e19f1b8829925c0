"""Orchestration, the same for every request kind: plan, skip what is saved, load each model once, ask, save each
result as it arrives, summarise.

Local (batched) models run one after another, each loaded once and released before the next.
API (concurrent) models then run together in one event loop, each with up to ``concurrency``
requests in flight. Retrying with backoff lives here and nowhere else. What differs between kinds (the key, the
request, the record) comes from ``kinds.py``.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import json
import logging
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

from runner.core.credentials import redact
from runner.core.errors import ModelUnavailable, ProviderError, RunnerError, UsageError
from runner.core.personas import DEFAULT_PERSONA, Persona, resolve_persona
from runner.core.questions import Question, load_questions
from runner.core.settings import GenerationSettings, ModelEntry
from runner.core.store import SetRef, SetStore, Store, check_tag, with_tag
from runner.engine.kinds import KINDS, Embed, Kind, Work
from runner.engine.manifest import build_manifest, new_run_id
from runner.engine.variants import CHANGED, SAME, VARIANT, Conflict, format_conflicts, saved_state
from runner.providers import PROVIDERS, is_concurrent, load_provider_class, provider_info
from runner.providers.base import Embedder, Generator, Result
from runner.providers.catalog import DEFAULT_MODELS, ModelSpec, resolve_model
from runner.tasks.fewshot import FewshotPlan

log = logging.getLogger("runner")
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # a save failing with these stops the run: no answer could be kept


@dataclass
class ModelSummary:
    """Counts for one model under one persona, for the closing table and the manifest."""

    model: str
    label: str
    persona: str
    answered: int = 0
    skipped: int = 0
    failed: int = 0
    replaced: int = 0  # saved answers this run answered anew (--force, or the question changed)
    changed: int = 0  # of those, answers to a question whose text changed since
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cost_usd: float | None = None
    error: str | None = None
    unsaved: int = 0  # of the failed, answers that arrived but could not be saved (counted failed)
    not_asked: int = 0  # answers left unasked because the run stopped early (a full disk)


@dataclass
class RunReport:
    """What a run did: per-model summaries, where its manifest is, and whether it was interrupted."""

    run_id: str
    output_dir: Path
    set_name: str = ""
    tag: str | None = None
    summaries: list[ModelSummary] = field(default_factory=list)
    manifest_path: Path | None = None
    interrupted: bool = False
    stopped: str | None = None  # why the run stopped before asking everything (a full disk), else None
    problems: list[str] = field(default_factory=list)  # run-level problems, e.g. a manifest that was not written

    @property
    def exit_status(self) -> int:
        """0 when every answer exists, 1 when some failed (or a model could not run, or the run stopped early)."""
        failed = any(s.failed or s.error or s.not_asked for s in self.summaries)
        return 1 if failed or self.stopped or self.problems else 0


class _Stop:
    """Why a run stops early, shared by all its models: set once, when a save finds the disk full.

    From then on no request is sent; answers already in flight are still saved when they can be.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.problems: list[str] = []  # run-level problems that make the exit status 1 (not one answer's)

    def halt(self, reason: str) -> bool:
        """Stop the run for ``reason``; True the first time (the caller reports it), False after."""
        if self.reason is not None:
            return False
        self.reason = reason
        return True


class _StopBatch(Exception):
    """Raised from a batched provider's ``on_result`` callback to end its batch once the run has stopped."""


@dataclass
class _Plan:
    """One model's work in one set: what is left to ask, the per-persona counts, and variants it would replace."""

    spec: ModelSpec
    kind: Kind
    space: SetStore
    tag: str | None
    label: str  # the model's label, ``label@tag`` for a variant
    folder: str
    personas: list[Persona]
    pending: list[Work]
    summaries: dict[str, ModelSummary]
    conflicts: list[Conflict] = field(default_factory=list)


def run(
    questions: Sequence[Question] | str | Path,
    models: Sequence[str | ModelEntry | ModelSpec] = DEFAULT_MODELS,
    personas: Sequence[str | Persona] = (DEFAULT_PERSONA,),
    settings: GenerationSettings | None = None,
    output_dir: str | Path = "outputs",
    force: bool = False,
    progress: bool = True,
    questions_path: str | Path | None = None,
    argv: Sequence[str] | None = None,
    question_set: SetRef | str | None = None,
    tag: str | None = None,
    kind: str | None = None,
    fewshot: FewshotPlan | None = None,
) -> RunReport:
    """Ask every model about every question under every persona; save each result as it arrives.

    ``kind`` is the request kind: None asks each model for what it gives (``generate`` a free-text answer, or
    ``embed`` a vector for an encoder); ``loglik`` scores each option of multiple-choice questions by
    log-likelihood (with ``fewshot`` solved examples in front; personas are not used). Results go to the question
    set ``question_set`` (default: named after ``questions_path``) and, with ``tag``, into a named variant. A run
    that would replace answers made with another persona text or other settings stops before writing anything
    (UsageError naming what differs) unless ``force`` is given.
    """
    settings = settings or GenerationSettings()
    if isinstance(questions, (str, Path)):
        questions_path = questions
        questions = load_questions(questions)
    specs = [m if isinstance(m, ModelSpec) else resolve_model(m) for m in models]
    personas = [p if isinstance(p, Persona) else resolve_persona(p) for p in personas]
    if not specs:
        raise UsageError("no models selected")
    _check_unique_slugs(specs)
    kinds = [_kind_for(spec, kind, fewshot) for spec in specs]
    for k in {type(k): k for k in kinds}.values():
        _check_questions(k, questions)
    ref = question_set if isinstance(question_set, SetRef) else SetRef.for_path(questions_path, question_set)
    check_tag(tag)
    store = Store(output_dir)
    space = store.questions_set(ref.name)
    report = RunReport(run_id=new_run_id(), output_dir=Path(output_dir), set_name=ref.name, tag=tag)
    with store.lock():
        try:
            space.claim(ref)
        except OSError as exc:
            raise RunnerError(f"cannot write the question set folder {space.path}: {_problem(exc)}") from None
        plans = [_plan(spec, k, questions, personas, settings, space, tag, force)
                 for spec, k in zip(specs, kinds, strict=True)]
        conflicts = [c for plan in plans for c in plan.conflicts]
        if conflicts and not force:
            raise UsageError(format_conflicts(conflicts, output_dir))
        started = time.time()
        used = list({p.name: p for plan in plans for p in plan.personas}.values())
        manifest = build_manifest(report.run_id, questions, questions_path, specs, used, settings, argv)
        manifest.update(set=ref.name, tag=tag)
        if kind is not None:
            manifest.update(kind=kind, method=kind)
        try:
            report.manifest_path = store.write_manifest(report.run_id, manifest)
        except Exception as exc:  # noqa: BLE001 - a clear message, before any request
            raise RunnerError(f"cannot write the run manifest under {store.root / 'runs'}: {_problem(exc)}; "
                              "nothing was asked") from None
        stop = _Stop()
        crash: str | None = None
        try:
            for plan in plans:
                if not is_concurrent(plan.spec):
                    report.summaries.extend(_run_local_model(plan, settings, progress, report.run_id, stop))
            remote = [plan for plan in plans if is_concurrent(plan.spec)]
            if remote:
                report.summaries.extend(asyncio.run(_run_remote_models(remote, settings, progress, report.run_id,
                                                                       stop)))
        except KeyboardInterrupt:
            report.interrupted = True
            raise
        except BaseException as exc:
            crash = redact(f"{type(exc).__name__}: {exc}", limit=2000)
            raise
        finally:
            report.stopped = stop.reason
            report.problems.extend(stop.problems)
            status = ("interrupted" if report.interrupted else "crashed" if crash else
                      "disk-full" if stop.reason else "finished")
            manifest.update(finished=_iso(time.time()), seconds=round(time.time() - started, 3), status=status,
                            summary=[vars(s) for s in report.summaries])
            if stop.reason or crash:
                manifest["stopped_because"] = stop.reason or crash
            _close_manifest(store, report, manifest)
    return report


def _close_manifest(store: Store, report: RunReport, manifest: dict[str, Any]) -> None:
    """Rewrite the manifest at the end of a run; a failure is reported (and makes the exit status 1), not raised."""
    try:
        store.write_manifest(report.run_id, manifest)
    except Exception as exc:  # noqa: BLE001 - the answers are saved; the run must still end with its summary
        where = report.manifest_path or store.root / "runs" / f"{report.run_id}.json"
        if isinstance(exc, OSError) and exc.errno in DISK_FULL and _rewrite_in_place(where, manifest):
            return
        message = (f"could not update the run manifest {where}: {_problem(exc)} (it will read 'interrupted or "
                   "killed'; the saved answers are not affected)")
        log.error("error: %s", message)
        report.problems.append(message)


def _rewrite_in_place(path: Path, manifest: dict[str, Any]) -> bool:
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


def _problem(exc: BaseException) -> str:
    """What went wrong while writing, in words (an OSError's reason without its file names)."""
    if isinstance(exc, _Unwritable):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, RecursionError):
        return "nested too deeply to write as JSON"
    if isinstance(exc, UnicodeError):
        return f"text that cannot be written as UTF-8 ({exc})"
    return redact(f"{type(exc).__name__}: {exc}", limit=2000)


def _check_unique_slugs(specs: list[ModelSpec]) -> None:
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.slug in seen and seen[spec.slug] != spec.name:
            raise UsageError(f"models {seen[spec.slug]} and {spec.name} would share the output folder "
                             f"{spec.slug!r}; give one a 'slug' in the config file")
        if spec.slug in seen:
            raise UsageError(f"model {spec.name} is selected twice")
        seen[spec.slug] = spec.name


def _kind_for(spec: ModelSpec, name: str | None, fewshot: FewshotPlan | None) -> Kind:
    """The request kind asked of one model; a model whose provider does not serve it is a UsageError."""
    serves = provider_info(spec.provider).capabilities
    if name is None:
        name = "embed" if "embed" in serves else "generate"
    if name not in KINDS:
        raise UsageError(f"unknown request kind {name!r}; known kinds: {', '.join(KINDS)}")
    if name not in serves:
        able = [p for p, info in PROVIDERS.items() if name in info.capabilities]
        raise UsageError(f"{spec.label}: provider {spec.provider!r} cannot serve {name!r} requests (it serves "
                         f"{', '.join(serves)}); providers that do: {', '.join(able)}")
    if fewshot and name != "loglik":
        raise UsageError("solved examples in front (fewshot) are given to the engine only for loglik; put them in the "
                         "question text for other kinds")
    return KINDS[name](fewshot)


def _check_questions(kind: Kind, questions: Sequence[Question]) -> None:
    for q in questions:
        try:
            kind.check(q)
        except ValueError as exc:
            raise UsageError(f"cannot make {kind.name} requests: {exc}") from None


def _plan(spec: ModelSpec, kind: Kind, questions: Sequence[Question], personas: Sequence[Persona],
          settings: GenerationSettings, space: SetStore, tag: str | None, force: bool) -> _Plan:
    """Work still to do for one model, the skips and replacements counted, and the variants it would replace."""
    label, folder = with_tag(spec.label, tag), with_tag(spec.slug, tag)
    personas = kind.personas(personas)
    plan = _Plan(spec, kind, space, tag, label, folder, personas, [],
                 {p.name: ModelSummary(model=spec.name, label=label, persona=p.name) for p in personas})
    for persona in personas:
        space.model_dir(persona.name, folder)  # refuses unsafe names before any work
        summary = plan.summaries[persona.name]
        conflict = Conflict(space.name, persona.name, summary.label, folder)
        for q in questions:
            key = kind.key(q, persona, spec, settings)
            record = space.load_record(persona.name, folder, q.n)
            state = saved_state(record, key, q)
            if state == SAME and not force:
                summary.skipped += 1
                continue
            if state == VARIANT:
                conflict.count += 1
                conflict.what.update(["; ".join(kind.differences(record or {}, persona, spec, settings))])
            summary.replaced += state in (SAME, VARIANT, CHANGED)
            summary.changed += state == CHANGED
            plan.pending.append(Work(persona, q, key))
        if conflict.count:
            plan.conflicts.append(conflict)
    return plan


def _open_provider(plan: _Plan, settings: GenerationSettings) -> Generator | Embedder | None:
    """Load the model when there is work for it; None (with everything counted failed) when it cannot run."""
    _report_skips(plan)
    if not plan.pending:
        return None
    try:
        provider = load_provider_class(plan.spec.provider)(plan.spec, settings)
        provider.load()
        return provider
    except (ModelUnavailable, UsageError) as exc:
        _fail_all(plan.summaries, plan.pending, f"{plan.label}: cannot run: {exc}")
    except Exception as exc:  # noqa: BLE001 - a model that fails to load must not stop the others
        _fail_all(plan.summaries, plan.pending, f"{plan.label}: failed to load: {type(exc).__name__}: {exc}")
    return None


def _fail_all(summaries: dict[str, ModelSummary], pending: list[Work], message: str) -> None:
    message = redact(message, limit=2000)
    log.error("%s", message)
    for work in pending:
        summaries[work.persona.name].failed += 1
    for s in summaries.values():
        s.error = message


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="answer", file=sys.stderr, disable=not enabled, dynamic_ncols=True)


def _report_skips(plan: _Plan) -> None:
    skipped = sum(s.skipped for s in plan.summaries.values())
    changed = sum(s.changed for s in plan.summaries.values())
    if skipped:
        log.info("%s: %d answer(s) already saved, skipped (use --force to answer again)", plan.label, skipped)
    if changed:
        log.info("%s: %d question(s) changed since their answers were saved; answering them anew", plan.label,
                 changed)


class _Saver:
    """Turns each result into a record on disk and updates the summary and progress bar.

    Saving is part of each answer's own outcome: an answer that cannot be saved (its record cannot be written or
    serialised) fails alone, with a message naming the file and the problem, and the run goes on. A full disk
    (ENOSPC, EDQUOT) stops the run (``stop``): no further request is sent.
    """

    def __init__(self, plan: _Plan, settings: GenerationSettings, run_id: str, bar: Any, stop: _Stop) -> None:
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
        if result.ok:  # paid for (or computed) whether or not it could be saved
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
        kind, space = self.plan.kind, self.plan.space
        saved = kind.save(work, result, self.spec, self.settings, self.run_id, space.name, self.plan.tag, embedding)
        if saved.record.get("error") and not result.error:
            result = Result(error=saved.record["error"], latency_s=result.latency_s)
        _check_serialisable(saved.record, saved.body)  # before any file is written: no body without its record
        space.save(work.persona.name, self.plan.folder, work.question.n, saved.record, saved.body)
        return result

    def _not_saved(self, work: Work, exc: Exception) -> None:
        """Report an answer that could not be saved; a full disk stops the run."""
        label, persona, n = self.plan.summaries[work.persona.name].label, work.persona.name, work.question.n
        try:
            folder = self.plan.space.model_dir(persona, self.plan.folder)
        except Exception:  # noqa: BLE001 - only for the message
            folder = self.plan.space.path / persona / self.plan.folder
        names = " ".join(str(getattr(exc, a, None) or "") for a in ("filename", "filename2"))
        path = folder / (f"{n}.txt" if f"{n}.txt" in names and f"{n}.json" not in names else f"{n}.json")
        problem = _problem(exc)
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            if self.stop.halt(f"disk full: could not write {path}: {problem}"):
                log.error("%s [%s] question %d: could not save the answer to %s: %s. Stopping the run: no more "
                          "requests are sent; answers saved so far are kept.", label, persona, n, path, problem)
            return
        log.error("%s [%s] question %d: could not save the answer to %s: %s", label, persona, n, path, problem)


class _Unwritable(Exception):
    """A record or body that cannot be written as UTF-8 JSON; the message names the field and the problem."""


def _check_serialisable(record: dict[str, Any], body: str | None) -> None:
    """Raise ``_Unwritable`` when the record or the body cannot be written as UTF-8 JSON, naming the field."""
    try:
        json.dumps(record, ensure_ascii=False, indent=1).encode("utf-8")
        if body is not None:
            body.encode("utf-8")
    except RecursionError:
        deepest = max(record, key=lambda name: _depth(record[name]))
        raise _Unwritable(f"the record's {deepest!r} field is nested too deeply to write as JSON "
                          f"({_depth(record[deepest])} levels)") from None
    except UnicodeEncodeError as exc:
        where = next((f"the record's {name!r} field" for name, value in record.items() if _unencodable(value)),
                     "the answer text")
        raise _Unwritable(f"{where} holds text that cannot be written as UTF-8 ({exc.reason}: "
                          f"{exc.object[exc.start:exc.end]!r}, half of a UTF-16 pair?)") from None
    except (ValueError, TypeError) as exc:
        raise _Unwritable(f"the record cannot be written as JSON: {type(exc).__name__}: {exc}") from None


def _depth(value: Any) -> int:
    """How deeply lists and dicts nest in ``value`` (without recursion)."""
    depth, level = 0, [value]
    while level:
        depth += 1
        level = [v for x in level if isinstance(x, (dict, list)) for v in (x.values() if isinstance(x, dict) else x)]
    return depth - 1


def _unencodable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except (RecursionError, ValueError, TypeError):
        return False
    return False


def _count_not_asked(plan: _Plan) -> None:
    """After an early stop: the work of each persona that got no outcome (neither answered nor failed)."""
    pending = Counter(w.persona.name for w in plan.pending)
    for name, summary in plan.summaries.items():
        summary.not_asked = max(0, pending[name] - summary.answered - summary.failed)


def _run_local_model(plan: _Plan, settings: GenerationSettings, progress: bool, run_id: str,
                     stop: _Stop) -> list[ModelSummary]:
    if stop.reason:  # a full disk stopped the run: load nothing more
        _count_not_asked(plan)
        return list(plan.summaries.values())
    provider = _open_provider(plan, settings)
    if provider is None:
        return list(plan.summaries.values())
    bar = _progress(len(plan.pending), plan.label, progress)
    saver = _Saver(plan, settings, run_id, bar, stop)
    try:
        if isinstance(plan.kind, Embed):
            assert isinstance(provider, Embedder)

            def deliver(work: Work, result: Result, vector: list[float] | None) -> None:
                if not stop.reason:
                    saver(work, result, vector)

            plan.kind.embed(provider, plan.pending, deliver)
            _write_matrices(plan, stop)
        else:
            assert isinstance(provider, Generator)
            _ask_batched(provider, plan.kind, plan.pending, settings, saver)
    finally:
        bar.close()
        provider.close()
        del provider
        gc.collect()
    if stop.reason:
        _count_not_asked(plan)
    return list(plan.summaries.values())


def _write_matrices(plan: _Plan, stop: _Stop) -> None:
    """An encoder's ``embeddings.npy`` per persona; a failure is reported (the records are saved), a full disk stops."""
    for persona in plan.personas:
        if stop.reason:
            return
        try:
            plan.space.write_embedding_matrix(persona.name, plan.folder)
        except Exception as exc:  # noqa: BLE001 - the records are saved; the matrix is rebuilt by the next run
            where = plan.space.path / persona.name / plan.folder / "embeddings.npy"
            if isinstance(exc, OSError) and exc.errno in DISK_FULL:
                if stop.halt(f"disk full: could not write {where}: {_problem(exc)}"):
                    log.error("could not write %s: %s. Stopping the run.", where, _problem(exc))
                return
            message = f"could not write {where}: {_problem(exc)} (the answers are saved; run again to rebuild it)"
            log.error("error: %s", message)
            stop.problems.append(message)


def _ask_batched(provider: Generator, kind: Kind, pending: list[Work], settings: GenerationSettings,
                 saver: _Saver) -> None:
    """Batched requests of any kind, with bounded retries of the retryable failures; ends early on a stop."""
    todo = pending
    ask = kind.batched(provider)
    stop = saver.stop
    for attempt in range(1, settings.max_attempts + 1):
        requests = [kind.request(w, settings) for w in todo]
        delivered: set[int] = set()
        retry: list[tuple[Work, Result]] = []
        last = attempt == settings.max_attempts

        def on_result(i: int, result: Result, todo: list[Work] = todo, attempt: int = attempt,
                      delivered: set[int] = delivered, retry: list[tuple[Work, Result]] = retry,
                      last: bool = last) -> None:
            if stop.reason:
                raise _StopBatch
            delivered.add(i)
            result.attempts = attempt
            if result.error and result.retryable and not last:
                retry.append((todo[i], result))
            else:
                saver(todo[i], result)
            if stop.reason:  # this save found the disk full: end the batch here
                raise _StopBatch

        try:
            ask(requests, on_result)
        except _StopBatch:
            return
        except Exception as exc:  # noqa: BLE001 - a batch-level crash fails only what was not answered
            if stop.reason:
                return
            error = provider.classify(exc)
            for i, w in enumerate(todo):
                if i not in delivered and not stop.reason:
                    saver(w, Result.failure(error))
            for w, result in retry:
                if not stop.reason:
                    saver(w, result)
            return
        if not retry or stop.reason:
            return
        time.sleep(max(backoff_delay(attempt, r.retry_after, settings) for _, r in retry))
        todo = [w for w, _ in retry]


def backoff_delay(attempt: int, retry_after: float | None, settings: GenerationSettings) -> float:
    """Exponential backoff with full jitter, never shorter than the server's Retry-After."""
    ceiling = min(settings.retry_max_wait_s, settings.retry_initial_wait_s * (2 ** (attempt - 1)))
    delay = random.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.retry_max_wait_s))
    return delay


async def _answer(provider: Generator, ask: Any, request: Any, settings: GenerationSettings,
                  stopped: Callable[[], bool] = lambda: False) -> Result | None:
    """One request (``ask(request)``) with a timeout and bounded retries of retryable errors.

    None when the run stopped (``stopped()``) before a retry: no further request is sent.
    """
    start = time.perf_counter()
    for attempt in range(1, settings.max_attempts + 1):
        if attempt > 1 and stopped():
            return None
        try:
            async with asyncio.timeout(settings.timeout_s):  # no extra task per request, unlike wait_for
                result = await ask(request)
            result.attempts = attempt
            result.latency_s = result.latency_s or time.perf_counter() - start
            return result
        except TimeoutError:
            error = ProviderError(f"timed out after {settings.timeout_s:g} s", retryable=True)
        except Exception as exc:  # noqa: BLE001 - recorded per answer or model; the run goes on
            error = provider.classify(exc)
        if not error.retryable or attempt == settings.max_attempts:
            result = Result.failure(error, time.perf_counter() - start)
            result.attempts = attempt
            if error.retryable:
                result.error = f"{result.error} (gave up after {attempt} attempts)"
            return result
        await asyncio.sleep(backoff_delay(attempt, error.retry_after, settings))
    raise AssertionError("unreachable")


async def _run_remote_models(plans: list[_Plan], settings: GenerationSettings, progress: bool,
                             run_id: str, stop: _Stop) -> list[ModelSummary]:
    groups = await asyncio.gather(*(_run_remote_model(plan, settings, progress, run_id, stop) for plan in plans))
    return [s for group in groups for s in group]


async def _run_remote_model(plan: _Plan, settings: GenerationSettings, progress: bool,
                            run_id: str, stop: _Stop) -> list[ModelSummary]:
    if stop.reason:
        _count_not_asked(plan)
        return list(plan.summaries.values())
    provider = _open_provider(plan, settings)
    if provider is None:
        return list(plan.summaries.values())
    assert isinstance(provider, Generator)
    bar = _progress(len(plan.pending), plan.label, progress)
    saver = _Saver(plan, settings, run_id, bar, stop)
    semaphore = asyncio.Semaphore(settings.concurrency)
    ask = plan.kind.concurrent(provider)

    def stopped() -> bool:
        return stop.reason is not None

    async def one(work: Work) -> None:
        if stopped():
            return
        request = plan.kind.request(work, settings)
        async with semaphore:
            if stopped():  # the run stopped while this one waited for its turn: send nothing
                return
            result = await _answer(provider, ask, request, settings, stopped)
        if result is not None:  # an answer in flight when the run stopped is still saved when it can be
            saver(work, result)

    try:
        await asyncio.gather(*(one(w) for w in plan.pending))
    finally:
        bar.close()
        aclose = getattr(provider, "aclose", None)
        if aclose is not None:
            await aclose()
        provider.close()
    if stop.reason:
        _count_not_asked(plan)
    return list(plan.summaries.values())


def _iso(ts: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")
