"""Hostile names and inputs: paths never leave the output folder, bad personas, unwritable outputs, locks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runner.core.credentials import redact
from runner.core.errors import InputError, UsageError
from runner.core.personas import resolve_persona, resolve_personas
from runner.core.settings import GenerationSettings, ModelEntry
from runner.core.store import Store
from runner.providers.catalog import resolve_model, safe_slug


@pytest.mark.parametrize("model_id", ["../../etc/passwd", "/etc/passwd", "..", ".", "a/../../b", "..\\..\\x",
                                      "name with spaces", "", "////", "a" * 500, "ollama/llama3:8b", "\u00e9t\u00e9"])
def test_slug_never_escapes(model_id: str, tmp_path: Path) -> None:
    slug = safe_slug(model_id)
    assert "/" not in slug and "\\" not in slug and not slug.startswith(".") and len(slug) <= 120 and slug
    folder = Store(tmp_path / "out").questions_set("questions").model_dir("persona", slug)
    assert (tmp_path / "out").resolve() in folder.resolve().parents


def test_store_refuses_unsafe_parts(tmp_path: Path) -> None:
    store = Store(tmp_path)
    space = store.questions_set("questions")
    for bad in ("..", ".", "a/b", "/abs", ""):
        with pytest.raises(UsageError, match="unsafe name"):
            space.model_dir(bad, "model")
        with pytest.raises(UsageError, match="unsafe name"):
            space.model_dir("persona", bad)
    for bad in ("..", ".", "a/b", "/abs", "runs", ""):
        with pytest.raises(UsageError, match="invalid question set name"):
            store.questions_set(bad)
    for bad in ("../x", "a b", "@", "x/y"):
        with pytest.raises(UsageError):
            space.model_dir("persona", f"model@{bad}")


def test_hostile_model_names_through_cli(cli, questions_file: Path, tmp_path: Path) -> None:
    proc = cli("--models", "hf:../../../../tmp/evil", "--limit", "1")
    # hf cannot load it here, but whatever happens no file may appear outside outputs/
    assert proc.returncode in (1, 2)
    assert not (tmp_path.parent / "tmp").exists()
    assert resolve_model("openai:../../x").slug == "_.._x"
    with pytest.raises(UsageError, match="empty"):
        resolve_model("openai:")


def test_empty_and_missing_persona_files(tmp_path: Path) -> None:
    (tmp_path / "empty.md").write_text("  \n\n")
    with pytest.raises(InputError, match=r"empty\.md: persona file is empty"):
        resolve_persona(str(tmp_path / "empty.md"))
    with pytest.raises(InputError, match=r"gone\.md: persona file not found"):
        resolve_persona(str(tmp_path / "gone.md"))
    (tmp_path / "latin1.md").write_bytes(b"caf\xe9")
    with pytest.raises(InputError, match="not valid UTF-8"):
        resolve_persona(str(tmp_path / "latin1.md"))
    with pytest.raises(UsageError, match="persona given twice"):
        resolve_personas(["cardiologist", "cardiologist"])
    with pytest.raises(UsageError, match="--system-prompt is empty"):
        resolve_personas([], "  ")


def test_empty_persona_through_cli_writes_nothing(cli, questions_file: Path, tmp_path: Path) -> None:
    (tmp_path / "blank.md").write_text("")
    proc = cli("--models", "fake:echo", "--persona", "blank.md")
    assert proc.returncode == 2 and "blank.md: persona file is empty" in proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_local_prompts_folder_overrides_and_adds(cli, questions_file: Path, tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "nephrologist.md").write_text("You are a nephrologist. Be precise.")
    proc = cli("personas")
    assert "nephrologist" in proc.stdout and "cardiologist" in proc.stdout
    proc = cli("--models", "fake:echo", "--persona", "nephrologist", "--limit", "1")
    assert proc.returncode == 0 and (tmp_path / "outputs" / "questions" / "nephrologist" / "echo" / "1.txt").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders; permission test needs a user")
def test_unwritable_output_dir(cli, questions_file: Path, tmp_path: Path) -> None:
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    proc = cli("--models", "fake:echo", "--output-dir", "ro/out")
    assert proc.returncode == 2 and "is not writable" in proc.stderr


def test_output_dir_is_a_file(cli, questions_file: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    proc = cli("--models", "fake:echo", "--output-dir", "afile")
    assert proc.returncode == 2 and "afile is not writable" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_second_run_into_same_output_dir_is_refused(cli, questions_file: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "outputs")
    with store.lock():
        proc = cli("--models", "fake:echo")
    assert proc.returncode == 2
    assert "another run is writing to outputs" in proc.stderr and "--output-dir" in proc.stderr
    assert not (tmp_path / "outputs" / "questions").exists()
    assert cli("--models", "fake:echo").returncode == 0  # released


def test_failure_never_replaces_a_saved_answer(tmp_path: Path) -> None:
    store = Store(tmp_path).questions_set("s")
    ok = {"n": 1, "key": "k1", "error": None, "text": "good"}
    store.save("p", "m", 1, ok, "good")
    store.save("p", "m", 1, {"n": 1, "key": "k1", "error": "boom", "text": ""}, None)
    folder = tmp_path / "s" / "p" / "m"
    assert json.loads((folder / "1.json").read_text())["text"] == "good"
    assert (folder / "1.txt").read_text() == "good"
    # a failure for a different (new) question replaces the stale answer: nothing mixed up
    store.save("p", "m", 1, {"n": 1, "key": "k2", "error": "boom", "text": ""}, None)
    assert not (folder / "1.txt").exists()
    assert json.loads((folder / "1.json").read_text())["key"] == "k2"


def test_no_temporary_files_left(cli, questions_file: Path, tmp_path: Path) -> None:
    assert cli("--models", "fake:echo,fake:async-echo").returncode == 0
    assert not [p for p in (tmp_path / "outputs").rglob("*.tmp")]


def test_redact_hides_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "my-very-secret-value-123")
    text = ("key my-very-secret-value-123 and sk-proj-ABCDEFGHIJKLMNOPQRSTUV and AIzaSyA1234567890abcdefghijklmnopqrstu"
            " at https://user:pa55@host:8000/v1")
    cleaned = redact(text)
    for secret in ("my-very-secret-value-123", "sk-proj-ABCDEF", "AIzaSyA123", "pa55"):
        assert secret not in cleaned
    assert "https://***@host:8000/v1" in cleaned


def test_redact_url_passwords_without_eating_the_text_around() -> None:
    assert redact("at https://user:p@ss@host/v1 now") == "at https://***@host/v1 now"  # an unencoded '@' too
    assert redact('{"url": "http://host/v1", "mail": "me@example.org"}') == \
        '{"url": "http://host/v1", "mail": "me@example.org"}'
    assert redact("see http://host and me@example.org") == "see http://host and me@example.org"
    assert redact("ftp://anonymous@files.example") == "ftp://***@files.example"


def test_settings_reject_unknown_and_out_of_range() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        GenerationSettings(max_new_tokens=0)
    with pytest.raises(ValidationError):
        GenerationSettings.model_validate({"max_new_tokenz": 3})
    assert GenerationSettings().greedy and not GenerationSettings(temperature=0.7).greedy
    assert "seed" not in GenerationSettings(seed=3).answer_key_fields()  # greedy answers ignore the seed
    assert GenerationSettings(temperature=0.7, seed=3).answer_key_fields()["seed"] == 3


def test_backoff_is_bounded_and_honours_retry_after() -> None:
    from runner.engine import backoff_delay

    s = GenerationSettings(retry_initial_wait_s=1, retry_max_wait_s=8)
    delays = [backoff_delay(a, None, s) for a in range(1, 10)]
    assert all(0.5 <= d <= 8 for d in delays) and max(delays) > 2
    assert backoff_delay(1, 5.0, s) >= 5.0
    assert backoff_delay(1, 3600.0, s) == 8  # a huge Retry-After is capped


def test_base_url_from_environment_is_part_of_the_answer_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.core.personas import resolve_persona
    from runner.core.questions import Question
    from runner.engine.cache_keys import answer_key

    q, persona, settings = Question(n=1, question="q"), resolve_persona("cardiologist"), GenerationSettings()
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    official = resolve_model("openai:gpt-4o")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
    local = resolve_model("openai:gpt-4o")
    assert local.base_url == "http://127.0.0.1:8000/v1" and official.base_url is None
    assert answer_key(q, persona, official, settings) != answer_key(q, persona, local, settings)
    assert resolve_model(ModelEntry(name="openai:gpt-4o", base_url="http://h/v1")).base_url == "http://h/v1"


def test_unexpected_error_traceback_is_redacted(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from runner import cli
    from runner.commands import run as run_command

    secret = "sk-proj-traceback0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", secret)

    def explode(*_: object) -> int:
        raise RuntimeError(f"request failed with header Authorization: Bearer {secret}")

    monkeypatch.setattr(run_command, "execute", explode)
    assert cli.main(["--models", "fake:echo"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError" in err
    assert secret not in err and "Bearer ***" in err


def test_env_file_is_git_ignored() -> None:
    import subprocess

    from tests.conftest import REPO

    proc = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO, capture_output=True)
    if proc.returncode == 128:
        pytest.skip("not a git checkout")
    assert proc.returncode == 0, ".env must be git-ignored"
