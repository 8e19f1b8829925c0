"""Command-line options shared by several sub-commands."""

from __future__ import annotations

import argparse


def csv_list(value: str) -> list[str]:
    """An argparse type: a comma-separated list (empty items dropped)."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def batch_size(value: str) -> int | str:
    """An argparse type: a positive integer or ``auto``."""
    if value == "auto":
        return value
    try:
        return positive_int(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError("expected a positive integer or 'auto'") from None


def on_off(value: str) -> bool:
    """An argparse type: ``on`` or ``off`` (also true/false, yes/no, 1/0) as a bool."""
    word = value.strip().lower()
    if word in ("on", "true", "yes", "1"):
        return True
    if word in ("off", "false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError("expected on or off")


def add_cpu_fast_path(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--cpu-fast-path on|off`` (``cpu_fast_path`` in the settings; None when not given, so a config file counts)."""
    parser.add_argument("--cpu-fast-path", type=on_off, metavar="on|off",
                        help="local models on an x86-64 CPU: prefix attention, packed linear layers and the "
                             "preallocated cache (default on where tested; off: transformers' plain path, same "
                             "greedy answers)")


def positive_int(value: str) -> int:
    """An argparse type: a positive integer (``200000`` or ``200_000``)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a positive integer") from None
    if number < 1:
        raise argparse.ArgumentTypeError("expected a positive integer")
    return number


def add_max_answer_chars(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--max-answer-chars N`` (``max_answer_chars`` in the settings; None when not given, so a config file counts)."""
    parser.add_argument("--max-answer-chars", type=positive_int, metavar="N",
                        help="longest answer text saved (default 200000): a longer answer is cut when saved, its "
                             "record keeps the full length and a warning; not part of the answer key")


def add_output_dir(parser: argparse.ArgumentParser) -> None:
    """The ``--output-dir`` option shared by every sub-command."""
    parser.add_argument("--output-dir", metavar="DIR", help="root of the saved answers (default: outputs)")


def add_set_and_tag(parser: argparse.ArgumentParser) -> None:
    """``--set`` and ``--tag`` for the commands that answer questions."""
    parser.add_argument("--set", dest="question_set", metavar="NAME",
                        help="question set the answers belong to (default: named after the questions file)")
    parser.add_argument("--tag", metavar="NAME",
                        help="save these answers as a named variant, beside answers made with other settings")


def add_filters(parser: argparse.ArgumentParser) -> None:
    """``--models`` and ``--persona`` as filters (for the read-only views)."""
    parser.add_argument("--models", type=csv_list, metavar="A,B", help="only these models (names, aliases or slugs)")
    parser.add_argument("--persona", type=csv_list, metavar="A,B", help="only these personas")
    parser.add_argument("--set", dest="question_set", metavar="NAME",
                        help="the question set (default: the only one, or the latest run's; score: all)")
