"""The ``compare`` sub-command: one question's saved answers side by side, and how much the models agree."""

from __future__ import annotations

import argparse
import json
import sys

from runner.commands.options import add_filters, add_output_dir
from runner.core.errors import UsageError
from runner.core.records import Snapshot
from runner.views.answers import DEFAULT_OUTPUT_DIR, all_questions, choose_set, open_store, question_answers


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a question number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError("question numbers start at 1")
    return number


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``compare`` options to its sub-parser."""
    parser.description = ("Show question N and every model's saved answer side by side (columns = models; with "
                          "one model and --persona a,b, columns = personas). Without N, list the saved questions.")
    parser.add_argument("n", nargs="?", type=_positive, metavar="N", help="question number (1-based, as saved)")
    add_output_dir(parser)
    add_filters(parser)
    parser.add_argument("--width", type=int, metavar="COLS", help="line width (default: the terminal's, or COLUMNS)")
    parser.add_argument("--stacked", action="store_true", help="one answer under another instead of columns")
    parser.add_argument("--show-prompt", action="store_true",
                        help="with N: show each answer's prompt as sent (system prompt and user message; for local "
                             "models the whole prompt text, template applied)")
    parser.add_argument("--show-thinking", action="store_true",
                        help="with N: show a reasoning model's whole thinking trace under its answer (by default "
                             "only its first line, folded under the answer)")
    parser.add_argument("--agreement", action="store_true",
                        help="also show how similar the answers are (cosine similarity of their embeddings)")
    parser.add_argument("--encoder", metavar="NAME", default=None,
                        help="encoder model for --agreement (default: all-minilm-l6-v2, embedded)")
    parser.add_argument("--only-wrong", action="store_true",
                        help="list only multiple-choice questions where an answer is wrong or the models disagree")
    parser.add_argument("--json", action="store_true", help="print the data shown as JSON instead")


def execute(args: argparse.Namespace) -> int:
    """Run ``compare``; returns the exit status."""
    from runner.views.terminal import render_agreement, render_question, terminal_width, use_color

    if args.width is not None and args.width < 20:
        raise UsageError("--width must be at least 20")
    if args.encoder and not args.agreement:
        raise UsageError("--encoder is used with --agreement")
    if args.show_prompt and args.n is None:
        raise UsageError("--show-prompt is used with a question number: compare N --show-prompt")
    if args.show_thinking and args.n is None:
        raise UsageError("--show-thinking is used with a question number: compare N --show-thinking")
    _tolerant_stdout()
    width = args.width or terminal_width()
    color = use_color(sys.stdout) and not args.json
    # The store, read once for everything shown: for one question without --agreement, only its records.
    one = args.n if args.n is not None and not args.agreement else None
    snapshot = open_store(args.output_dir or DEFAULT_OUTPUT_DIR, question=one)
    question_set, note = choose_set(snapshot, args.question_set)
    if note and not args.json:
        print(f"note: {note}", file=sys.stderr)
    if args.n is None and not args.agreement:
        return _list_questions(snapshot, args, width, question_set)
    view = None
    if args.n is not None:
        try:
            view = question_answers(args.n, snapshot, args.models, args.persona, question_set)
        except UsageError:
            if one is None:
                raise
            # Not saved: the whole store, read now, names the questions that are.
            question_answers(args.n, open_store(snapshot.root), args.models, args.persona, question_set)
            raise
    agreement = None
    if args.agreement:
        from runner.views.agreement import DEFAULT_ENCODER, measure_agreement

        agreement = measure_agreement(snapshot, args.encoder or DEFAULT_ENCODER, models=args.models,
                                      personas=args.persona, question_set=question_set)
    if args.json:
        data = {"question": view.to_dict() if view else None, "agreement": agreement.to_dict() if agreement else None}
        if agreement and args.n is not None:
            data["agreement"]["question_matrix"] = agreement.matrix(args.n)
        print(json.dumps(data, ensure_ascii=False, indent=1))
        return 0
    if view is not None:
        print(render_question(view, width, stacked=args.stacked, color=color, show_prompt=args.show_prompt,
                              show_thinking=args.show_thinking))
        graded = _grades_of(snapshot, question_set, args)
        if graded:
            print(graded + "\n")
    if agreement is not None:
        if args.n is not None:
            print(render_agreement(agreement, width, n=args.n, color=color, legend=False) + "\n")
        print(render_agreement(agreement, width, color=color))
    return 0


def _list_questions(snapshot: Snapshot, args: argparse.Namespace, width: int, question_set: str) -> int:
    from runner.views.answers import question_sets
    from runner.views.terminal import clip, sanitize, wrap

    views = all_questions(snapshot, args.models, args.persona, question_set)
    if args.only_wrong:
        views = [v for v in views if v.disagreement]
    if args.json:
        print(json.dumps([{"set": v.set_name, "n": v.n, "question": v.question, "answers": len(v.answers),
                           "right": sum(a.verdict == "right" for a in v.answers)} for v in views],
                         ensure_ascii=False, indent=1))
        return 0
    sets = question_sets(snapshot)
    if len(sets) > 1:
        print("Question sets: " + ", ".join(f"{s['name']} ({s['questions']} questions)" for s in sets))
    print(f"Question set {question_set!r}:")
    for v in views:
        failed = sum(1 for a in v.answers if not a.ok)
        status = f"{len(v.answers) - failed}/{len(v.answers)} answered"
        graded = [a for a in v.answers if a.verdict is not None]
        if graded:
            status += f", {sum(a.verdict == 'right' for a in graded)}/{len(graded)} right"
        prefix, suffix = f"{v.n:>4}  ", f"  ({status})"
        room = max(10, width - len(prefix) - len(suffix))
        print(prefix + clip(" ".join(sanitize(v.question).split()), room) + suffix)
    if not views:
        print("  (no question where the models disagree or got it wrong)")
    hint = f"compare N --set {question_set}" if len(sets) > 1 else "compare N"
    example = f" (e.g. {hint.replace('N', str(views[0].n), 1)})" if views else ""
    print("\n" + "\n".join(wrap(f"Show one: {hint}{example}; how much the models agree: compare --agreement",
                               width)))
    return 0


def _grades_of(snapshot: Snapshot, question_set: str, args: argparse.Namespace) -> str:
    """The judges' grades of question N's answers shown (``grade``), as text; empty when there are none."""
    from runner.core.store import Store
    from runner.core.text import sanitize
    from runner.views.answers import select_records
    from runner.views.grades import current_grades, question_grades, render_question_grades
    from runner.views.terminal import terminal_width

    grades = Store(snapshot.root).questions_set(question_set).grade_records(question=args.n)
    if not grades:
        return ""
    answers = select_records(snapshot.records_of(question_set), args.models, args.persona, question_set)
    shown = question_grades(current_grades(grades, answers), args.n)
    return sanitize(render_question_grades(shown, args.width or terminal_width()))


def _tolerant_stdout() -> None:
    """A terminal or pipe that cannot encode some character shows '?' rather than crashing."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure and (sys.stdout.encoding or "").lower().replace("-", "") != "utf8":
        reconfigure(errors="replace")
