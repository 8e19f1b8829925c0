"""The self-contained HTML report: run settings, a summary per model, and every question's answers in a grid.

Inline CSS and JS only; it makes no request to any server and opens from ``file://``. Model output is always text:
every value goes through ``html.escape`` (quotes included), and a Content-Security-Policy allows only the report's
own script, so even a mistake could not run an answer. Up to ``SINGLE_FILE_MAX_ANSWERS`` answers it is one file;
past that, ``write_report`` writes a small index and pages of questions beside it (``report_pages``).
"""

from __future__ import annotations

import base64
import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.core.records import Record, Snapshot
from runner.core.store import SetStore, Store, write_output
from runner.views.answers import (
    DEFAULT_OUTPUT_DIR,
    Answer,
    AnswerStream,
    QuestionAnswers,
    StoreSource,
    all_questions,
    check_folder,
    choose_set,
    encoder_summary,
    manifest_set,
    open_store,
    question_sets,
    resolve_aliases,
    usage_parts,
)
from runner.views.report_assets import document, esc
from runner.views.report_pages import (
    QUESTIONS_PER_PAGE,
    SINGLE_FILE_MAX_ANSWERS,
    PagedReport,
    one_line,
    only_wrong_switch,
    pages_folder,
    paginate,
    question_link,
    remove_stale_pages,
)

if TYPE_CHECKING:
    from runner.views.agreement import Agreement
    from runner.views.grades import Grades
    from runner.views.pairwise import Pairwise
    from runner.views.scores import TaskScore

LONG_ANSWER = 1200  # characters; longer answers show a preview and collapse the rest
PREVIEW = 600
# Answer cards: one persona puts the models side by side (three fit at 1400 px beside the contents list); several
# personas are columns (five fit at 1400 px; more scroll sideways, with a hint above them).
CARD_MIN, COLUMN_MIN, PERSONAS_THAT_FIT = "300px", "11.5rem", 5
SETTINGS_SHOWN = ("max_new_tokens", "temperature", "top_p", "seed", "repetition_penalty", "batch_size", "concurrency",
                  "max_attempts", "timeout_s")
UNPARSEABLE_LISTED = 200  # the scores section lists this many unparseable answers; ``export`` has every one


@dataclass
class ModelSummary:
    """Totals of one model's saved answers across the selected personas."""

    label: str
    personas: list[str] = field(default_factory=list)
    answered: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_total_s: float = 0.0
    cost_usd: float | None = None

    @property
    def mean_latency_s(self) -> float | None:
        """Mean seconds per attempted answer."""
        count = self.answered + self.failed
        return self.latency_total_s / count if count else None


def price_table(manifests: Sequence[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """USD per million input/output tokens by model name and alias: the latest run's prices, else the catalog's."""
    from runner.providers.catalog import CATALOG

    prices: dict[str, tuple[float, float]] = {}
    for spec in CATALOG.values():
        if spec.price_input_per_mtok is not None and spec.price_output_per_mtok is not None:
            for key in (spec.name, spec.alias):
                prices[str(key)] = (spec.price_input_per_mtok, spec.price_output_per_mtok)
    for manifest in manifests:  # oldest first, so the latest run's prices win
        for model in manifest.get("models") or []:
            pin, pout = model.get("price_input_per_mtok"), model.get("price_output_per_mtok")
            if pin is not None and pout is not None:
                for key in (model.get("name"), model.get("alias")):
                    if key:
                        prices[key] = (float(pin), float(pout))
    return prices


def model_summaries(views: Sequence[QuestionAnswers], manifests: Sequence[dict[str, Any]]) -> list[ModelSummary]:
    """Answered, failed, tokens, latency and estimated cost per model, in display order."""
    from runner.providers.catalog import cost_usd

    prices = price_table(manifests)
    out: dict[str, ModelSummary] = {}
    for answer in (a for v in views for a in v.answers):
        s = out.setdefault(answer.label, ModelSummary(answer.label))
        if answer.persona not in s.personas:
            s.personas.append(answer.persona)
        s.answered += answer.ok
        s.failed += not answer.ok
        s.prompt_tokens += answer.prompt_tokens or 0
        s.completion_tokens += answer.completion_tokens or 0
        s.latency_total_s += answer.latency_s or 0.0
        price = prices.get(answer.model) or prices.get(answer.label)
        if price:
            cost = cost_usd(answer.prompt_tokens or 0, answer.completion_tokens or 0, price)
            s.cost_usd = (s.cost_usd or 0.0) + cost
    order = list(dict.fromkeys(m for v in views for m in v.models))
    return sorted(out.values(), key=lambda s: order.index(s.label) if s.label in order else len(order))


@dataclass
class _Report:
    """What every part of one report is made from, read from the store once."""

    title: str
    question_set: str
    views: list[QuestionAnswers]
    output_dir: Path
    sets: list[dict[str, Any]]
    scores: list[TaskScore]
    agreement: Agreement | None
    grade_index: GradeIndex
    votes: VoteIndex
    top: list[str]  # the settings, models, scores and agreement sections
    bottom: list[str]  # the grades and pairwise sections
    sections: list[tuple[str, str]]  # (anchor, name) of the sections, for the contents
    render_scores: Callable[[Callable[[int], str | None]], str] | None  # the scores section, given where #qN goes

    @property
    def answers(self) -> int:
        """The answer cards of the report."""
        return sum(len(v.answers) for v in self.views)

    @property
    def judged(self) -> bool:
        """Whether some answer is a multiple-choice answer with a verdict."""
        return any(a.verdict for v in self.views for a in v.answers)

    def subtitle(self, extra: str = "") -> str:
        """The line under the title: the set, its counts, the folder and when the report was made."""
        labels = list(dict.fromkeys(m for v in self.views for m in v.models))
        persona_names = list(dict.fromkeys(p for v in self.views for p in v.personas))
        failed = sum(not a.ok for v in self.views for a in v.answers)
        generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return (f"question set {self.question_set} · {_count(len(self.views), 'question')} · "
                f"{_count(len(labels), 'model')} · {_count(len(persona_names), 'persona')} · "
                f"{_count(self.answers, 'answer')} ({failed} failed){extra} · from {self.output_dir} · "
                f"generated {generated}")

    def header(self, extra: str = "") -> str:
        """The report's header: title, subtitle and the line naming the folder's other question sets."""
        return (f'<header class="top"><h1>{esc(self.title)}</h1><p>{esc(self.subtitle(extra))}</p>'
                f"{_other_sets_line(self.output_dir, self.question_set, self.sets)}</header>")

    def question(self, view: QuestionAnswers) -> str:
        """One question's section with its grid of answer cards."""
        return _question_section(view, self.agreement, self.grade_index, self.votes)


def _prepare(source: StoreSource = DEFAULT_OUTPUT_DIR, *, models: Sequence[str] | None = None,
             personas: Sequence[str] | None = None, agreement: Agreement | None = None,
             title: str = "Model comparison report", question_set: str | None = None) -> _Report:
    """Read what the report shows: from ``source`` when it is a snapshot (its records are held already), else from
    the folder as a stream (``_read_stream``), so that the records are never all held.

    The one exception: a set with ``--samples`` (the votes on each card group every answer with its samples) is
    read as a whole snapshot, as before; grades and pairwise preferences need only each answer's place and key,
    which the stream keeps.
    """
    if isinstance(source, Snapshot):
        return _assemble(_read_snapshot(source, models, personas, question_set), title, agreement)
    store = Store(source)
    check_folder(source)
    light = store.snapshot(records=False)  # the manifests and sets, no record
    question_set, _ = choose_set(light, question_set)
    space = store.questions_set(question_set)
    samples = space.sample_records()
    if samples:
        read = _read_snapshot(store.snapshot(), models, personas, question_set, samples=samples)
    else:
        read = _read_stream(store, light, question_set, models, personas, space)
    return _assemble(read, title, agreement)


@dataclass
class _Read:
    """What the report is made of, read from the store (by ``_read_snapshot`` or ``_read_stream``)."""

    root: Path
    question_set: str
    views: list[QuestionAnswers]
    manifests: list[dict[str, Any]]  # every run's, oldest first
    sets: list[dict[str, Any]]
    scores: list[TaskScore]
    encoders: list[dict[str, Any]]
    graded: Grades | None
    grade_index: GradeIndex
    preferences: Pairwise | None
    votes: VoteIndex


def _read_snapshot(snapshot: Snapshot, models: Sequence[str] | None, personas: Sequence[str] | None,
                   question_set: str | None, samples: list[Record] | None = None) -> _Read:
    """Every part from one snapshot that holds the records (given one, or a set with samples)."""
    question_set, _ = choose_set(snapshot, question_set)
    space = Store(snapshot.root).questions_set(question_set)
    samples = space.sample_records() if samples is None else samples
    views = all_questions(snapshot, models, personas, question_set)
    answers = [*snapshot.records_of(question_set), *samples]  # samples: --samples
    graded, grade_index = _grades(space.grade_records(), answers, views)
    return _Read(root=Path(snapshot.root), question_set=question_set, views=views, manifests=snapshot.manifests,
                 sets=question_sets(snapshot), scores=set_scores(snapshot, question_set, models, personas),
                 encoders=encoder_summary(snapshot, question_set), graded=graded, grade_index=grade_index,
                 preferences=_preferences(space.pairwise_records(), snapshot.records_of(question_set)),
                 votes=_votes(snapshot.records_of(question_set), samples))


def _read_stream(store: Store, light: Snapshot, question_set: str, models: Sequence[str] | None,
                 personas: Sequence[str] | None, space: SetStore) -> _Read:
    """Every part from one read of the records as they come (``AnswerStream``), none kept: each record makes its
    Answer (its card) and its part of the scores, the letter extracted once for both. Grades and pairwise
    preferences, when saved, keep each answer's place and key only (``_Placed``)."""
    from runner.views.scores import collect_scores

    grade_records, pair_records = space.grade_records(), space.pairwise_records()
    stream = AnswerStream(store, light, question_set, models, personas, keys=bool(grade_records or pair_records))
    scores = collect_scores(stream, models=_model_names(models), personas=set(personas) if personas else None,
                            choice=stream.choice)
    views = stream.views()
    _add_intervals(scores)
    placed = [_Placed(*place, key) for place, key in (stream.places or {}).items()]
    graded, grade_index = _grades(grade_records, placed, views)
    return _Read(root=Path(light.root), question_set=question_set, views=views, manifests=light.manifests,
                 sets=stream.question_sets(), scores=scores, encoders=stream.encoders(), graded=graded,
                 grade_index=grade_index, preferences=_preferences(pair_records, placed), votes={})


@dataclass(frozen=True, slots=True)
class _Placed:
    """What grades and pairwise preferences read of an answer record to match it (``grades.answer_place`` and
    ``pairwise.current_pairwise``): where it is and its answer key, under a Record's attribute names."""

    persona: str
    label: str
    n: int
    sample: int
    key: str | None


def _assemble(read: _Read, title: str, agreement: Agreement | None) -> _Report:
    """The report's parts from what was read."""
    question_set, views, scores, graded, preferences = (read.question_set, read.views, read.scores, read.graded,
                                                        read.preferences)
    manifests = [m for m in read.manifests if _in_set(m, question_set)]
    shown = {v.n for v in views}
    top = [_settings_section(manifests, question_set, read.sets, len(read.manifests)),
           _summary_section(model_summaries(views, read.manifests), read.encoders)]
    bottom = [_grades_section(graded) if graded and graded.rows else "",
              _pairwise_section(preferences) if preferences and preferences.groups else ""]
    sections = [("settings", "Run settings"), ("models", "Models")]
    sections += [("scores", "Scores")] if scores else []
    sections += [("grades", "Grades")] if graded and graded.rows else []
    sections += [("pairwise", "Pairwise")] if preferences and preferences.groups else []
    sections += [("agreement", "Agreement")] if agreement else []
    return _Report(title=title, question_set=question_set, views=views, output_dir=read.root, sets=read.sets,
                   scores=scores, agreement=agreement, grade_index=read.grade_index, votes=read.votes, top=top,
                   bottom=bottom, sections=sections,
                   render_scores=(lambda href: _scores_section(scores, shown, href)) if scores else None)


def _agreement_part(report: _Report) -> list[str]:
    return [_agreement_section(report.agreement)] if report.agreement else []


def build_report(source: StoreSource = DEFAULT_OUTPUT_DIR, *, models: Sequence[str] | None = None,
                 personas: Sequence[str] | None = None, agreement: Agreement | None = None,
                 title: str = "Model comparison report", question_set: str | None = None) -> str:
    """The report of one question set as one HTML string (raises UsageError when there are no saved answers).

    ``question_set`` None: the only set, or the latest run's. Multiple-choice answers get their verdict, and a
    scores section (the set's leaderboard, log-likelihood records included) comes after the model summary.
    ``source`` is the output folder, read once as a stream of records that are never all held (``_prepare``), or
    a snapshot of it (every section is made from it). Always one file, whatever its size: ``write_report`` pages a
    report past ``SINGLE_FILE_MAX_ANSWERS`` answers.
    """
    return _single_file(_prepare(source, models=models, personas=personas, agreement=agreement, title=title,
                                 question_set=question_set))


def _single_file(report: _Report) -> str:
    views = report.views
    only_wrong = only_wrong_switch(sum(v.disagreement for v in views), len(views), "") if report.judged else ""
    scores = report.render_scores(lambda n: f"#q{n}") if report.render_scores else ""
    body = [
        *report.top, scores, *_agreement_part(report),
        '<div class="toolbar"><button type="button" id="expand-all">Expand all answers</button>'
        '<button type="button" id="collapse-all">Collapse all answers</button></div>',
        *report.bottom, *(report.question(v) for v in views),
    ]
    return document(report.title, report.header(), _toc(views, report.sections, only_wrong), "".join(body))


def _paged_index(report: _Report, paged: PagedReport) -> str:
    """The index of a paged report: every section but the questions, which are on the pages (one link each)."""
    scores = report.render_scores(paged.href_from_index) if report.render_scores else ""
    body = [*report.top, scores, *_agreement_part(report), *report.bottom, paged.index_section(report.judged),
            paged.page_map(paged.folder_href)]
    nav = paged.index_nav([*report.sections, ("questions", "Questions")], report.judged)
    extra = f" · {len(paged.pages)} pages in {paged.folder.name}/"
    return document(report.title, report.header(extra), nav, "".join(body))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def set_scores(source: StoreSource, question_set: str, models: Sequence[str] | None = None,
               personas: Sequence[str] | None = None) -> list[TaskScore]:
    """The multiple-choice scores of one question set, with the report's model and persona filters.

    Log-likelihood records count too (they are no answers, so they have no card); the persona filter applies to
    free-text answers only, as in ``score``.
    """
    from runner.views.scores import collect_scores, snapshot_choices

    snapshot = open_store(source)
    scores = collect_scores(snapshot.records_of(question_set), models=_model_names(models),
                            personas=set(personas) if personas else None, choice=snapshot_choices(snapshot))
    _add_intervals(scores)
    return scores


def _model_names(models: Sequence[str] | None) -> set[str] | None:
    """Every spelling the model filter accepts (``collect_scores``' ``models``)."""
    return set().union(*(resolve_aliases(m) for m in models)) if models else None


def _add_intervals(scores: list[TaskScore]) -> None:
    """95% bootstrap intervals, as ``score`` computes them by default."""
    from runner.views.comparisons import Statistics, add_intervals

    add_intervals(scores, Statistics())


def _in_set(manifest: dict[str, Any], question_set: str) -> bool:
    """Whether a run wrote to ``question_set`` (a log-likelihood run may name several ``sets``)."""
    named = manifest.get("sets")
    if isinstance(named, list) and named:
        return question_set in named
    return manifest_set(manifest) == question_set


def _other_sets_line(output_dir: str | Path, question_set: str, sets: Sequence[dict[str, Any]]) -> str:
    others = [s for s in sets if s["name"] != question_set]
    if not others:
        return ""
    import shlex

    listed = ", ".join(f"{s['name']} ({s['questions']} questions)" for s in others[:12])
    listed += f" and {len(others) - 12} more" if len(others) > 12 else ""
    example = others[0]["name"]
    out = Path(output_dir)
    command = ["python", "medical_model_runner.py", "report"]
    command += ["--output-dir", str(out)] if str(out) != DEFAULT_OUTPUT_DIR else []
    command += ["--set", example, "--out", str(out / f"report-{example}.html")]
    return (f'<p class="sets">This report shows question set <b>{esc(question_set)}</b>. The folder also holds: '
            f"{esc(listed)}. Report another with <code>{esc(shlex.join(command))}</code></p>")


def write_report(source: StoreSource = DEFAULT_OUTPUT_DIR, out: str | Path | None = None, **kwargs: Any) -> Path:
    """Write the report to ``out`` (default ``<output folder>/report.html``) and return its path.

    Up to ``SINGLE_FILE_MAX_ANSWERS`` answers, one file; past it, that file is the index of pages written to
    ``<name>_pages/`` beside it (see ``write_report_files``, which takes the same arguments).
    Written atomically (a symbolic link at the path is replaced, never written through); the default path refuses
    an output folder reached through a link leading outside it. A folder that cannot be written is one UsageError
    naming the file and the fix.
    """
    return write_report_files(source, out, **kwargs)[0]


def write_report_files(source: StoreSource = DEFAULT_OUTPUT_DIR, out: str | Path | None = None, *,
                       single_file_max: int | None = None, questions_per_page: int | None = None,
                       **kwargs: Any) -> tuple[Path, int]:
    """``write_report``, returning the report's path and its number of pages (0: one file).

    ``single_file_max`` (default ``SINGLE_FILE_MAX_ANSWERS``): the most answer cards one file holds; past it the
    questions go on pages of ``questions_per_page`` (default ``QUESTIONS_PER_PAGE``), written one at a time so
    memory holds one page's HTML. Page files an earlier, bigger report left beside it are removed (only those).
    ``kwargs`` are ``build_report``'s.
    """
    root = source.root if isinstance(source, Snapshot) else Path(source)
    path = Path(out) if out else root / "report.html"
    fix = (f"make {path.parent} writable, or choose another --out PATH" if out else
           f"make {root} writable, or write the report elsewhere with --out PATH")
    guard = None if out else root
    with _collector_paused():
        report = _prepare(source, **kwargs)
        limit = SINGLE_FILE_MAX_ANSWERS if single_file_max is None else single_file_max
        if report.answers <= limit:
            # A report is meant to be shared: readable by all (the temporary file behind the write is private).
            write_output(path, _single_file(report), root=guard, mode=0o644, fix=fix)
            remove_stale_pages(pages_folder(path))  # an earlier, bigger report's pages would mislead
            return path, 0
        paged = PagedReport(path, paginate(report.views, questions_per_page or QUESTIONS_PER_PAGE))
        subtitle = report.subtitle()
        paged.write(lambda page: paged.page_document(page, report.title, subtitle, report.sections,
                                                     report.question), root=guard, fix=fix)
        write_output(path, _paged_index(report, paged), root=guard, mode=0o644, fix=fix)
        remove_stale_pages(paged.folder, keep=len(paged.pages))
        return path, len(paged.pages)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while the report is read and written; its state is restored after.

    What the report makes (records, Answers, scores, HTML) holds no reference cycle, so reference counting frees
    all of it as before, and the peak memory is the same. The collector's full passes, though, walk every object
    held: at 150,000 answers they ran about 20 times over the growing Answers and scores, ~5 s of ~25.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _toc(views: Sequence[QuestionAnswers], sections: Sequence[tuple[str, str]], only_wrong: str) -> str:
    head = "".join(f'<a href="#{anchor}">{esc(name)}</a>' for anchor, name in sections)
    links = "".join(question_link(v, f"#q{v.n}") for v in views)
    return ('<nav class="toc" aria-label="Contents"><h2>Report</h2>' + head
            + '<h2>Questions</h2><input id="toc-filter" type="search" placeholder="Filter questions" '
              'aria-label="Filter questions">' + only_wrong + links + "</nav>")


def _settings_section(manifests: Sequence[dict[str, Any]], question_set: str, sets: Sequence[dict[str, Any]],
                      total_runs: int) -> str:
    """The runs that wrote to the question set shown (latest first), and where its questions came from."""
    info = next((s for s in sets if s["name"] == question_set), None) or {}
    source = f" · questions from {info['source']}" if info.get("source") else ""
    others = total_runs - len(manifests)
    runs = f" · {len(manifests)} runs" + (f" ({others} more in this folder wrote to other sets)" if others else "")
    head = (f'<section class="block" id="settings"><h2>Run settings</h2><p class="small muted setline">'
            f"Question set <b>{esc(question_set)}</b>{esc(source)}{esc(runs)}</p>")
    if not manifests:
        return f'{head}<p class="muted">No run manifest for this question set in this folder.</p></section>'
    from runner.engine.manifest import run_status  # "running" only while its process lives

    rows = []
    for m in reversed(manifests):  # latest first
        q = m.get("questions") or {}
        settings = m.get("settings") or {}
        shown = ", ".join(f"{k}={settings[k]}" for k in SETTINGS_SHOWN if settings.get(k) is not None)
        for model in m.get("models") or []:  # a model that ran with its own settings (its card's defaults)
            own = model.get("settings") if isinstance(model.get("settings"), dict) else {}
            if own:
                shown += f"; {model.get('alias') or model.get('name')}: " + ", ".join(
                    f"{k}={v}" for k, v in own.items() if k in SETTINGS_SHOWN)
        models = ", ".join(str(x.get("alias") or x.get("name")) for x in m.get("models") or [])
        persona_names = ", ".join(str(p.get("name")) for p in m.get("personas") or [])
        path = q.get("path")
        what = f"{Path(path).name if path else '-'} ({q.get('count')})"
        what += " · log-likelihood" if m.get("method") == "loglik" else ""
        rows.append(f"<tr><td class='mono'>{esc(m.get('run_id'))}</td><td>{esc(m.get('started'))}</td>"
                    f"<td>{esc(run_status(m))}</td><td title='{esc(path)}'>{esc(what)}</td>"
                    f"<td>{esc(models)}</td><td>{esc(persona_names)}</td>"
                    f"<td class='mono small gen'>{esc(shown)}</td></tr>")
    latest = manifests[-1]
    packages = ", ".join(f"{k} {v}" for k, v in (latest.get("packages") or {}).items() if v)
    details = (f"<details><summary class='small muted'>Environment of the latest run</summary><dl class='kv'>"
               f"<dt>Command</dt><dd class='mono'>{esc(' '.join(latest.get('argv') or []))}</dd>"
               f"<dt>Python</dt><dd>{esc(latest.get('python'))} on {esc(latest.get('platform'))}</dd>"
               f"<dt>Packages</dt><dd>{esc(packages)}</dd>"
               f"<dt>Questions sha256</dt><dd class='mono'>{esc((latest.get('questions') or {}).get('sha256'))}</dd>"
               "</dl></details>")
    header = ("<tr><th>Run</th><th>Started</th><th>Status</th><th>Questions</th><th>Models</th><th>Personas</th>"
              "<th>Generation settings</th></tr>")
    earlier = (f"<details class='runs'><summary class='small muted'>{len(rows) - 1} earlier run"
               f"{'s' if len(rows) > 2 else ''}</summary><div class='scroll'><table class='data'>{header}"
               f"{''.join(rows[1:])}</table></div></details>" if len(rows) > 1 else "")
    return (f'{head}<div class="scroll"><table class="data">{header}{rows[0]}</table></div>{earlier}{details}'
            "</section>")


def _summary_section(summaries: Sequence[ModelSummary], encoders: Sequence[dict[str, Any]]) -> str:
    rows = []
    for s in summaries:
        latency = f"{s.mean_latency_s:.2f} s" if s.mean_latency_s is not None else "-"
        cost = f"${s.cost_usd:.4f}" if s.cost_usd is not None else "-"
        failed = f'<span class="badge bad">{s.failed}</span>' if s.failed else "0"
        rows.append(f"<tr><td><strong>{esc(s.label)}</strong></td><td>{esc(', '.join(s.personas))}</td>"
                    f"<td class='n'>{s.answered}</td><td class='n'>{failed}</td>"
                    f"<td class='n'>{s.prompt_tokens:,}</td><td class='n'>{s.completion_tokens:,}</td>"
                    f"<td class='n'>{latency}</td><td class='n'>{s.latency_total_s:.1f} s</td>"
                    f"<td class='n'>{cost}</td></tr>")
    enc = ""
    if encoders:
        items = ", ".join(_encoder_line(e) for e in encoders)
        enc = ("<p class='small muted'>Encoder models in this folder (embeddings, not shown as answers): "
               f"{esc(items)}</p>")
    return ('<section class="block" id="models"><h2>Models</h2><div class="scroll"><table class="data">'
            "<tr><th>Model</th><th>Personas</th><th>Answered</th><th>Failed</th><th>Tokens in</th><th>Tokens out</th>"
            "<th>Mean latency</th><th>Total time</th><th>Est. cost</th></tr>"
            f"{''.join(rows)}</table></div>{enc}</section>")


def _encoder_line(row: dict[str, Any]) -> str:
    extra = [f"dim {row['dim']}"] if row["dim"] else []
    extra += [f"{row['failed']} failed"] if row["failed"] else []
    return f"{row['model']} ({row['persona']}: {row['embedded']} vectors{''.join(', ' + x for x in extra)})"


def _scores_section(scores: Sequence[TaskScore], shown: set[int],
                    href: Callable[[int], str | None] = lambda n: f"#q{n}") -> str:
    """The set's leaderboard (accuracy % ± standard error), counts of unparseable and failed answers, and the chart.

    Unparseable answers are listed (the first ``UNPARSEABLE_LISTED``), each linking to its question (``href``).
    """
    from runner.views.scores import column_of, leaderboard, task_title, truncation_warnings

    columns, rows = leaderboard(scores)
    counts: dict[tuple[str, str, str], list[int]] = {}
    for s in scores:
        row = counts.setdefault((s.label, s.persona, s.method), [0, 0])
        row[0] += len(s.unparseable)
        row[1] += s.failed
    head = "".join(f"<th class='n'>{esc(task_title(c))}</th>" for c in columns)
    lines = []
    for row in rows:
        cells = []
        for c in columns:
            t = row.tasks.get(c)
            if t is None:
                cells.append("<td class='n muted'>–</td>")
                continue
            sub = f"<div class='sub'>{t.correct}/{t.n} right</div>"
            if t.interval:
                sub += f"<div class='sub'>95% CI {100 * t.interval[0]:.1f}–{100 * t.interval[1]:.1f}</div>"
            if t.method == "loglik" and t.acc_norm is not None:
                sub += f"<div class='sub'>acc_norm {_pct(t.acc_norm, t.acc_norm_stderr)}</div>"
            cells.append(f"<td class='n' title='{esc(t.n)} questions'>{_pct(t.accuracy, t.stderr)}{sub}</td>")
        unparseable, failed = counts.get((row.label, row.persona, row.method), [0, 0])
        average = _pct(row.average) + ("" if row.complete else " †")
        method = "log-likelihood (acc; acc_norm below)" if row.method == "loglik" else f"free text · {row.persona}"
        lines.append(f"<tr><td><strong>{esc(row.label)}</strong><div class='sub'>{esc(method)}</div></td>"
                     f"{''.join(cells)}<td class='n'><strong>{average}</strong></td>"
                     f"<td class='n'>{_count_badge(unparseable)}</td><td class='n'>{_count_badge(failed)}</td></tr>")
    notes = []
    scored = {(r.label, r.persona, r.method) for r in rows}
    for (label, persona, method), (_, failed) in counts.items():
        if (label, persona, method) not in scored and failed:
            notes.append(f"{label} [{persona}]: {failed} failed, none to score (run again to retry)")
    notes += truncation_warnings(scores)
    warn = "".join(f"<p class='warnline'>{esc(n)}</p>" for n in notes)
    unparseable = []
    count = sum(len(s.unparseable) for s in scores)
    for s in scores:
        for item in s.unparseable[:UNPARSEABLE_LISTED - len(unparseable)]:
            text = one_line(str(item.get("text") or ""), 160) or "(empty)"
            n = item.get("n")
            link = href(n) if n in shown else None
            where = f"<a href='{esc(link)}'>question {esc(n)}</a>" if link else f"question {esc(n)}"
            unparseable.append(f"<li>{where} · {esc(s.label)} [{esc(s.persona)}] · "
                               f"{esc(task_title(column_of(s, scores)))}: <span class='muted'>{esc(text)}</span></li>")
    if count > len(unparseable):
        unparseable.append(f"<li class='muted'>… and {count - len(unparseable):,} more: <code>export</code> lists "
                           "every answer with the letter it chose</li>")
    listing = (f"<details><summary class='small muted'>Unparseable answers ({count:,}): no letter found; "
               f"counted as wrong</summary><ul class='small plain'>{''.join(unparseable)}</ul></details>"
               if unparseable else "")
    table = ""
    if rows:
        table = (f"<div class='scroll'><table class='data scores'><tr><th>Model</th>{head}<th class='n'>Average</th>"
                 f"<th class='n'>Unparseable</th><th class='n'>Failed</th></tr>{''.join(lines)}</table></div>"
                 "<p class='small muted'>Accuracy in % ± standard error (sqrt(p(1-p)/(n-1)), as the "
                 "lm-evaluation-harness), with the 95% percentile bootstrap interval (10,000 resamples, fixed "
                 "seed; score --compare gives paired tests). Average: unweighted mean over the tasks; † averaged "
                 "over the tasks that "
                 "row has. Free-text answers: the chosen letter is extracted; an unparseable answer counts as wrong, "
                 "a failed one is not counted. Log-likelihood rows use the harness's method (acc, and acc_norm "
                 "per character).</p>")
    return (f'<section class="block" id="scores"><h2>Scores</h2>{table}{warn}{listing}{_comparisons(scores)}'
            f"{_chart(scores)}</section>")


def _comparisons(scores: Sequence[TaskScore]) -> str:
    """Every pair of rows that share a persona and method, compared on the items both answered (folded)."""
    from runner.views.comparisons import OVERALL, Statistics, adjust, compare_all
    from runner.views.scores import task_title
    from runner.views.stats import format_p

    found = compare_all(scores, Statistics())
    if not found:
        return ""
    adjust(found)
    rows = []
    for c in found:
        scope = "Overall" if c.scope == OVERALL else task_title(c.scope)
        interval = f"{100 * c.interval.low:+.1f} to {100 * c.interval.high:+.1f}" if c.interval else "–"
        difference = f"{100 * c.difference:+.1f}" if c.difference is not None else "–"
        cells = [esc(c.a), esc(c.b), esc("log-likelihood" if c.method == "loglik" else c.persona), esc(scope)]
        numbers = [c.n, _pct(c.acc_a), _pct(c.acc_b), difference, interval, c.a_only, c.b_only,
                   format_p(c.p_value), format_p(c.p_holm) if c.p_holm is not None else "–"]
        rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells)
                    + "".join(f"<td class='n'>{esc(x)}</td>" for x in numbers) + "</tr>")
    head = "".join(f"<th{' class=n' if i > 3 else ''}>{h}</th>" for i, h in enumerate(
        ["A", "B", "Persona", "Task", "Items", "A %", "B %", "A − B", "95% interval", "A only", "B only", "p",
         "p (Holm)"]))
    return (f"<details class='comparisons'><summary class='small'>Paired comparisons ({len(found)}): McNemar's exact "
            "test on the items both answered, the difference with its paired bootstrap interval, Holm-adjusted "
            f"p-values</summary><div class='scroll'><table class='data'><tr>{head}</tr>{''.join(rows)}</table></div>"
            "<p class='small muted'>Unparseable answers count as wrong; failed answers and items only one model "
            "answered are left out. <code>score --compare A,B --show discordant</code> lists the items they split "
            "on.</p></details>")


def _pct(value: float | None, stderr: float | None = None) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f}" + (f" ± {100 * stderr:.1f}" if stderr is not None else "")


def _count_badge(count: int) -> str:
    return f'<span class="badge bad">{count}</span>' if count else "0"


def _chart(scores: Sequence[TaskScore]) -> str:
    """The leaderboard chart as an embedded PNG (rendered in memory, never in the output folder)."""
    from runner.views.scores import chart_png

    try:
        data = chart_png(scores) or b""
    except ImportError:
        return "<p class='small muted'>(The chart needs matplotlib.)</p>"
    if not data:
        return ""
    encoded = base64.b64encode(data).decode("ascii")
    return (f'<img class="chart" alt="Bar chart of the accuracy per task and model (the table above)" '
            f'src="data:image/png;base64,{encoded}">')


def _heat(value: float | None) -> str:
    if value is None:
        return ""
    v = max(0.0, min(1.0, value))
    light = 97 - 52 * v
    return f' style="background:hsl(218 65% {light:.0f}%);color:{"#fff" if light < 62 else "#1d2330"}"'


def _agreement_section(agreement: Agreement) -> str:
    matrix, counts = agreement.matrix(), agreement.pair_counts()
    to_q = agreement.question_similarity_by_label()
    head = "".join(f"<th class='rot'>{esc(label)}</th>" for label in agreement.labels)
    rows = []
    for i, label in enumerate(agreement.labels):
        cells = "".join(
            f"<td class='v'{_heat(v)} title='{counts[i][j]} answer sets'>{'-' if v is None else f'{v:.2f}'}</td>"
            for j, v in enumerate(matrix[i]))
        q = to_q.get(label)
        rows.append(f"<tr><th>{esc(label)}</th>{cells}<td class='v'{_heat(q)}>{'-' if q is None else f'{q:.2f}'}"
                    "</td></tr>")
    what = "models (within each question and persona)" if agreement.by == "model" else \
        "personas (within each question and model)"
    return ('<section class="block" id="agreement"><h2>Agreement</h2>'
            f"<p class='small muted'>Cosine similarity of the answers' embeddings ({esc(agreement.encoder)}), "
            f"compared between {what} and averaged over {agreement.group_count()} answer sets. 1.00 means the "
            "same meaning; values near 0 unrelated text. The last column is the mean similarity of each one's "
            "answers to the questions. Failed answers take no part.</p>"
            f'<div class="scroll"><table class="data matrix"><tr><th></th>{head}<th>vs question</th></tr>'
            f"{''.join(rows)}</table></div></section>")


def _question_section(view: QuestionAnswers, agreement: Agreement | None, grades: GradeIndex | None = None,
                      votes: VoteIndex | None = None) -> str:
    parts = [f'<section class="block question" id="q{view.n}" data-disagree="{int(view.disagreement)}">'
             f'<div class="qhead"><h3>Question {view.n}</h3>']
    for label, value in (("id", view.question_id), ("task", view.task)):
        if value:
            parts.append(f'<span class="badge">{label}: {esc(value)}</span>')
    failed = sum(not a.ok for a in view.answers)
    parts.append(f'<span class="badge {"bad" if failed else "ok"}">{len(view.answers) - failed}/'
                 f"{len(view.answers)} answered</span>")
    judged = [a for a in view.answers if a.verdict is not None]
    if judged:
        right = sum(a.verdict == "right" for a in judged)
        letters = sorted({a.chosen for a in judged if a.chosen})
        title = f"{right} of {len(judged)} multiple-choice answers right; chosen: {', '.join(letters) or 'none'}"
        parts.append(f'<span class="badge {"ok" if right == len(judged) else "bad"} score" title="{esc(title)}">'
                     f"{right}/{len(judged)} right</span>")
    mean = agreement.question_mean(view.n) if agreement else None
    if mean is not None:
        parts.append(f'<span class="badge">agreement {mean:.2f}</span>')
    parts.append("</div>")
    if view.context:
        parts.append(f'<div class="context">{esc(view.context)}</div>')
    for turn in (view.messages or [])[:-1]:  # a conversation: the turns before its last user turn (the question)
        parts.append(f'<div class="context"><b>{esc(turn.get("role"))}:</b> {esc(turn.get("content"))}</div>')
    parts.append(f'<div class="qtext">{esc(view.question)}</div>')
    if view.options:
        items = "".join(f'<li class="{"correct" if k == view.correct else ""}">{esc(k)}. {esc(v)}'
                        f'{" ✓" if k == view.correct else ""}</li>' for k, v in view.options.items())
        parts.append(f'<ol class="options">{items}</ol>')
    parts.extend(f'<p class="small" style="color:var(--bad)">Note: {esc(w)}</p>' for w in view.warnings)
    parts.append(_grid(view, agreement, grades or {}, votes))
    parts.append("</section>")
    return "".join(parts)


def _grid(view: QuestionAnswers, agreement: Agreement | None, grades: GradeIndex,
          votes: VoteIndex | None = None) -> str:
    """Models (rows) × personas (columns); a single persona lays the models out as cards side by side."""
    if len(view.personas) == 1:
        cards = "".join(_card(view, view.get(m, view.personas[0]), m, agreement, grades, votes) for m in view.models)
        return (f'<div class="grid" style="grid-template-columns:repeat(auto-fill,minmax(min(100%,{CARD_MIN}),1fr))">'
                f"{cards}</div>")
    columns = f"repeat({len(view.personas)},minmax({COLUMN_MIN},1fr))"
    cells = [f'<div class="colhead">{esc(p)}</div>' for p in view.personas]
    for m in view.models:
        cells.extend(_card(view, view.get(m, p), m, agreement, grades, votes) for p in view.personas)
    hint = (f'<p class="small muted scrollhint">{len(view.personas)} personas side by side: scroll sideways for '
            "those that do not fit, or run <code>compare N --stacked</code> in a terminal</p>"
            if len(view.personas) > PERSONAS_THAT_FIT else "")
    return (f'{hint}<div class="scroll"><div class="grid" style="grid-template-columns:{columns}">{"".join(cells)}'
            "</div></div>")


def _card(view: QuestionAnswers, answer: Answer | None, who: str, agreement: Agreement | None,
          grades: GradeIndex | None = None, votes: VoteIndex | None = None) -> str:
    if answer is None:
        return f'<div class="card missing"><div class="who">{esc(who)}</div>no saved answer</div>'
    meta = usage_parts(answer, unknown="0", tokens="tokens")
    if agreement is not None:
        label, other = (answer.label, answer.persona) if agreement.by == "model" else (answer.persona, answer.label)
        sim = agreement.answer_to_question(view.n, label, other)
        if sim is not None:
            meta.append(f"{sim:.2f} similar to the question")
    if answer.question_differs:
        meta.append("answered an older text of this question")
    verdict = _verdict_badge(answer, view.correct) + _votes_badge((votes or {}).get((answer.persona, answer.label,
                                                                                     view.n)))
    head = (f'<div class="cardhead"><div class="who">{_esc_shared(who)}</div>{verdict}</div>'
            f'<div class="meta">{esc(" · ".join(meta))}</div>')
    prompt = (_thinking_details(answer) + _prompt_details(answer)
              + _grade_details((grades or {}).get((answer.persona, answer.label, view.n, 1), [])))
    if not answer.ok:
        return f'<div class="card failed">{head}<span class="badge bad">failed</span><div class="error">' \
               f"{esc(answer.error)}</div>{prompt}</div>"
    kind = f"card {answer.verdict}" if answer.verdict else "card"
    text = answer.text or "(empty answer)"
    if len(text) <= LONG_ANSWER:
        return f'<div class="{kind}">{head}<div class="answer">{esc(text)}</div>{prompt}</div>'
    cut = text.rfind(" ", 0, PREVIEW)
    preview = text[: cut if cut > PREVIEW // 2 else PREVIEW].rstrip() + " …"
    words = len(text.split())
    return (f'<div class="{kind}">{head}<div class="answer preview">{esc(preview)}</div>'
            f'<details class="more"><summary>Show the full answer ({words:,} words)</summary>'
            f'<div class="answer">{esc(text)}</div></details>{prompt}</div>')


GradeIndex = dict[tuple[str, str, int, int], list[Record]]
VoteIndex = dict[tuple[str, str, int], dict[str, Any]]  # (persona, model label, n) -> the votes of its samples


def _votes(answers: list[Record], samples: list[Record]) -> VoteIndex:
    """The votes of each answer's samples (``--samples``), for the multiple-choice answers that have samples."""
    from runner.views.consistency import collect_samples, vote_index

    if not samples:
        return {}
    return vote_index(collect_samples(answers, samples))


def _votes_badge(votes: dict[str, Any] | None) -> str:
    """``votes: A×3 B×2`` on an answer card with samples; green when the majority is right."""
    if not votes:
        return ""
    from runner.views.consistency import votes_text

    css = "ok" if votes["majority"] is not None and votes["majority"] == votes["answer"] else "bad"
    title = (f"self-consistency: {votes['samples']} answered sample(s); majority "
             f"{votes['majority'] or 'none (no parseable sample)'}, correct {votes['answer']}")
    return f'<span class="badge {css} verdict votes" title="{esc(title)}">{esc(votes_text(votes))}</span>'


def _grades(records: list[Record], answers: Sequence[Record | _Placed],
            views: Sequence[QuestionAnswers]) -> tuple[Grades | None, GradeIndex]:
    """The judges' grades (``records``, ``grade``) of the answers shown: their summary, and each answer's grades.

    ``answers`` are the set's answer records and samples, or their places and keys (``_Placed``): a grade counts
    when it was made of the answer saved now.
    """
    from runner.views.grades import answer_place, collect, current_grades

    if not records:
        return None, {}
    shown = {(a.persona, a.label, v.n) for v in views for a in v.answers}
    current = current_grades(records, [a for a in answers if answer_place(a)[:3] in shown])  # type: ignore[arg-type]
    index: GradeIndex = {}
    for g in current:
        index.setdefault(answer_place(g), []).append(g)
    return (collect(current) if current else None), index


def _grades_section(grades: Grades) -> str:
    """The judges' scores per model and persona (HealthBench's clipped mean ± bootstrap std, n)."""
    rows = "".join(f"<tr><td>{esc(r.judge)}</td><td>{esc(r.model)}</td><td>{esc(r.persona)}</td>"
                   f"<td>{esc(r.overall.cell())}{' (1-5)' if r.scale != 'rubric' else ''}</td><td>{r.overall.n}</td>"
                   f"<td>{len(r.ungradable)}</td></tr>" for r in grades.rows)
    agreement = ""
    if grades.agreement and grades.agreement.get("fleiss_kappa") is not None:
        agreement = (f'<p class="small muted">Agreement between judges on {grades.agreement["items"]:,} rubric items: '
                     f'Fleiss\' kappa {grades.agreement["fleiss_kappa"]:.3f}.</p>')
    return ('<section class="block" id="grades"><h2>Grades</h2><p class="small muted">Rubric scores as HealthBench '
            "reports them: the mean over answers of the points met over the positive points, clipped to [0, 1], ± the "
            "standard deviation of 1,000 bootstrap means; each answer's grade is under it. Details in grades.md "
            "(<code>grade</code>).</p><table><thead><tr><th>judge</th><th>model</th><th>persona</th><th>score</th>"
            f"<th>n</th><th>ungradable</th></tr></thead><tbody>{rows}</tbody></table>{agreement}</section>")


def _preferences(records: list[Record], answers: Sequence[Record | _Placed]) -> Pairwise | None:
    """The pairwise preferences saved for the answers of the set (``records``, ``grade --pairwise``), or None;
    ``answers``: the set's records, or their places and keys (``_Placed``)."""
    from runner.views.pairwise import collect as collect_pairs
    from runner.views.pairwise import current_pairwise

    if not records:
        return None
    current = current_pairwise(records, answers)  # type: ignore[arg-type]
    return collect_pairs(current) if current else None


def _pairwise_section(result: Pairwise) -> str:
    """Per judge and group: Bradley-Terry ratings with intervals, win rates, the win/tie/loss matrix, position bias."""
    parts = ['<section class="block" id="pairwise"><h2>Pairwise preferences</h2><p class="small muted">MT-Bench\'s '
             "pairwise judge: each pair of answers judged in both orders; orders that disagree count as a tie "
             "(position-inconsistent). Win rate counts ties as half; Bradley-Terry ratings on the Elo scale (mean "
             "1000) with 95% bootstrap intervals. Details in pairwise.md.</p>"]
    for g in result.groups:
        what = f"models under persona {g.within}" if g.compare == "models" else f"personas of {g.within}"
        order = sorted(g.players, key=lambda p: (-g.ratings.get(p, float("-inf")), p))
        rows = []
        for player in order:
            rating, interval = g.ratings.get(player), g.intervals.get(player)
            cells = "".join("<td>–</td>" if player == other else
                            f"<td>{'/'.join(str(c) for c in g.matrix.get(player, {}).get(other, (0, 0, 0)))}</td>"
                            for other in order)
            rows.append(f"<tr><td>{esc(player)}</td><td>{f'{rating:.0f}' if rating is not None else '–'}</td>"
                        f"<td>{f'{interval[0]:.0f} – {interval[1]:.0f}' if interval else '–'}</td>"
                        f"<td>{f'{g.win_rates[player]:.3f}' if player in g.win_rates else '–'}</td>{cells}</tr>")
        rate = g.inconsistency_rate
        bias = (f"{g.inconsistent} of {g.pairs} pairs ({rate:.0%}) position-inconsistent" if rate is not None
                else "no pair judged in both orders")
        heads = "".join(f"<th>vs {esc(p)}</th>" for p in order)
        parts.append(f"<h3>{esc(g.judge)}: {esc(what)}</h3><p class=\"small muted\">{esc(bias)}; cells: wins/ties/"
                     "losses of the row against the column.</p><table><thead><tr><th>player</th><th>Bradley-Terry"
                     f"</th><th>95% interval</th><th>win rate</th>{heads}</tr></thead><tbody>{''.join(rows)}"
                     "</tbody></table>")
    parts.append("</section>")
    return "".join(parts)


def _grade_details(grades: Sequence[Record]) -> str:
    """Each judge's grade of one answer, folded under it: the score, then every rubric item met or not with the
    judge's explanation."""
    out = []
    for g in grades:
        extra = g.model_extra or {}
        score = extra.get("score")
        shown = f"{score:.3f}" if isinstance(score, int | float) else "ungradable"
        items = []
        for item in extra.get("items") or []:
            if not isinstance(item, dict):
                continue
            if "score" in item:
                mark, head = "", f"{item.get('criterion')}: {item.get('score')} of 5"
            else:
                met, points = item.get("met"), item.get("points") or 0
                good = (met is True and points > 0) or (met is False and points < 0)
                mark = "?" if met is None else ("✓" if good else "✗")
                head = f"[{points:g}] {item.get('criterion')}"
            why = item.get("explanation") or item.get("problem") or ""
            items.append(f"<li>{esc(mark)} {esc(head)}<div class=\"ptext\">{esc(why)}</div></li>")
        judge = extra.get("judge_label") or extra.get("judge") or "?"
        out.append(f'<details class="prompt grade"><summary>Grade by {esc(judge)}: {esc(shown)}</summary>'
                   f'<ul class="small">{"".join(items)}</ul></details>')
    return "".join(out)


def _thinking_details(answer: Answer) -> str:
    """A reasoning model's thinking, folded under its answer: ``Thinking (N tokens)`` opening the whole trace, or
    only the count where the provider hides the trace; nothing for an answer without thinking."""
    label = answer.thinking_label
    if label is None:
        return ""
    trace = (answer.reasoning or "").strip()
    body = trace or "The provider returns only how many tokens the model spent thinking, not its trace."
    return (f'<details class="prompt thinking"><summary>{esc(label[:1].upper() + label[1:])}</summary>'
            f'<div class="ptext">{esc(body)}</div></details>')


def _prompt_details(answer: Answer) -> str:
    """The prompt an answer was given, folded under it: the system prompt and the user message, or for a local model
    the whole prompt text it received."""
    shown = "".join(f'<div class="ptitle">{_esc_shared(heading)}</div><div class="ptext">{_esc_shared(text)}</div>'
                    for heading, text in answer.prompt_parts())
    return f'<details class="prompt"><summary>Prompt sent</summary>{shown}</details>'


@lru_cache(maxsize=256)
def _esc_shared(text: str) -> str:
    """``esc`` of a text many answers share, made once: a persona's system prompt, a question's user message under
    several personas or models (most of a large report's text)."""
    return esc(text)


def _verdict_badge(answer: Answer, right: str | None) -> str:
    """``chose C ✓``, ``chose A ✗`` or ``unparseable ✗`` for a multiple-choice answer; nothing otherwise."""
    if answer.verdict is None:
        return ""
    if answer.verdict == "unparseable":
        return ('<span class="badge bad verdict" title="no answer letter could be read from this answer; it counts '
                'as wrong">unparseable ✗</span>')
    mark, css = ("✓", "ok") if answer.verdict == "right" else ("✗", "bad")
    title = "the right answer" if answer.verdict == "right" else f"wrong: the right answer is {right}"
    return (f'<span class="badge {css} verdict" title="{esc(title)}">chose {esc(answer.chosen)} '
            f"{mark}</span>")
