"""Saved files follow the umask (0o666 less it), as files written any other way do, so a shared folder is readable."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runner.core.store import atomic_write, default_file_mode


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Set the umask (inherited by the CLI's subprocess) and restore it."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_answers_records_and_manifests_follow_the_umask(cli, questions_file: Path, tmp_path: Path, mask: int,
                                                        expected: int) -> None:
    with umask(mask):
        proc = cli("--models", "fake:echo,fake:fail", "--limit", "2")
    assert proc.returncode == 1, proc.stderr  # fake:fail's answers are saved too, with their error
    modes = _modes(tmp_path / "outputs")
    assert {name for name in modes if name.startswith("runs/")} and "questions/set.json" in modes
    assert {name for name in modes if name.endswith(".txt")}
    assert set(modes.values()) == {expected}, modes


def test_scores_are_readable_by_others_under_the_usual_umask(cli, questions_file: Path, tmp_path: Path) -> None:
    with umask(0o022):
        assert cli("--models", "fake:echo").returncode == 0
        proc = cli("score")
    assert proc.returncode == 0, proc.stderr
    modes = _modes(tmp_path / "outputs")
    assert modes["scores.json"] == modes["leaderboard.md"] == 0o644
    assert set(modes.values()) == {0o644}, modes


def test_atomic_write_default_and_explicit_mode(tmp_path: Path) -> None:
    with umask(0o027):
        assert default_file_mode() == 0o640
        atomic_write(tmp_path / "a.json", "{}")
        atomic_write(tmp_path / "b.json", "{}", mode=0o600)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o600
