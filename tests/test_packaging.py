"""The built wheel works on its own: the bundled personas ship inside it and the console script runs.

Offline: the wheel is built with the setuptools already installed (no build isolation, no index), installed with
``--no-deps`` into a fresh virtual environment that sees this environment's packages through a ``.pth`` file, and
run from a folder that has no ``prompts/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, write_jsonl

PERSONAS = ("cardiologist", "general-physician", "medical-exam", "oncology-researcher", "patient-educator",
            "research-scientist")


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True,
                   capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the console script of a fresh venv where the wheel alone provides ``runner``)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"  # a copy, so the build writes nothing into the repository (build/, *.egg-info)
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "runner", src / "runner", ignore=shutil.ignore_patterns("__pycache__"))
    try:
        _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(base / "dist"), str(src))
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot build a wheel offline here: {exc.stderr.strip()[-300:]}")
    (wheel,) = (base / "dist").glob("*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    _pip("--python", str(python), "install", "--no-deps", "--no-index", str(wheel))
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # The dependencies (pydantic, ...) come from this environment; runner itself only from the wheel.
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return wheel, venv / "bin" / "medical-model-runner"


def _script(script: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.endswith("_API_KEY")}
    env["NO_PROGRESS"] = "1"
    return subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_wheel_holds_the_bundled_personas(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(n for n in names if n.startswith("runner/prompts/")) == [f"runner/prompts/{p}.md" for p in PERSONAS]
    assert not any(n.startswith("prompts/") for n in names)


def test_console_script_lists_personas_and_runs_without_a_prompts_folder(installed: tuple[Path, Path],
                                                                        tmp_path: Path) -> None:
    _, script = installed
    assert not (tmp_path / "prompts").exists()
    listing = _script(script, tmp_path, "personas")
    assert listing.returncode == 0, listing.stderr
    assert [line.lstrip("* ").split()[0] for line in listing.stdout.splitlines()[:len(PERSONAS)]] == list(PERSONAS)
    shown = _script(script, tmp_path, "personas", "cardiologist")
    assert shown.returncode == 0, shown.stderr
    bundled = (REPO / "runner" / "prompts" / "cardiologist.md").read_text(encoding="utf-8").strip()
    assert bundled in shown.stdout and "site-packages" in shown.stdout.splitlines()[0]

    write_jsonl(tmp_path / "q.jsonl", [{"question": "What does aspirin do?"}])
    run = _script(script, tmp_path, "--questions", "q.jsonl", "--models", "fake:echo", "--persona",
                  "oncology-researcher,medical-exam")
    assert run.returncode == 0, run.stderr
    for persona in ("oncology-researcher", "medical-exam"):
        (record,) = [json.loads(p.read_text()) for p in (tmp_path / "outputs" / "q" / persona / "echo").glob("*.json")]
        text = (REPO / "runner" / "prompts" / f"{persona}.md").read_text(encoding="utf-8").strip()
        assert record["persona_text"] == text
