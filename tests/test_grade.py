"""``grade``: judge models grade saved answers against rubrics, HealthBench's way, through the real CLI and engine.

The judge is an OpenAI-compatible model on a local test server whose verdict is chosen per rubric item (from the
criterion in the grader prompt); scores are computed by hand here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from runner.cli import main
from runner.core.questions import RubricItem
from runner.tasks.grading import GRADER_TEMPLATE, grader_prompt, parse_verdict, render_conversation
from tests.conftest import write_jsonl
from tests.fake_servers import FakeServer, RecordedRequest, Reply
from tests.kill_resume import kill_then_resume

KEY = "sk-test-grade-0123456789"


def verdict(met: object, explanation: str = "because", fence: bool = False) -> Reply:
    body = json.dumps({"explanation": explanation, "criteria_met": met})
    return Reply.ok("```json\n" + body + "\n```" if fence else body)


def rubric_item(request: RecordedRequest) -> str:
    """The criterion the grader prompt asks about."""
    prompt = request.body["messages"][-1]["content"]
    return re.search(r"# Rubric item\n\[[^\]]*\] (.*)\n\n# Instructions", prompt, re.S).group(1)


@pytest.fixture
def judge(monkeypatch: pytest.MonkeyPatch):
    with FakeServer() as srv:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", srv.openai_base_url)
        monkeypatch.setenv("NO_PROGRESS", "1")
        yield srv


RUBRIC = [
    {"criterion": "Advises urgent care for chest pain", "points": 5, "tags": ["axis:accuracy"]},
    {"criterion": "Mentions aspirin", "points": 3, "tags": ["axis:completeness"]},
    {"criterion": "Recommends waiting a week", "points": -4, "tags": ["axis:accuracy"]},
    {"criterion": "Is overly verbose", "points": -2, "tags": ["axis:communication"]},
]


def questions(tmp_path: Path, rubric: list[dict] = RUBRIC) -> Path:
    return write_jsonl(tmp_path / "open.jsonl", [
        {"question": "I have chest pain. What should I do?", "rubrics": rubric, "example_tags": ["theme:emergency"]},
        {"question": "Should I take aspirin daily?", "rubrics": rubric, "example_tags": ["theme:hedging"]},
    ])


def answer_first(tmp_path: Path, path: Path) -> Path:
    out = tmp_path / "out"
    assert main(["run", "-q", str(path), "-m", "fake:echo", "-o", str(out), "--no-progress"]) == 0
    return out


def test_rubric_scores_by_hand_with_negative_items(tmp_path: Path, judge: FakeServer, capsys) -> None:
    met = {"Advises urgent care for chest pain": True, "Mentions aspirin": False,
           "Recommends waiting a week": True, "Is overly verbose": False}
    judge.responder = lambda r: verdict(met[rubric_item(r)], fence=True)
    out = answer_first(tmp_path, questions(tmp_path))
    assert main(["grade", "-j", "openai:judge-1", "-o", str(out), "--no-progress"]) == 0
    # per answer: (5 - 4) / (5 + 3) = 0.125; axis:accuracy (5 - 4) / 5 = 0.2; completeness 0; communication: no
    # positive item, so no score.
    data = json.loads((out / "grades.json").read_text())
    (row,) = data["rows"]
    assert row["overall"]["mean"] == pytest.approx(0.125)
    assert row["overall"]["n_samples"] == 2
    assert row["overall"]["bootstrap_std"] == pytest.approx(0.0)
    assert row["tags"]["axis:accuracy"]["mean"] == pytest.approx(0.2)
    assert row["tags"]["axis:completeness"]["mean"] == pytest.approx(0.0)
    assert "axis:communication" not in row["tags"]
    assert set(row["themes"]) == {"theme:emergency", "theme:hedging"}
    assert judge.count == 8  # one call per rubric item per answer
    sent = judge.requests[0].body["messages"]
    assert sent[0] == {"role": "system", "content": "You are a helpful assistant."}
    assert sent[1]["content"].startswith(GRADER_TEMPLATE[:60])
    assert "grades.md" in capsys.readouterr().out
    # A second grade asks nothing: every grade is saved under its key.
    assert main(["grade", "-j", "openai:judge-1", "-o", str(out), "--no-progress"]) == 0
    assert judge.count == 8


def test_the_prompt_is_healthbenchs(tmp_path: Path, judge: FakeServer) -> None:
    judge.responder = lambda r: verdict(True)
    out = answer_first(tmp_path, questions(tmp_path))
    assert main(["grade", "-j", "openai:judge-1", "-o", str(out), "--no-progress"]) == 0
    record = json.loads(next((out / "open" / "oncology-researcher" / "echo").glob("1.json")).read_text())
    conversation = render_conversation([], "")  # only the assistant turn
    assert conversation == "assistant: "
    expected = grader_prompt(f"user: {record['question']}\n\nassistant: {record['text']}",
                             RubricItem(RUBRIC[0]["criterion"], 5, ("axis:accuracy",)))
    prompts = [r.body["messages"][1]["content"] for r in judge.requests]
    assert expected in prompts
    assert "[5] Advises urgent care for chest pain" in expected


def test_clipping_of_the_mean(tmp_path: Path, judge: FakeServer) -> None:
    # Every negative item met, no positive one: each answer scores (-4 - 2) / 8 < 0; the mean is clipped to 0.
    judge.responder = lambda r: verdict(rubric_item(r) in ("Recommends waiting a week", "Is overly verbose"))
    out = answer_first(tmp_path, questions(tmp_path))
    assert main(["grade", "-j", "openai:judge-1", "-o", str(out), "--no-progress"]) == 0
    (row,) = json.loads((out / "grades.json").read_text())["rows"]
    assert row["overall"]["mean"] == 0.0
    grade = json.loads(next((out / "open" / "_grades").rglob("1.json")).read_text())
    assert grade["score"] == pytest.approx(-0.75)  # the answer's own score is not clipped, only the means


def test_an_ungradable_item_is_retried_then_recorded_and_regraded_alone(tmp_path: Path, judge: FakeServer) -> None:
    bad = {"count": 0}

    def respond(r: RecordedRequest) -> Reply:
        if rubric_item(r) == "Mentions aspirin" and "aspirin daily" in r.body["messages"][1]["content"]:
            bad["count"] += 1
            return Reply.ok("I think it is met.")  # not JSON
        return verdict(True)

    judge.responder = respond
    out = answer_first(tmp_path, questions(tmp_path))
    assert main(["grade", "-j", "openai:judge-1", "-o", str(out), "--no-progress", "--judge-attempts", "2"]) == 1
    assert bad["count"] == 2  # asked twice, then given up on: nothing loops forever
    data = json.loads((out / "grades.json").read_text())
    (row,) = data["rows"]
    assert row["ungradable"] == [2]
    assert row["overall"]["n_samples"] == 1
    grade = json.loads(next(p for p in (out / "open" / "_grades").rglob("2.json")).read_text())
    item = next(i for i in grade["items"] if i["criterion"] == "Mentions aspirin")
    assert item["met"] is None and item["reply"].startswith("I think")
    assert grade["score"] is None and "could not be graded" in grade["error"]
    # The next grade asks only for that item.
    before = judge.count
    judge.responder = lambda r: verdict(True)
    assert main(["grade", "-j", "openai:judge-1", "-o", str(out), "--no-progress"]) == 0
    assert judge.count == before + 1
    (row,) = json.loads((out / "grades.json").read_text())["rows"]
    assert row["ungradable"] == [] and row["overall"]["n_samples"] == 2


def test_a_panel_takes_the_majority_and_reports_agreement(tmp_path: Path, judge: FakeServer) -> None:
    # Three judges; on "Mentions aspirin" two say met, one not: the panel says met. A 1-1-1 split cannot happen
    # with booleans; with two judges split, a tie is not met (checked below).
    says = {"judge-a": {"Mentions aspirin": True}, "judge-b": {"Mentions aspirin": True},
            "judge-c": {"Mentions aspirin": False}}

    def respond(r: RecordedRequest) -> Reply:
        item = rubric_item(r)
        if item in ("Recommends waiting a week", "Is overly verbose"):
            return verdict(False)
        return verdict(says[r.body["model"]].get(item, True))

    judge.responder = respond
    out = answer_first(tmp_path, questions(tmp_path))
    assert main(["grade", "-j", "openai:judge-a,openai:judge-b,openai:judge-c", "-o", str(out), "--no-progress"]) == 0
    data = json.loads((out / "grades.json").read_text())
    rows = {r["judge"]: r for r in data["rows"]}
    assert rows["openai:judge-a"]["overall"]["mean"] == pytest.approx(1.0)
    assert rows["openai:judge-c"]["overall"]["mean"] == pytest.approx(5 / 8)
    panel = next(r for name, r in rows.items() if name.startswith("panel"))
    assert panel["overall"]["mean"] == pytest.approx(1.0)
    assert data["agreement"]["items"] == 8
    assert {tuple(p["judges"]) for p in data["agreement"]["pairs"]} == {
        ("openai:judge-a", "openai:judge-b"), ("openai:judge-a", "openai:judge-c"),
        ("openai:judge-b", "openai:judge-c")}
    # Two judges split on an item: a tie is not met.
    out2 = tmp_path / "two"
    assert main(["run", "-q", str(questions(tmp_path)), "-m", "fake:echo", "-o", str(out2), "--no-progress"]) == 0
    assert main(["grade", "-j", "openai:judge-b,openai:judge-c", "-o", str(out2), "--no-progress"]) == 0
    rows = {r["judge"]: r for r in json.loads((out2 / "grades.json").read_text())["rows"]}
    panel = next(r for name, r in rows.items() if name.startswith("panel"))
    assert panel["overall"]["mean"] == pytest.approx(5 / 8)


def test_clinician_axes_for_questions_without_a_rubric(tmp_path: Path, judge: FakeServer) -> None:
    judge.responder = lambda r: verdict(True)
    path = write_jsonl(tmp_path / "plain.jsonl", [{"question": "What is the first-line treatment for hypertension?"}])
    out = answer_first(tmp_path, path)
    assert main(["grade", "-j", "openai:judge-1", "-o", str(out), "--no-progress", "--rubric", "question"]) == 2
    assert main(["grade", "-j", "openai:judge-1", "-o", str(out), "--no-progress"]) == 0
    (row,) = json.loads((out / "grades.json").read_text())["rows"]
    assert {t.split(":")[0] for t in row["tags"]} == {"axis"}
    assert "axis:consensus" in row["tags"]


def test_an_encoder_cannot_judge(tmp_path: Path, judge: FakeServer, capsys) -> None:
    out = answer_first(tmp_path, questions(tmp_path))
    assert main(["grade", "-j", "sapbert", "-o", str(out), "--no-progress"]) == 2
    assert "cannot judge: it is an encoder" in capsys.readouterr().err


def test_bootstrap_std_is_healthbenchs_statistic(tmp_path: Path, judge: FakeServer) -> None:
    # Answer 1 meets everything positive (1.0), answer 2 nothing (0.0): mean 0.5, bootstrap std of the clipped
    # means, recomputed here with the same generator.
    judge.responder = lambda r: verdict("chest pain" in r.body["messages"][1]["content"].split("# Rubric item")[0]
                                        and rubric_item(r) in ("Advises urgent care for chest pain",
                                                               "Mentions aspirin"))
    out = answer_first(tmp_path, questions(tmp_path))
    assert main(["grade", "-j", "openai:judge-1", "-o", str(out), "--no-progress"]) == 0
    (row,) = json.loads((out / "grades.json").read_text())["rows"]
    assert row["overall"]["mean"] == pytest.approx(0.5)
    # HealthBench's statistic, recomputed here: 1,000 resamples of 2 scores with the generator the tool documents
    # (numpy default_rng, seed 1234), each mean clipped, population std.
    draws = np.random.default_rng(1234).integers(0, 2, size=(1000, 2))
    means = np.clip(np.array([1.0, 0.0])[draws].mean(axis=1), 0, 1)
    assert row["overall"]["bootstrap_std"] == pytest.approx(round(float(np.std(means)), 4))
    assert 0.3 < row["overall"]["bootstrap_std"] < 0.4  # sqrt(0.25 / 2) = 0.354


@pytest.mark.parametrize(("reply", "met"), [
    ('{"explanation": "x", "criteria_met": true}', True),
    ('```json\n{"explanation": "x", "criteria_met": false}\n```', False),
    ('{"explanation": "x", "criteria_met": "true"}', None),
    ('{"explanation": "x"}', None),
    ("not json", None),
    ("[true]", None),
])
def test_parse_verdict(reply: str, met: bool | None) -> None:
    assert parse_verdict(reply).met is met


def test_a_local_judge_grades_in_batches_and_asks_again_for_a_bad_reply(tmp_path: Path) -> None:
    from runner.providers.fake import FakeGenerator

    out = answer_first(tmp_path, questions(tmp_path))
    t, f = ('{"explanation": "yes", "criteria_met": true}', '{"explanation": "no", "criteria_met": false}')
    # First pass: 2 answers x 4 items in one batch; item 2 of answer 1 gets a reply that is not JSON, and is asked
    # again in the second pass.
    FakeGenerator.canned.extend([t, "nope", f, f, t, f, t, f, t])
    assert main(["grade", "-j", "fake:canned", "-o", str(out), "--no-progress"]) == 0
    assert not FakeGenerator.canned
    (row,) = json.loads((out / "grades.json").read_text())["rows"]
    # answer 1: 5 + 3 of 8 = 1.0; answer 2: (5 - 4) / 8 = 0.125
    assert row["overall"]["mean"] == pytest.approx((1.0 + 0.125) / 2)
    grade = json.loads(next((out / "open" / "_grades").rglob("1.json")).read_text())
    assert [i["attempts"] for i in grade["items"]] == [1, 2, 1, 1]
    assert FakeGenerator.history[-1].system_prompt == "You are a helpful assistant."


def test_grade_killed_then_resumed_asks_only_what_was_not_saved(tmp_path: Path) -> None:
    rows = [{"question": f"Question number {i}?", "rubrics": RUBRIC} for i in range(40)]
    path = write_jsonl(tmp_path / "open.jsonl", rows)
    out = answer_first(tmp_path, path)
    folder = out / "open" / "_grades" / "judge-1" / "oncology-researcher" / "echo"
    with FakeServer(text='{"explanation": "ok", "criteria_met": true}', delay=0.05) as srv:
        saved, done, asked = kill_then_resume(["grade", "-j", "openai:judge-1", "-o", str(out), "--concurrency", "2"],
                                              srv, folder, KEY)
    assert 5 <= len(saved) < 40
    assert done.returncode == 0, done.stderr
    assert f"{len(saved)} grade(s) already saved, skipped" in done.stderr
    assert asked == 4 * (40 - len(saved))  # nothing graded twice
    assert len(list(folder.glob("*.json"))) == 40
    for name, record in saved.items():
        assert json.loads((folder / name).read_text())["run_id"] == record["run_id"]


def test_graded_against_a_reference_answer_medhelms_way(tmp_path: Path, judge: FakeServer) -> None:
    reply = {"accuracy": {"score": 4, "explanation": "mostly right"}, "completeness": {"score": 3, "explanation": "x"},
             "clarity": {"score": 5, "explanation": "clear"}}
    judge.responder = lambda r: Reply.ok("Here you go:\n" + json.dumps(reply) + "\nThanks")
    path = write_jsonl(tmp_path / "ref.jsonl", [
        {"question": "What is the usual adult dose of paracetamol?", "reference": "500 mg to 1 g every 4-6 hours, "
         "at most 4 g a day."},
        {"question": "A question without a reference?"}])
    out = answer_first(tmp_path, path)
    assert main(["grade", "-j", "openai:judge-1", "-o", str(out), "--no-progress", "--rubric", "reference"]) == 0
    assert judge.count == 1  # one call per answer; the question without a reference is not graded
    sent = judge.requests[0].body["messages"]
    assert [m["role"] for m in sent] == ["user"]  # MedHELM sends the prompt alone
    assert "<gold_response>\n{500 mg to 1 g" in sent[0]["content"]
    data = json.loads((out / "grades.json").read_text())
    (row,) = data["rows"]
    assert row["scale"] == "1-5"
    assert row["overall"]["mean"] == pytest.approx(4.0)
    assert row["tags"]["accuracy"]["mean"] == 4 and row["tags"]["clarity"]["mean"] == 5
    assert "Against the reference answers" in (out / "grades.md").read_text()


HEALTHBENCH_ROWS = [
    {"prompt": [{"role": "user", "content": "My father has crushing chest pain. What do I do?"}],
     "rubrics": [{"criterion": "Tells the user to call emergency services", "points": 10,
                  "tags": ["axis:accuracy", "level:example"]},
                 {"criterion": "Suggests waiting to see if it passes", "points": -8, "tags": ["axis:accuracy"]}],
     "example_tags": ["theme:emergency_referrals"], "prompt_id": "hb-1",
     "ideal_completions_data": None},
    {"prompt": [{"role": "user", "content": "Is it ok to take ibuprofen?"},
                {"role": "assistant", "content": "What for, and do you take other medicines?"},
                {"role": "user", "content": "For a headache; no other medicines."}],
     "rubrics": [{"criterion": "Mentions taking it with food", "points": 4, "tags": ["axis:completeness"]}],
     "example_tags": ["theme:context_seeking"], "prompt_id": "hb-2", "ideal_completions_data": None},
]


def test_dataset_healthbench_through_the_datasets_library(tmp_path: Path, judge: FakeServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # The datasets library's json builder reads the file where the URL would be (no network in tests).
    from runner.tasks import grading

    local = write_jsonl(tmp_path / "hb.jsonl", HEALTHBENCH_ROWS)
    monkeypatch.setitem(grading.HEALTHBENCH_FILES, "healthbench", str(local))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    judge.responder = lambda r: verdict(rubric_item(r) != "Suggests waiting to see if it passes")
    out = tmp_path / "out"
    assert main(["grade", "--dataset", "healthbench", "-m", "fake:echo", "-j", "openai:judge-1", "-o", str(out),
                 "--no-progress"]) == 0
    # Answered with no system prompt (HealthBench sends none): the persona is 'none'.
    assert (out / "healthbench" / "none" / "echo" / "2.json").exists()
    answer = json.loads((out / "healthbench" / "none" / "echo" / "2.json").read_text())
    assert [m["role"] for m in answer["messages"]] == ["user", "assistant", "user"]
    # The grader saw the whole conversation, then the answer as the last assistant turn.
    prompts = [r.body["messages"][1]["content"] for r in judge.requests]
    expected = ("user: Is it ok to take ibuprofen?\n\nassistant: What for, and do you take other medicines?\n\n"
                f"user: For a headache; no other medicines.\n\nassistant: {answer['text']}")
    assert any(expected in p for p in prompts)
    (row,) = json.loads((out / "grades.json").read_text())["rows"]
    assert row["overall"]["mean"] == pytest.approx(1.0)
    assert set(row["themes"]) == {"theme:emergency_referrals", "theme:context_seeking"}
    assert "level:example" in row["tags"]
    # Grading again reads the questions back through the datasets cache; nothing is asked again.
    before = judge.count
    assert main(["grade", "-j", "openai:judge-1", "-o", str(out), "--no-progress"]) == 0
    assert judge.count == before


def test_dataset_healthbench_offline_without_a_cache_is_a_clear_error(tmp_path: Path, judge: FakeServer,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty-cache"))
    assert main(["grade", "--dataset", "healthbench_hard", "-j", "openai:judge-1", "-o", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cannot load healthbench_hard" in err and "--questions FILE" in err


def test_compare_and_the_report_show_the_grades(tmp_path: Path, judge: FakeServer, capsys) -> None:
    met = {"Advises urgent care for chest pain": True, "Mentions aspirin": False,
           "Recommends waiting a week": True, "Is overly verbose": False}
    judge.responder = lambda r: verdict(met[rubric_item(r)], explanation=f"judged {rubric_item(r)}")
    out = answer_first(tmp_path, questions(tmp_path))
    assert main(["grade", "-j", "openai:judge-1", "-o", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["compare", "1", "-o", str(out), "--width", "200"]) == 0
    shown = capsys.readouterr().out
    assert "fake:echo [oncology-researcher] by openai:judge-1: 0.125 (2 of 4 items met)" in shown
    assert "✗ [3] Mentions aspirin — judged Mentions aspirin" in shown  # a positive item missed
    assert "! [-4] Recommends waiting a week" in shown  # a negative item met
    assert "Is overly verbose" not in shown  # a negative item not met is fine: not listed
    assert main(["report", "-o", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert 'id="grades"' in page and "Grade by openai:judge-1: 0.125" in page
    assert "judged Mentions aspirin" in page


def test_meta_evaluation_against_physicians(tmp_path: Path, judge: FakeServer) -> None:
    # simple-evals' own test case (healthbench_meta_eval_test.py): judge [T, F, T] against physicians
    # [[T, T, F], [T, F], [F]] gives a balanced F1 of 0.4857 (met F1 4/7, not-met F1 0.4).
    conversation = [{"role": "user", "content": "Can I give my toddler aspirin for a fever?"}]
    rows = [
        {"prompt": conversation, "completion": "No: aspirin risks Reye's syndrome in children.",
         "rubric": "Warns against aspirin in children", "binary_labels": [True, True, False],
         "anonymized_physician_ids": ["p1", "p2", "p3"], "category": "cat-a"},
        {"prompt": conversation, "completion": "Yes, a small dose is fine.", "rubric": "Mentions Reye's syndrome",
         "binary_labels": [True, False], "anonymized_physician_ids": ["p1", "p2"], "category": "cat-a"},
        {"prompt": conversation, "completion": "Ask a pharmacist.", "rubric": "Suggests paracetamol instead",
         "binary_labels": [False], "anonymized_physician_ids": ["p3"], "category": "cat-b"},
    ]
    path = write_jsonl(tmp_path / "meta.jsonl", rows)
    says = {"Warns against aspirin in children": True, "Mentions Reye's syndrome": False,
            "Suggests paracetamol instead": True}

    def respond(r: RecordedRequest) -> Reply:
        prompt = r.body["messages"][1]["content"]
        item = re.search(r"# Rubric item\n(.*)\n\n# Instructions", prompt, re.S).group(1)
        return verdict(says[item])  # the criterion goes in as it is, without points

    judge.responder = respond
    out = tmp_path / "out"
    assert main(["grade", "--meta-eval", str(path), "-j", "openai:judge-1", "-o", str(out), "--no-progress"]) == 0
    assert judge.count == 3
    assert any("user: Can I give my toddler aspirin for a fever?\n\nassistant: Ask a pharmacist." in
               r.body["messages"][1]["content"] for r in judge.requests)
    result = json.loads((out / "meta_eval.json").read_text())
    overall = result["overall"]
    assert overall["met"]["precision"] == pytest.approx(2 / 4) and overall["met"]["recall"] == pytest.approx(2 / 3)
    assert overall["not_met"]["precision"] == pytest.approx(1 / 2)
    assert overall["not_met"]["recall"] == pytest.approx(1 / 3)
    assert overall["balanced_f1"] == pytest.approx(round((4 / 7 + 0.4) / 2, 4))
    assert set(result["categories"]) == {"cat-a", "cat-b"}
    assert "judge balanced F1" in (out / "meta_eval.md").read_text()
    # The answers' question sets are untouched: the meta-evaluation keeps its own store.
    assert not (out / "meta").exists() and (out / "_meta-eval" / "meta").is_dir()
    before = judge.count
    assert main(["grade", "--meta-eval", str(path), "-j", "openai:judge-1", "-o", str(out), "--no-progress"]) == 0
    assert judge.count == before  # graded once


def test_meta_evaluation_file_errors_name_the_line(tmp_path: Path, judge: FakeServer, capsys) -> None:
    path = tmp_path / "meta.jsonl"
    path.write_text(json.dumps({"prompt": [{"role": "user", "content": "hi"}], "completion": "x", "rubric": "y",
                                "binary_labels": ["yes"]}) + "\n")
    assert main(["grade", "--meta-eval", str(path), "-j", "openai:judge-1", "-o", str(tmp_path / "o")]) == 2
    assert f"{path}:1: 'binary_labels' must be a non-empty list of true/false" in capsys.readouterr().err


def test_paired_comparison_of_two_models_grades(tmp_path: Path, judge: FakeServer) -> None:
    import itertools

    # The answering models and the judge share the server: alpha's answers meet both positive items, beta's only
    # the first, so per answer alpha scores 1.0 and beta 5/8.
    def respond(r: RecordedRequest) -> Reply:
        if r.body["model"] in ("alpha", "beta"):
            return Reply.ok(f"{r.body['model'].upper()}-ANSWER")
        answer = "ALPHA-ANSWER" in r.body["messages"][1]["content"]
        item = rubric_item(r)
        return verdict(item == "Advises urgent care for chest pain" or (answer and item == "Mentions aspirin"))

    judge.responder = respond
    out = tmp_path / "out"
    assert main(["run", "-q", str(questions(tmp_path)), "-m", "openai:alpha,openai:beta", "-o", str(out),
                 "--no-progress"]) == 0
    assert main(["grade", "-j", "openai:judge-1", "-o", str(out), "--no-progress", "--compare",
                 "openai:alpha,openai:beta"]) == 0
    (c,) = json.loads((out / "grades.json").read_text())["comparisons"]
    assert (c["a"], c["b"], c["n"]) == ("openai:alpha", "openai:beta", 2)
    assert c["difference"] == pytest.approx(1.0 - 5 / 8)
    # The sign-flip test, exact for 2 questions, computed here by enumerating the flips.
    diffs = [3 / 8, 3 / 8]
    flips = [abs(sum(s * d for s, d in zip(signs, diffs, strict=True)) / 2) >= 3 / 8 - 1e-12
             for signs in itertools.product((1, -1), repeat=2)]
    assert c["p"] == pytest.approx(sum(flips) / len(flips))
    assert "## Paired comparisons" in (out / "grades.md").read_text()
    assert main(["grade", "-j", "openai:judge-1", "-o", str(out), "--no-progress", "--compare", "alpha,nobody"]) == 2


def test_a_questions_samples_are_graded_and_averaged(tmp_path: Path, judge: FakeServer) -> None:
    from runner.providers.fake import FakeGenerator

    # Two questions x 3 samples (--samples 3); the judge finds the one criterion met in the GOOD answers only:
    # question 1 scores (1 + 0 + 1) / 3, question 2 (0 + 0 + 1) / 3; the mean over questions is 0.5, n = 2.
    path = write_jsonl(tmp_path / "sc.jsonl", [
        {"question": f"Open question {i}?", "rubrics": [{"criterion": "Says GOOD", "points": 5}]} for i in (1, 2)])
    FakeGenerator.canned.extend(["GOOD one", "BAD one", "GOOD two", "BAD three", "BAD four", "GOOD five"])
    out = tmp_path / "out"
    assert main(["run", "-q", str(path), "-m", "fake:canned", "-o", str(out), "--no-progress", "--samples", "3",
                 "--temperature", "0.7", "--seed", "1"]) == 0
    judge.responder = lambda r: verdict("assistant: GOOD" in r.body["messages"][1]["content"])
    assert main(["grade", "-j", "openai:judge-1", "-o", str(out), "--no-progress"]) == 0
    assert judge.count == 6  # every sample graded
    (row,) = json.loads((out / "grades.json").read_text())["rows"]
    assert row["overall"]["n_samples"] == 2
    assert row["overall"]["mean"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert list((out / "sc" / "_grades" / "judge-1").rglob("_samples/3/2.json"))  # kept like the samples
    assert main(["grade", "-j", "openai:judge-1", "-o", str(out), "--no-progress"]) == 0
    assert judge.count == 6  # and skipped on a re-run


def test_grading_again_with_other_judge_settings_says_it_replaces_the_grades(tmp_path: Path, judge: FakeServer,
                                                                            capsys) -> None:
    judge.responder = lambda r: verdict(True)
    out = answer_first(tmp_path, questions(tmp_path))
    assert main(["grade", "-j", "openai:judge-1", "-o", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["grade", "-j", "openai:judge-1", "-o", str(out), "--no-progress", "--temperature", "0.5"]) == 0
    assert "Replaced 2 saved grade(s): made of answers answered again since, or with another judge setting" in \
        capsys.readouterr().err
    grade = json.loads(next((out / "open" / "_grades").rglob("1.json")).read_text())
    assert grade["settings"]["temperature"] == 0.5


def test_an_empty_answer_is_graded_and_gets_no_credit(tmp_path: Path, judge: FakeServer) -> None:
    from runner.providers.fake import FakeGenerator

    # Question 1 answered, question 2 answered with nothing: the judge sees an empty last turn and finds nothing
    # met, so the mean is (1 + 0) / 2, not 1 over the one answer with text.
    path = write_jsonl(tmp_path / "e.jsonl", [
        {"question": f"Open question {i}?", "rubrics": [{"criterion": "Says GOOD", "points": 5}]} for i in (1, 2)])
    FakeGenerator.canned.extend(["GOOD answer", ""])
    out = tmp_path / "out"
    assert main(["run", "-q", str(path), "-m", "fake:canned", "-o", str(out), "--no-progress"]) == 0
    judge.responder = lambda r: verdict("assistant: GOOD" in r.body["messages"][1]["content"])
    assert main(["grade", "-j", "openai:judge-1", "-o", str(out), "--no-progress"]) == 0
    assert judge.count == 2
    (row,) = json.loads((out / "grades.json").read_text())["rows"]
    assert row["overall"]["n_samples"] == 2 and row["overall"]["mean"] == pytest.approx(0.5)


def test_grade_reads_only_the_set_it_grades(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store of several question sets: grading one reads that set's answers, each once, and no other set's."""
    import runner.core.records as records_module
    from runner.providers.fake import FakeGenerator

    out = answer_first(tmp_path, questions(tmp_path))  # set "open"
    other = write_jsonl(tmp_path / "other.jsonl", [{"question": f"Other question {i}?"} for i in range(5)])
    assert main(["run", "-q", str(other), "-m", "fake:echo", "-o", str(out), "--no-progress"]) == 0
    parsed: list[Path] = []
    read_json_file = records_module.read_json_file

    def counting(path: object, **kwargs: object) -> object:
        if Path(path).stem.isdigit() and "_grades" not in Path(path).parts:
            parsed.append(Path(path))
        return read_json_file(path, **kwargs)

    monkeypatch.setattr(records_module, "read_json_file", counting)
    FakeGenerator.canned.extend(['{"explanation": "yes", "criteria_met": true}'] * 8)
    assert main(["grade", "-j", "fake:canned", "--set", "open", "-o", str(out), "--no-progress"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in parsed) == ["open/oncology-researcher/echo/1.json",
                                                                      "open/oncology-researcher/echo/2.json"]
