"""The ``init`` sub-command: a commented ``run.toml`` and a ``questions.jsonl`` template to start from.

The config file is written from the settings' own declarations (``RunConfig``, ``GenerationSettings``,
``ModelEntry`` in ``runner.core.settings``): every key the config file takes, with its default, commented out,
so a new setting appears here without anyone listing it.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path
from typing import Any

CONFIG_NAME, QUESTIONS_NAME = "run.toml", "questions.jsonl"
# The top-level keys (by their name in the file): an example for those without a default value, and what each is.
TOP_LEVEL: dict[str, tuple[Any, str]] = {
    "questions": (None, "the questions JSONL file (init writes a template beside this file)"),
    "output_dir": (None, "where the answers go"),
    "personas": (None, "persona names (see the 'personas' command) or paths to .md files; each model answers "
                       "under each persona"),
    "system_prompt": ("You are a careful clinician. Answer briefly.",
                      "an inline persona instead of personas (saved as persona 'custom'); default: none"),
    "limit": (10, "answer only the first N questions; default: all"),
    "force": (None, "answer again what is already saved, replacing it"),
    "set": ("my-questions", "the question set the answers belong to; default: named after the questions file"),
    "tag": ("v2", "save the answers as a named variant, beside answers made with other settings; default: none"),
}
ACTIVE = {"questions"}  # keys written uncommented
SETTING_EXAMPLES: dict[str, Any] = {"top_p": 0.95, "seed": 1234, "repetition_penalty": 1.1,
                                   "frequency_penalty": 0.5, "reasoning_effort": "medium", "thinking_budget": 1024,
                                   "min_thinking": 256}  # default unset
MODELS_EXAMPLE = """\
# models = [
#   "smollm2-135m-instruct",
#   "all-minilm-l6-v2",
#   "gpt-4o-mini",
#   { name = "openai:meta-llama/Llama-3.1-8B-Instruct", base_url = "http://localhost:8000/v1" },
# ]"""
QUESTIONS_TEMPLATE = [
    {"id": "q1", "question": "What are the first-line treatments for newly diagnosed type 2 diabetes in adults?"},
    {"id": "q2", "question": "Which of these drugs is a statin?",
     "options": {"A": "Metformin", "B": "Atorvastatin", "C": "Lisinopril", "D": "Warfarin"}, "answer": "B"},
]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``init`` options to its sub-parser."""
    parser.description = (f"Write a commented {CONFIG_NAME} (every setting the config file takes, with its default) "
                          f"and a {QUESTIONS_NAME} template (a plain and a multiple-choice question) to start from.")
    parser.add_argument("--dir", default=".", metavar="DIR", help="where to write them (default: the current folder)")
    parser.add_argument("--force", action="store_true", help="replace files that are already there")


def toml_value(value: Any) -> str:
    """A Python value (bool, number, string or list of them) written as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _entry(key: str, value: Any, about: str, active: bool = False) -> list[str]:
    lines = ["# " + line for line in textwrap.wrap(about, 100)]
    return [*lines, f"{'' if active else '# '}{key} = {toml_value(value)}", ""]


def config_text() -> str:
    """The commented ``run.toml``: every top-level key, the models, and every ``[settings]`` key with its default."""
    from runner.core.settings import GenerationSettings, ModelEntry, RunConfig

    defaults = RunConfig()
    flags = run_flags()
    lines = [f"# {CONFIG_NAME}: the settings of a run, written by 'medical_model_runner.py init'.",
             f"#   python medical_model_runner.py run --config {CONFIG_NAME}",
             "# Flags on the command line override this file ('score --config' reads it too). Relative paths are",
             "# taken from this file's folder. Unknown keys are errors. Every key is shown with its default: remove",
             "# the leading '# ' of a line to set it.", ""]
    for name, field in RunConfig.model_fields.items():
        key = field.alias or name
        if key in ("models", "settings"):
            continue
        example, about = TOP_LEVEL[key]
        default = getattr(defaults, name)
        lines += _entry(key, default if default is not None else example, about, active=key in ACTIVE)
    entry_keys = ", ".join(k for k in ModelEntry.model_fields if k != "name")
    lines += [*("# " + line for line in textwrap.wrap(
        "The models (default: the embedded pair smollm2-135m-instruct and all-minilm-l6-v2, which run offline). "
        "Each is a catalog alias (see the 'models' command) or provider:model-id; a table sets per-model options: "
        f"{entry_keys}. The last entry points an openai: model at any OpenAI-compatible server (vLLM, Ollama, "
        "llama.cpp, LM Studio).", 100)), MODELS_EXAMPLE, "", "[settings]"]
    for name, field in GenerationSettings.model_fields.items():
        default = field.get_default()
        about = (field.description or name) + (f" ({flags[name]})" if name in flags else " (no flag: here only)")
        if default is None:
            default, about = SETTING_EXAMPLES[name], f"{about} Default: unset."
        lines += _entry(name, default, about)
    return "\n".join(lines).rstrip("\n") + "\n"


def run_flags() -> dict[str, str]:
    """The ``run`` flag of each setting that has one (``max_new_tokens`` -> ``--max-new-tokens``), read from the
    ``run`` parser itself."""
    from runner.commands.run import configure as configure_run

    parser = argparse.ArgumentParser()
    configure_run(parser)
    return {action.dest: action.option_strings[-1] for action in parser._actions if action.option_strings}


def questions_text() -> str:
    """The ``questions.jsonl`` template: one plain question and one multiple-choice question."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in QUESTIONS_TEMPLATE)


def execute(args: argparse.Namespace) -> int:
    """Write the two files, refusing to replace either unless ``--force``; returns the exit status."""
    from runner.core.errors import UsageError
    from runner.core.store import write_output

    folder = Path(args.dir)
    files = {folder / CONFIG_NAME: config_text(), folder / QUESTIONS_NAME: questions_text()}
    there = [str(p) for p in files if p.exists() or p.is_symlink()]
    if there and not args.force:
        raise UsageError(f"{' and '.join(there)} already {'exist' if len(there) > 1 else 'exists'}; nothing was "
                         "written (add --force to replace, or choose another --dir)")
    for path, text in files.items():
        write_output(path, text, fix=f"make {folder} writable, or choose another --dir")
    config = folder / CONFIG_NAME
    print(f"Wrote {config} and {folder / QUESTIONS_NAME}. Next:\n"
          f"  python medical_model_runner.py run --config {config}                # the embedded models, offline\n"
          f"  python medical_model_runner.py run --config {config} -m fake:echo   # a dry run with the test model\n"
          f"Edit {config} to choose models, personas and settings; add your questions to {folder / QUESTIONS_NAME}.")
    return 0
