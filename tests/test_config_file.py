"""``--config FILE``: paths written in the file are relative to its folder; ``score --config`` as ``run``."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import write_jsonl

MCQ = [{"question": "Which is a statin?", "options": {"A": "Atorvastatin", "B": "Insulin"}, "answer": "A",
        "task": "demo"},
       {"question": "Which lowers glucose?", "options": {"A": "Warfarin", "B": "Metformin"}, "answer": "B",
        "task": "demo"}]


def _conf(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "conf"
    folder.mkdir(exist_ok=True)
    (folder / "run.toml").write_text(text, encoding="utf-8")
    return folder


def test_paths_in_a_config_file_are_relative_to_its_folder(cli, tmp_path: Path) -> None:
    folder = _conf(tmp_path, 'questions = "q.jsonl"\noutput_dir = "out"\npersonas = ["mine.md", "cardiologist"]\n'
                             'models = ["fake:echo"]\n')
    write_jsonl(folder / "q.jsonl", [{"question": "What does aspirin do?"}])
    (folder / "mine.md").write_text("You are my own persona.", encoding="utf-8")
    proc = cli("--config", "conf/run.toml")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "outputs").exists()
    (mine,) = [json.loads(p.read_text()) for p in (folder / "out" / "q" / "mine" / "echo").glob("*.json")]
    assert mine["persona_text"] == "You are my own persona."
    assert (folder / "out" / "q" / "cardiologist" / "echo" / "1.json").is_file()

    # The same config run from inside its folder gives the same paths; flags stay relative to the current directory.
    again = cli("--config", "run.toml", cwd=folder)
    assert again.returncode == 0 and "skipped" in again.stdout
    flagged = cli("--config", "conf/run.toml", "--output-dir", "flag-out")
    assert flagged.returncode == 0, flagged.stderr
    assert (tmp_path / "flag-out" / "q" / "mine" / "echo" / "1.json").is_file()


def test_absolute_paths_in_a_config_file_are_kept(cli, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "abs.jsonl", [{"question": "What does aspirin do?"}])
    _conf(tmp_path, f'questions = "{tmp_path / "abs.jsonl"}"\noutput_dir = "{tmp_path / "abs-out"}"\n'
                    'models = ["fake:echo"]\n')
    proc = cli("--config", "conf/run.toml")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "abs-out" / "abs" / "oncology-researcher" / "echo" / "1.json").is_file()


def test_a_missing_questions_file_is_named_where_the_config_puts_it(cli, tmp_path: Path) -> None:
    _conf(tmp_path, 'questions = "nowhere.jsonl"\nmodels = ["fake:echo"]\n')
    proc = cli("--config", "conf/run.toml")
    assert proc.returncode == 2
    assert "conf/nowhere.jsonl" in proc.stderr


def test_score_takes_models_settings_and_output_dir_from_the_config(cli, server, tmp_path: Path) -> None:
    server.text = "Answer: A"
    folder = _conf(tmp_path, f'output_dir = "out"\nmodels = [{{ name = "openai:served", base_url = '
                             f'"{server.openai_base_url}" }}]\n[settings]\nmax_new_tokens = 7\n')
    write_jsonl(tmp_path / "mcq.jsonl", MCQ)
    proc = cli("score", "--config", "conf/run.toml", "--questions", "mcq.jsonl", env={"OPENAI_BASE_URL": ""})
    assert proc.returncode == 0, proc.stderr
    assert len(server.requests) == 2
    assert {r.body["max_completion_tokens"] for r in server.requests} == {7}
    scores = json.loads((folder / "out" / "scores.json").read_text())
    assert "served" in json.dumps(scores) and not (tmp_path / "outputs").exists()
    records = [json.loads(p.read_text()) for p in (folder / "out" / "mcq" / "medical-exam" / "served").glob("*.json")]
    assert [r["model_options"]["base_url"] for r in records] == [server.openai_base_url] * 2
    # Scoring again reads the same store and asks nothing.
    again = cli("score", "--config", "conf/run.toml", env={"OPENAI_BASE_URL": ""})
    assert again.returncode == 0, again.stderr
    assert len(server.requests) == 2 and "served" in again.stdout
