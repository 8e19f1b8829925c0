"""Orchestration, the same for every request kind: plan, skip what is saved, load each model once, ask, save each
result as it arrives, summarise (what each result's outcome is, saved or failed alone, is ``saving.py``'s).

Local (batched) models run one after another, each loaded once and released before the next.
API (concurrent) models then run together in one event loop, each with up to ``concurrency``
requests in flight. Retrying with backoff lives here and nowhere else. What differs between kinds (the key, the
request, the record) comes from ``kinds.py``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import sys
import time
from collections.abc import Callable, Sequence
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
from runner.engine.plans import ModelSummary, Plan, RunReport
from runner.engine.recording import note_prompt
from runner.engine.saving import DISK_FULL, Saver, Stop, close_manifest, count_not_asked, write_problem
from runner.engine.variants import CHANGED, SAME, VARIANT, Conflict, format_conflicts, saved_state
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
            manifest.update(kind=kind, method=kind)
        try:
            report.manifest_path = store.write_manifest(report.run_id, manifest)
        except Exception as exc:  # noqa: BLE001 - a clear message, before any request
            raise RunnerError(f"cannot write the run manifest under {store.root / 'runs'}: {write_problem(exc)}; "
                              "nothing was asked") from None
        stop = Stop()
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
            close_manifest(store, report, manifest)
    return report


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
          settings: GenerationSettings, space: SetStore, tag: str | None, force: bool) -> Plan:
    """Work still to do for one model, the skips and replacements counted, and the variants it would replace."""
    settings = spec.settings_for(settings)  # the model card's defaults for what the user did not set
    label, folder = with_tag(spec.label, tag), with_tag(spec.slug, tag)
    personas = kind.personas(personas)
    plan = Plan(spec, kind, space, tag, label, folder, personas, [],
                {p.name: ModelSummary(model=spec.name, label=label, persona=p.name) for p in personas},
                settings=settings)
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
        log.info("%s: %d answer(s) already saved, skipped (use --force to answer again)", plan.label, skipped)
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
            result = await _answer(provider, ask, request, settings, stopped)
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
