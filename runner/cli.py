"""The command line: a thin layer over ``runner.engine.run`` and the read-only views.

Sub-commands: run (the default), compare, report, score, export, tasks, init, models, personas. Importing this module,
``--help``, ``models`` and ``personas`` never import torch or any model SDK.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from runner.core.credentials import load_env_file, redact
from runner.core.errors import RunnerError, UsageError
from runner.core.text import sanitize

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# Each sub-command lives in its own module with configure(parser) and execute(args) -> int.
SUB_COMMANDS = {
    "run": ("runner.commands.run", "answer the questions with every selected model (default)"),
    "compare": ("runner.commands.compare", "show every model's answer to one question side by side"),
    "report": ("runner.commands.report", "write a self-contained HTML report of the saved answers"),
    "score": ("runner.commands.score", "score multiple-choice answers: accuracy per model, persona and task"),
    "grade": ("runner.commands.grade", "grade open answers with judge models against rubrics (HealthBench's way)"),
    "export": ("runner.commands.export", "write every saved answer as one row of a CSV, JSONL or Parquet file"),
    "tasks": ("runner.commands.tasks", "list the benchmark tasks and the --dataset names"),
    "init": ("runner.commands.init", "write a commented run.toml and a questions.jsonl template to start from"),
    "ask": ("runner.commands.ask", "ask one model one question and print the answer as it is written (not saved)"),
}
COMMANDS = ("models", "personas", *SUB_COMMANDS)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit status 2 with our own prefix
        self.print_usage(sys.stderr)
        raise UsageError(message)


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = sanitize(redact(record.getMessage()))  # a server's text may hold terminal escapes
        record.args = ()
        return True


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = _Parser(
        prog="medical_model_runner.py",
        description="Run medical questions through many language models under an expert persona, save every "
                    "answer, and compare, report and score them. 'run' is the default command.",
        epilog="Run options: medical_model_runner.py run --help. Exit status: 0 all answered, 1 some answers "
               "failed (the rest are kept), 2 usage or input error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_command(sub, "run")
    models = sub.add_parser("models", help="list the model catalog and what each entry needs")
    models.add_argument("--json", action="store_true", help="print the catalog as JSON")
    personas = sub.add_parser("personas", help="list the personas (system prompts)")
    personas.add_argument("name", nargs="?", help="print this persona's full text")
    for name in SUB_COMMANDS:
        if name != "run":
            _add_command(sub, name)
    return parser


def _add_command(sub: Any, name: str) -> None:
    module, help_text = SUB_COMMANDS[name]
    importlib.import_module(module).configure(sub.add_parser(name, help=help_text))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, dispatch, and map errors to exit statuses."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv = ["run", *argv]
    _setup_logging()
    try:
        load_env_file()
        args = build_parser().parse_args(argv)
        args.argv = argv
        if args.command == "models":
            from runner.commands.listing import print_models

            return print_models(as_json=args.json)
        if args.command == "personas":
            from runner.commands.listing import print_personas

            return print_personas(args.name)
        return importlib.import_module(SUB_COMMANDS[args.command][0]).execute(args)
    except UsageError as exc:
        print(f"error: {sanitize(redact(str(exc)))}", file=sys.stderr)
        return EXIT_USAGE
    except RunnerError as exc:
        print(f"error: {sanitize(redact(str(exc)))}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # output piped into head or similar
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print("\nInterrupted. Every answer finished so far is saved; run the same command again to resume "
              "(saved answers are skipped).", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:  # a file system error no layer turned into a message: still one line, naming the file
        print(f"error: {sanitize(redact(os_error_message(exc)))}", file=sys.stderr)
        return EXIT_FAILED
    except Exception:  # noqa: BLE001 - last resort: a redacted traceback, never a key
        print(sanitize(redact(traceback.format_exc())), file=sys.stderr)
        return EXIT_FAILED


def os_error_message(exc: OSError) -> str:
    """An OSError in words: the file, the reason and what to do (answers already saved stay saved)."""
    where = exc.filename if exc.filename is not None else "a file"
    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"cannot write {where}: {reason}. Free some space and run the same command again; answers "
                "already saved are kept and skipped")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {where}: {reason}. Make it writable, or choose another --output-dir"
    return f"{where}: {reason}"


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
