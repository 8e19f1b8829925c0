"""Orchestration, the same for every request kind: plan, skip what is saved, load each model once, ask, save each
result as it arrives, summarise (what each result's outcome is, saved or failed alone, is ``saving.py``'s).

Local (batched) models run one after another, each loaded once and released before the next.
API (concurrent) models run together in one event loop, each with up to ``concurrency`` requests in flight; while
local models generate, that loop runs in a worker thread (``_RemoteModels``), so API answers arrive meanwhile.
Retrying with backoff lives here and nowhere else. What differs between kinds (the key, the request, the record)
comes from ``kinds.py``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC
from pathlib import Path
from typing import Any

from runner.core.credentials import redact
from runner.core.errors import ModelUnavailable, RunnerError, UsageError
from runner.core.index import Index
from runner.core.personas import DEFAULT_PERSONA, Persona, resolve_persona
from runner.core.questions import Question, load_questions
from runner.core.settings import GenerationSettings, ModelEntry
from runner.core.store import SetRef, SetStore, Store, check_tag, with_tag
from runner.engine.kinds import KINDS, Embed, Kind, Work
from runner.engine.manifest import build_manifest, new_run_id
from runner.engine.plans import ModelSummary, Plan, RunReport
from runner.engine.recording import note_prompt
from runner.engine.retrying import answer as _answer
from runner.engine.retrying import backoff_delay
from runner.engine.saving import DISK_FULL, Saver, Stop, close_manifest, count_not_asked, write_problem
from runner.engine.variants import CHANGED, SAME, VARIANT, Conflict, format_conflicts
from runner.providers import PROVIDERS, is_concurrent, load_provider_class, provider_info
from runner.providers.base import Embedder, Generator, Result
from runner.providers.catalog import DEFAULT_MODELS, ModelSpec, resolve_model
from runner.tasks.fewshot import FewshotPlan

log = logging.getLogger("runner")


class _StopBatch(Exception):
    """Raised from a batched provider's ``on_result`` callback to end its batch once the run has stopped."""


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
    kind: str | Kind | None = None,
    fewshot: FewshotPlan | None = None,
) -> RunReport:
    """Ask every model about every question under every persona; save each result as it arrives.

    ``kind`` is the request kind: None asks each model for what it gives (``generate`` a free-text answer, or
    ``embed`` a vector for an encoder); ``loglik`` scores each option of multiple-choice questions by
    log-likelihood (with ``fewshot`` solved examples in front; personas are not used); a ``Kind`` instance is used
    as it is (``engine.grading.Grade``: the models judge saved answers). Results go to the question
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
    for spec, k in zip(specs, kinds, strict=True):
        k.check_settings(spec, spec.settings_for(settings))  # before anything is written
    ref = question_set if isinstance(question_set, SetRef) else SetRef.for_path(questions_path, question_set)
    check_tag(tag)
    store = Store(output_dir)
    space = store.questions_set(ref.name)
    report = RunReport(run_id=new_run_id(), output_dir=Path(output_dir), set_name=ref.name, tag=tag,
                       kind=kinds[0].name)
    with store.lock():
        try:
            space.claim(ref)
        except OSError as exc:
            raise RunnerError(f"cannot write the question set folder {space.path}: {write_problem(exc)}") from None
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
            name = kind if isinstance(kind, str) else kind.name
            manifest.update(kind=name, method=name)
        try:
            report.manifest_path = store.write_manifest(report.run_id, manifest)
        except Exception as exc:  # noqa: BLE001 - a clear message, before any request
            raise RunnerError(f"cannot write the run manifest under {store.root / 'runs'}: {write_problem(exc)}; "
                              "nothing was asked") from None
        stop = Stop()
        crash: str | None = None
        try:
            local = [plan for plan in plans if not is_concurrent(plan.spec)]
            remote = [plan for plan in plans if is_concurrent(plan.spec)]
            if not local:  # only API models: their event loop runs here (Ctrl-C cancels it, as asyncio.run does)
                report.summaries.extend(asyncio.run(_run_remote_models(remote, settings, progress, report.run_id,
                                                                       stop)))
            else:  # the API models' loop answers in a worker thread while the local models generate here
                with _RemoteModels(remote, settings, progress, report.run_id, stop) as api:
                    for plan in local:
                        report.summaries.extend(_run_local_model(plan, settings, progress, report.run_id, stop))
                    report.summaries.extend(api.wait())  # after the local ones, as the summary table lists them
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
            Index.of(store.root).flush()  # the rows of the records saved last (lost rows are found again anyway)
            close_manifest(store, report, manifest)
    return report


_STOP_WAIT_S = 10.0  # how long an interrupted or crashed run waits for the API models' thread to wind down


class _RemoteModels:
    """The API models' event loop (``_run_remote_models``) in a worker thread, while the caller runs the local ones.

    ``with`` starts it (no thread when there is no API model); ``wait()`` joins it, returns its summaries and re-raises
    in the caller what crashed in it. Leaving the ``with`` by an exception (Ctrl-C, which only the main thread
    receives, or a crash of a local model) cancels the loop's task as ``asyncio.run`` does on Ctrl-C: no further
    request is sent, requests in flight are abandoned, answers already received are saved (a save is never cut in
    half: cancelling reaches a task only where it awaits). The thread is then joined for at most ``_STOP_WAIT_S``
    and the exception goes on; it is never swallowed. A full disk stops both sides through the shared ``Stop``.
    """

    def __init__(self, plans: list[Plan], settings: GenerationSettings, progress: bool, run_id: str,
                 stop: Stop) -> None:
        self._args = (plans, settings, progress, run_id, stop)
        self._lock = threading.Lock()
        self._cancelled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._summaries: list[ModelSummary] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="runner-api-models", daemon=True)

    def __enter__(self) -> _RemoteModels:
        if self._args[0]:
            from tqdm import tqdm

            tqdm.get_lock()  # made once here, not raced for: it places each thread's bars on their own lines
            self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is None or not self._thread.is_alive():
            return
        self._cancel()
        self._thread.join(_STOP_WAIT_S)
        if self._thread.is_alive():
            log.warning("the API models did not stop within %g s; leaving them", _STOP_WAIT_S)

    def wait(self) -> list[ModelSummary]:
        """The API models' summaries once they are done; what crashed in their thread is raised here."""
        while self._thread.is_alive():
            self._thread.join(0.25)  # in slices: Ctrl-C reaches the caller while it waits, on every platform
        if self._error is not None:
            raise self._error
        return self._summaries

    def _main(self) -> None:
        try:
            self._summaries = asyncio.run(self._drive())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which raises it (wait)
            if not (self._cancelled and isinstance(exc, asyncio.CancelledError)):
                self._error = exc

    async def _drive(self) -> list[ModelSummary]:
        with self._lock:
            if self._cancelled:  # stopped before its loop started: ask nothing
                return []
            self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        return await _run_remote_models(*self._args)

    def _cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._loop is not None and self._task is not None:
                with suppress(RuntimeError):  # the loop has already closed: nothing left to cancel
                    self._loop.call_soon_threadsafe(self._task.cancel)


def _check_unique_slugs(specs: list[ModelSpec]) -> None:
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.slug in seen and seen[spec.slug] != spec.name:
            raise UsageError(f"models {seen[spec.slug]} and {spec.name} would share the output folder "
                             f"{spec.slug!r}; give one a 'slug' in the config file")
        if spec.slug in seen:
            raise UsageError(f"model {spec.name} is selected twice")
        seen[spec.slug] = spec.name


def _kind_for(spec: ModelSpec, name: str | Kind | None, fewshot: FewshotPlan | None) -> Kind:
    """The request kind asked of one model; a model whose provider does not serve it is a UsageError."""
    serves = provider_info(spec.provider).capabilities
    if isinstance(name, Kind):
        kind: Kind | None = name
        name = name.name
    else:
        kind = None
        if name is None:
            name = "embed" if "embed" in serves else "generate"
        if name not in KINDS:
            raise UsageError(f"unknown request kind {name!r}; known kinds: {', '.join(KINDS)}")
    requires = kind.requires if kind is not None else KINDS[name].requires
    if requires not in serves:
        able = [p for p, info in PROVIDERS.items() if requires in info.capabilities]
        raise UsageError(f"{spec.label}: provider {spec.provider!r} cannot serve {name!r} requests (it serves "
                         f"{', '.join(serves)}); providers that do: {', '.join(able)}")
    if fewshot and name != "loglik":
        raise UsageError("solved examples in front (fewshot) are given to the engine only for loglik; put them in the "
                         "question text for other kinds")
    return kind if kind is not None else KINDS[name](fewshot)


def _check_questions(kind: Kind, questions: Sequence[Question]) -> None:
    for q in questions:
        try:
            kind.check(q)
        except ValueError as exc:
            raise UsageError(f"cannot make {kind.name} requests: {exc}") from None


def _plan(spec: ModelSpec, kind: Kind, questions: Sequence[Question], personas: Sequence[Persona],
          settings: GenerationSettings, space: SetStore, tag: str | None, force: bool) -> Plan:
    """Work still to do for one model, the skips and replacements counted, and the variants it would replace."""
    settings = spec.settings_for(settings)  # the model card's defaults for what the user did not set
    label, folder = with_tag(spec.label, tag), with_tag(spec.slug, tag)
    personas = kind.personas(personas)
    plan = Plan(spec, kind, kind.space(space, folder), tag, label, folder, personas, [],
                {p.name: ModelSummary(model=spec.name, label=label, persona=p.name) for p in personas},
                settings=settings)
    conflicts: dict[tuple[str, str], Conflict] = {}
    for persona in personas:
        plan.space.model_dir(persona.name, folder)  # refuses unsafe names before any work
    saved: dict[Path, dict[int, str]] = {}  # each folder's saved keys, from the store's index
    for unit in kind.expand(kind.units(questions, personas), spec, settings):
        summary = plan.summaries[unit.persona.name]
        where = unit.folder or folder
        key = kind.unit_key(unit, spec, settings)
        unit_space = kind.unit_space(plan.space, unit)
        if not force:
            place = unit_space.model_dir(unit.persona.name, where)
            if place not in saved:
                saved[place] = unit_space.saved_keys(unit.persona.name, where)
            if saved[place].get(unit.question.n) == key:  # saved for exactly this key: the record need not be read
                summary.skipped += 1
                continue
        record = unit_space.load_record(unit.persona.name, where, unit.question.n)
        state = kind.state(record, key, unit.question)
        if state == SAME and not force:
            summary.skipped += 1
            continue
        if state == VARIANT:
            conflict = conflicts.setdefault((unit.persona.name, where),
                                            Conflict(space.name, unit.persona.name, summary.label, where))
            conflict.count += 1
            conflict.what.update(["; ".join(kind.differences(record or {}, unit.persona, spec, settings))])
        summary.replaced += state in (SAME, VARIANT, CHANGED)
        summary.changed += state == CHANGED
        plan.pending.append(Work(unit.persona, unit.question, key, unit.folder, unit.target, record,
                                 None if unit_space is plan.space else unit_space))
    plan.conflicts.extend(conflicts.values())
    return plan


def _open_provider(plan: Plan, settings: GenerationSettings) -> Generator | Embedder | None:
    """Load the model when there is work for it; None (with everything counted failed) when it cannot run."""
    _report_skips(plan)
    if not plan.pending:
        return None
    try:
        provider = load_provider_class(plan.spec.provider)(plan.spec, settings)
        provider.load()
        return provider
    except (ModelUnavailable, UsageError) as exc:
        _fail_all(plan, f"cannot run: {without_model_prefix(str(exc), plan.spec)}")
    except Exception as exc:  # noqa: BLE001 - a model that fails to load must not stop the others
        _fail_all(plan, f"failed to load: {type(exc).__name__}: {without_model_prefix(str(exc), plan.spec)}")
    return None


def without_model_prefix(message: str, spec: ModelSpec) -> str:
    """``message`` without the ``<model>: `` it starts with (the caller names the model once, in front)."""
    names = {n for n in (spec.label, spec.name, spec.alias, spec.model_id) if n}
    stripped = True
    while stripped:
        stripped = False
        for name in names:
            if message.startswith(f"{name}: "):
                message, stripped = message[len(name) + 2:], True
    return message


def _fail_all(plan: Plan, message: str) -> None:
    """Count every pending answer of ``plan`` failed; ``message`` (without the model's name) says why."""
    message = redact(message, limit=2000)
    log.error("%s: %s", plan.label, message)
    for work in plan.pending:
        plan.summaries[work.persona.name].failed += 1
    for s in plan.summaries.values():
        s.error = message


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="answer", file=sys.stderr, disable=not enabled, dynamic_ncols=True)


def _token_meter(bar: Any) -> Any:
    """A ``Generator.token_meter`` that shows tokens per second on the progress bar (inside a batch, too)."""
    started = time.perf_counter()
    total = 0

    def meter(count: int) -> None:
        nonlocal total
        total += count
        elapsed = time.perf_counter() - started
        if elapsed > 0:
            bar.set_postfix_str(f"{total / elapsed:.0f} tok/s", refresh=True)

    return meter


def _report_skips(plan: Plan) -> None:
    skipped = sum(s.skipped for s in plan.summaries.values())
    changed = sum(s.changed for s in plan.summaries.values())
    if skipped:
        what, again = {"grade": ("grade(s)", "grade"), "pairwise": ("comparison(s)", "compare")}.get(
            plan.kind.name, ("answer(s)", "answer"))
        log.info("%s: %d %s already saved, skipped (use --force to %s again)", plan.label, skipped, what, again)
    if changed:
        log.info("%s: %d question(s) changed since their answers were saved; answering them anew", plan.label,
                 changed)


def _run_local_model(plan: Plan, settings: GenerationSettings, progress: bool, run_id: str,
                     stop: Stop) -> list[ModelSummary]:
    settings = plan.settings or settings
    if stop.reason:  # a full disk stopped the run: load nothing more
        count_not_asked(plan)
        return list(plan.summaries.values())
    provider = _open_provider(plan, settings)
    if provider is None:
        return list(plan.summaries.values())
    bar = _progress(len(plan.pending), plan.label, progress)
    saver = Saver(plan, settings, run_id, bar, stop)
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
            provider.token_meter = _token_meter(bar)
            _ask_batched(provider, plan.kind, plan.pending, settings, saver)
    finally:
        bar.close()
        provider.close()
        del provider
        gc.collect()
    if stop.reason:
        count_not_asked(plan)
    return list(plan.summaries.values())


def _write_matrices(plan: Plan, stop: Stop) -> None:
    """An encoder's ``embeddings.npy`` per persona; a failure is reported (the records are saved), a full disk stops."""
    for persona in plan.personas:
        if stop.reason:
            return
        try:
            plan.space.write_embedding_matrix(persona.name, plan.folder)
        except Exception as exc:  # noqa: BLE001 - the records are saved; the matrix is rebuilt by the next run
            where = plan.space.path / persona.name / plan.folder / "embeddings.npy"
            if isinstance(exc, OSError) and exc.errno in DISK_FULL:
                if stop.halt(f"disk full: could not write {where}: {write_problem(exc)}"):
                    log.error("could not write %s: %s. Stopping the run.", where, write_problem(exc))
                return
            message = f"could not write {where}: {write_problem(exc)} (the answers are saved; run again to rebuild it)"
            log.error("error: %s", message)
            stop.problems.append(message)


def _ask_batched(provider: Generator, kind: Kind, pending: list[Work], settings: GenerationSettings,
                 saver: Saver) -> None:
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
                      last: bool = last, requests: list[Any] = requests) -> None:
            if stop.reason:
                raise _StopBatch
            delivered.add(i)
            result.attempts = attempt
            note_prompt(provider, requests[i], result)
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


async def _run_remote_models(plans: list[Plan], settings: GenerationSettings, progress: bool,
                             run_id: str, stop: Stop) -> list[ModelSummary]:
    groups = await asyncio.gather(*(_run_remote_model(plan, settings, progress, run_id, stop) for plan in plans))
    return [s for group in groups for s in group]


async def _run_remote_model(plan: Plan, settings: GenerationSettings, progress: bool,
                            run_id: str, stop: Stop) -> list[ModelSummary]:
    settings = plan.settings or settings
    if stop.reason:
        count_not_asked(plan)
        return list(plan.summaries.values())
    provider = _open_provider(plan, settings)
    if provider is None:
        return list(plan.summaries.values())
    assert isinstance(provider, Generator)
    bar = _progress(len(plan.pending), plan.label, progress)
    saver = Saver(plan, settings, run_id, bar, stop)
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
            result = (await ask(request) if plan.kind.composite
                      else await _answer(provider, ask, request, settings, stopped))
        if result is not None:  # an answer in flight when the run stopped is still saved when it can be
            note_prompt(provider, request, result)
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
        count_not_asked(plan)
    return list(plan.summaries.values())


def _iso(ts: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")
