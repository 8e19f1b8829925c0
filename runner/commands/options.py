"""Command-line options shared by several sub-commands."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.core.settings import GenerationSettings, RunConfig


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
    parser.add_argument("-o", "--output-dir", metavar="DIR", help="root of the saved answers (default: outputs)")


def add_set_and_tag(parser: argparse.ArgumentParser) -> None:
    """``--set`` and ``--tag`` for the commands that answer questions."""
    parser.add_argument("--set", dest="question_set", metavar="NAME",
                        help="question set the answers belong to (default: named after the questions file)")
    parser.add_argument("--tag", metavar="NAME",
                        help="save these answers as a named variant, beside answers made with other settings")


def add_filters(parser: argparse.ArgumentParser) -> None:
    """``--models`` and ``--persona`` as filters (for the read-only views)."""
    parser.add_argument("-m", "--models", type=csv_list, metavar="A,B",
                        help="only these models (names, aliases or slugs)")
    parser.add_argument("-p", "--persona", type=csv_list, metavar="A,B", help="only these personas")
    parser.add_argument("--set", dest="question_set", metavar="NAME",
                        help="the question set (default: the only one, or the latest run's; score, export: all)")


def add_config(parser: argparse.ArgumentParser) -> None:
    """``--config FILE``: a TOML file with the settings and the model list (paths in it are relative to it)."""
    parser.add_argument("--config", metavar="FILE",
                        help="TOML file with settings and models (paths in it are relative to its folder); "
                             "flags override it")


def config_of(args: argparse.Namespace) -> RunConfig:
    """The ``--config`` file's contents (the defaults without one), read once per command."""
    from runner.core.settings import RunConfig, load_config

    if getattr(args, "run_config", None) is None:
        args.run_config = load_config(args.config) if getattr(args, "config", None) else RunConfig()
    return args.run_config


REASONING_SETTINGS = ("reasoning_effort", "thinking_budget", "min_thinking", "wait", "samples")


def add_reasoning(group: argparse._ArgumentGroup) -> None:
    """Thinking controls and self-consistency (``REASONING_SETTINGS``), shared by run and score."""
    group.add_argument("--reasoning-effort", choices=["low", "medium", "high"],
                       help="reasoning models: how much to think (OpenAI reasoning_effort, Gemini thinking level)")
    group.add_argument("--thinking-budget", type=int, metavar="N",
                       help="most thinking tokens (Gemini thinking_budget; local models: budget forcing as in s1)")
    group.add_argument("--min-thinking", type=int, metavar="M",
                       help="local models: an end of thinking before M trace tokens is replaced by 'Wait'")
    group.add_argument("--wait", type=int, metavar="K", help="local models: most 'Wait' insertions (default 0)")
    group.add_argument("--samples", type=int, metavar="K",
                       help="answer each question K times (self-consistency; with --temperature above 0)")


def automatic_tag(settings: GenerationSettings) -> str | None:
    """The variant tag answers go to when ``--tag`` is not given but test-time compute settings are: runs at several
    thinking budgets, efforts or with samples then sit side by side without naming each one.

    Its parts, joined by ``+`` in this order: ``think<N>`` (``--thinking-budget N``), ``effort-<level>``
    (``--reasoning-effort``), ``min<M>-wait<K>`` (``--min-thinking M --wait K``), and ``samples`` with ``--samples``
    above 1 (``samples-t<T>`` when ``--temperature T`` is given). The number of samples is not in the tag, so a run
    with more samples adds to the samples saved. None when none of these is set (the untagged answers).
    """
    parts = []
    if settings.thinking_budget is not None:
        parts.append(f"think{settings.thinking_budget}")
    if settings.reasoning_effort is not None:
        parts.append(f"effort-{settings.reasoning_effort}")
    if settings.min_thinking is not None:
        parts.append(f"min{settings.min_thinking}-wait{settings.wait}")
    if settings.samples > 1:
        parts.append(f"samples-t{settings.temperature:g}" if "temperature" in settings.model_fields_set
                     else "samples")
    if not parts:
        return None
    tag = "+".join(parts)
    if len(tag) > 48:  # the longest tag a folder takes
        import hashlib

        tag = tag[:39] + "-" + hashlib.sha256(tag.encode("utf-8")).hexdigest()[:8]
    return tag
