"""``init``: the commented run.toml and the questions template, and that both run as written, through the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

from runner.commands.init import SETTING_EXAMPLES
from runner.core.questions import load_questions
from runner.core.settings import GenerationSettings, ModelEntry, RunConfig, load_config

SETTING_LINE = re.compile(r"^(# )?([a-z_]+) = ", re.MULTILINE)


def _uncomment(text: str, models: str | None = None) -> str:
    """Every commented key made live; the models example too, or ``models`` in its place."""
    lines, out, in_models = text.splitlines(), [], False
    for line in lines:
        if line.startswith("# models = ["):
            in_models = True
            if models is not None:
                out.append(models)
                continue
        if in_models:
            in_models = line != "# ]"
            if models is None:
                out.append(line[2:])
            continue
        out.append(line[2:] if re.match(r"^# [a-z_]+ = ", line) else line)
    return "\n".join(out) + "\n"


def test_init_writes_both_files_and_the_config_runs_as_written(cli, tmp_path: Path) -> None:
    proc = cli("init")
    assert proc.returncode == 0, proc.stderr
    assert "Wrote run.toml and questions.jsonl" in proc.stdout and "run --config run.toml" in proc.stdout
    questions = load_questions(tmp_path / "questions.jsonl")
    assert len(questions) == 2 and questions[0].options is None
    assert questions[1].is_multiple_choice and questions[1].answer == "B"
    proc = cli("run", "--config", "run.toml", "--models", "fake:echo")
    assert proc.returncode == 0, proc.stderr
    saved = sorted(p.name for p in (tmp_path / "outputs" / "questions" / "oncology-researcher" / "echo").iterdir())
    assert saved == ["1.json", "1.txt", "2.json", "2.txt"]


def test_every_setting_is_in_the_config_with_its_default(tmp_path: Path, cli) -> None:
    assert cli("init").returncode == 0
    text = (tmp_path / "run.toml").read_text(encoding="utf-8")
    keys = SETTING_LINE.findall(text)
    top, settings = text.split("[settings]")
    top_keys = {k for _, k in SETTING_LINE.findall(top)}
    assert top_keys == {f.alias or n for n, f in RunConfig.model_fields.items()} - {"settings"}
    assert {k for _, k in SETTING_LINE.findall(settings)} == set(GenerationSettings.model_fields)
    assert [k for live, k in keys if not live] == ["questions"]  # the one live line: the template beside it
    for name in ModelEntry.model_fields:  # every per-model key is named, and the example has a base_url entry
        assert name in top
    assert re.search(r'^# +\{ name = "openai:[^"]+", base_url = "http://[^"]+" \},', text, re.MULTILINE)
    # Made live, every line is valid and holds the default (an example where the default is unset).
    live = tmp_path / "live.toml"
    live.write_text(_uncomment(text), encoding="utf-8")
    config = load_config(live)
    defaults = GenerationSettings()
    assert config.settings == defaults.model_copy(update=SETTING_EXAMPLES)
    assert (config.personas, config.force, config.output_dir) == (["oncology-researcher"], False,
                                                                  str(tmp_path / "outputs"))
    names = [m.name if isinstance(m, ModelEntry) else m for m in config.models]
    assert "smollm2-135m-instruct" in names and any(isinstance(m, ModelEntry) and m.base_url for m in config.models)


def test_the_config_with_fake_models_runs_from_another_folder(cli, tmp_path: Path) -> None:
    project = tmp_path / "project"
    proc = cli("init", "--dir", "project")
    assert proc.returncode == 0, proc.stderr
    assert "run --config project/run.toml" in proc.stdout
    config = project / "run.toml"
    text = config.read_text(encoding="utf-8").replace("# output_dir =", "output_dir =").replace(
        "# max_new_tokens = 512", "max_new_tokens = 64")
    lines = text.splitlines()
    start = lines.index("# models = [")
    end = lines.index("# ]", start)
    lines[start:end + 1] = ['models = ["fake:echo", { name = "fake:async-echo", slug = "async" }]']
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = cli("run", "--config", str(config), cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    folder = project / "outputs" / "questions" / "oncology-researcher"  # paths in the file: from its folder
    assert sorted(p.name for p in folder.iterdir()) == ["async", "echo"]
    record = json.loads((folder / "async" / "2.json").read_text(encoding="utf-8"))
    assert record["settings"]["max_new_tokens"] == 64 and record["options"]["B"] == "Atorvastatin"
    assert not list(elsewhere.iterdir())


def test_init_refuses_to_overwrite_unless_forced(cli, tmp_path: Path) -> None:
    (tmp_path / "questions.jsonl").write_text('{"question": "mine"}\n', encoding="utf-8")
    proc = cli("init")
    assert proc.returncode == 2
    assert "questions.jsonl already exists; nothing was written" in proc.stderr and "--force" in proc.stderr
    assert not (tmp_path / "run.toml").exists()
    assert (tmp_path / "questions.jsonl").read_text(encoding="utf-8") == '{"question": "mine"}\n'
    proc = cli("init", "--force")
    assert proc.returncode == 0, proc.stderr
    assert len(load_questions(tmp_path / "questions.jsonl")) == 2 and (tmp_path / "run.toml").is_file()
    proc = cli("init")
    assert proc.returncode == 2 and "run.toml and questions.jsonl already exist" in proc.stderr
