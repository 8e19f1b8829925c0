"""Which option a free-text answer chose: the letter extracted from what a model wrote.

Models rarely answer with the bare letter. The extractor tries, in order, the signals that are least
likely to be wrong:

1. an explicit statement of the answer, the last one in the text wins ("Answer: c", "the correct answer
   is (C)", "option B is correct", "I would choose D", ``\\boxed{A}``), because models often discuss the
   other options first and conclude at the end;
2. a reply that is only a letter, or that starts with one ("B", "**B**", "(C)", "D. Insulin");
3. a reply naming the text of exactly one option ("Atorvastatin", "yes");
4. exactly one distinct letter written as an option marker anywhere ("(C)", "C)").

A scorer must credit a choice, not a reply that happens to contain a letter. Small models very often just
repeat the option list, so these replies give None (unparseable, counted wrong):

- an enumeration: option markers for two or more letters at line starts ("A. …\\nB. …", "a)", "(C)",
  "D:"), the whole list or a cut-off part of it;
- a cut-off echo: the reply ends with a prefix of the formatted option list ("A. Insulin glargine\\nB",
  "A. Insu"), whatever comes before it (often the question text). The complete first option alone
  ("A. Insulin glargine") stays an answer: a model that chose A and stopped writes exactly that, and
  refusing it would bias scoring against A; so does "Answer:" followed by that one line;
- a hedge between options: "A or B", "A/B", "either A or C", "A. Peaked T waves or B. U waves",
  "it could be A or B", "between B and D", "the answer is A or B";
- a letter followed by another option's text ("A. U waves" when U waves is B): the reply contradicts
  itself. A letter followed by its own text ("B. Insulin") or by free explanation that names no option
  ("C. Because it lowers glucose") still counts.

An explicit statement overrides an enumeration or an echo, before or after it, as long as the letter it
names is not itself an entry of the list: "Answer:\\nA. Insulin glargine\\nB. Metformin" names nothing
(the "A" is the list's first line), nor does "Answer: A. Insulin glargine\\nB. Metformin" (the list starts
on the answer's line), but "Answer: C" on its own line before or after the list does. A statement also
overrides a hedge that comes before it ("A or B? The answer is B."), while a hedge after the last statement
withdraws it. A quoted example of the answer format ("e.g. 'Answer: A'", which models copy from the
prompt) is not a statement.

Anything else — a refusal, a hedge, an empty reply — gives None, which scoring counts as wrong and lists
with its text.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

_LETTER = r"[\(\[]?\s*([A-Za-z])\s*[\)\]]?"
# A captured letter must stand alone: not the first letter of a word ("Answer with ...").
_ALONE = r"(?![A-Za-z0-9'])"
_ANSWER_WORDS = (r"(?:final\s+answer|answer|correct\s+(?:answer|option|choice|response|letter)|"
                 r"best\s+(?:answer|option|choice)|right\s+answer|most\s+likely\s+answer|my\s+(?:answer|choice))")
_LINKS = r"(?:\s*(?:is|would\s+be|will\s+be|should\s+be|must\s+be|=|:|-|→|->))?\s*:?\s*"
_HEDGES = (r"(?:therefore\s+|probably\s+|most\s+likely\s+|likely\s+|clearly\s+|definitely\s+|indeed\s+|"
           r"actually\s+|certainly\s+)?")
_KINDS = r"(?:option\s+|choice\s+|letter\s+)?"
_EXPLICIT = [
    re.compile(r"\b" + _ANSWER_WORDS + _LINKS + _HEDGES + _KINDS + _LETTER + _ALONE, re.IGNORECASE),
    re.compile(r"\b(?:option|choice|answer)\s+" + _LETTER + _ALONE +
               r"\s*(?:is|would\s+be|seems|appears)\s+(?:to\s+be\s+)?(?:the\s+)?(?:most\s+)?"
               r"(?:correct|right|best|true|accurate|appropriate)", re.IGNORECASE),
    # "C is correct" only at the start of a line or sentence ("Vitamin D is correct" names no option).
    re.compile(r"(?:^|(?<=[.;:!?,] ))\s*[\(\[]?([A-Z])[\)\]]?" + _ALONE +
               r"\s+is\s+(?:the\s+)?(?:most\s+)?(?:correct|right|best|true)\b", re.MULTILINE),
    re.compile(r"\b(?:I\s+(?:would|will|'d|'ll)\s+|I\s+)?(?:choose|chose|pick|select|go\s+with|opt\s+for)\s+"
               r"(?:option\s+|answer\s+|choice\s+|letter\s+)?" + _LETTER + _ALONE, re.IGNORECASE),
    re.compile(r"\\boxed\{\s*(?:\\text\{)?\s*([A-Za-z])\s*\}?\s*\}"),
    re.compile(r"\b(?:it(?:'s|\s+is)|so|thus|hence|therefore),?\s+" + r"[\(\[]?([A-Z])[\)\]]?" +
               r"(?=\s*(?:[.!;,]|$))", 0),
]
# An explicit statement followed by an option's text instead of its letter ("the answer is yes").
_ANSWER_TEXT = re.compile(r"\b" + _ANSWER_WORDS + _LINKS + _HEDGES + r"(?P<rest>[^\n]{1,200})", re.IGNORECASE)
# Text ending in an answer statement with no letter yet ("Answer:"), before a line that gives one.
_ANSWER_CUE_END = re.compile(r"\b" + _ANSWER_WORDS + _LINKS + r"$", re.IGNORECASE)
_WHOLE = re.compile(r"^\W*(?:option\s+|answer\s*:?\s*)?[\(\[]?([A-Za-z])[\)\]]?\W*$", re.IGNORECASE)
_LEADING = re.compile(r"^\s*[\(\[]?([A-Z])(?:[\)\]]|[.:]\s|[.:]$|\s+-\s)")
_MARKER = re.compile(r"(?<![A-Za-z0-9])[\(\[]([A-Za-z])[\)\]]|(?<![A-Za-z0-9(\[])([A-Z])\)")
# An option marker at the start of a line, the shape of a listed option: "A.", "b)", "(C)", "D:", "- A.".
_LINE_MARKER = re.compile(r"^[ \t]*(?:[-•+][ \t]*)?[\(\[]?([A-Za-z])(?:[\)\]]|[.:](?=\s|$))", re.MULTILINE)
# The answer format quoted from the prompt ("e.g. 'Answer: A'"): an example, not an answer.
_EXAMPLE = re.compile(r"\b(?:e\.g\.|for\s+example|such\s+as)\s*,?\s*['\"‘“][^'\"’”\n]{1,40}['\"’”]", re.IGNORECASE)
# What may follow a letter before its text: "A. ", "(A) ", "A: ", "A - ".
_MARK_END = re.compile(r"[ \t]*[\)\]]?[ \t]*(?:[.:)\-–—][ \t]*)?")
# "or" between two options: "A or B", "A/B", "A vs B", "A, or maybe B".
_OR = re.compile(r"\s*,?\s*(?:\bor\b|/|\bvs\b\.?|\bversus\b)\s*(?:(?:maybe|perhaps|possibly)\s+)?", re.IGNORECASE)
_OTHER_LETTER = re.compile(r"(?:[Oo]ption\s+|[Cc]hoice\s+)?[\(\[]?([A-Z])(?![A-Za-z0-9'])")
# Hedges not tied to a letter the reply starts with: a pair of letters at the very start, after a word of
# doubt, or "between X and Y". Only capitals count ("could be a or b" is rarely about options).
_ONE = r"[\(\[]?([A-Z])[\)\]]?(?![A-Za-z0-9'])"
_PAIR = _ONE + r"(?:\s*/\s*|\s*,?\s+(?i:or|vs\.?|versus)\s+(?i:maybe\s+|perhaps\s+|possibly\s+)?)" + \
    r"(?i:option\s+|choice\s+)?" + _ONE
_FILLER = r"\W{0,2}\s*(?i:it(?:'s|\s+is)\s+|(?:the\s+)?(?:answer|options?|choices?)\s+(?:is\s+|would\s+be\s+)?)?"
# Each with a pattern its matches must contain, cheap to test first: most replies have no hedge word.
_OR_WORD = re.compile(r"\b(?:or|vs|versus)\b|/", re.IGNORECASE)
_FREE_HEDGES = [
    (_OR_WORD, re.compile(r"^\s*(?i:either\s+)?(?i:options?\s+)?" + _PAIR)),
    (_OR_WORD, re.compile(r"(?i:\b(?:either|whether|could\s+be|might\s+be|may\s+be|maybe|perhaps|possibly|"
                          r"probably|likely|not\s+sure|unsure|uncertain))" + _FILLER + _PAIR)),
    (re.compile(r"between", re.IGNORECASE),
     re.compile(r"(?i:\bbetween)\s+" + _FILLER + _ONE + r"\s+(?i:and)\s+(?i:option\s+|choice\s+)?" + _ONE)),
]
_MARKUP = re.compile(r"[*_`#>]+")
_NON_WORD = re.compile(r"[^\w\s]")
_LETTER_END = re.compile(r"\s*(?:[\)\]\.,;:!?]|$)")

# Fast scanning: most patterns start with a word that can be looked for in the lower-cased text with str.find, far
# faster than the regex engine trying every position. The regex itself is then tried only where the word is (every
# occurrence, overlapping ones too), so the matches are exactly those of pattern.finditer. Lower-casing keeps every
# position only where no character lower-cases to two (U+0130) and every character the IGNORECASE patterns match
# with an ASCII letter lower-cases to it: U+0131 (dotless i) and U+017F (long s) do not, so such texts are scanned
# the slow way.
_UNFOLDED = ("\u0130", "\u0131", "\u017f")
# Words one of which starts every match of a pattern (lower case; the patterns that ignore case are read in the
# lower-cased text, the others in the text itself).
_ANSWER_STARTS = ("final", "answer", "correct", "best", "right", "most", "my")
_OPTION_STARTS = ("option", "choice", "answer")
_SO_STARTS = ("it", "so", "thus", "hence", "therefore")
_EXAMPLE_STARTS = ("e.g.", "for", "such")
# A match of "C is correct" always holds this (literal start: the regex engine finds it fast).
_IS_CORRECT = re.compile(r"is\s+(?:the\s+)?(?:most\s+)?(?:correct|right|best|true)\b")
# A match of "I would choose D" always holds one of these (in the lower-cased text), each found by its first word.
_CHOICE_VERBS = tuple((word, re.compile(word + tail)) for word, tail in (
    ("choose", r"\s"), ("chose", r"\s"), ("pick", r"\s"), ("select", r"\s"), ("go", r"\s+with\s"),
    ("opt", r"\s+for\s")))
# Each ASCII character that _NON_WORD replaces, mapped to a space (str.translate is fast on ASCII text).
_PUNCT_TO_SPACE = {c: " " for c in range(128) if _NON_WORD.match(chr(c))}


def _starts(low: str, words: tuple[str, ...]) -> list[int]:
    """Every position (sorted) where one of ``words`` occurs in ``low``, overlapping occurrences too."""
    found: list[int] = []
    find = low.find
    for word in words:
        at = find(word)
        while at >= 0:
            found.append(at)
            at = find(word, at + 1)
    found.sort()
    return found


def _scan(pattern: re.Pattern[str], text: str, starts: list[int] | None) -> list[re.Match[str]]:
    """``list(pattern.finditer(text))``, the pattern tried only at ``starts`` (``_starts``: every position where one of
    the words every match starts with is); None: a plain finditer."""
    if starts is None:
        return list(pattern.finditer(text))
    found: list[re.Match[str]] = []
    end = 0
    for at in starts:
        if at >= end and (match := pattern.match(text, at)):
            found.append(match)
            end = match.end()
    return found


def _lower(text: str) -> str | None:
    """``text.lower()`` where it keeps positions and ASCII letters (see ``_scan``), else None."""
    if not text.isascii() and any(c in text for c in _UNFOLDED):
        return None
    return text.lower()


def _clean(text: str) -> str:
    """Drop markdown emphasis, quoted format examples and odd unicode so patterns see plain text."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    if any(c in text for c in "*_`#>"):
        text = _MARKUP.sub("", text)
    low = _lower(text)
    if low is not None and "e.g." not in low and "for" not in low and "such" not in low:
        return text.strip()
    pieces, last = [], 0
    for match in _scan(_EXAMPLE, text, None if low is None else _starts(low, _EXAMPLE_STARTS)):
        pieces += [text[last:match.start()], " "]
        last = match.end()
    return ("".join(pieces) + text[last:]).strip()


def _norm(text: str) -> str:
    """Lower case, punctuation as spaces, single spaces: what option texts are compared on."""
    if text.isascii():
        return " ".join(text.lower().translate(_PUNCT_TO_SPACE).split())
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def _valid(letter: str, options: dict[str, str], text: str, end: int) -> str | None:
    """The option letter if it exists; a lower-case letter must not be an English word ("a" in "is a sign"): what
    follows it (``text[end:]``) must be punctuation or nothing."""
    upper = letter.upper()
    if upper not in options:
        return None
    if letter.islower() and not _LETTER_END.match(text, end):
        return None
    return upper


def _option_at_start(said: str, texts: dict[str, str]) -> str | None:
    """The option whose (normalised) text ``said`` starts with, the longest if several ("no change" over "no").

    Texts shorter than four characters must be the whole of ``said``: "No doubt, ..." does not name "no".
    """
    best: str | None = None
    for letter, text in texts.items():
        if not text or (best is not None and len(text) <= len(texts[best])):
            continue
        if said == text or (len(text) >= 4 and said.startswith(text + " ")):
            best = letter
    return best


def _committed(text: str, end: int, letter: str, texts: dict[str, str]) -> str | None:
    """``letter`` unless the words right after it (``text[end:]``) take it back.

    "A. U waves" names another option's text, and "A or B", "A/B", "A. Peaked T waves or B. U waves" add a
    second option; both leave no single choice. Only the rest of the letter's line is read.
    """
    line = text[end:end + 200].split("\n", 1)[0]
    after = line[_MARK_END.match(line).end():]
    named = _option_at_start(_norm(after), texts)
    if named is not None and named != letter:
        return None
    hedge = _OR.search(after)
    if hedge and _norm(after[:hedge.start()]) in ("", texts[letter]):
        rest = after[hedge.end():]
        other = _OTHER_LETTER.match(rest)
        if other and other.group(1) in texts and other.group(1) != letter:
            return None
        named = _option_at_start(_norm(rest), texts)
        if named is not None and named != letter:
            return None
    return letter


def _names_another(rest: str, letter: str, texts: dict[str, str]) -> bool:
    """``rest`` (normalised text after option ``letter``'s text) goes on "or <another option's text>"."""
    if not rest.startswith("or "):
        return False
    named = _option_at_start(rest[3:], texts)
    return named is not None and named != letter


def _line_markers(text: str, options: dict[str, str]) -> list[tuple[int, str]]:
    """(position, letter) of every option marker at a line start, in order."""
    found = []
    for match in _LINE_MARKER.finditer(text):
        letter = match.group(1).upper()
        if letter in options:
            found.append((match.start(1), letter))
    return found


def _echo_start(text: str, markers: list[tuple[int, str]], texts: dict[str, str]) -> int:
    """Where a cut-off echo of the option list begins (the line of its first option), or -1 if none.

    The reply must end inside the formatted list ("A. Insulin glargine\\nB. Metfo"); what came before
    (usually the question) does not matter. The complete first option alone is an answer, not an echo,
    when nothing or only "Answer:" comes before it.
    """
    first = next(iter(texts))
    starts = [pos for pos, letter in markers if letter == first]
    if not starts:
        return -1
    line_start = text.rfind("\n", 0, starts[-1]) + 1
    tail = _norm(text[line_start:])
    entries = [f"{letter.lower()} {option}".strip() for letter, option in texts.items()]
    if len(tail) <= len(first) or not " ".join(entries).startswith(tail):
        return -1
    if tail == entries[0]:
        before = text[:line_start].rstrip()
        if not before or _ANSWER_CUE_END.search(before[-80:]):
            return -1
    return line_start


def _opens_list(text: str, end: int, letter: str, markers: list[tuple[int, str]],
                texts: dict[str, str]) -> bool:
    """"Answer: A. Insulin glargine" whose next line is "B. Metformin": the letter starts an echoed list."""
    line_end = text.find("\n", end)
    if line_end < 0 or _norm(text[end:line_end]) != texts[letter]:
        return False
    order = list(texts)
    following = next((other for pos, other in markers if pos > end), None)
    return following is not None and order.index(following) == order.index(letter) + 1


def _explicit(text: str, low: str | None, answer_starts: list[int] | None) -> list[re.Match[str]]:
    """The matches of the ``_EXPLICIT`` patterns, pattern after pattern, each as its finditer gives them; a pattern
    is skipped where a part every match holds is missing (``low``: ``_lower(text)``; ``answer_starts``: where the
    words of ``_ANSWER_STARTS`` are in it)."""
    answer, option, is_correct, choose, boxed, so = _EXPLICIT
    found = _scan(answer, text, answer_starts)
    found += _scan(option, text, None if low is None else _starts(low, _OPTION_STARTS))
    if _IS_CORRECT.search(text):
        found += is_correct.finditer(text)
    if low is None or any(word in low and verb.search(low) for word, verb in _CHOICE_VERBS):
        found += choose.finditer(text)
    if "\\boxed" in text:
        found += boxed.finditer(text)
    found += _scan(so, text, _starts(text, _SO_STARTS))
    return found


def _statement(text: str, options: dict[str, str], texts: dict[str, str],
               listed: list[tuple[int, str]]) -> tuple[int, str | None] | None:
    """The last explicit statement of an answer: (position, letter), the letter None when it takes itself back.

    ``listed`` holds the line markers of an echoed or enumerated option list; a letter that is one of its
    entries ("Answer:\\nA. Insulin glargine\\nB. ...") states nothing.
    """
    entries = {pos for pos, _ in listed}
    found: list[tuple[int, str | None]] = []
    low = _lower(text)
    answer_starts = None if low is None else _starts(low, _ANSWER_STARTS)
    for match in _explicit(text, low, answer_starts):
        start, end = match.start(1), match.end(1)
        letter = _valid(match.group(1), options, text, end)
        if not letter or start in entries or (listed and _opens_list(text, end, letter, listed, texts)):
            continue
        found.append((start, _committed(text, end, letter, texts)))
    for match in _scan(_ANSWER_TEXT, text, answer_starts):
        rest = _norm(match.group("rest"))
        named = [k for k, v in texts.items() if v and (rest == v or rest.startswith(v + " "))]
        if len(named) == 1:
            hedged = _names_another(rest[len(texts[named[0]]):].strip(), named[0], texts)
            found.append((match.start("rest"), None if hedged else named[0]))
    return max(found, key=lambda item: item[0]) if found else None


def _last_hedge(text: str, options: dict[str, str]) -> int:
    """Where the last hedge between two options starts ("either A or C", "A/B"), or -1 if none."""
    last = -1
    for hint, pattern in _FREE_HEDGES:
        if not hint.search(text):
            continue
        for match in pattern.finditer(text):
            first, second = match.group(1), match.group(2)
            if first != second and first in options and second in options:
                last = max(last, match.start(1))
    return last


def _by_option_text(text: str, texts: dict[str, str]) -> str | None:
    said = _norm(text)
    if not said:
        return None
    named = {k: v for k, v in texts.items() if v}
    exact = [k for k, v in named.items() if said == v]
    if len(exact) == 1:
        return exact[0]
    # The reply opens with an option's text ("Yes, because ..."); the longest such text wins ("no" vs "no change"),
    # unless it goes on "or <another option>" ("Peaked T waves or U waves").
    starts = sorted((k for k, v in named.items() if said.startswith(v + " ")), key=lambda k: -len(named[k]))
    if starts and (len(starts) == 1 or len(named[starts[0]]) > len(named[starts[1]])):
        choice = starts[0]
        return None if _names_another(said[len(named[choice]):].strip(), choice, texts) else choice
    # Mentions anywhere count only for texts long enough not to be common words.
    padded = f" {said} "
    inside = [k for k, v in named.items() if len(v) >= 4 and f" {v} " in padded]
    inside = [k for k in inside if not any(k != o and named[k] in named[o] for o in inside)]
    return inside[0] if len(inside) == 1 else None


def _by_markers(text: str, options: dict[str, str]) -> str | None:
    letters = set()
    for match in _MARKER.finditer(text):
        letter = (match.group(1) or match.group(2)).upper()
        if letter in options:
            letters.add(letter)
    return letters.pop() if len(letters) == 1 else None


class _Options(NamedTuple):
    """A question's options by upper-case letter, and their texts normalised (``_norm``)."""

    options: dict[str, str]
    texts: dict[str, str]


@lru_cache(maxsize=4096)
def _prepared_items(items: tuple[tuple[str, str], ...]) -> _Options:
    options = {k.upper(): v for k, v in items}
    return _Options(options, {k: _norm(v) for k, v in options.items()})


def _prepared(options: dict[str, str]) -> _Options:
    """``_Options`` of an option mapping, made once per distinct mapping (the answers of one question share it).

    The cached dicts are shared: nothing here may change them.
    """
    try:
        return _prepared_items(tuple(options.items()))
    except TypeError:  # an option text that cannot be hashed: not cached
        return _prepared_items.__wrapped__(tuple(options.items()))


def extract_letter(text: str | None, options: dict[str, str]) -> str | None:
    """The option letter a free-text answer chose, or None when it chose none or several.

    ``options`` maps letters to option texts (``{"A": "Atorvastatin", "B": "Insulin"}``).
    """
    if not text or not options:
        return None
    options, texts = _prepared(options)
    cleaned = _clean(text)
    if not cleaned:
        return None
    whole = _WHOLE.match(cleaned)
    if whole and (letter := _valid(whole.group(1), options, "", 0)):
        return letter
    markers = _line_markers(cleaned, options)
    enumerated = len({letter for _, letter in markers}) >= 2
    echo = _echo_start(cleaned, markers, texts)
    # The entries of the list, which an explicit statement must not be read from.
    listed = markers if enumerated else [m for m in markers if echo >= 0 and m[0] >= echo]
    statement = _statement(cleaned, options, texts, listed)
    if statement is None and listed:
        return None
    hedge = _last_hedge(cleaned, options)
    if statement is not None and statement[0] > hedge:
        return statement[1]
    if listed or hedge >= 0:
        return None
    leading = _LEADING.match(cleaned)
    if leading and leading.group(1) in options:
        # The letter is final even when taken back: "A. U waves" must not fall through to option B's text.
        return _committed(cleaned, leading.end(1), leading.group(1), texts)
    return _by_option_text(cleaned, texts) or _by_markers(cleaned, options)


def _source_version() -> str:
    """A digest of this module's source: the store's index keeps each answer's letter with the version of the
    extractor that read it, so any change here has every letter read again. Empty when the source cannot be read
    (then no letter is kept)."""
    try:
        return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    except OSError:
        return ""


EXTRACTOR_VERSION = _source_version()


def saved_choice(record: Mapping[str, Any]) -> tuple[str | None, str] | None:
    """For the store's index: the letter a just-saved multiple-choice answer record chose (``extract_letter`` of
    its text and options, as scoring reads them) and ``EXTRACTOR_VERSION``; None for a record that is not one (a
    failed answer, no options or right answer, an option text that is not a string) or without a version."""
    options, text = record.get("options"), record.get("text")
    if (record.get("error") or not record.get("answer") or not isinstance(options, dict) or not options
            or not all(type(v) is str for v in options.values()) or not EXTRACTOR_VERSION):
        return None
    return extract_letter(text if isinstance(text, str) else None, options), EXTRACTOR_VERSION
