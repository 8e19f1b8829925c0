"""The ``export`` sub-command: every saved answer as one row of a CSV, JSONL or Parquet file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runner.commands.options import add_filters, add_output_dir
from runner.core.errors import UsageError
from runner.views.answers import DEFAULT_OUTPUT_DIR


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``export`` options to its sub-parser."""
    from runner.views.export import FORMATS

    parser.description = ("Write every saved answer (free-text and log-likelihood; every question set unless --set "
                          "names one) as one row: set, question, model, persona, settings, tokens, latency, cost, "
                          "the answer, and for multiple-choice questions the letter chosen and whether it is right.")
    add_output_dir(parser)
    add_filters(parser)
    parser.add_argument("--format", dest="fmt", choices=FORMATS, default="csv", help="file format (default csv)")
    parser.add_argument("--out", metavar="FILE",
                        help="where to write (default OUTPUT_DIR/export.FORMAT; '-' for standard output, csv and "
                             "jsonl only)")
    parser.add_argument("--prompts", action="store_true",
                        help="add the prompt each answer was given: system_prompt, user_message, prompt_text")


def execute(args: argparse.Namespace) -> int:
    """Run ``export``; returns the exit status."""
    from runner.views.export import export_table, write_export, write_rows

    if args.out == "-" and args.fmt == "parquet":
        raise UsageError("--format parquet is a binary file: give --out FILE")
    root = Path(args.output_dir or DEFAULT_OUTPUT_DIR)
    rows = export_table(root, args.models, args.persona, args.question_set, prompts=args.prompts)
    if args.out == "-":
        write_rows(rows, sys.stdout.buffer, args.fmt, args.prompts)
        sys.stdout.flush()
        return 0
    path = Path(args.out) if args.out else root / f"export.{args.fmt}"
    write_export(rows, path, args.fmt, args.prompts, root=None if args.out else root)
    print(f"Exported {len(rows):,} answer(s) to {path} ({args.fmt})")
    return 0
