"""``grade --pairwise``: a judge compares pairs of saved answers in both orders, MT-Bench's way, through the real CLI
and engine.

The answering models and the judge are OpenAI-compatible models on one local test server: the answering models
(``openai:alpha``, ``openai:beta``, ``openai:gamma``) answer with their own name in the text, and the judge's
verdict is chosen per request from the two answers in its prompt.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.cli import main
from runner.core.personas import resolve_persona
from runner.tasks.pairwise import PAIR_SYSTEM, PAIR_TEMPLATE, parse_pair_verdict
from tests.conftest import write_jsonl
from tests.fake_servers import FakeServer, RecordedRequest, Reply
from tests.kill_resume import kill_then_resume

KEY = "sk-test-pairwise-0123456789"
JUDGE = "openai:judge-1"
# MT-Bench's pair-v2 judge prompt as FastChat distributes it (lm-sys/FastChat,
# fastchat/llm_judge/data/judge_prompts.jsonl, its first line).
FASTCHAT_PAIR_V2 = json.loads(
    r'''{"name": "pair-v2", "type": "pairwise", "system_prompt": "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to the user question displayed below. You should choose the assistant that follows the user's instructions and answers the user's question better. Your evaluation should consider factors such as the helpfulness, relevance, accuracy, depth, creativity, and level of detail of their responses. Begin your evaluation by comparing the two responses and provide a short explanation. Avoid any positional biases and ensure that the order in which the responses were presented does not influence your decision. Do not allow the length of the responses to influence your evaluation. Do not favor certain names of the assistants. Be as objective as possible. After providing your explanation, output your final verdict by strictly following this format: \"[[A]]\" if assistant A is better, \"[[B]]\" if assistant B is better, and \"[[C]]\" for a tie.", "prompt_template": "[User Question]\n{question}\n\n[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]", "description": "Prompt for general questions", "category": "general", "output_format": "[[A]]"}'''  # noqa: E501 - the file's line as it is
)
PROMPT = re.compile(r"\[User Question\]\n(?P<q>.*)\n\n\[The Start of Assistant A's Answer\]\n(?P<a>.*)\n"
                    r"\[The End of Assistant A's Answer\]\n\n\[The Start of Assistant B's Answer\]\n(?P<b>.*)\n"
                    r"\[The End of Assistant B's Answer\]", re.S)


def shown(request: RecordedRequest) -> tuple[str, str]:
    """The answers shown as assistant A and B in a judge prompt."""
    match = PROMPT.fullmatch(request.body["messages"][-1]["content"])
    assert match, request.body["messages"][-1]["content"]
    return match["a"], match["b"]


def is_judge(request: RecordedRequest) -> bool:
    return request.body["model"].startswith("judge")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    with FakeServer() as srv:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", srv.openai_base_url)
        monkeypatch.setenv("NO_PROGRESS", "1")
        yield srv


def serve(server: FakeServer, judge: Callable[[RecordedRequest], Reply]) -> None:
    """Answering models answer with their name and the question; the judge answers as ``judge`` says."""

    def respond(r: RecordedRequest) -> Reply:
        if is_judge(r):
            return judge(r)
        return Reply.ok(f"{r.body['model'].upper()} answers: {r.body['messages'][-1]['content']}")

    server.responder = respond


def judge_calls(server: FakeServer) -> int:
    return sum(1 for r in server.requests if is_judge(r))


def answer_first(tmp_path: Path, models: str = "openai:alpha,openai:beta", count: int = 2,
                 personas: str | None = None) -> Path:
    path = write_jsonl(tmp_path / "open.jsonl", [{"question": f"What should I do about symptom {i}?"}
                                                 for i in range(1, count + 1)])
    out = tmp_path / "out"
    extra = ["-p", personas] if personas else []
    assert main(["run", "-q", str(path), "-m", models, "-o", str(out), "--no-progress", *extra]) == 0
    return out


def pairwise(out: Path, *extra: str) -> int:
    return main(["grade", "--pairwise", "-j", JUDGE, "-o", str(out), "--no-progress", *extra])


def test_a_judge_that_always_says_a_makes_every_pair_a_position_inconsistent_tie(tmp_path: Path,
                                                                                  server: FakeServer) -> None:
    serve(server, lambda r: Reply.ok("Assistant A is more thorough.\n\n[[A]]"))
    out = answer_first(tmp_path)
    assert pairwise(out) == 0
    assert judge_calls(server) == 4  # 2 questions x 1 pair x 2 orders
    data = json.loads((out / "pairwise.json").read_text())
    (group,) = data["groups"]
    assert group["compare"] == "models" and group["players"] == ["openai:alpha", "openai:beta"]
    assert group["pairs"] == 2
    assert group["position_bias"] == {"inconsistent": 2, "rate": 1.0, "favoured_first": 2, "favoured_second": 0}
    assert group["win_rates"] == {"openai:alpha": 0.5, "openai:beta": 0.5}
    assert group["matrix"]["openai:alpha"]["openai:beta"] == {"wins": 0, "ties": 2, "losses": 0}
    ratings = {p: v["rating"] for p, v in group["bradley_terry"].items()}
    assert ratings == {"openai:alpha": pytest.approx(1000.0), "openai:beta": pytest.approx(1000.0)}
    folder = out / "open" / "_pairwise" / "judge-1" / "oncology-researcher" / "alpha+vs+beta"
    record = json.loads((folder / "1.json").read_text())
    assert record["kind"] == "pairwise" and record["winner"] == "tie" and record["position_inconsistent"] is True
    assert [g["verdict"] for g in record["games"]] == ["A", "A"]
    assert [g["winner"] for g in record["games"]] == ["openai:alpha", "openai:beta"]
    assert record["games"][0]["explanation"] == "Assistant A is more thorough."
    assert record["answer_a"]["label"] == "openai:alpha" and record["answer_a"]["answer_key"]
    assert record["template_sha256"] and record["judge"] == JUDGE
    assert (folder / "1.txt").read_text().startswith("openai:alpha vs openai:beta: tie (position-inconsistent")
    md = (out / "pairwise.md").read_text()
    assert "2 of 2 pairs (100.0%) position-inconsistent" in md
    # A second run asks nothing: every comparison is saved under its key.
    assert pairwise(out) == 0
    assert judge_calls(server) == 4


def prefers_alpha(r: RecordedRequest) -> Reply:
    """Alpha's answer wins in either position; any other pair: always [[A]] (position bias)."""
    a, b = shown(r)
    if a.startswith("ALPHA"):
        return Reply.ok("A is better. [[A]]")
    if b.startswith("ALPHA"):
        return Reply.ok("B is better. [[B]]")
    return Reply.ok("[[A]]")


def test_a_judge_that_prefers_one_model_rates_it_highest(tmp_path: Path, server: FakeServer, capsys) -> None:
    serve(server, prefers_alpha)
    out = answer_first(tmp_path, "openai:alpha,openai:beta,openai:gamma", count=3)
    assert pairwise(out) == 0
    assert judge_calls(server) == 3 * 3 * 2  # 3 questions x 3 pairs x 2 orders
    (group,) = json.loads((out / "pairwise.json").read_text())["groups"]
    rates = group["win_rates"]
    assert rates["openai:alpha"] == 1.0
    assert rates["openai:beta"] == rates["openai:gamma"] == 0.25  # lost to alpha, tied with each other
    ratings = {p: v["rating"] for p, v in group["bradley_terry"].items()}
    assert max(ratings, key=ratings.get) == "openai:alpha"
    assert ratings["openai:beta"] == pytest.approx(ratings["openai:gamma"], abs=0.5)
    low, high = group["bradley_terry"]["openai:alpha"]["ci95"]
    assert low <= ratings["openai:alpha"] <= high
    assert group["matrix"]["openai:alpha"]["openai:beta"] == {"wins": 3, "ties": 0, "losses": 0}
    assert group["matrix"]["openai:beta"]["openai:gamma"] == {"wins": 0, "ties": 3, "losses": 0}
    assert group["position_bias"]["inconsistent"] == 3
    assert group["position_bias"]["rate"] == pytest.approx(1 / 3, abs=1e-4)
    record = json.loads(next((out / "open" / "_pairwise").rglob("alpha+vs+beta/2.json")).read_text())
    assert record["winner"] == "openai:alpha" and record["position_inconsistent"] is False
    assert [g["winner"] for g in record["games"]] == ["openai:alpha", "openai:alpha"]
    printed = capsys.readouterr().out
    assert "# Pairwise preferences" in printed and "| openai:alpha |" in printed
    # The report shows the ratings and the matrix.
    from runner.cli import main

    assert main(["report", "-o", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert 'id="pairwise"' in page and "<td>openai:alpha</td>" in page and "<td>3/0/0</td>" in page


def test_a_rerun_asks_nothing_and_a_changed_answer_is_compared_again(tmp_path: Path, server: FakeServer) -> None:
    serve(server, prefers_alpha)
    out = answer_first(tmp_path, "openai:alpha,openai:beta,openai:gamma", count=2)
    assert pairwise(out) == 0
    before = judge_calls(server)
    assert before == 2 * 3 * 2
    assert pairwise(out) == 0
    assert judge_calls(server) == before  # nothing asked again
    # Gamma answers question 1 again, differently: only gamma's two pairs of question 1 are compared again.
    server.push(Reply.ok("GAMMA's second answer"))
    assert main(["run", "-q", str(tmp_path / "open.jsonl"), "-m", "openai:gamma", "-o", str(out), "--no-progress",
                 "--force", "--limit", "1"]) == 0
    assert pairwise(out) == 0
    assert judge_calls(server) == before + 2 * 2
    (group,) = json.loads((out / "pairwise.json").read_text())["groups"]
    assert group["pairs"] == 6  # the old comparisons of the replaced answer no longer count twice


def test_one_model_under_several_personas_compares_the_personas(tmp_path: Path, server: FakeServer) -> None:
    physician = hashlib.sha256(resolve_persona("general-physician").text.encode("utf-8")).hexdigest()[:8]

    def prefer_physician(r: RecordedRequest) -> Reply:
        a, b = shown(r)
        return Reply.ok("[[A]]" if physician in a else "[[B]]" if physician in b else "[[C]]")

    serve(server, prefer_physician)
    out = answer_first(tmp_path, "fake:echo", personas="general-physician,patient-educator")
    assert pairwise(out) == 0
    assert judge_calls(server) == 4
    (group,) = json.loads((out / "pairwise.json").read_text())["groups"]
    assert group["compare"] == "personas" and group["within"] == "fake:echo"
    assert group["win_rates"] == {"general-physician": 1.0, "patient-educator": 0.0}
    assert group["position_bias"]["rate"] == 0.0
    folder = out / "open" / "_pairwise" / "judge-1" / "general-physician+vs+patient-educator" / "echo"
    record = json.loads((folder / "1.json").read_text())
    assert record["compare"] == "personas" and record["winner"] == "general-physician"
    assert record["personas"] == ["general-physician", "patient-educator"] and record["model"] == "fake:echo"
    # Nothing to compare: one model, one persona.
    assert pairwise(out, "-p", "general-physician") == 2


def test_an_unparseable_verdict_is_retried_then_recorded_and_asked_again_alone(tmp_path: Path,
                                                                               server: FakeServer) -> None:
    bad = {"count": 0}

    def judge(r: RecordedRequest) -> Reply:
        a, _ = shown(r)
        if "symptom 2" in a and a.startswith("BETA"):  # question 2, beta shown first: no verdict
            bad["count"] += 1
            return Reply.ok("Both answers have merit; I cannot decide.")
        return Reply.ok("[[C]]")

    serve(server, judge)
    out = answer_first(tmp_path)
    assert pairwise(out, "--judge-attempts", "2") == 1
    assert bad["count"] == 2  # asked twice, then given up on
    record = json.loads(next((out / "open" / "_pairwise").rglob("alpha+vs+beta/2.json")).read_text())
    assert "could not be judged" in record["error"] and record["winner"] is None
    assert record["games"][0]["verdict"] == "C"
    assert record["games"][1]["verdict"] is None and record["games"][1]["reply"].startswith("Both answers")
    assert record["games"][1]["attempts"] == 2
    (group,) = json.loads((out / "pairwise.json").read_text())["groups"]
    assert group["unjudged"] == [{"n": 2, "a": "openai:alpha", "b": "openai:beta"}]
    assert group["pairs"] == 1
    # The next run asks only for the order that was not judged.
    before = judge_calls(server)
    serve(server, lambda r: Reply.ok("[[C]]"))
    assert pairwise(out) == 0
    assert judge_calls(server) == before + 1
    (group,) = json.loads((out / "pairwise.json").read_text())["groups"]
    assert group["unjudged"] == [] and group["pairs"] == 2
    assert group["position_bias"]["rate"] == 0.0 and group["win_rates"]["openai:alpha"] == 0.5


def test_the_prompt_is_fastchats_pair_v2(tmp_path: Path, server: FakeServer) -> None:
    assert FASTCHAT_PAIR_V2["system_prompt"] == PAIR_SYSTEM
    assert FASTCHAT_PAIR_V2["prompt_template"] == PAIR_TEMPLATE
    serve(server, lambda r: Reply.ok("[[B]]"))
    out = answer_first(tmp_path, count=1)
    assert pairwise(out) == 0
    alpha = json.loads((out / "open" / "oncology-researcher" / "alpha" / "1.json").read_text())
    beta = json.loads((out / "open" / "oncology-researcher" / "beta" / "1.json").read_text())
    sent = [r.body["messages"] for r in server.requests if is_judge(r)]
    expected = [FASTCHAT_PAIR_V2["prompt_template"].format(question=alpha["question"], answer_a=first["text"],
                                                           answer_b=second["text"])
                for first, second in ((alpha, beta), (beta, alpha))]
    assert sorted(m[1]["content"] for m in sent) == sorted(expected)
    assert all(m[0] == {"role": "system", "content": FASTCHAT_PAIR_V2["system_prompt"]} and len(m) == 2
               for m in sent)
    assert expected[0] == ("[User Question]\nWhat should I do about symptom 1?\n\n"
                           "[The Start of Assistant A's Answer]\nALPHA answers: What should I do about symptom 1?\n"
                           "[The End of Assistant A's Answer]\n\n"
                           "[The Start of Assistant B's Answer]\nBETA answers: What should I do about symptom 1?\n"
                           "[The End of Assistant B's Answer]")
    # [[B]] both times: the answer shown second always wins, so the pair is a tie, favouring the second position.
    (group,) = json.loads((out / "pairwise.json").read_text())["groups"]
    assert group["position_bias"]["favoured_second"] == 1


@pytest.mark.parametrize(("reply", "verdict"), [
    ("A is better.\n\n[[A]]", "A"),
    ("[[B]]", "B"),
    ("It is a tie: [[C]]", "C"),
    # FastChat checks [[A]], then [[B]], then [[C]], wherever they are in the reply.
    ('The format is "[[A]]" if A is better; here B is better: [[B]]', "A"),
    ("Final verdict: [B]", None),
    ("", None),
])
def test_verdicts_are_read_as_fastchat_reads_them(reply: str, verdict: str | None) -> None:
    assert parse_pair_verdict(reply).verdict == verdict


def test_a_local_judge_compares_in_batches_and_asks_again_for_a_reply_without_verdict(tmp_path: Path,
                                                                                       server: FakeServer) -> None:
    from runner.providers.fake import FakeGenerator

    serve(server, lambda r: Reply.ok("[[C]]"))
    out = answer_first(tmp_path)
    # First batch: question 1 (a-b, b-a), question 2 (a-b, b-a); question 1's b-a has no verdict and is asked again.
    FakeGenerator.canned.extend(["A wins. [[A]]", "no idea", "[[B]]", "[[A]]", "[[B]]"])
    assert main(["grade", "--pairwise", "-j", "fake:canned", "-o", str(out), "--no-progress"]) == 0
    assert not FakeGenerator.canned
    assert FakeGenerator.history[-1].system_prompt == PAIR_SYSTEM
    (group,) = json.loads((out / "pairwise.json").read_text())["groups"]
    assert group["judge"] == "fake:canned"
    assert group["matrix"]["openai:alpha"]["openai:beta"] == {"wins": 1, "ties": 0, "losses": 1}
    assert group["position_bias"]["rate"] == 0.0
    record = json.loads(next((out / "open" / "_pairwise" / "canned").rglob("1.json")).read_text())
    assert [g["attempts"] for g in record["games"]] == [1, 2]
    assert record["winner"] == "openai:alpha"


def test_pairwise_killed_then_resumed_asks_only_what_was_not_saved(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "open.jsonl", [{"question": f"Question number {i}?"} for i in range(40)])
    out = tmp_path / "out"
    assert main(["run", "-q", str(path), "-m", "fake:echo", "-p", "general-physician,patient-educator", "-o",
                 str(out), "--no-progress"]) == 0
    folder = out / "open" / "_pairwise" / "judge-1" / "general-physician+vs+patient-educator" / "echo"
    with FakeServer(text="[[A]]", delay=0.05) as srv:
        saved, done, asked = kill_then_resume(["grade", "--pairwise", "-j", JUDGE, "-o", str(out), "--concurrency",
                                               "2"], srv, folder, KEY)
    assert 5 <= len(saved) < 40
    assert done.returncode == 0, done.stderr
    assert f"{len(saved)} comparison(s) already saved, skipped" in done.stderr
    assert asked == 2 * (40 - len(saved))  # nothing compared twice
    assert len(list(folder.glob("*.json"))) == 40
    for name, record in saved.items():
        assert json.loads((folder / name).read_text())["run_id"] == record["run_id"]
