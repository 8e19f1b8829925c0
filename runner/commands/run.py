"""The ``run`` sub-command (the default): answer the questions with every selected model."""

from __future__ import annotations

import argparse
import os
from typing import Any

from runner.commands.options import (
    REASONING_SETTINGS,
    add_config,
    add_cpu_fast_path,
    add_max_answer_chars,
    add_output_dir,
    add_reasoning,
    add_set_and_tag,
    automatic_tag,
    batch_size,
    config_of,
    csv_list,
)
from runner.core.errors import UsageError


def configure(p: argparse.ArgumentParser) -> None:
    """Options of ``run``."""
    p.add_argument("-q", "--questions", metavar="PATH", help="questions JSONL file (default: questions.jsonl)")
    p.add_argument("--limit", type=int, metavar="N", help="answer only the first N questions")
    p.add_argument("-m", "--models", type=csv_list, metavar="A,B",
                   help="models to run: provider:model-id or catalog aliases (default: the embedded pair "
                        "smollm2-135m-instruct,all-minilm-l6-v2); see the 'models' command")
    p.add_argument("-p", "--persona", type=csv_list, metavar="NAME|PATH",
                   help="persona name(s) (see the 'personas' command) or a path to a .md file; a,b runs each "
                        "(default: oncology-researcher)")
    p.add_argument("--system-prompt", metavar="TEXT", help="an inline system prompt (saved as persona 'custom')")
    add_config(p)
    add_output_dir(p)
    add_set_and_tag(p)
    g = p.add_argument_group("generation settings")
    g.add_argument("--max-new-tokens", type=int, metavar="N", help="most tokens per answer (default 512)")
    g.add_argument("--temperature", type=float, metavar="T", help="0 = greedy and deterministic (default 0)")
    g.add_argument("--top-p", type=float, metavar="P", help="nucleus sampling cut-off")
    g.add_argument("--seed", type=int, metavar="N", help="seed that makes sampling reproducible")
    g.add_argument("--repetition-penalty", type=float, metavar="R",
                   help="local models: penalise tokens already used (1 = off; e.g. 1.2); not sent to API models")
    g.add_argument("--frequency-penalty", type=float, metavar="F",
                   help="API models: penalise tokens by how often they appeared (-2 to 2); not used by local models")
    g.add_argument("--batch-size", type=batch_size, metavar="N|auto", help="local models: prompts per batch")
    g.add_argument("--concurrency", type=int, metavar="N", help="API models: requests in flight (default 8)")
    g.add_argument("--max-attempts", type=int, metavar="N", help="tries per answer on retryable errors (default 5)")
    g.add_argument("--timeout", type=float, dest="timeout_s", metavar="SECONDS",
                   help="per-request timeout for API models (default 120)")
    add_max_answer_chars(g)
    add_reasoning(p.add_argument_group("reasoning models and self-consistency"))
    h = p.add_argument_group("local models", "--quantize, --dtype and --trust-remote-code apply to the models of "
                                             "the providers that the 'models' command marks 'local'")
    h.add_argument("--quantize", choices=["4bit", "8bit", "none"], help="quantize local models (needs CUDA)")
    h.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], help="weights dtype for local models")
    h.add_argument("--trust-remote-code", action="store_true", default=None,
                   help="allow a model's own code from the hub to run (off by default)")
    add_cpu_fast_path(h)
    p.add_argument("--force", action="store_true",
                   help="answer again what is already saved, replacing it (also answers made with other settings)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def execute(args: argparse.Namespace) -> int:
    """Answer the questions with every selected model; returns the exit status."""
    from runner.commands.summary import print_summary
    from runner.core.personas import resolve_personas
    from runner.core.questions import load_questions
    from runner.core.settings import ModelEntry, merge_settings
    from runner.engine import run
    from runner.providers.catalog import DEFAULT_MODELS

    config = config_of(args)
    settings = merge_settings(config.settings, {k: getattr(args, k) for k in (
        "max_new_tokens", "temperature", "top_p", "seed", "repetition_penalty", "frequency_penalty", "batch_size",
        "concurrency", "max_attempts", "timeout_s", "cpu_fast_path", "max_answer_chars", *REASONING_SETTINGS)})
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
                 questions_path=questions_path, argv=getattr(args, "argv", None),
                 question_set=args.question_set or config.question_set,
                 tag=args.tag or config.tag or automatic_tag(settings))
    print_summary(report)
    return report.exit_status


def _apply_local_flags(entry: Any, args: argparse.Namespace) -> Any:
    """``--quantize``, ``--dtype`` and ``--trust-remote-code`` apply to every model whose provider declares
    ``local_flags`` (hf:)."""
    from runner.providers import provider_info
    from runner.providers.catalog import resolve_model

    if not provider_info(resolve_model(entry).provider).local_flags:
        return entry
    updates = {k: getattr(args, k) for k in ("quantize", "dtype", "trust_remote_code") if getattr(args, k) is not None}
    return entry.model_copy(update=updates) if updates else entry
