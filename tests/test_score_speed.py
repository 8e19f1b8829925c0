"""Scoring at scale: the fast letter extraction against the implementation it replaced, on a varied corpus.

``reference_letter`` below is ``runner.tasks.letters.extract_letter`` as it was before issue 18 (kept verbatim but for
its name and docstrings): the fast path (options prepared once per question, regexes tried only where their first word
is) must give exactly its letter. No timing is asserted here: speed is measured by commands.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from runner.tasks.letters import extract_letter
from runner.views.scores import collect_scores, json_text, write_outputs

# ---- the reference: runner/tasks/letters.py before issue 18 ------------------------------------------------------

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


def _clean(text: str) -> str:
    """Drop markdown emphasis, quoted format examples and odd unicode so patterns see plain text."""
    text = unicodedata.normalize("NFKC", text)
    text = _MARKUP.sub("", text)
    text = _EXAMPLE.sub(" ", text)
    return text.strip()


def _norm(text: str) -> str:
    """Lower case, punctuation as spaces, single spaces: what option texts are compared on."""
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def _valid(letter: str, options: dict[str, str], after: str) -> str | None:
    """The option letter if it exists; a lower-case letter must not be an English word ("a" in "is a sign")."""
    upper = letter.upper()
    if upper not in options:
        return None
    if letter.islower() and not re.match(r"^\s*(?:[\)\]\.,;:!?]|$)", after):
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


def _statement(text: str, options: dict[str, str], texts: dict[str, str],
               listed: list[tuple[int, str]]) -> tuple[int, str | None] | None:
    """The last explicit statement of an answer: (position, letter), the letter None when it takes itself back.

    ``listed`` holds the line markers of an echoed or enumerated option list; a letter that is one of its
    entries ("Answer:\\nA. Insulin glargine\\nB. ...") states nothing.
    """
    entries = {pos for pos, _ in listed}
    found: list[tuple[int, str | None]] = []
    for pattern in _EXPLICIT:
        for match in pattern.finditer(text):
            start, end = match.start(1), match.end(1)
            letter = _valid(match.group(1), options, text[end:])
            if not letter or start in entries or (listed and _opens_list(text, end, letter, listed, texts)):
                continue
            found.append((start, _committed(text, end, letter, texts)))
    for match in _ANSWER_TEXT.finditer(text):
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


def reference_letter(text: str | None, options: dict[str, str]) -> str | None:
    """The letter the implementation before issue 18 extracted (the one every test pinned)."""
    if not text or not options:
        return None
    options = {k.upper(): v for k, v in options.items()}
    cleaned = _clean(text)
    if not cleaned:
        return None
    whole = _WHOLE.match(cleaned)
    if whole and (letter := _valid(whole.group(1), options, "")):
        return letter
    texts = {k: _norm(v) for k, v in options.items()}
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


# ---- a varied corpus ----------------------------------------------------------------------------------------------

OPTION_SETS = [
    {"A": "Atorvastatin", "B": "Insulin", "C": "Metformin", "D": "Warfarin"},
    {"A": "yes", "B": "no", "C": "maybe"},
    {"A": "Peaked T waves", "B": "U waves", "C": "Prolonged QT interval", "D": "Delta waves"},
    {"A": "Insulin glargine", "B": "Metformin", "C": "Lisinopril", "D": "Atorvastatin"},
    {"A": "no", "B": "no change", "C": "Vitamin B12", "D": "Vitamin C", "E": "Iron"},
    {"a": "Aorta", "b": "Vena cava", "c": "Pulmonary artery"},
    {"A": "Drug ａｌｐｈａ (ﬁrst-line)", "B": "Ｂeta–blocker", "C": "İlaç ı", "D": "ſtatin K"},
    {"A": "", "B": "None of the above", "C": "All of the above", "D": "A and B"},
]
# Pieces replies are made of: statements, letters in every wrapping, hedges, echoes, markup, odd unicode.
FRAGMENTS = [
    "Answer: {L}", "answer: ({l})", "**Answer:** {L}", "ANSWER - {L}", "The answer is {L}.",
    "the correct answer is ({L})", "Final Answer: {L}", "final answer = {l}", "The best option is {L}",
    "My answer: {L}", "my choice is {l}.", "The right answer would be {L}", "most likely answer: {L}",
    "Correct letter: {L}", "correct response is {L}", "Option {L} is correct",
    "choice {l} seems to be the most appropriate", "answer {L} is right", "{L} is the correct answer.",
    "{L} is correct", "({L}) is the best", "I would choose {L}.", "I'd go with option {L}", "i will pick {l}",
    "select {L}", "I chose {L}", "opt for choice {L}", "\\boxed{{{L}}}", "$\\boxed{{\\text{{{L}}}}}$", "So {L}.",
    "so, {L}", "Thus {L}!", "hence ({L});", "therefore {L}", "it's {L}.", "it is {L}", "It is {L}.", "{L}", "({L})",
    "[{L}]", "{l}", "{L}.", "{L}:", "{L} - because", "{L}) ", "- {L}. ", "• {L}: ", "{L} or {M}", "{L}/{M}",
    "either {L} or {M}", "between {L} and {M}", "could be {L} or maybe {M}", "{L} vs {M}", "probably {L} or {M}", "{T}",
    "{T} or {U}", "{L}. {T}", "{L}. {U}", "{L}. {T} or {M}. {U}", "Answer: {T}", "the answer is {T}",
    "Answer: {T} or {U}", "e.g. 'Answer: {L}'", 'for example "Answer: {M}"', "such as ‘{L}’", "E.G. 'answer: {l}'",
    "*{L}*", "__{L}__", "`{L}`", "# {L}", "> {L}", "ＡＮＳＷＥＲ: {L}", "Ａnswer： {L}", "choıce {L} is correct",
    "İ would choose {L}", "ſo {L}.", "Answer\u00a0: {L}", "answer:\t{L}", "answer\n{L}", "The patient has symptoms.",
    "Let me think about this.", "Metformin lowers hepatic glucose output.", "No doubt,", "Yes, because", "maybe",
    "a sign of", "It is a drug.", "is a", "I think", "or", "/", "vs.", "Question:", "?", "Vitamin D is correct",
    "answer with a letter", "option", "the answer", "(", ")", ":", ".", ",", "e.g.", "for", "such", "most", "my",
    "right", "best", "final", "thus", "hence", "it", "so",
]
SEPARATORS = [" ", "\n", "\n\n", ". ", ", ", "; ", "", "\t", " \n", "\r\n"]


def _echo(options: dict[str, str], rng: random.Random) -> str:
    """The option list as the prompt formats it, whole or cut anywhere."""
    listed = "\n".join(f"{k}. {v}" for k, v in options.items())
    return listed if rng.random() < 0.5 else listed[:rng.randrange(len(listed) + 1)]


def _reply(options: dict[str, str], rng: random.Random) -> str:
    letters = [k.upper() for k in options] + ["E", "Z", "X"]
    parts = []
    for _ in range(rng.randrange(1, 7)):
        if rng.random() < 0.12:
            parts.append(_echo(options, rng))
            continue
        first, second = rng.choice(letters), rng.choice(letters)
        texts = list(options.values())
        text, other = rng.choice(texts), rng.choice(texts)
        if rng.random() < 0.3:
            text = text.upper() if rng.random() < 0.5 else text.lower()
        parts.append(rng.choice(FRAGMENTS).format(L=first, l=first.lower(), M=second, T=text, U=other))
        parts.append(rng.choice(SEPARATORS))
    reply = "".join(parts)
    return reply.upper() if rng.random() < 0.05 else reply


def corpus(size: int, seed: int = 18) -> list[tuple[str, dict[str, str]]]:
    """``size`` replies, each with its options: deterministic for a seed."""
    rng = random.Random(seed)
    return [(_reply(options, rng), options) for options in (rng.choice(OPTION_SETS) for _ in range(size))]


def test_the_fast_extraction_gives_the_reference_letter_on_a_varied_corpus() -> None:
    replies = corpus(30_000)
    letters = {reference_letter(text, options) for text, options in replies}
    assert len(letters) >= 5  # the corpus reaches letters and None, not one answer throughout
    differ = [(text, options) for text, options in replies if extract_letter(text, options) != reference_letter(
        text, options)]
    assert differ == []


def test_the_fast_extraction_gives_the_reference_letter_on_the_pinned_replies() -> None:
    from tests.test_letters import CASES, SMOLLM2

    for text, options, _ in [*CASES, *SMOLLM2]:
        for variant in (text, text.upper(), text.lower(), f"Let me think.\n{text}\n", text.replace(" ", "\n")):
            assert extract_letter(variant, options) == reference_letter(variant, options), variant


@pytest.mark.parametrize("text", ["choıce B is correct", "İ would choose b", "ſo B.", "ＡＮＳＷＥＲ: c", "ANSWER: b",
                                  "Answer: İnsulin", "e.g. 'Answer: A' so C."])
def test_letters_the_lower_case_does_not_keep_are_read_as_before(text: str) -> None:
    options = OPTION_SETS[0]
    assert extract_letter(text, options) == reference_letter(text, options)


def test_options_are_prepared_once_per_option_set_and_never_changed() -> None:
    options = {"a": "Aorta", "b": "Vena cava"}
    before = dict(options)
    assert extract_letter("Answer: b", options) == extract_letter("Answer: b", dict(options)) == "B"
    assert options == before


# ---- scores.json and the score command ----------------------------------------------------------------------------


def _old_to_json(score: Any) -> dict[str, Any]:
    """TaskScore.to_json before issue 18 (dataclasses.asdict)."""
    data = dataclasses.asdict(score)
    data.pop("details")
    if score.method != "loglik":
        for name in ("acc_norm", "acc_norm_stderr", "acc_norm_interval"):
            data.pop(name)
    return data


def test_scores_json_content_is_unchanged(tmp_path: Path) -> None:
    from runner.views.comparisons import Statistics, add_intervals
    from tests.test_scoring import FIXED, loglik_record

    records = [*FIXED, loglik_record(1, "C", "B"), loglik_record(2, "A", "A"),
               record_with_extra := {**FIXED[0], "n": 11, "extra": {"subject": "é", "tags": ["x"]}}]
    scores = collect_scores(records)
    stats = Statistics(resamples=50)
    add_intervals(scores, stats)
    assert record_with_extra["extra"] == {"subject": "é", "tags": ["x"]}
    assert [s.to_json() for s in scores] == [_old_to_json(s) for s in scores]
    paths = write_outputs(scores, tmp_path, statistics=stats.to_json(), extra={"self_consistency": []})
    written = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert written["results"] == json.loads(json.dumps([_old_to_json(s) for s in scores], indent=1))
    assert written["statistics"] == json.loads(json.dumps(stats.to_json()))
    assert written["self_consistency"] == []


@pytest.mark.parametrize("data", [
    {}, [], "text", None, 1.5, {"a": [], "b": {}, 1: 2, False: 3, None: 4, 2.5: [1, {"x": [1]}]},
    {"rows": [{"n": 1, "text": "é \"quoted\"\n"}, {"n": 2, "chosen": None}], "mixed": [{"a": 1}, 2, [3]]},
    [[1, 2], [{}], [{"deep": {"er": [float("inf")]}}]],
])
def test_json_text_holds_what_json_dumps_holds(data: Any) -> None:
    text = json_text(data)
    assert text.endswith("\n") and json.loads(text) == json.loads(json.dumps(data, ensure_ascii=False))


def test_json_text_writes_one_row_a_line() -> None:
    text = json_text({"items": [{"n": 1, "chosen": "A"}, {"n": 2, "chosen": None}]})
    assert '  {"n": 1, "chosen": "A"},\n  {"n": 2, "chosen": null}\n' in text


def _store_with_answers(root: Path, samples: bool) -> int:
    """A store of free-text answers (and, with ``samples``, a sample 2 of each); returns how many were answered."""
    from runner.core.store import Store
    from tests.test_scoring import FIXED

    answers = [r for r in FIXED if r.get("kind") == "generator" and r["options"]]
    space = Store(root).questions_set("fixed")
    for r in answers:
        space.save(r["persona"], r["slug"], r["n"], r, r["text"])
        if samples:
            space.samples(2).save(r["persona"], r["slug"], r["n"], {**r, "sample": 2}, r["text"])
    return sum(not r["error"] for r in answers)


@pytest.mark.parametrize(("samples", "plot"), [(False, False), (False, True), (True, False)])
def test_score_extracts_each_letter_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any,
                                         samples: bool, plot: bool) -> None:
    """Scores, self-consistency and --plot thinking share one extraction per record; without samples or --plot,
    the samples are not even grouped."""
    import runner.views.consistency as consistency
    import runner.views.scores as scores_view
    from runner.cli import main

    answers = _store_with_answers(tmp_path / "out", samples)
    calls: list[str | None] = []

    def counted(text: str | None, options: dict[str, str]) -> str | None:
        calls.append(text)
        return extract_letter(text, options)

    grouped: list[int] = []
    collect = consistency.collect_samples
    monkeypatch.setattr(scores_view, "extract_letter", counted)
    monkeypatch.setattr(consistency, "collect_samples", lambda *a, **k: grouped.append(1) or collect(*a, **k))
    argv = ["score", "-o", str(tmp_path / "out"), "--no-progress", *(["--plot", "thinking"] if plot else [])]
    assert main(argv) == 0
    capsys.readouterr()
    assert len(calls) == answers * (2 if samples else 1)
    assert grouped == ([1] if samples or plot else [])
