"""Questions: the JSONL format, its validation, and the user message each question becomes.

The whole file is validated before any model loads; the first problem found is reported as
``file:line: problem`` (an InputError, exit status 2) and nothing is written.

A line holds either a ``question`` or a conversation: ``messages``, a list of ``{"role", "content"}`` turns (roles
system, user, assistant) ending with a user turn. HealthBench's JSONL is read as it is: ``prompt`` (the
conversation), ``prompt_id`` (the id), ``rubrics`` and ``example_tags``; its other keys (``ideal_completions_data``)
are kept in ``extra``. Any line may carry ``rubrics`` (``[{"criterion", "points", "tags"}]``) and a ``reference``
answer. A conversation's ``question`` is its last user turn, which is also the user message sent.
"""

from __future__ import annotations

import hashlib
import json
import math
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.core.errors import InputError
from runner.core.text import bad_character

MAX_LINE_CHARS = 1_000_000
KNOWN_KEYS = {"question", "id", "options", "answer", "context", "task", "messages", "rubrics", "example_tags",
              "reference"}
# HealthBench's own keys, read on a line whose conversation is its ``prompt``: ``prompt_id`` becomes the id (when
# there is no ``id``); ``rubrics`` and ``example_tags`` are among KNOWN_KEYS.
LETTERS = string.ascii_uppercase
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    """One turn of a conversation: ``role`` is system, user or assistant."""

    role: str
    content: str


@dataclass(frozen=True)
class RubricItem:
    """One rubric criterion (HealthBench's form): met negative items subtract their points."""

    criterion: str
    points: float
    tags: tuple[str, ...] = ()

    def __str__(self) -> str:
        """The item as HealthBench's grader template shows it: ``[points] criterion``."""
        return f"[{self.points}] {self.criterion}"


@dataclass(frozen=True)
class Question:
    """One validated question. ``n`` is its 1-based position among the file's non-blank lines."""

    n: int
    question: str
    line: int = 0
    id: str | None = None
    options: dict[str, str] | None = None
    answer: str | None = None
    context: str | None = None
    task: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # A conversation to answer (its last turn is the user's); ``question`` then holds that last user turn.
    messages: tuple[Message, ...] | None = None
    # Grading: the rubric items of this question, its example tags (themes), and a reference answer.
    rubrics: tuple[RubricItem, ...] | None = None
    example_tags: tuple[str, ...] = ()
    reference: str | None = None

    @property
    def is_multiple_choice(self) -> bool:
        """True when the question has options and a known answer letter."""
        return bool(self.options) and self.answer is not None

    def content_hash(self) -> str:
        """A hash of everything that is sent to a model (text, context, options); computed once per question."""
        cached = self.__dict__.get("_content_hash")
        if cached is not None:
            return cached
        content: list[Any] = [self.question, self.context, self.options]
        if self.messages is not None:  # only then, so the hash of a plain question is unchanged
            content.append([[m.role, m.content] for m in self.messages])
        blob = json.dumps(content, ensure_ascii=False, sort_keys=True)
        digest = hashlib.sha256(blob.encode("utf-8")).hexdigest()
        object.__setattr__(self, "_content_hash", digest)  # not a field: equality and copies are unchanged
        return digest


def format_user_message(q: Question) -> str:
    """The text sent to a model as the user turn: context, question and lettered options; for a conversation, its
    last user turn as it is."""
    if q.messages is not None:
        return q.question
    parts = []
    if q.context:
        parts.append(f"Context: {q.context}")
    parts.append(q.question)
    if q.options:
        parts.append("\n".join(f"{letter}. {text}" for letter, text in q.options.items()))
        parts.append("Answer with the letter of the best option, e.g. 'Answer: A', and explain briefly.")
    return "\n\n".join(parts)


def load_questions(path: str | Path, limit: int | None = None) -> list[Question]:
    """Read and validate a questions JSONL file; return the first ``limit`` questions."""
    path = Path(path)
    name = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(name, None, "questions file not found") from None
    except IsADirectoryError:
        raise InputError(name, None, "is a directory, not a questions file") from None
    except PermissionError:
        raise InputError(name, None, "permission denied reading the questions file") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    questions: list[Question] = []
    seen_ids: dict[str, int] = {}
    for lineno, line_bytes in enumerate(raw.split(b"\n"), start=1):
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(name, lineno, f"not valid UTF-8 (byte {exc.start + 1} of the line)") from None
        if not line.strip():
            continue
        try:
            q = parse_line(line, name, lineno, n=len(questions) + 1)
        except InputError as exc:
            raise (exc if questions else not_jsonl(name, line, exc)) from None
        if q.id is not None:
            if q.id in seen_ids:
                raise InputError(name, lineno, f"duplicate id {q.id!r} (first used on line {seen_ids[q.id]})")
            seen_ids[q.id] = lineno
        questions.append(q)
    if not questions:
        raise InputError(name, None, "no questions in the file (it is empty or only blank lines)")
    return questions[:limit] if limit else questions


def not_jsonl(name: str, first_line: str, error: InputError) -> InputError:
    """The error for a file whose first line fails: a CSV file or a JSON array is told so; else ``error``."""
    text = first_line.strip()
    if text.startswith("["):
        looks = ("it looks like a JSON array; put each object on its own line, without the brackets and the commas "
                 "between objects")
    elif not text.startswith("{") and ("," in text or "\t" in text):
        looks = (f"it looks like CSV (first line {text[:60]!r}); write each question as a JSON object on its own "
                 'line, like {"question": "...", "options": {"A": "...", "B": "..."}, "answer": "A"}')
    else:
        return error
    return InputError(name, None, f"the questions file must be JSONL (one JSON object per line); {looks}")


def parse_line(line: str, name: str, lineno: int, n: int) -> Question:
    """Validate one non-blank JSONL line and build its Question."""
    if len(line) > MAX_LINE_CHARS:
        raise InputError(name, lineno, f"line is {len(line):,} characters long; the limit is {MAX_LINE_CHARS:,}")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(name, lineno, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise InputError(name, lineno, "invalid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise InputError(name, lineno, f"expected a JSON object, got {type(obj).__name__}")
    conversation_key = _conversation_key(obj, name, lineno)
    messages: tuple[Message, ...] | None = None
    if conversation_key is not None:
        messages = _parse_messages(obj[conversation_key], conversation_key, name, lineno)
        text = messages[-1].content
        for key in ("context", "options"):
            if obj.get(key) is not None:
                raise InputError(name, lineno, f"'{key}' cannot be used with a conversation "
                                               f"('{conversation_key}'): put it in the last user turn")
    else:
        text = obj.get("question")
        if "question" not in obj:
            raise InputError(name, lineno, "missing 'question'")
        if not isinstance(text, str):
            raise InputError(name, lineno, f"'question' must be a string, got {type(text).__name__}")
        if not text.strip():
            raise InputError(name, lineno, "'question' is empty")
        _check_text(text, "question", name, lineno)
    known = KNOWN_KEYS | ({"prompt"} if conversation_key == "prompt" else set())
    qid = _parse_id(obj, "id", name, lineno)
    if qid is None and conversation_key == "prompt":  # a HealthBench line: its prompt_id is the id
        qid = _parse_id(obj, "prompt_id", name, lineno)
        known.add("prompt_id")
    context = _optional_str(obj, "context", name, lineno)
    task = _optional_str(obj, "task", name, lineno)
    rubrics = _parse_rubrics(obj["rubrics"], name, lineno) if "rubrics" in obj else None
    example_tags = _parse_tags(obj["example_tags"], "'example_tags'", name, lineno) if "example_tags" in obj else ()
    reference = _optional_str(obj, "reference", name, lineno)
    if reference is not None and not reference.strip():
        raise InputError(name, lineno, "'reference' is empty")
    options = _parse_options(obj.get("options"), name, lineno) if "options" in obj else None
    answer = obj.get("answer")
    if answer is not None:
        if options is None:
            raise InputError(name, lineno, "'answer' given without 'options'")
        if not isinstance(answer, str) or answer.strip().upper() not in options:
            raise InputError(name, lineno, f"'answer' {answer!r} is not one of the options {', '.join(options)}")
        answer = answer.strip().upper()
    extra = {k: v for k, v in obj.items() if k not in known}
    # Every string is checked, not only the ones sent to a model: ids, tasks and extra keys reach the terminal
    # (compare), the records and the report too.
    _check_strings({k: v for k, v in obj.items() if k not in ("question", "options", "context", "task")}, name,
                   lineno)
    return Question(n=n, question=text, line=lineno, id=qid, options=options, answer=answer,
                    context=context, task=task, extra=extra, messages=messages, rubrics=rubrics,
                    example_tags=example_tags, reference=reference)


def _parse_id(obj: dict[str, Any], key: str, name: str, lineno: int) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(name, lineno, f"'{key}' must be a string or an integer")
    return str(value)


def _conversation_key(obj: dict[str, Any], name: str, lineno: int) -> str | None:
    """The key holding the line's conversation: ``messages``, or HealthBench's ``prompt`` when it is a list (a
    string ``prompt`` beside a ``question`` is an ordinary extra key, as it always was); None for a question."""
    keys = [k for k in ("messages", "prompt") if k in obj and (k == "messages" or isinstance(obj[k], list))]
    if not keys and "prompt" in obj and "question" not in obj:
        keys = ["prompt"]  # no question: the prompt must be the conversation (its type is checked below)
    if len(keys) == 2:
        raise InputError(name, lineno, "give the conversation once: 'messages' or 'prompt', not both")
    if keys and "question" in obj:
        raise InputError(name, lineno, f"give either 'question' or a conversation ('{keys[0]}'), not both")
    return keys[0] if keys else None


def _parse_messages(value: Any, key: str, name: str, lineno: int) -> tuple[Message, ...]:
    """A conversation: a non-empty list of ``{"role", "content"}`` turns ending with a user turn."""
    if not isinstance(value, list):
        raise InputError(name, lineno, f"'{key}' must be a list of {{\"role\", \"content\"}} objects, got "
                                       f"{type(value).__name__}")
    if not value:
        raise InputError(name, lineno, f"'{key}' is empty: a conversation needs at least one user turn")
    turns = []
    for i, turn in enumerate(value, start=1):
        where = f"'{key}' turn {i}"
        if not isinstance(turn, dict):
            raise InputError(name, lineno, f"{where} must be an object with 'role' and 'content', got "
                                           f"{type(turn).__name__}")
        role, content = turn.get("role"), turn.get("content")
        if role not in ROLES:
            raise InputError(name, lineno, f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise InputError(name, lineno, f"{where}: 'content' must be a string, got {type(content).__name__}")
        if not content.strip():
            raise InputError(name, lineno, f"{where}: 'content' is empty")
        problem = bad_character(content)
        if problem:
            raise InputError(name, lineno, f"{where}: 'content' contains {problem}")
        turns.append(Message(role, content))
    if turns[-1].role != "user":
        raise InputError(name, lineno, f"'{key}' must end with a user turn; turn {len(turns)} is the "
                                       f"{turns[-1].role}'s")
    return tuple(turns)


def _parse_rubrics(value: Any, name: str, lineno: int) -> tuple[RubricItem, ...]:
    """Rubric items: ``{"criterion": str, "points": number, "tags": [str]}`` (tags optional)."""
    if not isinstance(value, list):
        raise InputError(name, lineno, "'rubrics' must be a list of {\"criterion\", \"points\", \"tags\"} objects, "
                                       f"got {type(value).__name__}")
    if not value:
        raise InputError(name, lineno, "'rubrics' is empty; leave it out or give at least one item")
    items = []
    for i, item in enumerate(value, start=1):
        where = f"'rubrics' item {i}"
        if not isinstance(item, dict):
            raise InputError(name, lineno, f"{where} must be an object with 'criterion' and 'points', got "
                                           f"{type(item).__name__}")
        criterion, points = item.get("criterion"), item.get("points")
        if not isinstance(criterion, str) or not criterion.strip():
            raise InputError(name, lineno, f"{where}: 'criterion' must be a non-empty string")
        if "points" not in item:
            raise InputError(name, lineno, f"{where}: 'points' is missing")
        if isinstance(points, bool) or not isinstance(points, (int, float)):
            raise InputError(name, lineno, f"{where}: 'points' must be a number, got {type(points).__name__}")
        if not math.isfinite(points):
            raise InputError(name, lineno, f"{where}: 'points' must be a finite number, got {points}")
        tags = _parse_tags(item["tags"], f"{where}: 'tags'", name, lineno) if "tags" in item else ()
        items.append(RubricItem(criterion, points, tags))
    return tuple(items)


def _parse_tags(value: Any, what: str, name: str, lineno: int) -> tuple[str, ...]:
    """A list of strings (``what`` names it in the error)."""
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise InputError(name, lineno, f"{what} must be a list of strings")
    return tuple(value)


def _optional_str(obj: dict[str, Any], key: str, name: str, lineno: int) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(name, lineno, f"'{key}' must be a string, got {type(value).__name__}")
    _check_text(value, key, name, lineno)
    return value


def _check_text(text: str, key: str, name: str, lineno: int) -> None:
    """Control characters (but tab, newline and carriage return) and lone surrogates are refused."""
    problem = bad_character(text)
    if problem:
        raise InputError(name, lineno, f"'{key}' contains {problem}")


def _check_strings(obj: dict[str, Any], name: str, lineno: int) -> None:
    """Check every string in ``obj`` (keys and values, however deeply nested), named by its top-level key."""
    stack: list[tuple[str, Any]] = []
    for key, value in obj.items():
        problem = bad_character(key)
        if problem:
            raise InputError(name, lineno, f"the key {key!r} contains {problem}")
        stack.append((key, value))
    while stack:
        key, value = stack.pop()
        if isinstance(value, str):
            _check_text(value, key, name, lineno)
        elif isinstance(value, dict):
            for inner_key, inner in value.items():
                stack += [(key, inner_key), (key, inner)]
        elif isinstance(value, list):
            stack.extend((key, item) for item in value)


def _parse_options(value: Any, name: str, lineno: int) -> dict[str, str]:
    if isinstance(value, list):
        if len(value) > len(LETTERS):
            raise InputError(name, lineno, f"too many options ({len(value)}); at most {len(LETTERS)}")
        value = dict(zip(LETTERS, value, strict=False))
    elif isinstance(value, dict):
        fixed = {}
        for key, text in value.items():
            letter = key.strip().upper()
            if len(letter) != 1 or letter not in LETTERS:
                raise InputError(name, lineno, f"option key {key!r} is not a single letter A-Z")
            fixed[letter] = text
        value = fixed
    else:
        raise InputError(name, lineno, "'options' must be an object (letter -> text) or a list")
    if len(value) < 2:
        raise InputError(name, lineno, f"'options' needs at least two options, got {len(value)}")
    for letter, text in value.items():
        if not isinstance(text, str) or not text.strip():
            raise InputError(name, lineno, f"option {letter} must be a non-empty string")
        _check_text(text, f"option {letter}", name, lineno)
    return value


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (recorded in the manifest)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
