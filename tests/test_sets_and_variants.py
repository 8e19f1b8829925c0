"""Question sets and variants through the real command line: nothing collides, nothing is silently replaced.

Each scenario is one a researcher meets in an afternoon: two question sets into one folder, a prompt sweep, a
temperature sweep, a persona file that shares a bundled persona's name, and a store written by the previous
version of the runner (kept as a fixture in ``tests/fixtures/v1``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.core.settings import GenerationSettings
from runner.core.store import Store
from runner.engine import run
from runner.providers.fake import FakeGenerator
from runner.views.answers import question_answers, question_sets
from runner.views.scores import collect_scores
from tests.conftest import write_jsonl

FIXTURES = Path(__file__).parent / "fixtures"
Cli = Callable[..., Any]


def files_under(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (the lock aside) with its bytes: what a refused run must leave untouched."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def records(root: Path, pattern: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(root.glob(pattern), key=lambda p: (p.parent, int(p.stem)))]


def test_two_question_sets_share_a_folder_without_meeting(cli: Cli, questions_file: Path, tmp_path: Path) -> None:
    assert cli("--models", "fake:echo").returncode == 0
    done = cli("score", "--data", str(FIXTURES / "medqa_hf.jsonl"), "--models", "fake:echo", "--limit", "2")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "outputs"
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["medqa_hf", "questions", "runs"]
    assert [s["name"] for s in question_sets(out)] == ["medqa_hf", "questions"]
    sample = question_answers(1, out, question_set="questions")
    medqa = question_answers(1, out, question_set="medqa_hf")
    assert sample.question == "What are the symptoms of type 2 diabetes?" and not sample.warnings
    assert medqa.question.startswith("A 58-year-old man") and not medqa.warnings
    assert not any(a.question_differs for a in sample.answers + medqa.answers)
    # compare without --set shows the latest run's set and says which others exist
    shown = cli("compare", "1")
    assert shown.returncode == 0 and "A 58-year-old man" in shown.stdout and "older text" not in shown.stdout
    assert "also saved: questions" in shown.stderr and "--set NAME" in shown.stderr
    shown = cli("compare", "1", "--set", "questions")
    assert "type 2 diabetes" in shown.stdout and "older text" not in shown.stdout
    listing = cli("compare", "--set", "questions")
    assert "Question sets: medqa_hf (2 questions), questions (4 questions)" in listing.stdout
    unknown = cli("compare", "1", "--set", "nope")
    assert unknown.returncode == 2 and "no question set 'nope'" in unknown.stderr and "medqa_hf" in unknown.stderr


def test_a_file_of_the_same_name_elsewhere_is_not_merged(cli: Cli, questions_file: Path, tmp_path: Path) -> None:
    assert cli("--models", "fake:echo").returncode == 0
    (tmp_path / "other").mkdir()
    other = write_jsonl(tmp_path / "other" / "questions.jsonl", [{"question": "What is a normal potassium level?"}])
    before = files_under(tmp_path / "outputs")
    refused = cli("--models", "fake:echo", "--questions", str(other))
    assert refused.returncode == 2 and "question set 'questions'" in refused.stderr and "--set" in refused.stderr
    assert files_under(tmp_path / "outputs") == before
    assert cli("--models", "fake:echo", "--questions", str(other), "--set", "potassium").returncode == 0
    assert question_answers(1, tmp_path / "outputs", question_set="potassium").question.startswith("What is a normal")
    assert question_answers(1, tmp_path / "outputs", question_set="questions").question.startswith("What are the")


def test_prompt_one_then_two_refuses_then_keeps_both(cli: Cli, questions_file: Path, tmp_path: Path) -> None:
    assert cli("--models", "fake:echo", "--system-prompt", "Prompt ONE").returncode == 0
    out = tmp_path / "outputs"
    before = files_under(out)
    refused = cli("--models", "fake:echo", "--system-prompt", "Prompt TWO")
    assert refused.returncode == 2
    assert "4 answer(s) differ: persona text 'Prompt ONE' -> 'Prompt TWO'" in refused.stderr
    assert "--tag NAME" in refused.stderr and "--force" in refused.stderr and "nothing was written" in refused.stderr
    assert files_under(out) == before
    kept = cli("--models", "fake:echo", "--system-prompt", "Prompt TWO", "--tag", "two")
    assert kept.returncode == 0, kept.stderr
    one = records(out, "questions/custom/echo/*.json")
    two = records(out, "questions/custom/echo@two/*.json")
    assert [r["persona_text"] for r in one] == ["Prompt ONE"] * 4 and [r["tag"] for r in one] == [None] * 4
    assert [r["persona_text"] for r in two] == ["Prompt TWO"] * 4 and [r["tag"] for r in two] == ["two"] * 4
    view = question_answers(1, out)
    assert view.models == ["fake:echo", "fake:echo@two"]
    assert view.get("fake:echo", "custom").text != view.get("fake:echo@two", "custom").text
    shown = cli("compare", "1", "--width", "120")
    assert "fake:echo@two" in shown.stdout
    # the tagged variant resumes like any other answers, and --models name@tag picks it alone
    again = cli("--models", "fake:echo", "--system-prompt", "Prompt TWO", "--tag", "two")
    assert "4 answer(s) already saved, skipped" in again.stderr
    assert question_answers(1, out, models=["fake:echo@two"]).models == ["fake:echo@two"]


def test_temperature_sweep_keeps_both_and_score_shows_both(cli: Cli, tmp_path: Path) -> None:
    data = str(FIXTURES / "medqa_hf.jsonl")
    assert cli("score", "--data", data, "--models", "fake:echo", "--limit", "2").returncode == 0
    before = files_under(tmp_path / "outputs")
    refused = cli("score", "--data", data, "--models", "fake:echo", "--limit", "2", "--max-new-tokens", "16")
    assert refused.returncode == 2 and "max_new_tokens 512 -> 16" in refused.stderr
    assert files_under(tmp_path / "outputs") == before
    done = cli("score", "--data", data, "--models", "fake:echo", "--limit", "2", "--max-new-tokens", "16",
               "--tag", "short")
    assert done.returncode == 0, done.stderr
    assert "| fake:echo (medical-exam) |" in done.stdout and "| fake:echo@short (medical-exam) |" in done.stdout
    scores = collect_scores(Store(tmp_path / "outputs").iter_records())
    assert sorted((s.label, s.n) for s in scores) == [("fake:echo", 2), ("fake:echo@short", 2)]


def test_run_temperature_change_then_force_says_how_many(cli: Cli, questions_file: Path, tmp_path: Path) -> None:
    assert cli("--models", "fake:echo", "--limit", "2").returncode == 0
    refused = cli("--models", "fake:echo", "--limit", "2", "--temperature", "0.7", "--seed", "1")
    assert refused.returncode == 2 and "temperature 0.0 -> 0.7" in refused.stderr
    forced = cli("--models", "fake:echo", "--limit", "2", "--temperature", "0.7", "--seed", "1", "--force")
    assert forced.returncode == 0 and "Replaced 2 saved answer(s)." in forced.stdout
    saved = records(tmp_path / "outputs", "questions/oncology-researcher/echo/*.json")
    assert [r["settings"]["temperature"] for r in saved] == [0.7, 0.7]


def test_local_persona_file_named_like_a_bundled_one(cli: Cli, questions_file: Path, tmp_path: Path) -> None:
    assert cli("--models", "fake:echo", "--persona", "cardiologist", "--limit", "1").returncode == 0
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "cardiologist.md").write_text("You are my own cardiologist, terse.")
    refused = cli("--models", "fake:echo", "--persona", "cardiologist", "--limit", "1")
    assert refused.returncode == 2 and "persona text" in refused.stderr
    assert "You are my own cardiologist" in refused.stderr
    assert cli("--models", "fake:echo", "--persona", "cardiologist", "--limit", "1", "--tag", "mine").returncode == 0
    mine = records(tmp_path / "outputs", "questions/cardiologist/echo@mine/*.json")
    assert mine[0]["persona_text"] == "You are my own cardiologist, terse."


def test_a_changed_question_is_answered_anew_and_counted(cli: Cli, questions_file: Path, tmp_path: Path) -> None:
    assert cli("--models", "fake:echo").returncode == 0
    rows = [json.loads(line) for line in questions_file.read_text().splitlines()]
    rows[0]["question"] = "What are the early symptoms of type 2 diabetes?"
    write_jsonl(questions_file, rows)
    done = cli("--models", "fake:echo")
    assert done.returncode == 0 and "1 question(s) changed since their answers were saved" in done.stderr
    assert "Replaced 1 saved answer(s) (1 because the question changed)." in done.stdout


def test_multiple_choice_verdicts_in_compare(cli: Cli, tmp_path: Path) -> None:
    questions = write_jsonl(tmp_path / "mcq.jsonl", [
        {"question": "Which is a statin?", "options": {"A": "Insulin", "B": "Atorvastatin"}, "answer": "B"},
        {"question": "Which lowers glucose?", "options": {"A": "Metformin", "B": "Warfarin"}, "answer": "A"},
    ])
    FakeGenerator.canned.extend(["The answer is B.", "A. Insulin glargine\nB. Metformin\nC. Lin"])
    report = run(questions, ["fake:canned"], ["medical-exam"], output_dir=tmp_path / "outputs", progress=False)
    assert report.exit_status == 0
    first = question_answers(1, tmp_path / "outputs")
    assert (first.answers[0].chosen, first.answers[0].verdict) == ("B", "right")
    second = question_answers(2, tmp_path / "outputs")
    assert (second.answers[0].chosen, second.answers[0].verdict) == (None, "unparseable")
    shown = cli("compare", "1")
    assert "chose B ✓" in shown.stdout
    assert "unparseable" in cli("compare", "2").stdout
    listing = cli("compare", "--only-wrong")
    assert "Which lowers glucose?" in listing.stdout and "Which is a statin?" not in listing.stdout


def copy_v1_store(tmp_path: Path) -> Path:
    for name in ("questions.jsonl", "medqa2.jsonl"):
        shutil.copy(FIXTURES / "v1" / name, tmp_path / name)
    shutil.copytree(FIXTURES / "v1" / "store", tmp_path / "store")
    return tmp_path / "store"


def test_a_version_1_store_is_read_in_place(cli: Cli, tmp_path: Path) -> None:
    store = copy_v1_store(tmp_path)
    before = files_under(store)
    # two runs wrote to the same numbers there; each answer goes back to the set of the run that made it
    assert [s["name"] for s in question_sets(store)] == ["medqa2", "questions"]
    sample = question_answers(1, store, question_set="questions")
    assert sample.question.startswith("What are the first-line") and not sample.warnings
    assert sample.personas == ["cardiologist", "general-physician"]
    assert question_answers(2, store, question_set="medqa2").question.startswith("Which vitamin")
    scored = cli("score", "--output-dir", "store")
    assert scored.returncode == 0 and "fake:echo (medical-exam)" in scored.stdout
    assert cli("compare", "1", "--output-dir", "store", "--set", "questions").returncode == 0
    assert {k: v for k, v in files_under(store).items() if not k.startswith(("scores", "leaderboard"))} == before


def test_a_version_1_store_moves_into_sets_and_resumes(cli: Cli, tmp_path: Path) -> None:
    store = copy_v1_store(tmp_path)
    done = cli("--questions", "questions.jsonl", "--models", "fake:echo,all-minilm-l6-v2",
               "--persona", "cardiologist,general-physician", "--output-dir", "store", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "moved 11 saved answer(s) into question sets" in done.stderr
    assert "fake:echo: 6 answer(s) already saved, skipped" in done.stderr  # nothing asked again
    assert sorted(p.name for p in store.iterdir() if p.is_dir()) == ["medqa2", "questions", "runs"]
    assert len(list(store.glob("questions/cardiologist/echo/*.json"))) == 3
    assert len(list(store.glob("medqa2/medical-exam/echo/*.json"))) == 2
    assert (store / "questions" / "cardiologist" / "sentence-transformers_all-MiniLM-L6-v2" / "embeddings.npy").exists()
    again = cli("score", "--data", "medqa2.jsonl", "--format", "medqa", "--models", "fake:echo",
                "--output-dir", "store")
    assert again.returncode == 0 and "2 answer(s) already saved, skipped" in again.stderr


def test_a_half_migrated_leftover_is_not_a_question_set(tmp_path: Path) -> None:
    store = copy_v1_store(tmp_path)
    (store / "cardiologist" / "echo" / "7.txt").write_text("an answer whose record was never written")
    with Store(store).lock():
        pass
    assert Store(store).set_names() == ["medqa2", "questions"]
    assert (store / "cardiologist" / "echo" / "7.txt").exists()  # not a saved answer; left where it was


def test_set_and_tag_from_a_config_file(cli: Cli, questions_file: Path, tmp_path: Path) -> None:
    (tmp_path / "run.toml").write_text('models = ["fake:echo"]\nset = "sample"\ntag = "cfg"\n')
    assert cli("--config", "run.toml", "--limit", "1").returncode == 0
    assert (tmp_path / "outputs" / "sample" / "oncology-researcher" / "echo@cfg" / "1.json").exists()


def test_bad_set_and_tag_names_are_clear_errors(cli: Cli, questions_file: Path, tmp_path: Path) -> None:
    for args, message in ((["--set", "../escape"], "invalid question set name '../escape'"),
                          (["--set", "runs"], "invalid question set name 'runs'"),
                          (["--tag", "a b"], "invalid --tag 'a b'"),
                          (["--tag", "../x"], "invalid --tag '../x'")):
        done = cli("--models", "fake:echo", *args)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, args
    assert not (tmp_path / "outputs").exists()
    scored = cli("score", "--data", str(FIXTURES / "medqa_hf.jsonl"), "--models", "fake:echo", "--tag", "x/y")
    assert scored.returncode == 2 and "invalid --tag" in scored.stderr
    assert not (tmp_path / "outputs").exists()


def test_loglik_results_made_with_other_examples_are_a_variant(tmp_path: Path) -> None:
    from runner.core.errors import UsageError
    from runner.core.questions import Question

    q = Question(n=1, question="Which is a statin?", options={"A": "Insulin", "B": "Atorvastatin"}, answer="B")
    shots_a = [Question(n=1, question="Which is an anticoagulant?", options={"A": "Warfarin", "B": "Insulin"},
                        answer="A")]
    shots_b = [Question(n=1, question="Which lowers glucose?", options={"A": "Warfarin", "B": "Metformin"},
                        answer="B")]

    def score(shots: list[Question], **kw: Any) -> Any:
        from runner.tasks.fewshot import plan_fewshot

        return run([q], ["fake:echo"], settings=GenerationSettings(), output_dir=tmp_path, progress=False,
                   question_set="mcq", kind="loglik", fewshot=plan_fewshot([q], shots, 1), **kw)

    first = score(shots_a)
    assert first.summaries[0].answered == 1 and first.summaries[0].persona == "loglik-1shot"
    again = score(shots_a)
    assert again.summaries[0].skipped == 1 and again.summaries[0].answered == 0
    with pytest.raises(UsageError, match="--tag"):
        score(shots_b)  # the score command refuses unless --tag or --force
    tagged = score(shots_b, tag="other-shots")
    assert tagged.summaries[0].answered == 1
    assert (tmp_path / "mcq" / "loglik-1shot" / "echo@other-shots" / "1.json").is_file()
