"""The first hour's messages, by exact text through the real command line."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.conftest import write_jsonl

NO_KEY = "cannot run: no API key; set OPENAI_API_KEY in the environment or in .env"


def _error(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    return line


def test_a_model_without_its_key_is_named_once_and_the_fix_is_said(cli, questions_file: Path) -> None:
    proc = cli("--models", "gpt-4o,fake:echo", "--limit", "2", env={"OPENAI_BASE_URL": ""})
    assert proc.returncode == 1
    assert f"gpt-4o: {NO_KEY}" in proc.stderr.splitlines()
    assert f"\nNot run:\n  gpt-4o: {NO_KEY}\n" in proc.stdout
    assert "gpt-4o: gpt-4o" not in proc.stdout + proc.stderr and "retry" not in proc.stdout
    assert proc.stdout.rstrip().endswith(
        "\n2 answer(s) were not asked because their model could not run: do what 'Not run' says above, then run "
        "the same command again.")


def test_failed_answers_still_say_a_retry_helps(cli, questions_file: Path) -> None:
    proc = cli("--models", "fake:fail", "--limit", "2")
    assert proc.returncode == 1
    assert proc.stdout.rstrip().endswith("\n2 answer(s) failed; run the same command again to retry only those.")
    assert "Not run" not in proc.stdout


def test_settings_are_named_by_their_flags(cli, questions_file: Path) -> None:
    assert _error(cli("--models", "fake:echo", "--max-new-tokens", "0")) == (
        "error: invalid setting: --max-new-tokens: Input should be greater than or equal to 1")
    assert _error(cli("--models", "fake:echo", "--timeout", "0", "--concurrency", "0")) == (
        "error: invalid setting: --concurrency: Input should be greater than or equal to 1; --timeout: Input should "
        "be greater than 0")


def test_misspelled_names_get_a_suggestion(cli, questions_file: Path, tmp_path: Path) -> None:
    assert _error(cli("--models", "medgema-27b")).startswith(
        "error: unknown model 'medgema-27b' (did you mean 'medgemma-27b'?): use provider:model-id (providers: ")
    assert _error(cli("--models", "opnai:gpt-4o")).startswith(
        "error: unknown provider 'opnai' (did you mean 'openai'?); known providers: ")
    assert _error(cli("--models", "fake:echo", "--persona", "cardiologst")) == (
        "error: unknown persona 'cardiologst' (did you mean 'cardiologist'?); known personas: cardiologist, "
        "general-physician, medical-exam, oncology-researcher, patient-educator, research-scientist (or give a "
        "path to a .md file)")
    (tmp_path / "run.toml").write_text('modles = ["fake:echo"]\nmodels = [{ name = "fake:echo", bse_url = "x" }]\n'
                                       "[settings]\nmax_new_token = 5\n")
    assert _error(cli("--config", "run.toml")) == (
        "error: run.toml: models.0.bse_url: unknown key (did you mean 'base_url'?); settings.max_new_token: unknown "
        "key (did you mean 'max_new_tokens'?); modles: unknown key (did you mean 'models'?)")
    assert not (tmp_path / "outputs").exists()


def test_a_csv_or_json_array_questions_file_is_told_it_is_not_jsonl(cli, tmp_path: Path) -> None:
    (tmp_path / "q.csv").write_text("question,answer\nWhat is aspirin?,A\n")
    assert _error(cli("--models", "fake:echo", "--questions", "q.csv")) == (
        "error: q.csv: the questions file must be JSONL (one JSON object per line); it looks like CSV (first line "
        "'question,answer'); write each question as a JSON object on its own line, like {\"question\": \"...\", "
        "\"options\": {\"A\": \"...\", \"B\": \"...\"}, \"answer\": \"A\"}")
    array = "error: q.json: the questions file must be JSONL (one JSON object per line); it looks like a JSON array; " \
            "put each object on its own line, without the brackets and the commas between objects"
    (tmp_path / "q.json").write_text('[\n  {"question": "What is aspirin?"}\n]\n')
    assert _error(cli("--models", "fake:echo", "--questions", "q.json")) == array
    (tmp_path / "q.json").write_text('[{"question": "What is aspirin?"}]\n')
    assert _error(cli("--models", "fake:echo", "--questions", "q.json")) == array
    # A JSONL file whose later line is broken keeps its line's own message.
    write_jsonl(tmp_path / "q.jsonl", [{"question": "What is aspirin?"}, "[1, 2]"])
    assert _error(cli("--models", "fake:echo", "--questions", "q.jsonl")) == (
        "error: q.jsonl:2: expected a JSON object, got list")
    assert not (tmp_path / "outputs").exists()


def test_score_with_nothing_saved_says_so_and_writes_nothing(cli, tmp_path: Path) -> None:
    assert _error(cli("score")) == (
        "error: nothing to score: no saved answers under outputs. Answer questions first (the run command), or give "
        "--models with --questions, --data or --dataset to answer and score")
    assert not (tmp_path / "outputs").exists()
    assert _error(cli("score", "--output-dir", "elsewhere")).startswith(
        "error: nothing to score: no saved answers under elsewhere.")
    assert not (tmp_path / "elsewhere").exists()


def test_models_does_not_call_a_hub_model_ready_when_its_weights_are_not_here(
        cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    env = {"HF_HOME": str(tmp_path / "empty-cache"), "HF_HUB_OFFLINE": "1"}
    rows = {r["alias"]: r for r in json.loads(cli("models", "--json", env=env).stdout)}
    assert rows["smollm2-135m-instruct"]["missing"] == []  # embedded: nothing to download
    assert ("the weights: not in the Hugging Face cache, and the hub is off (HF_HUB_OFFLINE)"
            in rows["biomedlm"]["missing"])
    text = cli("models", env=env).stdout
    assert "->  missing the weights: not in the Hugging Face cache" in text
