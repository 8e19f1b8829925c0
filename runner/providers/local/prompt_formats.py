"""How a persona and a question become one prompt string for a local generative model.

Formats (``ModelSpec.prompt_format``, overridable per model in the config file):

- ``chat``: the tokenizer's chat template, persona as the system message. When the template has no system
  role (it refuses one, or drops it) the persona goes in front of the first user turn instead.
- ``chat-no-system``: the chat template with the persona always folded into the user turn (Gemma-style).
- ``alpaca``: PMC-LLaMA's instruction format; the persona is the instruction, the question the input.
- ``plain``: a completion prompt for base models such as BioMedLM: persona, blank line, ``Question: …``,
  ``Answer:``.

With no format given, a tokenizer with a chat template gets ``chat`` and one without gets ``plain``.

A conversation (``messages``) goes through the chat template whole. Its system turns join the persona, in order, as
the one system message in front (or folded into the first user turn, as the persona is): chat templates take a
system message only there. ``plain`` writes its turns as ``User: …`` / ``Assistant: …`` / ``System: …`` lines ending
with ``Assistant:``; ``alpaca`` puts those lines (without the ending) in its input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runner.core.errors import ModelUnavailable
from runner.core.questions import Message

FORMATS = ("chat", "chat-no-system", "alpaca", "plain")

# PMC-LLaMA's own prompt (chaoyi-wu/PMC-LLaMA, the "PROMPT_DICT['prompt_input']" of its inference code).
ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
PLAIN_TEMPLATE = "{system}\n\nQuestion: {user}\nAnswer:"
# A conversation in the plain and Alpaca formats: one ``Role: content`` line per turn.
ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}

_SENTINEL = "\u2063persona-probe\u2063"
_system_support: dict[str, bool] = {}


@dataclass(frozen=True)
class Prompt:
    """The text to tokenize, and whether the tokenizer should add its special tokens (BOS) itself.

    Chat templates write their own BOS, so their text is tokenized without special tokens; the plain and
    Alpaca formats rely on the tokenizer to add it.
    """

    text: str
    add_special_tokens: bool
    format: str


def has_chat_template(tokenizer: Any) -> bool:
    """True when the tokenizer carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def resolve_format(requested: str | None, tokenizer: Any) -> str:
    """The format to use: the requested one, or ``chat``/``plain`` depending on the tokenizer."""
    if requested is None:
        return "chat" if has_chat_template(tokenizer) else "plain"
    if requested not in FORMATS:
        raise ValueError(f"unknown prompt format {requested!r}; choose one of {', '.join(FORMATS)}")
    if requested.startswith("chat") and not has_chat_template(tokenizer):
        raise ModelUnavailable(f"prompt format {requested!r} needs a chat template and this tokenizer has none; "
                               "set prompt_format = \"plain\" or \"alpaca\" for this model in the config file")
    return requested


def supports_system_role(tokenizer: Any) -> bool:
    """Whether the chat template renders a system message (it may refuse it, or silently drop it)."""
    template = tokenizer.chat_template
    if template not in _system_support:
        probe = [{"role": "system", "content": _SENTINEL}, {"role": "user", "content": "hello"}]
        try:
            text = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - jinja2 TemplateError, ValueError...: any refusal means no system role
            text = ""
        _system_support[template] = _SENTINEL in text
    return _system_support[template]


def fold_system(system_prompt: str, user_message: str) -> str:
    """The first user turn with the persona in front of it, for templates without a system role."""
    return f"{system_prompt.strip()}\n\n{user_message}" if system_prompt.strip() else user_message


def chat_messages(fmt: str, tokenizer: Any, system_prompt: str, user_message: str,
                  messages: Sequence[Message] | None = None) -> list[dict[str, str]]:
    """The conversation passed to the chat template for ``chat`` or ``chat-no-system``: the question as the one user
    turn, or ``messages`` (their system turns joined to the persona in front)."""
    if messages is None:
        turns = [{"role": "user", "content": user_message}]
    else:
        system_prompt = join_system(system_prompt, messages)
        turns = [{"role": m.role, "content": m.content} for m in messages if m.role != "system"]
    if not system_prompt.strip():
        return turns
    if fmt == "chat" and supports_system_role(tokenizer):
        return [{"role": "system", "content": system_prompt}, *turns]
    first = next(i for i, turn in enumerate(turns) if turn["role"] == "user")  # a conversation ends with one
    turns[first] = {"role": "user", "content": fold_system(system_prompt, turns[first]["content"])}
    return turns


def join_system(system_prompt: str, messages: Sequence[Message]) -> str:
    """The persona and a conversation's system turns, in order, one paragraph each."""
    parts = [system_prompt, *(m.content for m in messages if m.role == "system")]
    return "\n\n".join(part.strip() for part in parts if part.strip())


def conversation_lines(messages: Sequence[Message]) -> str:
    """A conversation as ``Role: content`` lines (plain and Alpaca formats)."""
    return "\n".join(f"{ROLE_NAMES[m.role]}: {m.content}" for m in messages)


def build_prompt(fmt: str, tokenizer: Any, system_prompt: str, user_message: str,
                 messages: Sequence[Message] | None = None) -> Prompt:
    """Render one request in the given (resolved) format; ``messages``: a conversation in place of the one user
    turn ``user_message``."""
    if fmt in ("chat", "chat-no-system"):
        turns = chat_messages(fmt, tokenizer, system_prompt, user_message, messages)
        text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        return Prompt(text, add_special_tokens=False, format=fmt)
    if fmt == "alpaca":
        given = user_message if messages is None else conversation_lines(messages)
        return Prompt(ALPACA_TEMPLATE.format(instruction=system_prompt.strip(), input=given),
                      add_special_tokens=True, format=fmt)
    if fmt == "plain":
        if messages is not None:
            text = f"{system_prompt.strip()}\n\n{conversation_lines(messages)}\n{ROLE_NAMES['assistant']}:"
        else:
            text = PLAIN_TEMPLATE.format(system=system_prompt.strip(), user=user_message)
        return Prompt(text.lstrip("\n"), add_special_tokens=True, format=fmt)
    raise ValueError(f"unknown prompt format {fmt!r}; choose one of {', '.join(FORMATS)}")
