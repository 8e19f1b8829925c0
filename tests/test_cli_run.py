"""The run command through the real command line (subprocess) and the Python API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.providers.fake import FakeGenerator
from tests.conftest import REPO, write_jsonl


def outputs_of(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".lock")


@pytest.mark.parametrize(("content", "message"), [
    ('{"question": "ok"}\n{bad json}\n', "q.jsonl:2: invalid JSON"),
    ('{"question": "ok"}\n[1, 2]\n', "q.jsonl:2: expected a JSON object"),
    ('{"question": ""}\n', "q.jsonl:1: 'question' is empty"),
    ('{"question": "a", "options": {"A": "x"}}\n', "q.jsonl:1: 'options' needs at least two options"),
])
def test_bad_input_exit_2_nothing_written(cli, tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "q.jsonl").write_text(content)
    proc = cli("--questions", "q.jsonl", "--models", "fake:echo")
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stderr.count("\n") <= 2  # one clear message, no traceback
    assert not (tmp_path / "outputs").exists()


def test_missing_questions_file(cli, tmp_path: Path) -> None:
    proc = cli("--questions", "missing.jsonl", "--models", "fake:echo")
    assert proc.returncode == 2
    assert "missing.jsonl: questions file not found" in proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_usage_errors(cli, questions_file: Path, tmp_path: Path) -> None:
    proc = cli("--models", "fake:echo", "--persona", "astrologer")
    assert proc.returncode == 2
    assert "unknown persona 'astrologer'; known personas:" in proc.stderr and "cardiologist" in proc.stderr
    proc = cli("--models", "nosuch:model")
    assert proc.returncode == 2 and "unknown provider 'nosuch'; known providers: fake, hf" in proc.stderr
    proc = cli("--models", "gpt5000")
    assert proc.returncode == 2 and "unknown model 'gpt5000'" in proc.stderr and "medgemma-27b" in proc.stderr
    proc = cli("--temperature", "9", "--models", "fake:echo")
    assert proc.returncode == 2 and "temperature" in proc.stderr
    proc = cli("--batch-size", "0")
    assert proc.returncode == 2 and "positive integer or 'auto'" in proc.stderr
    proc = cli("--no-such-flag")
    assert proc.returncode == 2
    assert not (tmp_path / "outputs").exists()


def test_run_writes_numbered_files_records_and_manifest(cli, questions_file: Path, tmp_path: Path) -> None:
    proc = cli("--models", "fake:echo,fake:async-echo", "--persona", "cardiologist,patient-educator")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "outputs" / "questions"
    for persona in ("cardiologist", "patient-educator"):
        for slug in ("echo", "async-echo"):
            assert sorted(p.name for p in (out / persona / slug).glob("*.txt")) == ["1.txt", "2.txt", "3.txt", "4.txt"]
    record = json.loads((out / "cardiologist" / "echo" / "2.json").read_text())
    assert record["n"] == 2 and record["question_id"] == "b" and record["question"] == "How does metformin work?"
    assert record["persona"] == "cardiologist" and record["model"] == "fake:echo" and record["error"] is None
    assert record["text"] == (out / "cardiologist" / "echo" / "2.txt").read_text()
    assert record["settings"]["max_new_tokens"] == 512 and record["settings"]["temperature"] == 0.0
    assert record["prompt_tokens"] > 0 and record["completion_tokens"] > 0 and record["latency_s"] >= 0
    mc = json.loads((out / "cardiologist" / "echo" / "4.json").read_text())
    assert mc["options"] == {"A": "Atorvastatin", "B": "Insulin"} and mc["answer"] == "A" and mc["task"] == "demo"
    manifests = list((tmp_path / "outputs" / "runs").glob("*.json"))
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].read_text())
    assert manifest["status"] == "finished"
    assert manifest["questions"]["count"] == 4 and len(manifest["questions"]["sha256"]) == 64
    assert [p["name"] for p in manifest["personas"]] == ["cardiologist", "patient-educator"]
    assert manifest["packages"]["pydantic"] and manifest["settings"]["concurrency"] == 8
    assert {s["persona"] for s in manifest["summary"]} == {"cardiologist", "patient-educator"}
    # the closing summary table
    assert "answered" in proc.stdout and "fake:async-echo" in proc.stdout


def test_slug_of_hub_style_ids(cli, questions_file: Path, tmp_path: Path) -> None:
    from runner.providers.catalog import resolve_model

    assert resolve_model("hf:google/medgemma-27b-text-it").slug == "google_medgemma-27b-text-it"
    assert resolve_model("medgemma-27b").slug == "google_medgemma-27b-text-it"


def test_rerun_skips_saved_and_force_redoes(cli, questions_file: Path, tmp_path: Path) -> None:
    assert cli("--models", "fake:echo").returncode == 0
    txt = tmp_path / "outputs" / "questions" / "oncology-researcher" / "echo" / "1.txt"
    before = txt.stat().st_mtime_ns
    proc = cli("--models", "fake:echo")
    assert proc.returncode == 0
    assert "4 answer(s) already saved, skipped" in proc.stderr
    assert txt.stat().st_mtime_ns == before
    # a changed question is answered anew; unchanged ones are kept
    rows = [json.loads(line) for line in questions_file.read_text().splitlines()]
    rows[1]["question"] = "How does metformin lower glucose?"
    write_jsonl(questions_file, rows)
    proc = cli("--models", "fake:echo")
    assert "3 answer(s) already saved, skipped" in proc.stderr
    record = json.loads((txt.parent / "2.json").read_text())
    assert record["question"] == "How does metformin lower glucose?"
    assert "metformin lower glucose" in (txt.parent / "2.txt").read_text()
    # a changed setting would replace the saved answers: the run refuses before writing anything
    snapshot = outputs_of(tmp_path / "outputs")
    proc = cli("--models", "fake:echo", "--max-new-tokens", "5")
    assert proc.returncode == 2
    assert "max_new_tokens 512 -> 5" in proc.stderr and "--tag NAME" in proc.stderr and "--force" in proc.stderr
    assert outputs_of(tmp_path / "outputs") == snapshot
    # --force replaces them, and says how many
    proc = cli("--models", "fake:echo", "--max-new-tokens", "5", "--force")
    assert proc.returncode == 0 and "already saved" not in proc.stderr
    assert "Replaced 4 saved answer(s)" in proc.stdout
    assert json.loads(txt.with_suffix(".json").read_text())["settings"]["max_new_tokens"] == 5
    assert len(list((tmp_path / "outputs" / "runs").glob("*.json"))) == 4


def test_failing_model_does_not_stop_others_and_exit_1(cli, questions_file: Path, tmp_path: Path) -> None:
    proc = cli("--models", "fake:fail,fake:echo,fake:nonsense,openai:gpt-4o")
    assert proc.returncode == 1
    out = tmp_path / "outputs" / "questions" / "oncology-researcher"
    assert len(list((out / "echo").glob("*.txt"))) == 4
    failed = json.loads((out / "fail" / "1.json").read_text())
    assert failed["error"] == "fake failure (fake:fail always fails)"
    assert not (out / "fail" / "1.txt").exists()
    assert "no API key; set OPENAI_API_KEY" in proc.stdout + proc.stderr
    assert "unknown fake model 'nonsense'" in proc.stdout + proc.stderr
    assert "run the same command again to retry only those" in proc.stdout
    # re-running retries only the failures
    proc = cli("--models", "fake:fail,fake:echo")
    assert "fake:echo: 4 answer(s) already saved" in proc.stderr


def test_flaky_answers_are_retried(cli, questions_file: Path, tmp_path: Path) -> None:
    proc = cli("--models", "fake:flaky")
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "outputs" / "questions" / "oncology-researcher" / "flaky" / "1.json").read_text())
    assert record["attempts"] == 2 and record["error"] is None


def test_limit_and_output_dir(cli, questions_file: Path, tmp_path: Path) -> None:
    proc = cli("--models", "fake:echo", "--limit", "2", "--output-dir", "elsewhere/out")
    assert proc.returncode == 0
    assert outputs_of(tmp_path / "elsewhere" / "out" / "questions" / "oncology-researcher") == [
        "echo/1.json", "echo/1.txt", "echo/2.json", "echo/2.txt"]


def test_config_file_and_flags_override(cli, questions_file: Path, tmp_path: Path) -> None:
    (tmp_path / "run.toml").write_text(
        'models = ["fake:echo", {name = "fake:async-echo", slug = "async"}]\npersonas = ["cardiologist"]\n'
        'limit = 1\n[settings]\nmax_new_tokens = 7\n')
    proc = cli("--config", "run.toml", "--max-new-tokens", "9")
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "outputs" / "questions" / "cardiologist" / "async" / "1.json").read_text())
    assert record["settings"]["max_new_tokens"] == 9
    (tmp_path / "bad.toml").write_text('models = ["fake:echo"]\n[settings]\nmax_new_tokenz = 7\n')
    proc = cli("--config", "bad.toml")
    assert proc.returncode == 2 and "bad.toml: settings.max_new_tokenz: unknown key" in proc.stderr
    (tmp_path / "broken.toml").write_text("models = [\n")
    proc = cli("--config", "broken.toml")
    assert proc.returncode == 2 and "broken.toml: not valid TOML" in proc.stderr


def test_persona_messages_reach_the_provider(questions_file: Path, tmp_path: Path) -> None:
    from runner.core.personas import resolve_persona
    from runner.engine import run

    custom = tmp_path / "my-persona.md"
    custom.write_text("You are a careful pharmacist.\n")
    report = run(questions_file, ["fake:echo"], ["cardiologist", str(custom)], output_dir=tmp_path / "o",
                 progress=False)
    assert report.exit_status == 0
    cardiologist = resolve_persona("cardiologist").text
    systems = [r.system_prompt for r in FakeGenerator.history]
    assert systems == [cardiologist] * 4 + ["You are a careful pharmacist."] * 4
    assert FakeGenerator.history[0].user_message == "What are the symptoms of type 2 diabetes?"
    assert FakeGenerator.history[3].user_message.startswith("Which is a statin?\n\nA. Atorvastatin\nB. Insulin")
    assert (tmp_path / "o" / "questions" / "my-persona" / "echo" / "1.txt").exists()


def test_inline_system_prompt(cli, questions_file: Path, tmp_path: Path) -> None:
    proc = cli("--models", "fake:echo", "--system-prompt", "You are terse.", "--limit", "1")
    assert proc.returncode == 0
    assert (tmp_path / "outputs" / "questions" / "custom" / "echo" / "1.txt").exists()
    proc = cli("--models", "fake:echo", "--system-prompt", "x", "--persona", "cardiologist")
    assert proc.returncode == 2 and "not both" in proc.stderr


def test_personas_and_models_listings(cli, tmp_path: Path) -> None:
    proc = cli("personas")
    assert proc.returncode == 0
    for name in ("oncology-researcher", "general-physician", "cardiologist", "patient-educator",
                 "research-scientist"):
        assert name in proc.stdout
    assert "* oncology-researcher" in proc.stdout
    proc = cli("personas", "oncology-researcher")
    assert "breast cancer" in proc.stdout and "not personal medical advice" in proc.stdout
    proc = cli("models")
    assert proc.returncode == 0
    assert "medgemma-27b" in proc.stdout and "CUDA GPU" in proc.stdout and "OPENAI_API_KEY" in proc.stdout
    assert "smollm2-135m-instruct (default)" in proc.stdout


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["personas"], ["models"], ["--version"]])
def test_light_commands_never_import_torch(args: list[str], tmp_path: Path) -> None:
    code = ("import sys\nfrom runner.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'openai', 'google.genai') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n").replace("%r", repr(args))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr


def test_missing_package_names_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from runner import providers
    from runner.core.errors import ModelUnavailable

    info = providers.PROVIDERS["openai"]
    monkeypatch.setitem(providers.PROVIDERS, "openai", info.__class__(**{**vars(info), "packages": ("no_such_pkg_x",)}))
    with pytest.raises(ModelUnavailable, match="needs no_such_pkg_x, not installed: pip install openai"):
        providers.load_provider_class("openai")


def test_python_api_run(questions_file: Path, tmp_path: Path) -> None:
    import runner
    from runner.core.settings import GenerationSettings

    report = runner.run(str(questions_file), models=["fake:echo"], personas=["research-scientist"],
                        settings=GenerationSettings(max_new_tokens=4), output_dir=tmp_path / "api", progress=False)
    assert report.exit_status == 0
    assert report.summaries[0].answered == 4
    text = (tmp_path / "api" / "questions" / "research-scientist" / "echo" / "1.txt").read_text()
    assert len(text.split()) == 4
