"""Questions file validation: every bad input names file:line and the problem; nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.core.errors import InputError
from runner.core.questions import format_user_message, load_questions
from tests.conftest import write_jsonl

BAD_LINES = [
    ('{"question": "ok"', "invalid JSON"),
    ('["a list"]', "expected a JSON object, got list"),
    ('"just a string"', "expected a JSON object, got str"),
    ('{"id": "x"}', "missing 'question'"),
    ('{"question": ""}', "'question' is empty"),
    ('{"question": "   "}', "'question' is empty"),
    ('{"question": 42}', "'question' must be a string, got int"),
    ('{"question": null}', "'question' must be a string, got NoneType"),
    ('{"question": "q", "options": {"A": "only one"}}', "needs at least two options"),
    ('{"question": "q", "options": ["one"]}', "needs at least two options"),
    ('{"question": "q", "options": "A or B"}', "'options' must be an object"),
    ('{"question": "q", "options": {"A": "x", "B": "y"}, "answer": "C"}',
     "'answer' 'C' is not one of the options A, B"),
    ('{"question": "q", "answer": "A"}', "'answer' given without 'options'"),
    ('{"question": "q", "options": {"AB": "x", "B": "y"}}', "option key 'AB' is not a single letter"),
    ('{"question": "q", "options": {"A": "", "B": "y"}}', "option A must be a non-empty string"),
    ('{"question": "bell\\u0007 here"}', "control character U+0007"),
    ('{"question": "q", "id": [1]}', "'id' must be a string or an integer"),
    ('{"question": "q", "context": 5}', "'context' must be a string, got int"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    # every string is checked, not only the question (an id reached the terminal through compare)
    ('{"question": "q", "id": "\\u001b]0;title\\u0007"}', "'id' contains the control character U+001B"),
    ('{"question": "q", "task": "t\\u001b[2J"}', "'task' contains the control character U+001B"),
    ('{"question": "q", "context": "c\\u0000"}', "'context' contains the control character U+0000"),
    ('{"question": "q", "options": ["ok", "b\\u0008ad"]}', "'option B' contains the control character U+0008"),
    ('{"question": "q", "source": {"deep": [1, {"x": "\\u009b2J"}]}}',
     "'source' contains the control character U+009B"),
    ('{"question": "q", "meta": {"k\\u0007": 1}}', "'meta' contains the control character U+0007"),
    ('{"question": "q", "bad\\u001bkey": 1}', "the key 'bad\\x1bkey' contains the control character U+001B"),
    # a lone surrogate passed validation and failed later, after the lock and the manifest were written
    ('{"question": "q\\ud800"}', "'question' contains a lone surrogate U+D800 (not valid Unicode)"),
    ('{"question": "q", "id": "\\udfff"}', "'id' contains a lone surrogate U+DFFF"),
    ('{"question": "q", "options": {"A": "\\ud83d", "B": "y"}}', "'option A' contains a lone surrogate U+D83D"),
    ('{"question": "q", "extra": ["\\udc80"]}', "'extra' contains a lone surrogate U+DC80"),
]


@pytest.mark.parametrize(("line", "problem"), BAD_LINES)
def test_bad_line_names_file_line_and_problem(tmp_path: Path, line: str, problem: str) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "fine"}, "", line])
    with pytest.raises(InputError) as info:
        load_questions(path)
    assert str(info.value).startswith(f"{path}:3: ")
    assert problem in str(info.value)


def test_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [{"id": "a", "question": "x"}, {"id": "a", "question": "y"}])
    with pytest.raises(InputError, match=r"q.jsonl:2: duplicate id 'a' \(first used on line 1\)"):
        load_questions(path)


def test_integer_and_string_ids_clash(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [{"id": 1, "question": "x"}, {"id": "1", "question": "y"}])
    with pytest.raises(InputError, match="duplicate id '1'"):
        load_questions(path)


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_bytes(b'{"question": "ok"}\n{"question": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"q.jsonl:2: not valid UTF-8"):
        load_questions(path)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="questions file not found"):
        load_questions(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n  \n")
    with pytest.raises(InputError, match="no questions"):
        load_questions(tmp_path / "empty.jsonl")
    with pytest.raises(InputError, match="is a directory"):
        load_questions(tmp_path)


def test_bom_blank_lines_numbering_and_extra_keys(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    rows = [{"question": "first", "source": "x"}, {"question": "second", "options": ["yes", "no"], "answer": "b"}]
    path.write_bytes(b"\xef\xbb\xbf" + ("\n\n".join(json.dumps(r) for r in rows) + "\n\n").encode())
    questions = load_questions(path)
    assert [q.n for q in questions] == [1, 2]
    assert [q.line for q in questions] == [1, 3]
    assert questions[0].extra == {"source": "x"}
    assert questions[1].options == {"A": "yes", "B": "no"}
    assert questions[1].answer == "B"
    assert questions[1].is_multiple_choice


def test_limit(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": f"q{i}"} for i in range(5)])
    assert [q.question for q in load_questions(path, limit=2)] == ["q0", "q1"]


def test_user_message_includes_context_and_options(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [
        {"question": "Which?", "context": "An abstract.", "options": {"a": "One", "b": "Two"}, "answer": "a"}])
    message = format_user_message(load_questions(path)[0])
    assert message.startswith("Context: An abstract.\n\nWhich?\n\nA. One\nB. Two")
    assert "letter" in message


def test_shipped_questions_file_is_valid() -> None:
    questions = load_questions(Path(__file__).resolve().parent.parent / "questions.jsonl")
    texts = " ".join(q.question.lower() for q in questions)
    for topic in ("type 2 diabetes", "metformin", "systolic", "statins", "cardiovascular"):
        assert topic in texts
    assert sum(q.is_multiple_choice for q in questions) >= 3


def test_very_long_line_is_refused_clearly(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "x" * 1_100_000}])
    with pytest.raises(InputError, match=r"q.jsonl:1: line is 1,100,016 characters long; the limit is 1,000,000"):
        load_questions(path)


def test_allowed_characters_in_every_field(tmp_path: Path) -> None:
    row = {"question": "tab\there\r\nand lines", "id": "id-é-😀", "task": "t", "context": "a\tb\nc",
           "options": ["x\ty", "z"], "meta": {"k": ["é", "\U0001F1FA\U0001F1F8", "\u202e right-to-left"]},
           "pair": "\ud83d\ude00"}  # a surrogate pair is one character (an emoji), not a lone surrogate
    questions = load_questions(write_jsonl(tmp_path / "q.jsonl", [json.dumps(row)]))
    assert questions[0].id == "id-é-😀" and questions[0].extra["pair"] == "😀"
