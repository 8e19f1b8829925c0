"""Provider declarations and third-party providers found through entry points.

The example packages are read out of ``docs/adding-a-provider.md`` and installed the way pip would leave them
(a module plus a ``*.dist-info`` folder with ``METADATA`` and ``entry_points.txt``) in a folder put on
``PYTHONPATH``; the real command line then runs them in a subprocess. The recipe is known to work as written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from runner.providers import BUILTIN, PROVIDERS, ProviderInfo, ProviderRegistry, is_concurrent, provider_info
from tests.conftest import REPO, write_jsonl

DOC = REPO / "docs" / "adding-a-provider.md"
GROUP = "medical_model_runner.providers"


def doc_files() -> dict[str, str]:
    """The files the recipe shows: each a bold `path` line followed by a fenced code block."""
    text = DOC.read_text(encoding="utf-8")
    return {m.group(1): m.group(2) for m in re.finditer(r"^\*\*`([^`]+)`\*\*\n\n```\w*\n(.*?)^```$", text,
                                                        re.MULTILINE | re.DOTALL)}


def install(site: Path, name: str, version: str, modules: dict[str, str], entry_points: dict[str, str]) -> None:
    """Lay out an installed distribution as pip does: the modules and a ``name-version.dist-info`` folder."""
    site.mkdir(parents=True, exist_ok=True)
    for module, code in modules.items():
        (site / module).write_text(code, encoding="utf-8")
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    lines = "".join(f"{ep} = {value}\n" for ep, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{lines}", encoding="utf-8")


def install_from_doc(site: Path, package: str) -> None:
    """Install the example package ``package`` exactly as ``docs/adding-a-provider.md`` writes it."""
    files = doc_files()
    project = tomllib.loads(files[f"{package}/pyproject.toml"])["project"]
    eps = project["entry-points"][GROUP]
    modules = {path.split("/", 1)[1]: code for path, code in files.items()
               if path.startswith(f"{package}/") and path.endswith(".py")}
    install(site, project["name"], project["version"], modules, eps)


def runner_cli(tmp_path: Path, site: Path, *args: str, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
    """``python medical_model_runner.py ARGS`` with ``site`` on PYTHONPATH, in ``tmp_path``."""
    full_env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "MYAPI_KEY"}
    full_env.update({"NO_PROGRESS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), str(site)])}, **(env or {}))
    return subprocess.run([sys.executable, str(REPO / "medical_model_runner.py"), *args], cwd=tmp_path,
                          env=full_env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def questions(tmp_path: Path) -> Path:
    """Two questions."""
    return write_jsonl(tmp_path / "q.jsonl", [{"question": "What does aspirin do?"},
                                               {"question": "What is a statin?"}])


def answers(out: Path, model_id: str) -> list[str]:
    """The saved answer texts of one model (default persona), in question order."""
    folder = out / "q" / "oncology-researcher" / model_id
    return [(folder / f"{n}.txt").read_text(encoding="utf-8").strip() for n in (1, 2)]


def test_the_recipe_has_both_examples() -> None:
    assert {"myprov/pyproject.toml", "myprov/myprov.py", "myapi/pyproject.toml", "myapi/myapi.py"} <= set(doc_files())
    text = DOC.read_text(encoding="utf-8")
    assert "pip install -e ." in text and "python medical_model_runner.py run --models myprov:anything" in text


def test_plugin_from_the_recipe_runs_and_is_listed(tmp_path: Path, questions: Path) -> None:
    site = tmp_path / "site"
    install_from_doc(site, "myprov")
    proc = runner_cli(tmp_path, site, "run", "--questions", str(questions), "--models", "myprov:x",
                      "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert answers(tmp_path / "out", "x") == ["?od niripsa seod tahW", "?nitats a si tahW"]
    assert "warning" not in proc.stderr
    proc = runner_cli(tmp_path, site, "models")
    assert proc.returncode == 0, proc.stderr
    assert "myprov:<model>  answers by reversing the question" in proc.stdout
    assert "plugin myprov 0.1.0" in proc.stdout


def test_concurrent_plugin_runs_on_the_concurrent_path(tmp_path: Path, questions: Path) -> None:
    site = tmp_path / "site"
    install_from_doc(site, "myapi")  # implements only agenerate: the batched path would fail every answer
    out = tmp_path / "out"
    proc = runner_cli(tmp_path, site, "run", "--questions", str(questions), "--models", "myapi:v1",
                      "--output-dir", str(out))
    assert proc.returncode == 1 and "no API key; set MYAPI_KEY" in proc.stderr  # the key variable it declares
    proc = runner_cli(tmp_path, site, "run", "--questions", str(questions), "--models", "myapi:v1",
                      "--output-dir", str(out), env={"MYAPI_KEY": "secret-value-123"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert answers(out, "v1") == ["v1 says: WHAT DOES ASPIRIN DO?", "v1 says: WHAT IS A STATIN?"]


def test_broken_plugins_warn_and_the_rest_works(tmp_path: Path, questions: Path) -> None:
    site = tmp_path / "site"
    install_from_doc(site, "myprov")
    (site / "badplug.py").write_text("raise RuntimeError('boom at import')\n")
    install(site, "brokenplugs", "1.0", {"notinfo.py": "PROVIDER = 'not a declaration'\n"}, {
        "broken": "badplug:PROVIDER",
        "missing": "no_such_module_xyz:PROVIDER",
        "notinfo": "notinfo:PROVIDER",
        "fake": "myprov:PROVIDER",  # may not replace a built-in
        "renamed": "myprov:PROVIDER",  # declares "myprov"
    })
    proc = runner_cli(tmp_path, site, "models")
    assert proc.returncode == 0, proc.stderr
    warnings = proc.stderr.strip().splitlines()
    assert len(warnings) == 5, proc.stderr
    for name, why in [("broken", "RuntimeError: boom at import"), ("missing", "No module named"),
                      ("notinfo", "not a runner.providers.ProviderInfo"), ("fake", "taken by the built-in"),
                      ("renamed", "declares the provider 'myprov'")]:
        assert any(line.startswith(f"warning: provider plugin {name!r}") and why in line for line in warnings), name
    assert "brokenplugs 1.0" in proc.stderr
    assert "myprov:<model>" in proc.stdout and "fake:echo" in proc.stdout
    proc = runner_cli(tmp_path, site, "run", "--questions", str(questions), "--models", "myprov:x,fake:echo",
                      "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert answers(tmp_path / "out", "x")[0] == "?od niripsa seod tahW"
    assert "You asked: What does aspirin do?" in answers(tmp_path / "out", "echo")[0]  # still the built-in fake
    proc = runner_cli(tmp_path, site, "run", "--questions", str(questions), "--models", "broken:x")
    assert proc.returncode == 2 and "unknown provider 'broken'" in proc.stderr


def test_registry_reads_entry_points_lazily(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    install_from_doc(site, "myprov")
    monkeypatch.syspath_prepend(str(site))
    registry = ProviderRegistry(BUILTIN)
    assert registry["fake"].origin == "built-in" and not registry._plugins_read  # built-ins need no plugin
    assert "myprov" in registry and registry._plugins_read
    assert list(registry)[: len(BUILTIN)] == [info.name for info in BUILTIN]
    assert registry["myprov"].target == "myprov:Reverser" and registry["myprov"].origin == "plugin myprov 0.1.0"
    sys.modules.pop("myprov", None)


def test_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="is not 'module:Class'"):
        ProviderInfo("x", "no-colon")
    with pytest.raises(ValueError, match="is not a simple name"):
        ProviderInfo("a:b", "m:C")
    with pytest.raises(ValueError, match="capabilities"):
        ProviderInfo("x", "m:C", capabilities=("think",))
    with pytest.raises(ValueError, match="kind"):
        ProviderInfo("x", "m:C", kind="oracle")


def test_concurrency_comes_from_the_declaration() -> None:
    def spec(name: str) -> SimpleNamespace:
        provider, _, model_id = name.partition(":")
        return SimpleNamespace(provider=provider, model_id=model_id)

    assert is_concurrent(spec("fake:async-echo")) and not is_concurrent(spec("fake:echo"))
    assert is_concurrent(spec("openai:gpt-4o")) and not is_concurrent(spec("hf:gpt2"))
    assert provider_info("openai").base_url_env == "OPENAI_BASE_URL"
    assert provider_info("hf").local_flags and not provider_info("encoder").local_flags


def test_local_flags_follow_the_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from runner.commands.run import _apply_local_flags
    from runner.core.settings import ModelEntry

    args = argparse.Namespace(quantize="8bit", dtype="float16", trust_remote_code=None)
    assert _apply_local_flags(ModelEntry(name="hf:gpt2"), args).quantize == "8bit"
    assert _apply_local_flags(ModelEntry(name="fake:echo"), args).quantize is None
    info = PROVIDERS["fake"]
    monkeypatch.setitem(PROVIDERS, "fake", info.__class__(**{**vars(info), "local_flags": True}))
    assert _apply_local_flags(ModelEntry(name="fake:echo"), args).dtype == "float16"


def test_base_url_variable_comes_from_the_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.providers.catalog import resolve_model

    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:9/v1")
    assert resolve_model("openai:m").base_url == "http://localhost:9/v1"
    assert resolve_model("fake:echo").base_url is None
    info = PROVIDERS["fake"]
    monkeypatch.setitem(PROVIDERS, "fake", info.__class__(**{**vars(info), "base_url_env": "OPENAI_BASE_URL"}))
    assert resolve_model("fake:echo").base_url == "http://localhost:9/v1"
