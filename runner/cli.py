"""The command line: a thin layer over ``runner.engine.run`` and the read-only views.

Sub-commands: run (the default), compare, report, score, models, personas. Importing this module,
``--help``, ``models`` and ``personas`` never import torch or any model SDK.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from importlib.util import find_spec
from typing import Any

from runner.errors import RunnerError, UsageError
from runner.secrets import load_env_file, redact

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# Read-only views live in their own modules; each has configure(parser) and execute(args) -> int.
VIEW_COMMANDS = {
    "compare": ("runner.compare_cmd", "show every model's answer to one question side by side"),
    "report": ("runner.report_cmd", "write a self-contained HTML report of the saved answers"),
    "score": ("runner.score_cmd", "score multiple-choice answers: accuracy per model, persona and task"),
}
COMMANDS = ("run", "models", "personas", *VIEW_COMMANDS)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit status 2 with our own prefix
        self.print_usage(sys.stderr)
        raise UsageError(message)


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        return True


def _csv(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _batch_size(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a positive integer or 'auto'") from None
    if number < 1:
        raise argparse.ArgumentTypeError("expected a positive integer or 'auto'")
    return number


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
    parser.add_argument("--models", type=_csv, metavar="A,B", help="only these models (names, aliases or slugs)")
    parser.add_argument("--persona", type=_csv, metavar="A,B", help="only these personas")
    parser.add_argument("--set", dest="question_set", metavar="NAME",
                        help="the question set (default: the only one, or the latest run's; score: all)")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (view commands are included when their modules exist)."""
    parser = _Parser(
        prog="medical_model_runner.py",
        description="Run medical questions through many language models under an expert persona, save every "
                    "answer, and compare, report and score them. 'run' is the default command.",
        epilog="Run options: medical_model_runner.py run --help. Exit status: 0 all answered, 1 some answers "
               "failed (the rest are kept), 2 usage or input error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _configure_run(sub.add_parser("run", help="answer the questions with every selected model (default)"))
    models = sub.add_parser("models", help="list the model catalog and what each entry needs")
    models.add_argument("--json", action="store_true", help="print the catalog as JSON")
    personas = sub.add_parser("personas", help="list the personas (system prompts)")
    personas.add_argument("name", nargs="?", help="print this persona's full text")
    for name, (module, help_text) in VIEW_COMMANDS.items():
        if find_spec(module) is not None:
            importlib.import_module(module).configure(sub.add_parser(name, help=help_text))
    return parser


def _configure_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--questions", metavar="PATH", help="questions JSONL file (default: questions.jsonl)")
    p.add_argument("--limit", type=int, metavar="N", help="answer only the first N questions")
    p.add_argument("--models", type=_csv, metavar="A,B",
                   help="models to run: provider:model-id or catalog aliases (default: the embedded pair "
                        "smollm2-135m-instruct,all-minilm-l6-v2); see the 'models' command")
    p.add_argument("--persona", type=_csv, metavar="NAME|PATH",
                   help="persona name(s) from prompts/ or a path to a .md file; a,b runs each "
                        "(default: oncology-researcher)")
    p.add_argument("--system-prompt", metavar="TEXT", help="an inline system prompt (saved as persona 'custom')")
    p.add_argument("--config", metavar="FILE", help="TOML file with settings and models; flags override it")
    add_output_dir(p)
    add_set_and_tag(p)
    g = p.add_argument_group("generation settings")
    g.add_argument("--max-new-tokens", type=int, metavar="N", help="most tokens per answer (default 512)")
    g.add_argument("--temperature", type=float, metavar="T", help="0 = greedy and deterministic (default 0)")
    g.add_argument("--top-p", type=float, metavar="P", help="nucleus sampling cut-off")
    g.add_argument("--seed", type=int, metavar="N", help="seed that makes sampling reproducible")
    g.add_argument("--batch-size", type=_batch_size, metavar="N|auto", help="local models: prompts per batch")
    g.add_argument("--concurrency", type=int, metavar="N", help="API models: requests in flight (default 8)")
    g.add_argument("--max-attempts", type=int, metavar="N", help="tries per answer on retryable errors (default 5)")
    g.add_argument("--timeout", type=float, dest="timeout_s", metavar="SECONDS",
                   help="per-request timeout for API models (default 120)")
    h = p.add_argument_group("local models")
    h.add_argument("--quantize", choices=["4bit", "8bit", "none"], help="quantize hf: models (needs CUDA)")
    h.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], help="weights dtype for hf: models")
    h.add_argument("--trust-remote-code", action="store_true", default=None,
                   help="allow a model's own code from the hub to run (off by default)")
    p.add_argument("--force", action="store_true",
                   help="answer again what is already saved, replacing it (also answers made with other settings)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, dispatch, and map errors to exit statuses."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv = ["run", *argv]
    _setup_logging()
    load_env_file()
    try:
        args = build_parser().parse_args(argv)
        if args.command == "run":
            return _cmd_run(args, argv)
        if args.command == "models":
            from runner.listing import print_models

            return print_models(as_json=args.json)
        if args.command == "personas":
            from runner.listing import print_personas

            return print_personas(args.name)
        return importlib.import_module(VIEW_COMMANDS[args.command][0]).execute(args)
    except UsageError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except RunnerError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # output piped into head or similar
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print("\nInterrupted. Every answer finished so far is saved; run the same command again to resume "
              "(saved answers are skipped).", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:  # noqa: BLE001 - last resort: a redacted traceback, never a key
        print(redact(traceback.format_exc()), file=sys.stderr)
        return EXIT_FAILED


def _cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    from runner.catalog import DEFAULT_MODELS
    from runner.engine import run
    from runner.personas import resolve_personas
    from runner.questions import load_questions
    from runner.settings import ModelEntry, RunConfig, load_config, merge_settings
    from runner.summary import print_summary

    config = load_config(args.config) if args.config else RunConfig()
    settings = merge_settings(config.settings, {k: getattr(args, k) for k in (
        "max_new_tokens", "temperature", "top_p", "seed", "batch_size", "concurrency", "max_attempts", "timeout_s")})
    if args.persona and args.system_prompt is not None:
        raise UsageError("give either --persona or --system-prompt, not both")
    system_prompt = args.system_prompt if args.system_prompt is not None else (
        None if args.persona else config.system_prompt)
    personas = resolve_personas(args.persona or config.personas, system_prompt)
    questions_path = args.questions or config.questions
    limit = args.limit if args.limit is not None else config.limit
    if limit is not None and limit < 1:
        raise UsageError("--limit must be a positive number")
    questions = load_questions(questions_path, limit=limit)
    entries: list[Any] = list(args.models or config.models or DEFAULT_MODELS)
    entries = [_apply_local_flags(e if isinstance(e, ModelEntry) else ModelEntry(name=e), args) for e in entries]
    report = run(questions, entries, personas, settings,
                 output_dir=args.output_dir or config.output_dir, force=args.force or config.force,
                 progress=not args.no_progress and not os.environ.get("NO_PROGRESS"),
                 questions_path=questions_path, argv=argv, question_set=args.question_set or config.question_set,
                 tag=args.tag or config.tag)
    print_summary(report)
    return report.exit_status


def _apply_local_flags(entry: Any, args: argparse.Namespace) -> Any:
    """``--quantize``, ``--dtype`` and ``--trust-remote-code`` apply to every hf: model."""
    from runner.catalog import resolve_model

    if resolve_model(entry).provider != "hf":
        return entry
    updates = {k: getattr(args, k) for k in ("quantize", "dtype", "trust_remote_code") if getattr(args, k) is not None}
    return entry.model_copy(update=updates) if updates else entry


def _setup_logging() -> None:
    logger = logging.getLogger("runner")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(_RedactingFilter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("medical-model-runner")
    except metadata.PackageNotFoundError:
        return "unknown"
