"""The ``ask`` sub-command: one question to one model, the answer printed as it is written (not saved).

For trying a model or a persona quickly, as ``llm "prompt"`` does; ``run`` is the way to keep answers.
"""

from __future__ import annotations

import argparse
import sys

from runner.core.errors import RunnerError, UsageError


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``ask``."""
    parser.description = ("Ask one model one question and print its answer as it is written. Nothing is saved "
                          "(use run for that).")
    parser.add_argument("question", help="the question (quote it)")
    parser.add_argument("-m", "--model", default=None,
                        help="provider:model-id or a catalog alias (default: the embedded SmolLM2)")
    parser.add_argument("-p", "--persona", default=None, help="persona name or .md file (default: oncology-researcher)")
    parser.add_argument("--system-prompt", metavar="TEXT", help="an inline system prompt instead of a persona")
    parser.add_argument("--max-new-tokens", type=int, metavar="N", help="most tokens in the answer (default 512)")
    parser.add_argument("--temperature", type=float, metavar="T", help="0 = greedy (default: the model card's or 0)")
    parser.add_argument("--top-p", type=float, metavar="P", help="nucleus sampling cut-off")
    parser.add_argument("--seed", type=int, metavar="N", help="seed that makes sampling reproducible")
    parser.add_argument("--repetition-penalty", type=float, metavar="R", help="local models: penalise repeats")
    parser.add_argument("--frequency-penalty", type=float, metavar="F", help="API models: penalise repeats")


def execute(args: argparse.Namespace) -> int:
    """Load the model, stream the answer to standard output; returns the exit status."""
    from runner.core.personas import DEFAULT_PERSONA, resolve_personas
    from runner.core.questions import Question, format_user_message
    from runner.core.settings import GenerationSettings, merge_settings
    from runner.core.text import sanitize
    from runner.providers import load_provider_class
    from runner.providers.base import Generator, Request
    from runner.providers.catalog import DEFAULT_MODELS, resolve_model

    if not args.question.strip():
        raise UsageError("the question is empty")
    if args.persona and args.system_prompt is not None:
        raise UsageError("give either --persona or --system-prompt, not both")
    spec = resolve_model(args.model or DEFAULT_MODELS[0])
    if spec.kind != "generator":
        raise UsageError(f"{spec.label} returns embeddings, not answers; ask a generative model")
    (persona,) = resolve_personas([args.persona or DEFAULT_PERSONA] if args.system_prompt is None else [],
                                  args.system_prompt)
    given = {k: getattr(args, k) for k in ("max_new_tokens", "temperature", "top_p", "seed", "repetition_penalty",
                                           "frequency_penalty")}
    settings = spec.settings_for(merge_settings(GenerationSettings(), given))
    request = Request("ask", persona.text, format_user_message(Question(n=1, question=args.question)), settings)
    provider = load_provider_class(spec.provider)(spec, settings)
    if not isinstance(provider, Generator):
        raise UsageError(f"{spec.label} cannot answer questions")
    provider.load()
    try:
        for piece in provider.stream(request):
            sys.stdout.write(sanitize(piece))
            sys.stdout.flush()
    except RunnerError:
        sys.stdout.write("\n")
        raise
    finally:
        provider.close()
    sys.stdout.write("\n")
    return 0
