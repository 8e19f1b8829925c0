"""Saved answers, grouped for comparison: the data behind ``compare``, the HTML report and agreement.

Everything here only reads the output store; no model is ever asked for an answer. The functions
return plain dataclasses (and ``answers_table`` plain dicts) so notebooks can use them directly::

    from runner.views.answers import question_answers, answers_table, open_store
    qa = question_answers(3, "outputs")          # question 3, every model x persona
    rows = answers_table("outputs")              # one dict per answer (pandas.DataFrame(rows))
    snap = open_store("outputs")                 # read the store once, then ask it many things
    qa, rows = question_answers(3, snap), answers_table(snap)

Views show one question set at a time (``question_set``; by default the only one, or the latest run's). Every
function takes the output folder or a ``Snapshot`` of it (``open_store``): given a folder, it reads the store
itself; the commands read it once and pass the snapshot to every view, so each record is parsed once. A view that
must not hold every record (the report of a large store) reads them as they come through ``AnswerStream``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runner.core.errors import UsageError
from runner.core.questions import Question, format_user_message
from runner.core.records import Record, Snapshot, parse_record
from runner.core.store import Store, legacy_set_name, with_tag
from runner.tasks.letters import extract_letter
from runner.views.scores import Choice, record_choice, snapshot_choices, stream_choices

DEFAULT_OUTPUT_DIR = "outputs"
StoreSource = str | Path | Snapshot  # an output folder, or a snapshot of one


@dataclass
class Answer:
    """One saved answer of one generative model, under one persona, to question ``n``."""

    n: int
    model: str  # canonical provider:model-id
    label: str  # display name: the catalog alias when there is one, ``@tag`` for a named variant
    persona: str
    question: str
    set_name: str = ""
    tag: str | None = None
    text: str = ""
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    finish_reason: str | None = None
    run_id: str | None = None
    time: str | None = None
    question_differs: bool = False  # answered another question text saved under the same number
    chosen: str | None = None  # multiple-choice answers: the letter extracted (None: unparseable)
    correct: bool | None = None  # multiple-choice answers: whether ``chosen`` is the right letter
    system_prompt: str | None = None  # the persona text sent as the system prompt
    user_message: str | None = None  # the user turn sent (see ``user_message_rebuilt``)
    user_message_rebuilt: bool = False  # an older record without it: rebuilt from the saved question
    prompt_text: str | None = None  # local models: the whole prompt text the model received
    reasoning: str | None = None  # a reasoning model's thinking trace (``text`` is only its final answer)
    reasoning_tokens: int | None = None  # the tokens it spent thinking, when known (OpenAI's trace is hidden)

    @property
    def ok(self) -> bool:
        """True when the model produced an answer (no error)."""
        return not self.error

    @property
    def verdict(self) -> str | None:
        """For a multiple-choice answer: ``right``, ``wrong`` or ``unparseable``; None otherwise."""
        if self.correct is None:
            return None
        if self.chosen is None:
            return "unparseable"
        return "right" if self.correct else "wrong"

    @property
    def thinking_label(self) -> str | None:
        """``thinking (1,234 tokens)`` for an answer with a trace (``thinking`` when its tokens are not known),
        ``thinking: 1,234 tokens (trace hidden)`` when only the count is known; None for an answer without thinking."""
        count = f"{self.reasoning_tokens:,} tokens" if self.reasoning_tokens else None
        if self.reasoning and self.reasoning.strip():
            return f"thinking ({count})" if count else "thinking"
        return f"thinking: {count} (trace hidden)" if count else None

    def prompt_parts(self) -> list[tuple[str, str]]:
        """The prompt this answer was given, as (heading, text) pairs: the whole prompt text where the model
        received one (local models), else the system prompt and the user message."""
        if self.prompt_text is not None:
            return [("prompt as the model received it", self.prompt_text)]
        user = "user message (rebuilt from the saved question)" if self.user_message_rebuilt else "user message"
        return [("system prompt", self.system_prompt or "(not saved)"), (user, self.user_message or "(not saved)")]

    @classmethod
    def from_record(cls, record: Record | dict[str, Any],
                    choice: Callable[[Record], tuple[str | None, str | None]] | None = None) -> Answer:
        """Build an Answer from a store record (multiple-choice answers get their letter and verdict).

        A plain record dict is read as a Record first (ValueError when it is not a valid record). ``choice`` reads
        the letter (``scores.record_choice``, or a snapshot's shared ``ChoiceMemo``); by default it is extracted.
        """
        if not isinstance(record, Record):
            parsed = parse_record(record)
            if parsed is None:
                raise ValueError("not a valid answer record")
            record = parsed
        answer = cls(n=record.n, model=record.model_name, label=record.label, persona=record.persona or "?",
                     question=record.question, set_name=record.set_name or "", tag=record.tag or None,
                     text=record.text or "", error=record.error or None, prompt_tokens=record.prompt_tokens,
                     completion_tokens=record.completion_tokens, latency_s=record.latency_s,
                     finish_reason=record.finish_reason, run_id=record.run_id, time=record.time,
                     system_prompt=record.persona_text, user_message=record.user_message,
                     prompt_text=record.prompt_text, reasoning=record.reasoning,
                     reasoning_tokens=record.reasoning_tokens)
        if answer.user_message is None and record.question:
            answer.user_message, answer.user_message_rebuilt = sent_user_message(record), True
        if answer.ok and record.options and record.answer:  # the final answer only: never the trace
            answer.chosen = (choice(record)[0] if choice is not None and record.text is not None
                             else extract_letter(answer.text, record.options))
            answer.correct = answer.chosen == record.answer
        return answer


@dataclass
class QuestionAnswers:
    """Question ``n`` and every selected model's answer to it under every selected persona."""

    n: int
    question: str
    set_name: str = ""
    question_id: str | None = None
    context: str | None = None
    options: dict[str, str] | None = None
    correct: str | None = None  # the letter of the right option, for multiple-choice questions
    task: str | None = None
    messages: list[dict[str, str]] | None = None  # a conversation's turns (the last is ``question``)
    answers: list[Answer] = field(default_factory=list)
    models: list[str] = field(default_factory=list)  # labels, in display order
    personas: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def disagreement(self) -> bool:
        """For a multiple-choice question: True when some answer is wrong or unparseable, or two chose differently."""
        verdicts = [a for a in self.answers if a.verdict is not None]
        return any(a.verdict != "right" for a in verdicts) or len({a.chosen for a in verdicts}) > 1

    def get(self, label: str, persona: str) -> Answer | None:
        """The answer of model ``label`` under ``persona``, or None when it has none."""
        return next((a for a in self.answers if a.label == label and a.persona == persona), None)

    @property
    def columns_by(self) -> str:
        """``persona`` when one model is compared across personas, else ``model``."""
        return "persona" if len(self.models) == 1 and len(self.personas) > 1 else "model"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-serialisable)."""
        return asdict(self)


def sent_user_message(record: Record) -> str:
    """The user message a generate record's question becomes (``format_user_message``): what was sent, for records
    saved before they kept it (``user_message``)."""
    return format_user_message(Question(n=record.n, question=record.question, context=record.context,
                                        options=dict(record.options) if record.options else None))


def resolve_aliases(name: str) -> set[str]:
    """Every spelling under which a model filter may match a record: as given, canonical name, alias, slug."""
    names = {name}
    base, _, tag = name.partition("@")
    try:
        from runner.providers.catalog import resolve_model

        spec = resolve_model(base)
        names.update(with_tag(x, tag) for x in (spec.name, spec.alias, spec.slug) if x)
    except (UsageError, ValueError):  # a slug or an unknown spelling is still a valid filter
        pass
    return names


def record_names(record: Record | dict[str, Any]) -> set[str]:
    """Every name a model filter may use for a record: model, alias, slug, each also as ``name@tag``.

    A plain name matches every variant of the model; ``name@tag`` matches one.
    """
    parsed = record if isinstance(record, Record) else parse_record(record)
    return parsed.names if parsed is not None else set()


def open_store(source: StoreSource = DEFAULT_OUTPUT_DIR, question: int | None = None) -> Snapshot:
    """A snapshot of the store: ``source`` itself when it is one, else one read of the folder (missing: UsageError);
    with ``question``, of that question's records only."""
    if isinstance(source, Snapshot):
        return source
    check_folder(source)
    return Store(source).snapshot(question=question)


def check_folder(output_dir: str | Path) -> None:
    """A UsageError, saying what to do, when the output folder does not exist."""
    if not Path(output_dir).is_dir():
        raise UsageError(f"output folder {output_dir} does not exist; run some questions first "
                         "(or point --output-dir at the folder holding the answers)")


def _manifests(source: StoreSource) -> list[dict[str, Any]]:
    """The run manifests, oldest first (from the snapshot, or read from the folder: no record is read)."""
    return source.manifests if isinstance(source, Snapshot) else Store(source).manifests()


def load_records(source: StoreSource = DEFAULT_OUTPUT_DIR, question_set: str | None = None) -> list[Record]:
    """Every saved record in the store (of one question set, or all); a missing folder is an error."""
    return open_store(source).records_of(question_set)


def question_sets(source: StoreSource = DEFAULT_OUTPUT_DIR) -> list[dict[str, Any]]:
    """The question sets saved in the store: name, questions, answers, and where the questions came from."""
    if not isinstance(source, Snapshot) and not Path(source).is_dir():
        return []
    snapshot = open_store(source)
    sets: dict[str, dict[str, Any]] = {}
    for record in snapshot.records:
        _count_in_set(sets, record)
    return _set_rows(sets, snapshot)


def _count_in_set(sets: dict[str, dict[str, Any]], record: Record) -> None:
    """Count ``record`` in its set's row of ``question_sets`` (its question numbers, as a set, until ``_set_rows``)."""
    name = record.set_name or ""
    row = sets.get(name)
    if row is None:
        row = sets[name] = {"name": name, "questions": set(), "answers": 0, "source": None}
    row["questions"].add(record.n)
    row["answers"] += 1


def _set_rows(sets: dict[str, dict[str, Any]], snapshot: Snapshot) -> list[dict[str, Any]]:
    """The rows ``_count_in_set`` counted, finished: how many questions, where they came from, by name."""
    for name, row in sets.items():
        row["questions"], row["source"] = len(row["questions"]), (snapshot.info(name) or {}).get("source")
    return [sets[name] for name in sorted(sets)]


def choose_set(source: StoreSource, question_set: str | None) -> tuple[str, str | None]:
    """The question set a view shows, and a note when it was chosen among several.

    Named: it must exist. Not named: the only set, else the set of the latest run (with a note naming the others).
    """
    if isinstance(source, Snapshot):
        names, output_dir = source.set_names, source.root
    else:
        check_folder(source)
        names, output_dir = Store(source).set_names(), source
    if question_set is not None:
        if question_set not in names:
            raise UsageError(f"no question set {question_set!r} under {output_dir}; saved sets: "
                             f"{', '.join(names) or '(none)'}")
        return question_set, None
    if not names:
        raise UsageError(f"no saved answers under {output_dir}; run some questions first")
    if len(names) == 1:
        return names[0], None
    latest = next((manifest_set(m) for m in reversed(_manifests(source)) if manifest_set(m) in names), names[0])
    others = ", ".join(n for n in names if n != latest)
    return latest, (f"showing question set {latest!r} (the latest run's); also saved: {others} "
                    "(choose with --set NAME)")


def manifest_set(manifest: dict[str, Any]) -> str:
    """The question set a run wrote to (runs of version-1 stores: the set their questions file names)."""
    return str(manifest.get("set") or legacy_set_name(manifest))


def model_order(source: StoreSource, labels: Iterable[str]) -> list[str]:
    """Labels in the order the runs listed their models (oldest run first), unknown ones last, sorted."""
    order: dict[str, int] = {}
    for manifest in _manifests(source):
        for model in manifest.get("models") or []:
            for key in (model.get("alias"), model.get("name")):
                if key and key not in order:
                    order[key] = len(order)
    return sorted(set(labels), key=lambda label: (order.get(label, len(order)), label))


def load_answers(source: StoreSource = DEFAULT_OUTPUT_DIR, models: Sequence[str] | None = None,
                 personas: Sequence[str] | None = None, question_set: str | None = None) -> list[Answer]:
    """Every saved answer of a generative model in one question set (all sets when None), filtered.

    Raises UsageError when the folder holds no answers, or when a filter matches nothing (naming what exists).
    """
    snapshot = open_store(source)
    output_dir = snapshot.root
    records = [r for r in snapshot.records_of(question_set) if r.kind == "generate"]
    if not records:
        where = f"question set {question_set!r} in {output_dir}" if question_set else str(output_dir)
        raise UsageError(f"no saved answers under {where}; run some questions first")
    records = select_records(records, models, personas, output_dir,
                             order=lambda labels: model_order(snapshot, labels))
    choice = snapshot_choices(snapshot)  # shared with the scores of the same snapshot (the report)
    return [Answer.from_record(r, choice) for r in records]


def select_records(records: list[Record], models: Sequence[str] | None, personas: Sequence[str] | None,
                   where: object, order: Callable[[set[str]], Iterable[str]] = sorted) -> list[Record]:
    """The records of the given models (names, aliases, slugs) and personas; a name that matches nothing is a
    UsageError naming what is saved under ``where`` (models listed in ``order``)."""
    if models:
        wanted = [resolve_aliases(m) for m in models]
        for name, spellings in zip(models, wanted, strict=True):
            if not any(r.names & spellings for r in records):
                known = ", ".join(order({r.label for r in records}))
                raise UsageError(f"no saved answers from model {name!r} under {where}; saved models: {known}")
        keep = set().union(*wanted)
        records = [r for r in records if r.names & keep]
    if personas:
        saved = sorted({r.persona or "?" for r in records})
        for name in personas:
            if name not in saved:
                raise UsageError(f"no saved answers under persona {name!r} in {where}; "
                                 f"saved personas: {', '.join(saved)}")
        records = [r for r in records if r.persona in personas]
    return records


def usage_parts(answer: Answer, *, unknown: str = "?", tokens: str = "tok") -> list[str]:
    """Tokens, latency and a cut-off note for one answer, e.g. ``["111 in / 13 out tok", "0.42 s"]``."""
    def num(value: int | None) -> str:
        return unknown if value is None else f"{value:,}"

    parts = []
    if answer.prompt_tokens is not None or answer.completion_tokens is not None:
        parts.append(f"{num(answer.prompt_tokens)} in / {num(answer.completion_tokens)} out {tokens}")
    if answer.latency_s is not None:
        parts.append(f"{answer.latency_s:.2f} s")
    if answer.finish_reason == "length":
        parts.append("cut at max tokens")
    return parts


def group_questions(answers: Sequence[Answer], model_labels: Sequence[str] | None = None,
                    persona_order: Sequence[str] | None = None) -> list[QuestionAnswers]:
    """Group answers by question number, in number order, with stable model and persona orders."""
    labels = list(model_labels) if model_labels else sorted({a.label for a in answers})
    personas = list(persona_order) if persona_order else sorted({a.persona for a in answers})
    by_n: dict[int, list[Answer]] = {}
    for answer in answers:
        by_n.setdefault(answer.n, []).append(answer)
    return [_question_view(n, by_n[n], labels, personas) for n in sorted(by_n)]


def _question_view(n: int, answers: list[Answer], labels: list[str], personas: list[str]) -> QuestionAnswers:
    # Several question files may have been run into one folder: the latest text wins, the rest are flagged.
    latest = max(answers, key=lambda a: a.time or "")
    texts = Counter(a.question for a in answers)
    present_labels = [m for m in labels if any(a.label == m for a in answers)]
    present_personas = [p for p in personas if any(a.persona == p for a in answers)]
    ordered = sorted(answers, key=lambda a: (present_personas.index(a.persona), present_labels.index(a.label)))
    view = QuestionAnswers(n=n, question=latest.question, answers=ordered, models=present_labels,
                           personas=present_personas)
    if len(texts) > 1:
        for a in ordered:
            a.question_differs = a.question != latest.question
        view.warnings.append(f"answers to {len(texts)} different question texts are saved as question {n}; "
                             "answers to an older text are marked")
    return view


def _fill_question_details(views: list[QuestionAnswers], snapshot: Snapshot, question_set: str) -> None:
    """Options, the correct letter, id, context and task come from the records themselves."""
    wanted = {(v.n, v.question): v for v in views}
    for view in views:
        view.set_name = question_set
    for record in snapshot.records_of(question_set):
        view = wanted.get((record.n, record.question))
        if view is not None and view.question_id is None:
            _fill(view, record.question_id, record.context, record.options, record.answer, record.task,
                  record.messages)


def all_questions(source: StoreSource = DEFAULT_OUTPUT_DIR, models: Sequence[str] | None = None,
                  personas: Sequence[str] | None = None, question_set: str | None = None) -> list[QuestionAnswers]:
    """Every question of one set with saved answers, each with its grid of answers (models x personas).

    ``question_set`` None: the only set, or the latest run's (see ``choose_set``).
    """
    snapshot = open_store(source)
    question_set, _ = choose_set(snapshot, question_set)
    answers = load_answers(snapshot, models, personas, question_set)
    views = group_questions(answers, label_order(snapshot, answers, models), persona_order(answers, personas))
    _fill_question_details(views, snapshot, question_set)
    return views


class AnswerStream:
    """One read of a store's records as they come (``Store.iter_records``), none of them kept: what
    ``all_questions``, ``question_sets`` and ``encoder_summary`` give, for a view that must never hold every record
    (the report: 150,000 parsed records take ~430 MB; the Answers made of them, a fraction of that).

    Iterating it yields the records of ``question_set`` (for ``scores.collect_scores``, with ``choice``), and
    meanwhile it makes an ``Answer`` of each selected generate record, counts every set's records (``sets``) and
    the set's encoder records (``encoders``), keeps each question's details (options, right answer, ...) and, with
    ``keys``, where each record of the set is and its answer key (``places``: grades and pairwise preferences are
    matched to answers by them). Each letter is extracted once: ``choice`` gives the scores the letter the last
    Answer was made with (only that one record is held). Then ``views()`` groups the answers as ``all_questions``
    does, raising ``load_answers``'s UsageErrors (no answers, a model or persona filter that matches nothing).
    """

    def __init__(self, store: Store, snapshot: Snapshot, question_set: str, models: Sequence[str] | None = None,
                 personas: Sequence[str] | None = None, *, keys: bool = False) -> None:
        self.store, self.snapshot, self.question_set = store, snapshot, question_set
        self.models, self.personas = models, personas
        self.answers: list[Answer] = []
        self.sets: dict[str, dict[str, Any]] = {}  # question_sets' rows, being counted
        self.encoder_rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.places: dict[tuple[str, str, int, int], str | None] | None = {} if keys else None
        self._details: dict[tuple[int, str], _Details] = {}
        self._wanted = [resolve_aliases(m) for m in models] if models else []
        self._keep: set[str] | None = set().union(*self._wanted) if models else None
        self._matched = [False] * len(self._wanted)
        self._labels: set[str] = set()  # every generate record's label (to name them when a filter matches none)
        self._personas: set[str] = set()  # the personas of the generate records the model filter keeps
        self._generated = 0
        self._messages: dict[str | None, str | None] = {}  # one object of each string the Answers repeat
        self._last: tuple[Record | None, Choice] = (None, (None, None))
        self._known, self._indexed = stream_choices()  # the letters the store's index holds: not extracted again

    def __iter__(self) -> Iterator[Record]:
        # Every set: each set's counts are shown (question_sets).
        for record in self.store.iter_records(share=False, known=self._known):
            _count_in_set(self.sets, record)
            if record.set_name != self.question_set:
                continue
            _note_details(self._details, record)
            _count_encoder(self.encoder_rows, record)
            if self.places is not None:
                self.places[record.persona or "", record.label, record.n, record.sample or 1] = record.key
            if record.kind == "generate":
                self._answer(record)
            yield record

    def _answer(self, record: Record) -> None:
        """Make the Answer of a generate record, unless the model or persona filter leaves it out."""
        self._generated += 1
        self._labels.add(record.label)
        if self._keep is not None:
            names = record.names
            for i, spellings in enumerate(self._wanted):
                self._matched[i] = self._matched[i] or bool(names & spellings)
            if not names & self._keep:
                return
        self._personas.add(record.persona or "?")
        if self.personas and record.persona not in self.personas:
            return
        answer = Answer.from_record(record, self._choose)
        # What every persona and model repeats (the records are not shared as they are read: only the Answer is
        # kept), one string of each.
        one = self._messages.setdefault
        answer.user_message = one(answer.user_message, answer.user_message)
        answer.system_prompt = one(answer.system_prompt, answer.system_prompt)
        answer.question, answer.model, answer.label = one(answer.question, answer.question), \
            one(answer.model, answer.model), one(answer.label, answer.label)
        answer.persona, answer.run_id = one(answer.persona, answer.persona), one(answer.run_id, answer.run_id)
        self.answers.append(answer)

    def _choose(self, record: Record) -> Choice:
        found = self._last = (record, self._indexed(record))
        return found[1]

    def choice(self, record: Record) -> Choice:
        """``scores.record_choice`` of ``record``: the letter its Answer was made with when it was the last one."""
        last, found = self._last
        return found if last is record else record_choice(record)

    def question_sets(self) -> list[dict[str, Any]]:
        """``question_sets`` of the store, once the records are read."""
        return _set_rows(self.sets, self.snapshot)

    def encoders(self) -> list[dict[str, Any]]:
        """``encoder_summary`` of the set, once the records are read."""
        return list(self.encoder_rows.values())

    def views(self) -> list[QuestionAnswers]:
        """The set's questions with their answers (``all_questions``), once the records are read."""
        where = self.snapshot.root
        if not self._generated:
            raise UsageError(f"no saved answers under question set {self.question_set!r} in {where}; "
                             "run some questions first")
        for name, matched in zip(self.models or (), self._matched, strict=True):
            if not matched:
                known = ", ".join(model_order(self.snapshot, self._labels))
                raise UsageError(f"no saved answers from model {name!r} under {where}; saved models: {known}")
        saved = sorted(self._personas)
        for name in self.personas or ():
            if name not in saved:
                raise UsageError(f"no saved answers under persona {name!r} in {where}; "
                                 f"saved personas: {', '.join(saved)}")
        answers = self.answers
        views = group_questions(answers, label_order(self.snapshot, answers, self.models),
                                persona_order(answers, self.personas))
        for view in views:
            view.set_name = self.question_set
            found = self._details.get((view.n, view.question))
            if found is not None:
                _fill(view, *found)
        return views


# What a question's view takes from its records: id, context, options, right answer, task, conversation turns.
_Details = tuple[str | None, str | None, dict[str, str] | None, str | None, str | None, list[dict[str, str]] | None]


def _note_details(found: dict[tuple[int, str], _Details], record: Record) -> None:
    """Keep what ``_fill_question_details`` takes from question (n, text)'s records, as it takes it: the first
    record's with a question id, else the last one's (it fills a view again while the view has no id)."""
    key = (record.n, record.question)
    held = found.get(key)
    if held is None or held[0] is None:
        found[key] = (record.question_id, record.context, record.options, record.answer, record.task,
                      record.messages)


def _fill(view: QuestionAnswers, question_id: str | None, context: str | None, options: dict[str, str] | None,
          correct: str | None, task: str | None, messages: list[dict[str, str]] | None) -> None:
    view.question_id, view.context, view.correct, view.task = question_id, context, correct, task
    view.options = dict(options) if options is not None else None
    view.messages = [dict(m) for m in messages] if messages is not None else None


def label_order(source: StoreSource, answers: Sequence[Answer], models: Sequence[str] | None = None) -> list[str]:
    """The model labels of ``answers`` in display order: as the user named them, else as the runs listed them.

    A model's named variants (``label@tag``) follow its untagged answers.
    """
    if not models:
        base = model_order(source, {a.label.partition("@")[0] for a in answers})
        return sorted({a.label for a in answers},
                      key=lambda label: (base.index(label.partition("@")[0]), "@" in label, label))
    out: list[str] = []
    for name in models:
        spellings = resolve_aliases(name)
        for a in answers:
            if (a.label in spellings or a.model in spellings) and a.label not in out:
                out.append(a.label)
    return out + sorted({a.label for a in answers} - set(out))


def persona_order(answers: Sequence[Answer], personas: Sequence[str] | None = None) -> list[str]:
    """The personas of ``answers`` in display order: as the user named them, else alphabetical."""
    present = {a.persona for a in answers}
    return [p for p in personas if p in present] if personas else sorted(present)


def question_answers(n: int, source: StoreSource = DEFAULT_OUTPUT_DIR, models: Sequence[str] | None = None,
                     personas: Sequence[str] | None = None, question_set: str | None = None) -> QuestionAnswers:
    """Question ``n`` of one set with every selected model's answer under every selected persona.

    Raises UsageError when no answer to question ``n`` is saved (naming the numbers that are).
    """
    snapshot = open_store(source)
    output_dir = snapshot.root
    views = {v.n: v for v in all_questions(snapshot, models, personas, question_set)}
    if n not in views:
        numbers = sorted(views)
        shown = ", ".join(map(str, numbers[:20])) + (", ..." if len(numbers) > 20 else "")
        where = next(iter(views.values())).set_name if views else question_set
        raise UsageError(f"question {n} has no saved answers in question set {where!r} under {output_dir}; "
                         f"saved questions: {shown}")
    return views[n]


def answers_table(source: StoreSource = DEFAULT_OUTPUT_DIR, models: Sequence[str] | None = None,
                  personas: Sequence[str] | None = None, question_set: str | None = None) -> list[dict[str, Any]]:
    """One flat dict per saved answer (set, n, model, label, persona, text, error, tokens, chosen, correct, ...).

    Every set unless ``question_set`` names one.
    """
    return [asdict(a) for a in load_answers(source, models, personas, question_set)]


def encoder_summary(source: StoreSource = DEFAULT_OUTPUT_DIR,
                    question_set: str | None = None) -> list[dict[str, Any]]:
    """The encoder (embedding) models in the store: model, persona, vectors saved, failures, dimension."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for record in load_records(source, question_set):
        _count_encoder(rows, record)
    return list(rows.values())


def _count_encoder(rows: dict[tuple[str, str], dict[str, Any]], record: Record) -> None:
    """Count an encoder (``embed``) record in its model and persona's row of ``encoder_summary``; others: nothing."""
    if record.kind == "embed":
        label = str(record.alias or record.model)
        row = rows.setdefault((label, str(record.persona)), {
            "model": label, "persona": record.persona, "embedded": 0, "failed": 0, "dim": None})
        if record.error:
            row["failed"] += 1
        else:
            row["embedded"] += 1
            row["dim"] = record.embedding_dim or row["dim"]
