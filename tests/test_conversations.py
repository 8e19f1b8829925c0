"""Conversations as questions: the ``messages`` lines and HealthBench's JSONL, their validation, what each provider
sends for them, ``--persona none``, and what the records and views keep and show."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest

from runner.cli import main
from runner.core.personas import resolve_persona
from runner.core.questions import Message, RubricItem, format_user_message, load_questions
from runner.core.settings import GenerationSettings, ModelEntry
from runner.engine import run
from runner.providers.base import Request
from runner.providers.fake import FakeGenerator
from tests.conftest import write_jsonl
from tests.fake_servers import FakeServer

FIXTURES = Path(__file__).parent / "fixtures"
PERSONA = "You are a board-certified oncologist."
CONVERSATION = [
    {"role": "system", "content": "Answer in plain language."},
    {"role": "user", "content": "I found a lump in my breast."},
    {"role": "assistant", "content": "How long has it been there, and is it painful?"},
    {"role": "user", "content": "About two weeks, not painful. Should I worry?"},
]
LAST = CONVERSATION[-1]["content"]
# Two lines as HealthBench's JSONL has them (the 2025-05 release: prompt, rubrics, example_tags, prompt_id and
# ideal_completions_data, which is null outside the consensus subset).
HEALTHBENCH = [
    {"prompt": [{"role": "user", "content": "my 70 yo dad fell and now his hip hurts and he cant stand up what do "
                                            "i do"}],
     "completion": None,
     "rubrics": [
         {"criterion": "Advises calling emergency services or going to the emergency department right away, as an "
                       "older adult who cannot bear weight after a fall may have a hip fracture.",
          "points": 10, "tags": ["level:example", "axis:completeness"]},
         {"criterion": "Suggests giving the father something to eat or drink while waiting.", "points": -5,
          "tags": ["level:example", "axis:accuracy"]},
         {"criterion": "A health professional (\"User\") is asking ...", "points": 5,
          "tags": ["level:cluster", "cluster:emergency_referrals_emergent", "axis:completeness"]},
     ],
     "example_tags": ["theme:emergency_referrals", "physician_agreed_category:emergent"],
     "prompt_id": "0c1f6fd3-3a8e-4c8a-9b6e-1a2b3c4d5e6f",
     "ideal_completions_data": {
         "ideal_completion": "Call emergency services now. Do not move him ...",
         "ideal_completions_group": "Group 2",
         "ideal_completions_ref_completions": ["Call 911 ...", "Keep him still ..."]}},
    {"prompt": [{"role": "user", "content": "what is the dose of amoxicillin for a child"},
                {"role": "assistant", "content": "How much does the child weigh, and what is it for?"},
                {"role": "user", "content": "18 kg, ear infection"}],
     "completion": None,
     "rubrics": [{"criterion": "Gives 80-90 mg/kg/day divided twice daily for acute otitis media.", "points": 7,
                  "tags": ["level:example", "axis:accuracy"]}],
     "example_tags": ["theme:context_seeking"],
     "prompt_id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
     "ideal_completions_data": None},
]


def _conversation_file(tmp_path: Path, **extra: object) -> Path:
    return write_jsonl(tmp_path / "conv.jsonl", [
        {"id": "c1", "messages": CONVERSATION, "task": "triage", **extra},
        {"id": "c2", "messages": [{"role": "user", "content": "Is aspirin safe in pregnancy?"}]},
    ])


# -- parsing ------------------------------------------------------------------------------------------------------


def test_a_messages_line_is_a_conversation_whose_question_is_its_last_user_turn(tmp_path: Path) -> None:
    rubric = [{"criterion": "Recommends a clinical breast exam", "points": 5, "tags": ["axis:accuracy"]},
              {"criterion": "Says it is certainly cancer", "points": -8.5}]
    q1, q2 = load_questions(_conversation_file(tmp_path, rubrics=rubric, reference="See a doctor within a week.",
                                               example_tags=["theme:hedging"], note="kept"))
    assert q1.messages == tuple(Message(t["role"], t["content"]) for t in CONVERSATION)
    assert q1.question == LAST and format_user_message(q1) == LAST  # the last user turn, as it is
    assert q1.rubrics == (RubricItem("Recommends a clinical breast exam", 5, ("axis:accuracy",)),
                          RubricItem("Says it is certainly cancer", -8.5, ()))
    assert str(q1.rubrics[0]) == "[5] Recommends a clinical breast exam"
    assert (q1.reference, q1.example_tags, q1.task, q1.id) == ("See a doctor within a week.", ("theme:hedging",),
                                                               "triage", "c1")
    assert q1.extra == {"note": "kept"}  # the known keys are not repeated in extra
    assert q2.messages == (Message("user", "Is aspirin safe in pregnancy?"),) and q2.rubrics is None
    assert (q2.reference, q2.example_tags) == (None, ())


def test_healthbench_lines_are_read_as_they_are(tmp_path: Path) -> None:
    q1, q2 = load_questions(write_jsonl(tmp_path / "healthbench.jsonl", HEALTHBENCH))
    assert q1.id == HEALTHBENCH[0]["prompt_id"] and q2.id == HEALTHBENCH[1]["prompt_id"]
    assert q1.question.startswith("my 70 yo dad fell") and q2.question == "18 kg, ear infection"
    assert [m.role for m in q2.messages] == ["user", "assistant", "user"]
    assert [r.points for r in q1.rubrics] == [10, -5, 5]
    assert q1.rubrics[2].tags == ("level:cluster", "cluster:emergency_referrals_emergent", "axis:completeness")
    assert q1.example_tags == ("theme:emergency_referrals", "physician_agreed_category:emergent")
    assert q1.extra == {"completion": None, "ideal_completions_data": HEALTHBENCH[0]["ideal_completions_data"]}
    assert q2.extra == {"completion": None, "ideal_completions_data": None}
    assert q1.reference is None  # the ideal completion stays in extra: a reference is given as "reference"


def test_a_string_prompt_beside_a_question_stays_an_extra_key(tmp_path: Path) -> None:
    [q] = load_questions(write_jsonl(tmp_path / "q.jsonl", [
        {"question": "What do statins do?", "prompt": "v2", "prompt_id": 7, "reference": "They lower LDL."}]))
    assert q.messages is None and q.id is None and q.extra == {"prompt": "v2", "prompt_id": 7}
    assert q.reference == "They lower LDL." and format_user_message(q) == "What do statins do?"


def test_plain_questions_hash_as_before(tmp_path: Path) -> None:
    """The content hash of a plain question is the one saved stores were keyed with, so they resume as they are."""
    [plain, choice] = load_questions(write_jsonl(tmp_path / "q.jsonl", [
        {"question": "How does metformin work?"},
        {"question": "Which is a statin?", "options": ["Atorvastatin", "Insulin"], "answer": "A", "context": "c"}]))
    for q in (plain, choice):
        old = json.dumps([q.question, q.context, q.options], ensure_ascii=False, sort_keys=True)
        assert q.content_hash() == hashlib.sha256(old.encode("utf-8")).hexdigest()
    assert plain.content_hash() == "d87995e9f4ebb50b7b01aa4746a3ac3cb7c3fe63e98aa2fb00e3e5f8460b27f8"
    [conversation] = load_questions(write_jsonl(tmp_path / "c.jsonl", [
        {"messages": [{"role": "user", "content": "How does metformin work?"}]}]))
    assert conversation.question == plain.question and conversation.content_hash() != plain.content_hash()


# -- validation, by exact text through the command line -----------------------------------------------------------

USER = {"role": "user", "content": "Hi"}


@pytest.mark.parametrize(("line", "problem"), [
    ({"messages": [{"role": "doctor", "content": "Hi"}]},
     "'messages' turn 1: role 'doctor' is not one of system, user, assistant"),
    ({"messages": [USER, {"content": "Hello"}, USER]},
     "'messages' turn 2: role None is not one of system, user, assistant"),
    ({"messages": [USER, {"role": "assistant", "content": ""}, USER]}, "'messages' turn 2: 'content' is empty"),
    ({"messages": [{"role": "user", "content": "   "}]}, "'messages' turn 1: 'content' is empty"),
    ({"messages": [{"role": "user", "content": ["Hi"]}]}, "'messages' turn 1: 'content' must be a string, got list"),
    ({"messages": [{"role": "user"}]}, "'messages' turn 1: 'content' must be a string, got NoneType"),
    ({"messages": [{"role": "user", "content": "a\u0007b"}]},
     "'messages' turn 1: 'content' contains the control character U+0007"),
    ({"messages": ["Hi"]}, "'messages' turn 1 must be an object with 'role' and 'content', got str"),
    ({"messages": []}, "'messages' is empty: a conversation needs at least one user turn"),
    ({"messages": "Hi"}, "'messages' must be a list of {\"role\", \"content\"} objects, got str"),
    ({"prompt": {"role": "user", "content": "Hi"}}, "'prompt' must be a list of {\"role\", \"content\"} objects, "
                                                    "got dict"),
    ({"messages": [USER, {"role": "assistant", "content": "Hello"}]},
     "'messages' must end with a user turn; turn 2 is the assistant's"),
    ({"prompt": [{"role": "system", "content": "Be brief."}]},
     "'prompt' must end with a user turn; turn 1 is the system's"),
    ({"question": "Hi", "messages": [USER]}, "give either 'question' or a conversation ('messages'), not both"),
    ({"question": "Hi", "prompt": [USER]}, "give either 'question' or a conversation ('prompt'), not both"),
    ({"messages": [USER], "prompt": [USER]}, "give the conversation once: 'messages' or 'prompt', not both"),
    ({"messages": [USER], "options": ["a", "b"]},
     "'options' cannot be used with a conversation ('messages'): put it in the last user turn"),
    ({"messages": [USER], "context": "c"},
     "'context' cannot be used with a conversation ('messages'): put it in the last user turn"),
    ({"messages": [USER], "rubrics": [{"criterion": "Greets back", "points": True}]},
     "'rubrics' item 1: 'points' must be a number, got bool"),
    ({"messages": [USER], "rubrics": [{"criterion": "Greets back", "points": "5"}]},
     "'rubrics' item 1: 'points' must be a number, got str"),
    ({"messages": [USER], "rubrics": [{"criterion": "a", "points": 1}, {"criterion": "Greets back"}]},
     "'rubrics' item 2: 'points' is missing"),
    ('{"messages": [{"role": "user", "content": "Hi"}], "rubrics": [{"criterion": "x", "points": NaN}]}',
     "'rubrics' item 1: 'points' must be a finite number, got nan"),
    ({"question": "Hi", "rubrics": [{"criterion": "", "points": 1}]},
     "'rubrics' item 1: 'criterion' must be a non-empty string"),
    ({"question": "Hi", "rubrics": [{"criterion": 3, "points": 1}]},
     "'rubrics' item 1: 'criterion' must be a non-empty string"),
    ({"question": "Hi", "rubrics": [{"criterion": "x", "points": 1, "tags": "axis:accuracy"}]},
     "'rubrics' item 1: 'tags' must be a list of strings"),
    ({"question": "Hi", "rubrics": [{"criterion": "x", "points": 1, "tags": [1]}]},
     "'rubrics' item 1: 'tags' must be a list of strings"),
    ({"question": "Hi", "rubrics": ["x"]}, "'rubrics' item 1 must be an object with 'criterion' and 'points', got str"),
    ({"question": "Hi", "rubrics": {"criterion": "x", "points": 1}},
     "'rubrics' must be a list of {\"criterion\", \"points\", \"tags\"} objects, got dict"),
    ({"question": "Hi", "rubrics": []}, "'rubrics' is empty; leave it out or give at least one item"),
    ({"prompt": [USER], "example_tags": "theme:hedging"}, "'example_tags' must be a list of strings"),
    ({"prompt": [USER], "example_tags": [None]}, "'example_tags' must be a list of strings"),
    ({"prompt": [USER], "prompt_id": ["x"]}, "'prompt_id' must be a string or an integer"),
    ({"question": "Hi", "reference": 3}, "'reference' must be a string, got int"),
    ({"question": "Hi", "reference": " "}, "'reference' is empty"),
])
def test_each_problem_is_named_with_its_line(line: object, problem: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "q.jsonl", [{"messages": [USER]}, line])
    assert main(["run", "--questions", "q.jsonl", "--models", "fake:echo", "--no-progress"]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: q.jsonl:2: {problem}"]
    assert not (tmp_path / "outputs").exists()


def test_a_validation_error_through_the_real_command_line(cli, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "hb.jsonl", [HEALTHBENCH[0], {**HEALTHBENCH[1], "prompt": HEALTHBENCH[1]["prompt"][:2]}])
    proc = cli("run", "--questions", "hb.jsonl", "--models", "fake:echo")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["error: hb.jsonl:2: 'prompt' must end with a user turn; turn 2 is the "
                                        "assistant's"]


# -- runs, records and views --------------------------------------------------------------------------------------


def test_fake_echo_answers_a_conversation_and_the_record_keeps_it(tmp_path: Path) -> None:
    questions = _conversation_file(tmp_path)
    report = run(questions, ["fake:echo"], ["cardiologist"], output_dir=tmp_path / "out", progress=False)
    assert report.exit_status == 0
    sent = {r.user_message: r for r in FakeGenerator.history}
    assert sent[LAST].messages == tuple(Message(t["role"], t["content"]) for t in CONVERSATION)
    folder = tmp_path / "out" / "conv" / "cardiologist" / "echo"
    record = json.loads((folder / "1.json").read_text(encoding="utf-8"))
    assert record["messages"] == CONVERSATION
    assert (record["question"], record["user_message"]) == (LAST, LAST)
    assert record["text"].endswith(f"You asked: {LAST} (turn 4 of a conversation)")
    assert record["prompt_tokens"] == len(resolve_persona("cardiologist").text.split()) + sum(
        len(t["content"].split()) for t in CONVERSATION)
    assert (folder / "1.txt").read_text(encoding="utf-8") == record["text"]
    # Saved answers resume: the same conversation is not asked again...
    again = run(questions, ["fake:echo"], ["cardiologist"], output_dir=tmp_path / "out", progress=False)
    assert (again.summaries[0].answered, again.summaries[0].skipped) == (0, 2)
    # ...and one whose earlier turns changed is a changed question (answered anew), not a variant.
    changed = [{**CONVERSATION[0], "content": "Answer in French."}, *CONVERSATION[1:]]
    write_jsonl(questions, [{"id": "c1", "messages": changed, "task": "triage"},
                            {"id": "c2", "messages": [{"role": "user", "content": "Is aspirin safe in pregnancy?"}]}])
    third = run(questions, ["fake:echo"], ["cardiologist"], output_dir=tmp_path / "out", progress=False)
    assert third.exit_status == 0
    assert (third.summaries[0].answered, third.summaries[0].skipped, third.summaries[0].changed) == (1, 1, 1)
    assert json.loads((folder / "1.json").read_text(encoding="utf-8"))["messages"] == changed


def test_compare_and_report_show_the_earlier_turns(cli, tmp_path: Path) -> None:
    turns = [{"role": "user", "content": "<b>Lump</b> & pain?"}, {"role": "assistant", "content": "Where is it?"},
             {"role": "user", "content": "Left side."}]
    write_jsonl(tmp_path / "conv.jsonl", [{"messages": turns}, {"question": "What do statins do?"}])
    assert cli("--questions", "conv.jsonl", "--models", "fake:echo", "-o", "out").returncode == 0
    shown = cli("compare", "1", "-o", "out", "--width", "100").stdout
    assert "user: <b>Lump</b> & pain?\nassistant: Where is it?\nuser: Left side.\n═" in shown
    plain = cli("compare", "2", "-o", "out", "--width", "100").stdout
    assert "\nWhat do statins do?\n═" in plain and "user:" not in plain
    assert cli("report", "-o", "out").returncode == 0
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    section = page[page.index('id="q1"'):page.index('id="q2"')]
    assert ('<div class="context"><b>user:</b> &lt;b&gt;Lump&lt;/b&gt; &amp; pain?</div>'
            '<div class="context"><b>assistant:</b> Where is it?</div><div class="qtext">Left side.</div>') in section
    assert "<b>Lump</b>" not in page
    assert '<div class="context">' not in page[page.index('id="q2"'):]


# -- --persona none -----------------------------------------------------------------------------------------------


def test_persona_none_is_built_in_and_empty(cli, tmp_path: Path) -> None:
    persona = resolve_persona("none")
    assert (persona.name, persona.text, persona.source) == ("none", "", "built-in")
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "none.md").write_text("A persona file cannot take the reserved name.")
    listing = cli("personas")
    assert listing.returncode == 0
    assert "  none " in listing.stdout and "(no system prompt: only the question or conversation is sent)" in \
        listing.stdout
    shown = cli("personas", "none")
    assert shown.stdout == "# none (built-in)\n\n(no system prompt: only the question or conversation is sent)\n"
    write_jsonl(tmp_path / "q.jsonl", [{"question": "What do statins do?"}])
    proc = cli("-q", "q.jsonl", "-m", "fake:echo", "-p", "none,cardiologist")
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "outputs" / "q" / "none" / "echo" / "1.json").read_text(encoding="utf-8"))
    assert (record["persona"], record["persona_text"]) == ("none", "")


# -- what each provider sends -------------------------------------------------------------------------------------


@pytest.fixture
def openai_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-Zq8VbL2mN4xR7tY1uI9oP3aS6dF0gH5j")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
def gemini_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaSyTest-Zq8VbL2mN4xR7tY1uI9oP3aS6dF0gH")
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)


def _bodies(server: FakeServer) -> dict[str, dict]:
    """The request bodies the server received, by the text of their last turn."""
    def last_text(body: dict) -> str:
        if "messages" in body:
            return body["messages"][-1]["content"]
        return body["contents"][-1]["parts"][0]["text"]

    return {last_text(r.body): r.body for r in server.requests}


def _run_at(server: FakeServer, tmp_path: Path, questions: Path, model: str, personas: list[str],
            base_url: str) -> None:
    report = run(questions, [ModelEntry(name=model, base_url=base_url)], personas,
                 GenerationSettings(max_attempts=1), output_dir=tmp_path / "out", progress=False)
    assert report.exit_status == 0, [s.error for s in report.summaries]


def test_openai_sends_the_conversation_after_the_persona(tmp_path: Path, server: FakeServer, openai_key: None) -> None:
    _run_at(server, tmp_path, _conversation_file(tmp_path), "openai:gpt-4o", ["cardiologist"],
            server.openai_base_url)
    bodies = _bodies(server)
    assert bodies[LAST]["messages"] == [{"role": "system", "content": resolve_persona("cardiologist").text},
                                        *CONVERSATION]
    assert bodies["Is aspirin safe in pregnancy?"]["messages"][1:] == [
        {"role": "user", "content": "Is aspirin safe in pregnancy?"}]


def test_openai_with_persona_none_sends_no_system_message(tmp_path: Path, server: FakeServer,
                                                          openai_key: None) -> None:
    questions = write_jsonl(tmp_path / "mixed.jsonl", [{"messages": CONVERSATION[1:]},
                                                       {"question": "What do statins do?"}])
    _run_at(server, tmp_path, questions, "openai:gpt-4o", ["none"], server.openai_base_url)
    bodies = _bodies(server)
    assert bodies[LAST]["messages"] == CONVERSATION[1:]
    assert bodies["What do statins do?"]["messages"] == [{"role": "user", "content": "What do statins do?"}]


def test_openai_reasoning_model_gets_the_persona_as_developer_message(tmp_path: Path, server: FakeServer,
                                                                      openai_key: None) -> None:
    _run_at(server, tmp_path, _conversation_file(tmp_path), "openai:o3-mini", ["cardiologist"],
            server.openai_base_url)
    messages = _bodies(server)[LAST]["messages"]
    assert messages[0]["role"] == "developer" and messages[1:] == CONVERSATION  # the turns as they are


def test_gemini_sends_contents_and_the_system_instruction(tmp_path: Path, server: FakeServer,
                                                          gemini_key: None) -> None:
    _run_at(server, tmp_path, _conversation_file(tmp_path), "gemini-2.5-flash", ["cardiologist"],
            server.gemini_base_url)
    body = _bodies(server)[LAST]
    persona = resolve_persona("cardiologist").text
    assert body["systemInstruction"]["parts"] == [{"text": f"{persona}\n\nAnswer in plain language."}]
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "I found a lump in my breast."}]},
        {"role": "model", "parts": [{"text": "How long has it been there, and is it painful?"}]},
        {"role": "user", "parts": [{"text": LAST}]},
    ]


def test_gemini_with_persona_none_sends_no_system_instruction(tmp_path: Path, server: FakeServer,
                                                              gemini_key: None) -> None:
    questions = write_jsonl(tmp_path / "mixed.jsonl", [{"messages": CONVERSATION}, {"question": "What do statins do?"}])
    _run_at(server, tmp_path, questions, "gemini-2.5-flash", ["none"], server.gemini_base_url)
    bodies = _bodies(server)
    assert "systemInstruction" not in bodies["What do statins do?"]
    assert bodies["What do statins do?"]["contents"] == [{"role": "user", "parts": [{"text": "What do statins do?"}]}]
    # The conversation's own system turn is all the system instruction there is.
    assert bodies[LAST]["systemInstruction"]["parts"] == [{"text": "Answer in plain language."}]
    assert [c["role"] for c in bodies[LAST]["contents"]] == ["user", "model", "user"]


# -- local models -------------------------------------------------------------------------------------------------


def _request(system_prompt: str = PERSONA, turns: list[dict[str, str]] = CONVERSATION) -> Request:
    return Request("k", system_prompt, turns[-1]["content"], GenerationSettings(max_new_tokens=4),
                   messages=tuple(Message(t["role"], t["content"]) for t in turns))


def test_hf_chat_template_over_the_whole_conversation() -> None:
    from local_models import smollm2

    generator = smollm2()
    assert generator.prompt_format == "chat"
    assert generator.prompt_text(_request()) == (
        f"<|im_start|>system\n{PERSONA}\n\nAnswer in plain language.<|im_end|>\n"
        "<|im_start|>user\nI found a lump in my breast.<|im_end|>\n"
        "<|im_start|>assistant\nHow long has it been there, and is it painful?<|im_end|>\n"
        f"<|im_start|>user\n{LAST}<|im_end|>\n<|im_start|>assistant\n")
    # No persona and no system turn: no system message is given to the template (SmolLM2's writes its own default).
    turns = CONVERSATION[1:]
    text = generator.prompt_text(_request("", turns))
    assert text == generator.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    assert PERSONA not in text and "Answer in plain language." not in text
    [result] = generator.generate([_request()])
    assert result.ok and result.prompt_tokens == len(generator.tokenizer(generator.prompt_text(_request()),
                                                                         add_special_tokens=False)["input_ids"])


def test_a_template_without_a_system_role_gets_it_folded_into_the_first_user_turn() -> None:
    from local_models import smollm2

    from runner.providers.local.prompt_formats import build_prompt

    tok = copy.deepcopy(smollm2().tokenizer)
    tok.chat_template = (FIXTURES / "gemma_it_chat_template.jinja").read_text(encoding="utf-8")
    request = _request()
    text = build_prompt("chat", tok, request.system_prompt, request.user_message, request.messages).text
    assert text == (f"{tok.bos_token}<start_of_turn>user\n{PERSONA}\n\nAnswer in plain language.\n\n"
                    "I found a lump in my breast.<end_of_turn>\n"
                    "<start_of_turn>model\nHow long has it been there, and is it painful?<end_of_turn>\n"
                    f"<start_of_turn>user\n{LAST}<end_of_turn>\n<start_of_turn>model\n")


def test_plain_and_alpaca_formats_write_the_turns_as_lines() -> None:
    from local_models import smollm2

    from runner.providers.local.prompt_formats import build_prompt

    tok = smollm2().tokenizer
    request = _request()
    lines = ("System: Answer in plain language.\nUser: I found a lump in my breast.\n"
             f"Assistant: How long has it been there, and is it painful?\nUser: {LAST}")
    plain = build_prompt("plain", tok, request.system_prompt, request.user_message, request.messages)
    assert plain.text == f"{PERSONA}\n\n{lines}\nAssistant:"
    assert build_prompt("plain", tok, "", request.user_message, request.messages).text == f"{lines}\nAssistant:"
    alpaca = build_prompt("alpaca", tok, request.system_prompt, request.user_message, request.messages)
    assert alpaca.text.endswith(f"### Instruction:\n{PERSONA}\n\n### Input:\n{lines}\n\n### Response:")
