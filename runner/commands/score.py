"""The ``score`` sub-command: accuracy on multiple-choice questions, a leaderboard table and a chart.

``score`` alone scores what the store holds. Given a question set (``--questions``, ``--data``, ``--dataset``)
and ``--models``, it first answers what is missing — ``--scoring generate`` through the usual run (medical-exam
persona by default), ``--scoring loglik`` by log-likelihood (hf: models, or openai: models on a completions
server such as vLLM) — both through the one engine, so a killed run resumes — and then scores. The outputs,
``scores.json``, ``leaderboard.md`` and ``scores.png``, go to the output root.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Any

from runner.commands.options import (
    REASONING_SETTINGS,
    add_config,
    add_cpu_fast_path,
    add_filters,
    add_max_answer_chars,
    add_output_dir,
    add_reasoning,
    automatic_tag,
    batch_size,
    config_of,
)
from runner.core.errors import RunnerError, UsageError
from runner.core.questions import Question
from runner.core.store import SetRef
from runner.tasks.fewshot import FEWSHOT_SEED, SAMPLERS, FewshotPlan, plan_fewshot
from runner.tasks.harness import HARNESS_VERSION
from runner.tasks.registry import DEFAULT_PERSONA, dataset_hints, family_of, format_names
from runner.views.scores import AVERAGES
from runner.views.stats import RESAMPLES, SEED

log = logging.getLogger("runner")
EXAM_PERSONA = DEFAULT_PERSONA


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``score``."""
    parser.description = ("Score multiple-choice answers (questions with options and answer): accuracy per model, "
                          "persona and task, written to scores.json, leaderboard.md and scores.png.")
    add_output_dir(parser)
    add_filters(parser)
    add_config(parser)
    parser.add_argument("--scoring", choices=["generate", "loglik"], default="generate",
                        help="generate: extract the letter from saved free-text answers (every provider; default); "
                             "loglik: log-likelihood of each choice, as lm-evaluation-harness (hf: models, or openai: "
                             "models served by vLLM, SGLang or llama.cpp's server through /v1/completions)")
    parser.add_argument("--average", choices=AVERAGES, default="unweighted",
                        help="the leaderboard's average: unweighted mean over tasks (default, as the Open Medical LLM "
                             "Leaderboard) or weighted by each task's number of questions (as lm-evaluation-harness's "
                             "multimedqa group)")
    st = parser.add_argument_group("statistics")
    st.add_argument("--bootstrap", type=int, default=RESAMPLES, metavar="N",
                    help=f"bootstrap resamples for the 95%% intervals (default {RESAMPLES:,}; 0: none); the seed is "
                         f"fixed ({SEED}), so the same data gives the same interval")
    st.add_argument("--compare", action="append", metavar="A,B",
                    help="compare two models on the items both answered (names, aliases or slugs): accuracies, the "
                         "difference with its paired bootstrap interval, McNemar's exact test, Holm-adjusted p-values; "
                         "'all' compares every pair; may be repeated")
    st.add_argument("--show", choices=["discordant"],
                    help="with --compare: list the questions one model got right and the other wrong, with both "
                         "answers")
    st.add_argument("--by", metavar="FIELD",
                    help="break each accuracy down by a question field: task, or a key the questions carry "
                         "(category, subject, tags, ...)")
    st.add_argument("--json", action="store_true", help="print the scores and statistics as JSON instead of tables")
    st.add_argument("--plot", choices=["thinking"],
                    help="thinking: accuracy (95%% intervals) against mean thinking tokens per question for every "
                         "model x thinking budget/effort/samples setting saved, one line per model (scaling.png, "
                         "scaling.md, scaling.json)")
    src = parser.add_argument_group("questions to answer first (with --models)")
    src.add_argument("-q", "--questions", metavar="PATH", help="a questions JSONL file (the run format)")
    src.add_argument("--data", action="append", metavar="FILE",
                     help="a benchmark file as distributed (JSONL, JSON or Parquet); may be repeated")
    src.add_argument("--format", choices=format_names(),
                     help="format of --data files (detected from the keys when left out)")
    src.add_argument("--dataset", metavar="NAME",
                     help=f"load through the datasets library: {', '.join(dataset_hints())}, a hub path "
                          "or a local folder (online, or from its cache offline)")
    src.add_argument("--split", metavar="NAME", help="--dataset split (default: the one the harness scores)")
    src.add_argument("--subset", metavar="NAME", help="--dataset configuration name")
    src.add_argument("--task", metavar="NAME", help="task name for the loaded questions (default: from the format)")
    src.add_argument("--limit", type=int, metavar="N", help="only the first N questions of each source")
    src.add_argument("--num-fewshot", type=int, default=0, metavar="K",
                     help="put K solved examples in front of each question (default 0: zero-shot)")
    src.add_argument("--fewshot-file", metavar="FILE", help="where the solved examples come from")
    src.add_argument("--fewshot-split", metavar="NAME",
                     help="with --dataset: the split the examples come from (default: the one the harness uses, "
                          "train, or dev for MMLU)")
    src.add_argument("--fewshot-sampler", choices=SAMPLERS, default="harness",
                     help="harness (default): each task's own sampler, as lm-evaluation-harness "
                          f"{HARNESS_VERSION} draws examples (seeded random, seed {FEWSHOT_SEED}, for MedQA, MedMCQA "
                          "and PubMedQA; the first K for MMLU); first: the first K for every task")
    gen = parser.add_argument_group("answering")
    gen.add_argument("--max-new-tokens", type=int, metavar="N", help="most tokens per free-text answer (default 512)")
    gen.add_argument("--batch-size", type=batch_size, metavar="N|auto", help="local models: prompts per batch")
    gen.add_argument("--concurrency", type=int, metavar="N", help="API models: requests in flight")
    add_cpu_fast_path(gen)
    add_max_answer_chars(gen)
    gen.add_argument("--temperature", type=float, metavar="T", help="0 = greedy and deterministic (default 0)")
    gen.add_argument("--seed", type=int, metavar="N", help="seed that makes sampling reproducible")
    add_reasoning(parser.add_argument_group("reasoning models and self-consistency"))
    gen.add_argument("--tag", metavar="NAME",
                     help="save these answers as a named variant, beside answers made with other settings")
    gen.add_argument("--force", action="store_true",
                     help="answer again what is already saved, replacing it (also answers made with other settings)")
    gen.add_argument("--no-progress", action="store_true", help="no progress bars")


def execute(args: argparse.Namespace) -> int:
    """Answer what is missing (when asked), score the store, write the outputs; returns the exit status."""
    from runner.core.store import Store, check_tag
    from runner.views.scores import (
        ChoiceMemo,
        collect_scores,
        json_text,
        render_markdown,
        stream_choices,
        truncation_warnings,
        write_outputs,
    )

    config = config_of(args)  # --config: the model list (base_url, options), the settings and output_dir, as run
    output_dir = Path(args.output_dir or config.output_dir)
    args.models = args.models or config.models or None
    if args.num_fewshot < 0:
        raise UsageError("--num-fewshot must be 0 or more")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be a positive number")
    check_tag(args.tag)
    sources = _question_sets(args)
    pool = _fewshot_pool(args) if args.num_fewshot else None
    status = 0
    if sources is not None and not args.models:
        raise UsageError("--models is needed to answer the questions (or leave out the question source to score "
                         "what is saved)")
    if args.scoring == "loglik" and args.models:
        status = _run_loglik(args, sources, pool, output_dir)
    elif sources is not None:
        if pool is not None:
            planned = [(ref, questions, _plan(args, questions, pool)) for ref, questions in sources]
            sources = [(_fewshot_set(ref, args.num_fewshot, args),
                        [_with_examples(q, plan.for_question(q)) for q in questions])
                       for ref, questions, plan in planned]
        status = _run_generate(args, sources, output_dir)
    personas = set(args.persona) if args.persona else (
        {p for _, qs in sources for p in _family_personas(qs)} if sources is not None else None)
    wanted = {(ref.name, q.n, q.question) for ref, qs in sources for q in qs} if sources is not None else None
    sets = {args.question_set} if args.question_set and sources is None else None
    store = Store(output_dir)
    samples = store.sample_records()
    # Self-consistency and --plot thinking read the records again: held, their letters extracted once. Otherwise
    # the records are scored as they are read and not held (150,000 answers would take most of the memory).
    again = bool(samples or args.plot)
    snapshot = store.snapshot(records=again)
    if sets and args.question_set not in snapshot.set_names:
        raise UsageError(f"no question set {args.question_set!r} under {output_dir}; saved sets: "
                         f"{', '.join(snapshot.set_names) or '(none)'}")
    if again:
        choice: Any = ChoiceMemo()
        seen = _Counted(snapshot.records)
    else:
        known, choice = stream_choices()  # the letters the index holds: not extracted again
        seen = _Counted(store.iter_records(args.question_set if sets else None, share=False, known=known))
    scores = collect_scores(seen, models=_model_names(args.models), personas=personas, questions=wanted, sets=sets,
                            choice=choice)
    if sources is None and not seen.count:  # nothing was answered, and nothing is asked: write no empty scores
        raise UsageError(f"nothing to score: no saved answers under {output_dir}. Answer questions first (the run "
                         "command), or give --models with --questions, --data or --dataset to answer and score")
    stats, sections = _statistics(args, scores)
    groups = _sample_groups(args, snapshot, samples, personas, wanted, sets, choice) if again else []
    consistency = _self_consistency(args, groups, sections)
    paths = write_outputs(scores, output_dir, args.average, stats.to_json(), sections,
                          extra={"self_consistency": consistency})
    if args.json:
        print(json_text({"results": [s.to_json() for s in scores], "statistics": stats.to_json(),
                         "self_consistency": consistency}), end="")
    else:
        print(render_markdown(scores, args.average) + "".join(line + "\n" for line in sections), end="")
    for warning in truncation_warnings(scores):
        log.warning("warning: %s", warning)
    print(f"Scores: {paths['json']}; leaderboard: {paths['markdown']}"
          + (f"; chart: {paths['chart']}" if paths["chart"] else ""), file=sys.stderr if args.json else sys.stdout)
    if args.plot == "thinking":
        _plot_thinking(args, groups, output_dir)
    return status


class _Counted:
    """Records as they come, counted (whether there was anything to score is known once they are read)."""

    def __init__(self, records: Any) -> None:
        self.records, self.count = records, 0

    def __iter__(self) -> Any:
        for record in self.records:
            self.count += 1
            yield record


def _sample_groups(args: argparse.Namespace, snapshot: Any, samples: list[Any], personas: set[str] | None,
                   wanted: set[tuple[str, int, str]] | None, sets: set[str] | None, choice: Any) -> list[Any]:
    """Every free-text multiple-choice answer with its saved samples (``--samples``), filtered as the scores are;
    ``choice`` reads the letters (the scores' ``ChoiceMemo``: none is extracted twice)."""
    from runner.views.consistency import collect_samples

    return collect_samples(snapshot.records, samples, models=_model_names(args.models), personas=personas,
                           questions=wanted, sets=sets, choice=choice)


def _self_consistency(args: argparse.Namespace, groups: list[Any], sections: list[str]) -> list[dict[str, Any]]:
    """Majority vote, mean per-sample accuracy and pass@k of the answers with samples; their section is added to
    ``sections``."""
    from runner.views.consistency import consistency_scores, markdown_section

    found = consistency_scores(groups, resamples=args.bootstrap)
    sections.extend(markdown_section(found, args.bootstrap))
    return [s.to_json() for s in found]


def _plot_thinking(args: argparse.Namespace, groups: list[Any], output_dir: Path) -> None:
    """``--plot thinking``: accuracy against mean thinking tokens, one line per model (scaling.png, .md, .json)."""
    from runner.views.scaling import scaling_lines, write_scaling

    lines = scaling_lines(groups, resamples=args.bootstrap)
    paths = write_scaling(lines, output_dir, resamples=args.bootstrap)
    print(f"Scaling: {paths['markdown']}; {paths['json']}"
          + (f"; chart: {paths['chart']}" if paths["chart"] else " (no point to draw)"),
          file=sys.stderr if args.json else sys.stdout)


QuestionSets = list[tuple["SetRef", list[Question]]]


def _statistics(args: argparse.Namespace, scores: list[Any]) -> tuple[Any, list[str]]:
    """Intervals, comparisons and breakdowns as asked; their markdown sections."""
    from runner.views.comparisons import (
        Statistics,
        add_intervals,
        adjust,
        breakdowns,
        compare,
        compare_all,
        markdown_sections,
    )

    if args.bootstrap < 0:
        raise UsageError("--bootstrap must be 0 (no intervals) or a number of resamples")
    if args.show and not args.compare:
        raise UsageError("--show discordant needs --compare A,B")
    stats = Statistics(resamples=args.bootstrap, show_discordant=args.show == "discordant")
    add_intervals(scores, stats, args.average)
    for pair in args.compare or []:
        if pair.strip() == "all":
            stats.comparisons += compare_all(scores, stats)
            continue
        names = [n.strip() for n in pair.split(",") if n.strip()]
        if len(names) != 2:
            raise UsageError(f"--compare {pair!r}: give two models, A,B (or all)")
        found = compare(scores, _model_names([names[0]]) or set(), _model_names([names[1]]) or set(), stats)
        if not found:
            raise UsageError(f"--compare {pair}: no scored task that both {names[0]} and {names[1]} answered under "
                             "the same persona and method; see the leaderboard's rows")
        stats.comparisons += found
    adjust(stats.comparisons)
    if args.by:
        stats.breakdowns = breakdowns(scores, args.by, stats)
    return stats, (markdown_sections(scores, stats, args.average) if scores else [])


def _question_sets(args: argparse.Namespace) -> QuestionSets | None:
    """The multiple-choice question sets named on the command line (one per file or dataset), or None."""
    from runner.core.questions import load_questions
    from runner.core.store import SetRef, set_name_for
    from runner.tasks.loaders import hub_source, load_benchmark, load_hub_dataset

    chosen = [flag for flag, value in (("--questions", args.questions), ("--data", args.data),
                                       ("--dataset", args.dataset)) if value]
    if len(chosen) > 1:
        raise UsageError(f"give one question source, not {' and '.join(chosen)}")
    if args.questions:
        loaded = load_questions(args.questions, limit=args.limit)
        questions = [q for q in loaded if q.is_multiple_choice]
        if not questions:
            raise UsageError(f"{args.questions}: no multiple-choice questions (with options and answer)")
        return [(SetRef.for_path(args.questions, args.question_set), questions)]
    if args.data:
        if args.question_set and len(args.data) > 1:
            raise UsageError("--set names one question set; give it with a single --data file")
        return [(SetRef.for_path(path, args.question_set), load_benchmark(path, args.format, args.task, args.limit))
                for path in args.data]
    if args.dataset:
        ref = SetRef(name=args.question_set or set_name_for(args.dataset.rstrip("/").replace("/", "_")),
                     source=f"dataset:{args.dataset}:{args.subset or ''}:{args.split or ''}",
                     explicit=bool(args.question_set))
        questions = load_hub_dataset(args.dataset, args.format, args.split, args.subset, args.task, args.limit)
        _, where = hub_source(args.dataset)
        source = dataclasses.replace(where, config=args.subset or where.config)
        log.info("%s: %d question(s) from %s", args.dataset, len(questions), source.describe(args.split))
        return [(ref, questions)]
    return None


def _fewshot_set(ref: SetRef, k: int, args: argparse.Namespace) -> SetRef:
    """Questions with K examples in front are another question set (``<set>-<K>shot``) unless --set names one."""
    import dataclasses as dc

    return ref if args.question_set else dc.replace(ref, name=f"{ref.name}-{k}shot")


Pool = tuple[list["Question"], str]


def _fewshot_pool(args: argparse.Namespace) -> Pool:
    """Every solved example of --fewshot-file (or the --dataset's few-shot split) and where they came from."""
    from runner.tasks.loaders import hub_source, load_benchmark, load_hub_dataset

    if args.fewshot_file:
        return load_benchmark(args.fewshot_file, args.format, args.task), args.fewshot_file
    if args.dataset:
        _, where = hub_source(args.dataset)
        split = args.fewshot_split or where.fewshot_split
        if split:
            examples = load_hub_dataset(args.dataset, args.format, split, args.subset, args.task)
            source = dataclasses.replace(where, config=args.subset or where.config)
            log.info("few-shot examples: %d from %s", len(examples), source.describe(split))
            return examples, f"{args.dataset} split {split}"
    raise UsageError("--num-fewshot needs --fewshot-file FILE (or --dataset, with --fewshot-split where the dataset "
                     "has no known few-shot split): where the solved examples come from")


def _plan(args: argparse.Namespace, questions: list[Question], pool: Pool) -> FewshotPlan:
    """The examples in front of each question of one set, drawn as the chosen sampler draws them."""
    examples, where = pool
    plan = plan_fewshot(questions, examples, args.num_fewshot, args.fewshot_sampler, where=where)
    if plan.overlap:
        log.warning("note: %d of the scored questions are also in the few-shot pool (%s); none is shown as its own "
                    "example (the harness leaves it out when the pool is the scored split)", plan.overlap, where)
    return plan


def _with_examples(q: Question, examples: list[Question]) -> Question:
    """The question with K solved examples in front, in the harness's layout (blank line between)."""
    shots = ""
    for ex in examples:
        options = "".join(f"{letter}. {text}\n" for letter, text in (ex.options or {}).items())
        context = f"Context: {ex.context}\n" if ex.context else ""
        shots += f"{context}Question: {ex.question}\n{options}Answer: {ex.answer}\n\n"
    return dataclasses.replace(q, question=shots + q.question)


def _settings(args: argparse.Namespace) -> Any:
    from runner.core.settings import merge_settings

    return merge_settings(config_of(args).settings, {"max_new_tokens": args.max_new_tokens,
                                                 "batch_size": args.batch_size, "concurrency": args.concurrency,
                                                 "cpu_fast_path": args.cpu_fast_path,
                                                 "max_answer_chars": args.max_answer_chars,
                                                 "temperature": args.temperature, "seed": args.seed,
                                                 **{k: getattr(args, k) for k in REASONING_SETTINGS}})


def _run_generate(args: argparse.Namespace, sources: QuestionSets, output_dir: Path) -> int:
    """Answer what is missing in free text, one engine run per question set."""
    return _run_sets(args, sources, output_dir, kind=None)


def _run_loglik(args: argparse.Namespace, sources: QuestionSets | None, pool: Pool | None,
                output_dir: Path) -> int:
    """Score what is missing by log-likelihood (the engine's ``loglik`` kind), one run per question set."""
    from runner.core.store import Store

    if sources is None:
        sources = questions_in_store(Store(output_dir), args.question_set)
        if not sources:
            raise UsageError(f"no multiple-choice questions in {output_dir}; give --questions, --data or --dataset")
    return _run_sets(args, sources, output_dir, kind="loglik", pool=pool)


def _run_sets(args: argparse.Namespace, sources: QuestionSets, output_dir: Path, kind: str | None,
              pool: Pool | None = None) -> int:
    from runner.commands.summary import print_summary
    from runner.engine import run

    status = 0
    for ref, questions in sources:
        path = ref.source if ref.source and not ref.source.startswith("dataset:") else None
        settings = _settings(args)
        report = run(questions, args.models, args.persona or _family_personas(questions), settings,
                     output_dir=output_dir,
                     force=args.force, progress=_progress(args), questions_path=path, argv=["score", *sys.argv[2:]],
                     question_set=ref, tag=args.tag or (automatic_tag(settings) if kind is None else None), kind=kind,
                     fewshot=_plan(args, questions, pool) if pool is not None else None)
        print_summary(report, sys.stderr)
        status = max(status, report.exit_status)
        if report.stopped:  # a full disk: the next sets would stop at once, and the scores cannot be written
            raise RunnerError(f"stopped early ({report.stopped}); no scores written. Free some space and run the "
                              "same command again: saved answers are skipped")
    return status


def _family_personas(questions: list[Question]) -> list[str]:
    """The personas the questions' benchmark families ask free-text answers under (``medical-exam`` for all four)."""
    return sorted({family_of(q.task).persona for q in questions}) or [EXAM_PERSONA]


def questions_in_store(store: Any, question_set: str | None = None) -> QuestionSets:
    """The multiple-choice questions found in the store's answers, per question set, one per question number."""
    found: dict[str, dict[int, Question]] = {}
    for record in store.iter_records(question_set):
        n, options, answer = record.n, record.options, record.answer
        if not options or not answer or record.kind == "loglik":
            continue
        q = Question(n=n, question=record.question, id=record.question_id, options=options, answer=answer,
                     context=record.context, task=record.task)
        in_set = found.setdefault(record.set_name or "", {})
        if n in in_set and in_set[n].content_hash() != q.content_hash():
            log.warning("question %d of set %s differs between saved answers; scoring the first one found",
                        n, record.set_name)
            continue
        in_set.setdefault(n, q)
    return [(SetRef(name), [qs[n] for n in sorted(qs)]) for name, qs in sorted(found.items())]


def _model_names(models: list[Any] | None) -> set[str] | None:
    """Every way a selected model (a name or a config entry) can appear in a record: as given, canonical name,
    alias, slug."""
    if not models:
        return None
    from runner.providers.catalog import resolve_model

    names = {m if isinstance(m, str) else m.name for m in models}
    for name in models:
        try:
            spec = resolve_model(name)
        except UsageError:
            continue
        names.update(n for n in (spec.name, spec.alias, spec.slug, spec.model_id) if n)
    return names


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and not os.environ.get("NO_PROGRESS")
