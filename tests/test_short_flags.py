"""Short flags: -m/--models, -p/--persona, -q/--questions, -o/--output-dir, through the real command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from runner.cli import build_parser


def _sub_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize(("command", "flags"), [
    ("run", {"-m": "--models", "-p": "--persona", "-q": "--questions", "-o": "--output-dir"}),
    ("score", {"-m": "--models", "-p": "--persona", "-q": "--questions", "-o": "--output-dir"}),
    ("compare", {"-m": "--models", "-p": "--persona", "-o": "--output-dir"}),
    ("report", {"-m": "--models", "-p": "--persona", "-o": "--output-dir"}),
    ("export", {"-m": "--models", "-p": "--persona", "-o": "--output-dir"}),
])
def test_short_flags_are_the_long_options(command: str, flags: dict[str, str]) -> None:
    parser = _sub_parsers()[command]
    by_flag = {s: a for a in parser._actions for s in a.option_strings}
    for short, long in flags.items():
        assert by_flag[short] is by_flag[long]
    assert by_flag["-h"].dest == "help"  # -h is still help everywhere


def test_no_short_flag_is_declared_twice() -> None:
    for name, parser in _sub_parsers().items():
        shorts = [s for a in parser._actions for s in a.option_strings if not s.startswith("--")]
        assert len(shorts) == len(set(shorts)), name


def test_short_flags_through_the_cli(cli, questions_file: Path, tmp_path: Path) -> None:
    proc = cli("-q", str(questions_file), "-m", "fake:echo,fake:async-echo", "-p", "cardiologist", "-o", "out")
    assert proc.returncode == 0, proc.stderr  # run is the default command
    folder = tmp_path / "out" / "questions" / "cardiologist"
    assert sorted(p.name for p in folder.iterdir()) == ["async-echo", "echo"]
    proc = cli("compare", "4", "-o", "out", "-m", "fake:echo", "-p", "cardiologist", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)["question"]
    assert [a["model"] for a in data["answers"]] == ["fake:echo"]
    proc = cli("report", "-o", "out", "-m", "fake:async-echo", "-p", "cardiologist")
    assert proc.returncode == 0 and (tmp_path / "out" / "report.html").is_file()
    proc = cli("score", "-o", "out", "-m", "fake:echo", "-p", "cardiologist", "--json")
    assert proc.returncode == 0, proc.stderr
    assert {(s["model"], s["persona"]) for s in json.loads(proc.stdout)["results"]} == {("fake:echo", "cardiologist")}
    proc = cli("run", "-h")
    assert proc.returncode == 0 and "-m A,B, --models A,B" in proc.stdout and "-q PATH, --questions PATH" in proc.stdout
