"""The ``report`` sub-command: write the self-contained HTML report of the saved answers."""

from __future__ import annotations

import argparse
import sys

from runner.commands.options import add_filters, add_output_dir
from runner.core.errors import UsageError
from runner.views.answers import DEFAULT_OUTPUT_DIR, StoreSource, choose_set, open_store
from runner.views.report_pages import QUESTIONS_PER_PAGE, SINGLE_FILE_MAX_ANSWERS, pages_folder


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``report`` options to its sub-parser."""
    parser.description = ("Write one self-contained HTML file (no external requests; opens from file://) of one "
                          "question set: the run settings, a summary per model, the scores of multiple-choice "
                          "answers, and every question's answers side by side (each multiple-choice answer with the "
                          "letter it chose and whether that is right). Past "
                          f"{SINGLE_FILE_MAX_ANSWERS:,} answers that file is an index, and the questions go on "
                          f"pages of {QUESTIONS_PER_PAGE} in a folder beside it (report_pages/).")
    add_output_dir(parser)
    add_filters(parser)
    parser.add_argument("--out", metavar="PATH", help="where to write the report (default: OUTPUT_DIR/report.html)")
    parser.add_argument("--title", default="Model comparison report", help="the report's title")
    parser.add_argument("--agreement", action="store_true",
                        help="include how much the models agree (embeds every answer with an encoder model)")
    parser.add_argument("--encoder", metavar="NAME", default=None,
                        help="encoder model for --agreement (default: all-minilm-l6-v2, embedded)")
    # Hidden, for tests: page a small report (the most answers one file holds; questions per page).
    parser.add_argument("--single-file-max", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--page-size", type=int, default=None, help=argparse.SUPPRESS)


def execute(args: argparse.Namespace) -> int:
    """Run ``report``; returns the exit status."""
    from runner.views.report import write_report_files

    if args.encoder and not args.agreement:
        raise UsageError("--encoder is used with --agreement")
    if (args.single_file_max is not None and args.single_file_max < 0) or (args.page_size is not None
                                                                          and args.page_size < 1):
        raise UsageError("--single-file-max must be 0 or more and --page-size 1 or more")
    output_dir = args.output_dir or DEFAULT_OUTPUT_DIR
    question_set, note = choose_set(output_dir, args.question_set)  # the manifests and set names: no record read
    if note:
        print(f"note: {note}", file=sys.stderr)
    # Without --agreement the report reads the records as they come, never all at once (write_report_files); with
    # it, the store is read once, whole, for the agreement and every section.
    source: StoreSource = output_dir
    agreement = None
    if args.agreement:
        from runner.views.agreement import DEFAULT_ENCODER, measure_agreement

        source = open_store(output_dir)
        agreement = measure_agreement(source, args.encoder or DEFAULT_ENCODER, models=args.models,
                                      personas=args.persona, question_set=question_set)
    path, pages = write_report_files(source, args.out, models=args.models, personas=args.persona,
                                     agreement=agreement, title=args.title, question_set=question_set,
                                     single_file_max=args.single_file_max, questions_per_page=args.page_size)
    where = f"; its {pages} pages of questions are in {pages_folder(path)}/, keep them beside it" if pages else ""
    print(f"Report written to {path} (open it in a browser: {path.resolve().as_uri()}){where}")
    return 0
