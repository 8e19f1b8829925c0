"""The ``grade`` sub-command: judge models grade the saved open answers against rubrics, HealthBench's way.

``grade --judge MODEL`` grades the answers of one question set (each rubric item asked of the judge once, through
the engine: concurrency, retries, resume after a kill, progress, tokens and cost). With ``--questions`` (or
``--dataset``) and ``--models``, the missing answers are made first, as ``score --data`` does. Several judges
(``--judge a,b,c``) grade each answer apart, and a panel row takes each item's majority. The results go to
``grades.json``, ``grades.md`` and ``grades.png`` under the output root.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from runner.commands.options import add_config, add_filters, add_output_dir, batch_size, config_of, csv_list
from runner.core.errors import RunnerError, UsageError
from runner.core.questions import Question
from runner.tasks.grading import HEALTHBENCH_FILES, RUBRIC_MODES

log = logging.getLogger("runner")
DEFAULT_JUDGE_TOKENS = 1024
PAIRWISE_JUDGE_TOKENS = 2048  # MT-Bench's max_tokens for its pairwise judge


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``grade``."""
    parser.description = ("Grade saved open answers with judge models: one judge call per rubric item "
                          "(HealthBench's grader), scores per model and persona with bootstrap std, per rubric axis "
                          "and theme; written to grades.json, grades.md and grades.png.")
    add_output_dir(parser)
    add_filters(parser)
    add_config(parser)
    parser.add_argument("-j", "--judge", type=csv_list, action="extend", metavar="MODEL[,MODEL]", required=True,
                        help="the judge model(s): any generative model (API, OpenAI-compatible server, local hf:); "
                             "a,b,c grades with each and adds a panel (majority per rubric item)")
    parser.add_argument("--rubric", choices=RUBRIC_MODES, default="auto",
                        help="auto (default): each question's own rubric (HealthBench files, or a 'rubrics' list), "
                             "else the clinician axes; question: only questions with their own rubric; clinician: "
                             "the Med-PaLM clinician axes for every question; reference: accuracy, completeness and "
                             "clarity scored 1-5 against each question's 'reference' answer (MedHELM's scheme)")
    parser.add_argument("--judge-attempts", type=int, default=3, metavar="N",
                        help="times a judge is asked one rubric item when its reply is not JSON with a boolean "
                             "criteria_met (default 3); then the item is recorded as ungradable")
    parser.add_argument("--meta-eval", metavar="FILE",
                        help="check the judge against physicians instead: HealthBench's meta-evaluation JSONL "
                             "(completions with physicians' binary_labels per rubric criterion); reports the judge's "
                             "balanced F1 beside the physicians' own, overall and per category")
    parser.add_argument("--compare", action="append", metavar="A,B",
                        help="paired comparison of two models' rubric scores on the questions both were graded on "
                             "(mean difference, paired bootstrap interval, sign-flip test, Holm-adjusted); 'all' "
                             "compares every pair; may be repeated")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                        help="bootstrap resamples for the standard deviation of each mean (default 1,000, as "
                             "HealthBench; seed fixed)")
    parser.add_argument("--pairwise", action="store_true",
                        help="instead of rubrics, have the judge compare every pair of models' answers to each "
                             "question (one model under several personas: pairs of personas), in both orders, with "
                             "MT-Bench's pair-v2 prompt; reports win/tie/loss, win rates, position bias and "
                             "Bradley-Terry ratings (--bootstrap rounds) in pairwise.json and pairwise.md; judge "
                             f"replies up to {PAIRWISE_JUDGE_TOKENS} tokens unless --max-new-tokens")
    src = parser.add_argument_group("questions to answer first (with --models)")
    src.add_argument("-q", "--questions", metavar="PATH",
                     help="a questions JSONL file (the run format, or HealthBench's JSONL as distributed)")
    src.add_argument("--dataset", metavar="NAME", choices=sorted(HEALTHBENCH_FILES),
                     help="HealthBench through the datasets library: healthbench (5,000 conversations), "
                          "healthbench_hard (1,000) or healthbench_consensus; online once, then from its cache")
    src.add_argument("--limit", type=int, metavar="N", help="only the first N questions")
    gen = parser.add_argument_group("judging and answering")
    gen.add_argument("--max-new-tokens", type=int, metavar="N",
                     help=f"most tokens per judge reply (default {DEFAULT_JUDGE_TOKENS})")
    gen.add_argument("--temperature", type=float, metavar="T", help="the judge's temperature (default 0)")
    gen.add_argument("--batch-size", type=batch_size, metavar="N|auto", help="local judges: prompts per batch")
    gen.add_argument("--concurrency", type=int, metavar="N", help="API judges: judge calls in flight (default 8)")
    gen.add_argument("--force", action="store_true", help="grade again what is already graded")
    gen.add_argument("--no-progress", action="store_true", help="no progress bars")


def execute(args: argparse.Namespace) -> int:
    """Answer what is missing (when asked), grade, aggregate and write the outputs; returns the exit status."""
    from runner.core.store import SetRef, Store
    from runner.views.answers import choose_set, select_records
    from runner.views.grades import collect, compare_grades, current_grades, render_markdown, write_outputs

    config = config_of(args)
    output_dir = Path(args.output_dir or config.output_dir)
    if args.judge_attempts < 1:
        raise UsageError("--judge-attempts must be 1 or more")
    if args.bootstrap < 0:
        raise UsageError("--bootstrap must be 0 or more")
    judges = [_judge_spec(name, config) for name in dict.fromkeys(args.judge)]
    if args.meta_eval:
        return _meta_eval(args, judges, output_dir)
    status = 0
    ref: SetRef | None = None
    questions: list[Question] | None = None
    if args.questions and args.dataset:
        raise UsageError("give one question source, not --questions and --dataset")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be a positive number")
    if args.questions or args.dataset:
        from runner.core.questions import load_questions
        from runner.tasks.grading import load_healthbench

        if args.questions:
            questions = load_questions(args.questions, limit=args.limit)
            ref = SetRef.for_path(args.questions, args.question_set)
        else:
            questions = load_healthbench(args.dataset, args.limit)
            ref = SetRef(args.question_set or args.dataset, f"dataset:{args.dataset}", bool(args.question_set))
        if args.models:
            status = _answer(args, questions, ref, output_dir)
    elif args.models and not Store(output_dir).set_names():
        raise UsageError("--models answers questions first: give --questions FILE or --dataset NAME")
    store = Store(output_dir)
    set_name = ref.name if ref else choose_set(store.snapshot(records=False), args.question_set)[0]
    snapshot = store.snapshot(set_name)  # that set's records only, each read once
    if questions is None:
        questions = _questions_of(snapshot.info(set_name), set_name)
    # Every saved answer, an empty one too: the judge grades it (it meets no positive item), so a model that says
    # nothing gets no credit rather than leaving the question out of its mean.
    answers = [r for r in snapshot.records_of(set_name) if r.kind == "generate" and r.ok]
    answers = select_records(answers, _names(args.models), args.persona, f"question set {set_name!r}")
    if args.pairwise:
        return max(status, _pairwise(args, judges, answers, questions, set_name, output_dir))
    # Self-consistency: the samples 2..K of the answers chosen are graded too (a question's grade is their mean).
    chosen = {(r.persona, r.label) for r in answers}
    answers += [r for r in Store(output_dir).questions_set(set_name).sample_records()
                if (r.persona, r.label) in chosen and r.ok]
    targets, skipped = _targets(answers, questions, args.rubric)
    if skipped:
        log.info("%d answer(s) not graded: %s", sum(skipped.values()),
                 "; ".join(f"{n} {why}" for why, n in skipped.items()))
    if not targets:
        raise UsageError(f"nothing to grade in question set {set_name!r}: no saved answer"
                         + {"question": " with a rubric (use --rubric clinician for the clinician axes)",
                            "reference": " to a question with a 'reference' answer"}.get(args.rubric, ""))
    status = max(status, _grade(args, judges, targets, questions, set_name, output_dir))
    grades = current_grades(store.questions_set(set_name).grade_records(), answers)
    wanted = {j.label for j in judges}
    grades = [g for g in grades if (g.model_extra or {}).get("judge_label") in wanted]
    result = collect(grades, resamples=args.bootstrap)
    if args.compare:
        result.comparisons = compare_grades(grades, _pairs(args.compare))
        if not result.comparisons:
            raise UsageError(f"--compare {' '.join(args.compare)}: no two models have rubric scores from the same "
                             "judge under the same persona on the same questions; see the rows of the table")
    paths = write_outputs(result, set_name, output_dir)
    print(render_markdown(result, set_name), end="")
    print(f"Grades: {paths['json']}; table: {paths['markdown']}"
          + (f"; chart: {paths['chart']}" if paths["chart"] else ""))
    return status


def _pairs(values: list[str]) -> list[tuple[str, str]] | None:
    """``--compare`` values as (A, B) pairs; None for ``all`` (every pair)."""
    pairs = []
    for value in values:
        if value.strip() == "all":
            return None
        names = [n.strip() for n in value.split(",") if n.strip()]
        if len(names) != 2:
            raise UsageError(f"--compare {value!r}: give two models, A,B (or all)")
        pairs.append((names[0], names[1]))
    return pairs


def _judge_spec(name: str, config: Any) -> Any:
    """The judge's spec (a config entry's options apply); an encoder cannot judge."""
    from runner.providers.catalog import resolve_model

    entry = next((m for m in config.models if not isinstance(m, str) and name in (m.name, getattr(m, "alias", None))),
                 name)
    spec = resolve_model(entry)
    if spec.kind != "generator":
        raise UsageError(f"{spec.label} cannot judge: it is an encoder (it returns embeddings, not text); choose a "
                         "generative model as --judge")
    return spec


def _names(models: list[Any] | None) -> list[str] | None:
    return [m if isinstance(m, str) else m.name for m in models] if models else None


def _questions_of(info: dict[str, Any] | None, set_name: str) -> list[Question]:
    """The questions of a saved set, read again from the file it was made from (rubrics and conversations live
    there, not in the answers' records)."""
    from runner.core.questions import load_questions

    source = (info or {}).get("source")
    if source and str(source).startswith("dataset:") and str(source)[8:] in HEALTHBENCH_FILES:
        from runner.tasks.grading import load_healthbench

        return load_healthbench(str(source)[8:])
    if not source or str(source).startswith("dataset:") or not Path(source).is_file():
        raise UsageError(f"question set {set_name!r}: its questions file "
                         f"{'(' + str(source) + ') ' if source else ''}is not at hand; give it with --questions FILE")
    return load_questions(source)


def _targets(answers: list[Any], questions: list[Question], mode: str) -> tuple[list[Any], dict[str, int]]:
    """Each saved answer with its question and rubric; what was left out, counted by reason."""
    from runner.core.personas import Persona
    from runner.engine.grading import Target
    from runner.tasks.grading import rubric_for

    by_n = {q.n: q for q in questions}
    targets, skipped = [], {"whose question changed since": 0, "without a rubric": 0, "without a reference answer": 0}
    for record in answers:
        q = by_n.get(record.n)
        if q is None or q.question != record.question:
            skipped["whose question changed since"] += 1
            continue
        folder = record.slug + (f"@{record.tag}" if record.tag else "") if record.slug else None
        if folder is None:
            continue
        persona = Persona(record.persona or "", record.persona_text or "", "saved")
        if mode == "reference":
            if not q.reference:
                skipped["without a reference answer"] += 1
                continue
            targets.append(Target(record, q, persona, folder, (), "reference", scheme="reference",
                                  sample=record.sample or 1))
            continue
        rubric = rubric_for(q, mode)
        if rubric is None:
            skipped["without a rubric"] += 1
            continue
        targets.append(Target(record, q, persona, folder, rubric[0], rubric[1], sample=record.sample or 1))
    return targets, {k: v for k, v in skipped.items() if v}


def _settings(args: argparse.Namespace) -> Any:
    from runner.core.settings import merge_settings

    return merge_settings(config_of(args).settings, {
        "max_new_tokens": args.max_new_tokens or DEFAULT_JUDGE_TOKENS, "temperature": args.temperature,
        "batch_size": args.batch_size, "concurrency": args.concurrency})


def _grade(args: argparse.Namespace, judges: list[Any], targets: list[Any], questions: list[Question],
           set_name: str, output_dir: Path, ref: Any = None) -> int:
    """One engine run per judge (the ``grade`` kind); the summary of each."""
    from runner.commands.summary import print_summary
    from runner.core.store import SetRef
    from runner.engine import run
    from runner.engine.grading import Grade

    status = 0
    for judge in judges:
        report = run(questions, [judge], [], _settings(args), output_dir=output_dir, force=args.force,
                     progress=_progress(args), argv=["grade", *sys.argv[2:]],
                     question_set=ref or SetRef(set_name, explicit=True),
                     kind=Grade(targets, attempts=args.judge_attempts))
        print_summary(report, sys.stderr)
        status = max(status, report.exit_status)
        if report.stopped:
            raise RunnerError(f"stopped early ({report.stopped}); free some space and grade again: saved grades "
                              "are skipped")
    return status


def _meta_eval(args: argparse.Namespace, judges: list[Any], output_dir: Path) -> int:
    """Grade the meta-evaluation file's completions with each judge; its agreement with the physicians."""
    import json

    from runner.core.personas import NO_PERSONA, Persona
    from runner.core.questions import Question, RubricItem
    from runner.core.records import Record
    from runner.core.store import SetRef, Store, write_output
    from runner.engine.grading import Target, _sha
    from runner.tasks.grading import load_meta_eval
    from runner.views.grades import meta_evaluation, render_meta_markdown

    if args.questions or args.models:
        raise UsageError("--meta-eval grades the file's own completions: leave out --questions and --models")
    items = load_meta_eval(args.meta_eval, args.limit)
    root = output_dir / "_meta-eval"  # its own store: the completions are not answers of a question set
    ref = SetRef.for_path(args.meta_eval, args.question_set)
    persona = Persona(NO_PERSONA, "", "built-in")
    targets, questions = [], []
    for item in items:
        question = Question(n=item.n, question=item.prompt[-1].content, line=item.line, messages=item.prompt)
        record = Record(n=item.n, model="healthbench-meta:completion", slug="completions", persona=NO_PERSONA,
                        text=item.completion, key=_sha(item.completion), question=question.question)
        questions.append(question)
        targets.append(Target(record, question, persona, "completions", (RubricItem(item.rubric, 1.0),), "meta",
                              scheme="meta"))
    status = _grade(args, judges, targets, questions, ref.name, root, ref)
    grades = Store(root).questions_set(ref.name).grade_records()
    for judge in judges:
        met: dict[int, bool] = {}
        for g in grades:
            extra = g.model_extra or {}
            found = extra.get("items") or [{}]
            if extra.get("judge_label") == judge.label and isinstance(found[0].get("met"), bool) \
                    and extra.get("answer_key") == targets[g.n - 1].record.key:
                met[g.n] = found[0]["met"]
        result = meta_evaluation(items, met)
        stem = "meta_eval" if len(judges) == 1 else f"meta_eval-{judge.slug}"
        write_output(output_dir / f"{stem}.json", json.dumps({"judge": judge.label, "source": args.meta_eval,
                                                                **result}, indent=1) + "\n", root=output_dir,
                     mode=0o644)
        markdown = render_meta_markdown(result, judge.label, args.meta_eval)
        write_output(output_dir / f"{stem}.md", markdown, root=output_dir, mode=0o644)
        print(markdown, end="")
        print(f"Meta-evaluation: {output_dir / (stem + '.json')}; table: {output_dir / (stem + '.md')}")
    return status


def _answer(args: argparse.Namespace, questions: list[Question], ref: Any, output_dir: Path) -> int:
    """Answer what is missing, as ``run`` does (``--persona none`` by default for conversations)."""
    from runner.commands.summary import print_summary
    from runner.core.personas import DEFAULT_PERSONA
    from runner.core.settings import merge_settings
    from runner.engine import run

    personas = args.persona or (["none"] if any(q.messages for q in questions) else [DEFAULT_PERSONA])
    settings = merge_settings(config_of(args).settings, {"batch_size": args.batch_size,
                                                         "concurrency": args.concurrency})
    report = run(questions, args.models, personas, settings, output_dir=output_dir, progress=_progress(args),
                 questions_path=args.questions, argv=["grade", *sys.argv[2:]], question_set=ref)
    print_summary(report, sys.stderr)
    return report.exit_status


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and not os.environ.get("NO_PROGRESS")


def _pairwise(args: argparse.Namespace, judges: list[Any], answers: list[Any], questions: list[Question],
              set_name: str, output_dir: Path) -> int:
    """``--pairwise``: one engine run per judge (the ``pairwise`` kind), then pairwise.json and pairwise.md."""
    from runner.commands.summary import print_summary
    from runner.core.store import SetRef, Store
    from runner.engine import run
    from runner.engine.pairwise import Pairwise, pair_targets
    from runner.views.pairwise import collect, current_pairwise, render_markdown, write_outputs

    targets, changed = pair_targets(answers, questions)
    if changed:
        log.info("%d answer(s) not compared: their question changed since", changed)
    if not targets:
        raise UsageError(f"nothing to compare in question set {set_name!r}: --pairwise needs answers of two or more "
                         "models (or of one model under two or more personas) to the same questions")
    settings = _settings(args)
    if not args.max_new_tokens:
        settings = settings.model_copy(update={"max_new_tokens": PAIRWISE_JUDGE_TOKENS})
    status = 0
    for judge in judges:
        report = run(questions, [judge], [], settings, output_dir=output_dir, force=args.force,
                     progress=_progress(args), argv=["grade", *sys.argv[2:]],
                     question_set=SetRef(set_name, explicit=True), kind=Pairwise(targets, attempts=args.judge_attempts))
        print_summary(report, sys.stderr)
        status = max(status, report.exit_status)
        if report.stopped:
            raise RunnerError(f"stopped early ({report.stopped}); free some space and compare again: saved "
                              "comparisons are skipped")
    wanted = {j.label for j in judges}
    records = current_pairwise(Store(output_dir).questions_set(set_name).pairwise_records(), answers)
    result = collect([r for r in records if (r.model_extra or {}).get("judge_label") in wanted],
                     resamples=args.bootstrap)
    paths = write_outputs(result, set_name, output_dir)
    print(render_markdown(result, set_name), end="")
    print(f"Pairwise preferences: {paths['json']}; table: {paths['markdown']}")
    return status
