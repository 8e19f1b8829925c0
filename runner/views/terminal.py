"""Terminal layout for ``compare``: answers in side-by-side columns, or stacked when narrow.

Widths are measured in display cells (``wcwidth``): CJK characters and most emoji take two cells,
combining marks none. Model output is untrusted: escape sequences and control characters are
removed before anything reaches the terminal. Colour is used only on a terminal (never through a pipe,
nor with ``NO_COLOR`` set).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, TextIO

import wcwidth

from runner.core.text import sanitize
from runner.views.answers import DEFAULT_OUTPUT_DIR, QuestionAnswers, StoreSource, question_answers, usage_parts

if TYPE_CHECKING:
    from runner.views.agreement import Agreement
    from runner.views.answers import Answer

MIN_COLUMN = 28  # narrower columns wrap too much to read; below this the layout stacks
GAP = " │ "
_SPACE_RUNS = re.compile("( +)")
_REGIONAL_INDICATORS = re.compile("[\U0001F1E6-\U0001F1FF]")


def terminal_width(default: int = 100) -> int:
    """The terminal's width in cells (``COLUMNS`` wins), or ``default`` when it cannot be known."""
    return max(20, shutil.get_terminal_size((default, 24)).columns)


def use_color(stream: TextIO) -> bool:
    """Colour only on an interactive terminal, and never with ``NO_COLOR`` set or ``TERM=dumb``."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def display_width(text: str) -> int:
    """Width of ``text`` in terminal cells (linear in its length)."""
    if text.isascii() and text.isprintable():
        return len(text)
    if _REGIONAL_INDICATORS.search(text) is None:
        return wcwidth.width(text)
    # wcwidth.width pairs regional indicators (flags) by rescanning the run before each one: quadratic in the
    # length of a run. Measured one grapheme at a time, a flag is one short cluster.
    return sum(_grapheme_width(g) for g in wcwidth.iter_graphemes(text))


@functools.lru_cache(maxsize=4096)
def _grapheme_width(grapheme: str) -> int:
    return wcwidth.width(grapheme)


def clip(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` cells, with an ellipsis when cut."""
    if display_width(text) <= width:
        return text
    if text.isascii() and text.isprintable():
        return text[: max(0, width - 1)] + "…"
    return wcwidth.clip(text, 0, max(0, width - 1)) + "…"


def wrap(text: str, width: int) -> list[str]:
    """Wrap ``text`` to ``width`` cells, keeping its line breaks; long words are broken.

    Like ``textwrap`` (words move whole to the next line, spaces at a line break are dropped, a paragraph's
    leading spaces are kept), but linear in the length of the text: a 200,000-character token is one pass.
    """
    width = max(1, width)
    lines: list[str] = []
    for paragraph in sanitize(text).split("\n"):
        wrapped = _wrap_paragraph(paragraph, width) if paragraph.strip() else [""]
        # A wide character can never fit a 1-cell column; clip keeps the promise that no line overflows.
        lines.extend(line if display_width(line) <= width else clip(line, width) for line in wrapped)
    while lines and not lines[-1]:
        lines.pop()
    return lines or [""]


def _wrap_paragraph(paragraph: str, width: int) -> list[str]:
    lines: list[str] = []
    line: list[str] = []
    used = 0

    def flush() -> None:
        nonlocal line, used
        while line and line[-1].startswith(" "):
            line.pop()
        if line:
            lines.append("".join(line))
        line, used = [], 0

    for chunk in _SPACE_RUNS.split(paragraph):
        if not chunk:
            continue
        size = display_width(chunk)
        if chunk.startswith(" "):
            if not line and lines:
                continue  # spaces at the start of a continuation line are dropped (they lead the paragraph only)
            if used + size <= width:
                line.append(chunk)
                used += size
            else:
                flush()
            continue
        if used + size <= width:
            line.append(chunk)
            used += size
            continue
        if size <= width:
            flush()
            line, used = [chunk], size
            continue
        for piece, piece_size in _pieces(chunk):  # a word longer than a line: fill this line, then whole lines
            if used + piece_size > width and line:
                flush()
            line.append(piece)
            used += piece_size
    if line:
        flush()
    return lines


def _pieces(word: str) -> Iterator[tuple[str, int]]:
    """The word's grapheme clusters with their widths (runs of ASCII in one piece per character)."""
    if word.isascii():
        yield from ((c, 1) for c in word)
        return
    for grapheme in wcwidth.iter_graphemes(word):
        yield grapheme, _grapheme_width(grapheme)


def pad(text: str, width: int) -> str:
    """``text`` padded with spaces to exactly ``width`` cells."""
    return text + " " * max(0, width - display_width(text))


class Style:
    """ANSI styling that collapses to plain text when colour is off."""

    def __init__(self, color: bool) -> None:
        self.color = color

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and text else text

    def bold(self, text: str) -> str:
        """Bold text."""
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        """Faint text."""
        return self._wrap("2", text)

    def red(self, text: str) -> str:
        """Red text (failures)."""
        return self._wrap("31", text)

    def green(self, text: str) -> str:
        """Green text (a right answer)."""
        return self._wrap("32", text)

    def cyan(self, text: str) -> str:
        """Cyan text (headings)."""
        return self._wrap("36", text)


def format_meta(answer: Answer) -> str:
    """Tokens and latency of one answer, e.g. ``111 in / 13 out tok · 0.42 s``."""
    return " · ".join(usage_parts(answer)) or "no usage recorded"


def _cell(answer: Answer, title: str, subtitle: str, width: int, style: Style, show_prompt: bool = False,
          show_thinking: bool = False) -> list[str]:
    """One answer as lines of at most ``width`` cells (styled after measuring); ``show_prompt``: the prompt sent
    above it; ``show_thinking``: the whole thinking trace under it (else its first line)."""
    head, body = _cell_parts(answer, title, subtitle, width, style, show_prompt, show_thinking)
    return head + body


def _cell_parts(answer: Answer, title: str, subtitle: str, width: int, style: Style,
                show_prompt: bool = False, show_thinking: bool = False) -> tuple[list[str], list[str]]:
    """A cell's header (title, details, verdict, ending with its rule) and its body (prompt, answer, thinking)."""
    lines = [style.bold(pad(clip(sanitize(title, newlines=False), width), width))]
    lines += [style.dim(pad(line, width)) for line in wrap(f"{subtitle} · {format_meta(answer)}", width)]
    verdict = verdict_text(answer)
    if verdict:
        paint = style.green if answer.verdict == "right" else style.red
        lines += [paint(style.bold(pad(line, width))) for line in wrap(verdict, width)]
    if answer.question_differs:
        lines += [style.red(pad(line, width)) for line in wrap("(answered an older text of this question)", width)]
    lines.append(style.dim("─" * width))
    head, lines = lines, []
    if show_prompt:
        for heading, text in answer.prompt_parts():
            lines += [style.cyan(pad(line, width)) for line in wrap(heading + ":", width)]
            lines += [style.dim(pad(line, width)) for line in wrap(text, width)]
        lines += [style.cyan(pad(line, width)) for line in wrap("answer:", width)]
    if answer.ok:
        lines += [pad(line, width) for line in wrap(answer.text or "(empty answer)", width)]
        lines += thinking_lines(answer, width, style, show_thinking)
    else:
        lines += [style.red(pad(line, width)) for line in wrap(f"FAILED: {answer.error}", width)]
    return head, lines


def thinking_lines(answer: Answer, width: int, style: Style, full: bool = False) -> list[str]:
    """A reasoning model's thinking, folded under its answer: one dim line ``thinking (N tokens): its first line…``,
    or with ``full`` a heading and the whole trace; nothing for an answer without thinking."""
    label = answer.thinking_label
    if label is None:
        return []
    trace = (answer.reasoning or "").strip()
    if full and trace:
        return [style.cyan(pad(line, width)) for line in wrap(label + ":", width)] + \
               [style.dim(pad(line, width)) for line in wrap(trace, width)]
    said = [line.strip() for line in sanitize(trace).splitlines() if line.strip()]
    shown = f"{label}: {said[0]}{'…' if len(said) > 1 else ''}" if said else label
    return [style.dim(pad(clip(sanitize(shown, newlines=False), width), width))]  # clip: … when cut


def verdict_text(answer: Answer) -> str:
    """``chose C ✓``, ``chose A ✗`` or ``unparseable ✗`` for a multiple-choice answer; empty otherwise."""
    if answer.verdict is None:
        return ""
    if answer.verdict == "unparseable":
        return "unparseable: no single letter chosen ✗"
    return f"chose {answer.chosen} " + ("✓" if answer.verdict == "right" else "✗")


def _titles(view: QuestionAnswers, answer: Answer) -> tuple[str, str]:
    return (answer.persona, answer.label) if view.columns_by == "persona" else (answer.label, answer.persona)


def render_question_header(view: QuestionAnswers, width: int, style: Style) -> list[str]:
    """The question, its options and id, wrapped to ``width``."""
    head = f"Question {view.n}" + (f" ({view.question_id})" if view.question_id else "") + \
        (f" · set {view.set_name}" if view.set_name else "")
    lines = [style.bold(style.cyan(clip(sanitize(head, newlines=False), width)))]
    if view.context:
        lines += [style.dim(line) for line in wrap(view.context, width)]
    for turn in (view.messages or [])[:-1]:  # a conversation: the turns before its last user turn (the question)
        lines += [style.dim(line) for line in wrap(f"{turn.get('role')}: {turn.get('content')}", width)]
    if view.messages:
        lines += wrap(f"user: {view.question}", width)
    else:
        lines += wrap(view.question, width)
    for letter, option in (view.options or {}).items():
        mark = "  ✓" if letter == view.correct else ""
        lines += wrap(f"  {letter}. {option}{mark}", width)
    lines += [style.red(line) for w in view.warnings for line in wrap(f"note: {w}", width)]
    lines.append("═" * width)
    return lines


def render_question(view: QuestionAnswers, width: int, *, stacked: bool = False, color: bool = False,
                    show_prompt: bool = False, show_thinking: bool = False) -> str:
    """Question ``view.n`` and its answers: side by side when they fit in ``width``, else stacked;
    ``show_prompt``: each answer with the prompt sent (system prompt and user message, or a local model's text);
    ``show_thinking``: a reasoning model's whole trace under its answer (else the first line of it)."""
    style = Style(color)
    width = max(20, width)
    lines = render_question_header(view, width, style)
    per_row = max(1, (width + len(GAP)) // (MIN_COLUMN + len(GAP)))
    if view.columns_by == "persona":
        groups = [view.answers]
    else:
        groups = [[a for a in view.answers if a.persona == p] for p in view.personas]
    for group in groups:
        if view.columns_by == "model" and len(view.personas) > 1 and group:
            lines.append(style.cyan(clip(f"── persona: {sanitize(group[0].persona, newlines=False)} ", width)))
        if stacked or per_row == 1 or len(group) == 1:
            lines += _stacked(view, group, width, style, show_prompt, show_thinking)
        else:
            lines += _side_by_side(view, group, width, min(per_row, len(group)), style, show_prompt, show_thinking)
    return "\n".join(lines)


def _stacked(view: QuestionAnswers, answers: Sequence[Answer], width: int, style: Style,
             show_prompt: bool = False, show_thinking: bool = False) -> list[str]:
    lines: list[str] = []
    for answer in answers:
        title, subtitle = _titles(view, answer)
        lines += [line.rstrip() for line in _cell(answer, title, subtitle, width, style, show_prompt, show_thinking)]
        lines.append("")
    return lines


def _side_by_side(view: QuestionAnswers, answers: Sequence[Answer], width: int, columns: int,
                  style: Style, show_prompt: bool = False, show_thinking: bool = False) -> list[str]:
    col_width = (width - len(GAP) * (columns - 1)) // columns
    gap = style.dim(GAP)
    lines: list[str] = []
    for start in range(0, len(answers), columns):
        parts_of = [_cell_parts(a, *_titles(view, a), col_width, style, show_prompt, show_thinking)
                    for a in answers[start : start + columns]]
        top = max(len(head) for head, _ in parts_of)  # headers of unequal height: the rules and answers still line up
        cells = [head[:-1] + [" " * col_width] * (top - len(head)) + head[-1:] + body for head, body in parts_of]
        height = max(len(c) for c in cells)
        for row in range(height):
            parts = [c[row] if row < len(c) else " " * col_width for c in cells]
            lines.append(gap.join(parts).rstrip())
        lines.append("")
    return lines


def render_agreement(agreement: Agreement, width: int, *, n: int | None = None, color: bool = False,
                     legend: bool = True) -> str:
    """The agreement matrix (mean over questions, or question ``n`` only) as text at most ``width`` wide."""
    style = Style(color)
    labels = agreement.labels
    matrix = agreement.matrix(n)
    to_question = agreement.question_similarity_by_label(n)
    scope = f"question {n}" if n is not None else f"mean over {agreement.group_count()} answer sets"
    title = f"Agreement: cosine similarity of the answers ({agreement.encoder}; {scope})"
    lines = [style.bold(line) for line in wrap(title, width)]
    if not labels:
        return "\n".join([*lines, "no answers to compare"])
    cell = 6
    numbers = [f"{i + 1:>{cell}}" for i in range(len(labels))] + [f"{'vs Q':>{cell}}"]
    shown = [f"{i + 1} {sanitize(label, newlines=False)}" for i, label in enumerate(labels)]
    label_width = min(max(display_width(text) for text in shown), width - cell * len(numbers))
    if label_width < 8:  # too many models for a matrix at this width: list the pairs instead
        return "\n".join(lines + _pairs(agreement, matrix, width))
    lines.append(" " * label_width + "".join(numbers))
    for i, label in enumerate(labels):
        row = "".join(f"{_fmt(v):>{cell}}" for v in matrix[i]) + f"{_fmt(to_question.get(label)):>{cell}}"
        lines.append(pad(clip(shown[i], label_width), label_width) + row)
    lines += [] if not legend else [style.dim(line) for line in wrap(
        "1.00 = the same meaning, ~0 = unrelated; 'vs Q' = similarity of the answers to the question; "
        "- = no pair of answers to compare", width)]
    return "\n".join(lines)


def _pairs(agreement: Agreement, matrix: list[list[float | None]], width: int) -> list[str]:
    out = []
    for i in range(len(agreement.labels)):
        for j in range(i + 1, len(agreement.labels)):
            text = f"{agreement.labels[i]} ↔ {agreement.labels[j]}: {_fmt(matrix[i][j])}"
            out += wrap(sanitize(text), width)
    return out


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def compare_responses(n: int, source: StoreSource = DEFAULT_OUTPUT_DIR, models: Sequence[str] | None = None,
                      personas: Sequence[str] | None = None, *, question_set: str | None = None,
                      width: int | None = None, stacked: bool = False, file: TextIO | None = None,
                      show_prompt: bool = False, show_thinking: bool = False) -> QuestionAnswers:
    """Print question ``n`` and every model's saved answer side by side (``show_prompt``: with the prompt each was
    given; ``show_thinking``: with a reasoning model's whole trace); return the data shown.

    The Python counterpart of ``medical_model_runner.py compare N``; ``source`` is the output folder or a snapshot.
    """
    stream = file or sys.stdout
    view = question_answers(n, source, models, personas, question_set)
    print(render_question(view, width or terminal_width(), stacked=stacked, color=use_color(stream),
                          show_prompt=show_prompt, show_thinking=show_thinking), file=stream)
    return view
