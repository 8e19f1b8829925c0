"""The store never writes outside the output folder, and a broken store gives one clear line, never a traceback.

Every file the tool writes goes to a temporary file in its own folder and is renamed over the target (a symbolic
link there is replaced, not followed); a folder on the way that is a link leading outside the output folder is
refused by ``run`` and skipped with a warning by ``compare``, ``report`` and ``score``. A record that cannot be used
(not a regular file, not an object, fields of the wrong type) is named in a warning, skipped by the views and
answered again by the next run; a successful record whose ``.txt`` is gone is answered again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.core.errors import UsageError
from runner.core.records import BadFile, read_json_file, read_record
from runner.core.store import Store, atomic_write, write_output
from tests.conftest import REPO, write_jsonl

Cli = Callable[..., subprocess.CompletedProcess[str]]
QUICK = 60  # seconds: every command here answers at once; a command blocked on a FIFO would not
MCQ = [
    {"id": "a", "question": "Which is a statin?", "options": {"A": "Atorvastatin", "B": "Insulin"}, "answer": "A",
     "task": "medqa"},
    {"id": "b", "question": "Which is an insulin?", "options": {"A": "Atorvastatin", "B": "Insulin"}, "answer": "B",
     "task": "medqa"},
    {"id": "c", "question": "What do statins do?"},
]


@pytest.fixture
def store(tmp_path: Path, cli: Cli) -> Path:
    """outputs/ holding fake:echo's answers to three questions (two multiple-choice) in set ``q``."""
    write_jsonl(tmp_path / "q.jsonl", MCQ)
    proc = cli("run", "--models", "fake:echo", "--questions", "q.jsonl", timeout=QUICK)
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "outputs"


def model_folder(out: Path, model: str = "echo") -> Path:
    [folder] = out.glob(f"q/*/{model}")
    return folder


def outside_file(tmp_path: Path) -> Path:
    path = tmp_path / "elsewhere" / "precious.txt"
    path.parent.mkdir(exist_ok=True)
    path.write_text("precious", encoding="utf-8")
    return path


def run_again(cli: Cli, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli("run", "--models", "fake:echo", "--questions", "q.jsonl", *extra, timeout=QUICK)


def clean(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr


# --- no write outside the output folder ----------------------------------------------------------------------------


def test_score_and_report_replace_planted_links_instead_of_writing_through_them(store: Path, tmp_path: Path,
                                                                                cli: Cli) -> None:
    precious = outside_file(tmp_path)
    names = ("scores.png", "scores.json", "leaderboard.md", "report.html")
    for name in names:
        (store / name).symlink_to(precious)
    proc = cli("score", timeout=QUICK)
    assert proc.returncode == 0, proc.stderr
    assert "chart: outputs/scores.png" in proc.stdout
    proc = cli("report", timeout=QUICK)
    assert proc.returncode == 0, proc.stderr
    assert precious.read_text(encoding="utf-8") == "precious"
    for name in names:
        assert not (store / name).is_symlink() and (store / name).is_file(), name
    assert (store / "scores.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert (store / "report.html").stat().st_mode & 0o777 == 0o644  # meant to be shared
    assert not list(store.glob(".*.tmp"))


def test_a_failing_chart_leaves_the_old_chart_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """matplotlib renders into memory; the file is replaced only by a whole PNG (a kill leaves the old one)."""
    import matplotlib.figure

    from runner.views.scores import collect_scores, render_chart

    records = [{"n": i, "kind": "generator", "model": "fake:echo", "persona": "p", "question": f"Q{i}?",
                "options": {"A": "x", "B": "y"}, "answer": "A", "task": "medqa", "text": "Answer: A"}
               for i in (1, 2)]
    scores = collect_scores(records)
    (tmp_path / "scores.png").write_bytes(b"OLD CHART")

    def dies_half_way(self: object, target: object, **_: object) -> None:
        if hasattr(target, "write"):
            target.write(b"\x89PNG half")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        render_chart(scores, tmp_path / "scores.png", tmp_path)
    assert (tmp_path / "scores.png").read_bytes() == b"OLD CHART"
    assert not list(tmp_path.glob(".*.tmp"))
    monkeypatch.undo()
    assert render_chart(scores, tmp_path / "scores.png", tmp_path) == tmp_path / "scores.png"
    assert (tmp_path / "scores.png").read_bytes().startswith(b"\x89PNG")


def test_a_runs_folder_linked_outside_is_refused_and_not_read(store: Path, tmp_path: Path, cli: Cli) -> None:
    elsewhere = tmp_path / "elsewhere-runs"
    shutil.move(store / "runs", elsewhere)
    (store / "runs").symlink_to(elsewhere, target_is_directory=True)
    before = sorted(p.name for p in elsewhere.iterdir())
    proc = run_again(cli, "--force")
    clean(proc)
    assert proc.returncode == 2
    assert "outputs/runs is a symbolic link" in proc.stderr and "Remove the link" in proc.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == before  # nothing written there
    proc = cli("compare", timeout=QUICK)
    clean(proc)
    assert proc.returncode == 0 and "outputs/runs: a symbolic link to" in proc.stderr


@pytest.mark.parametrize("level", ["set", "persona", "model"])
def test_a_folder_linked_outside_is_refused_by_run_and_skipped_by_the_views(store: Path, tmp_path: Path, cli: Cli,
                                                                            level: str) -> None:
    folder = model_folder(store)
    link = {"set": store / "q", "persona": folder.parent, "model": folder}[level]
    target = tmp_path / "elsewhere" / level
    target.parent.mkdir(exist_ok=True)
    shutil.move(link, target)
    link.symlink_to(target, target_is_directory=True)
    files_before = sorted(str(p) for p in target.rglob("*"))
    for command in (["compare"], ["report"], ["score"]):
        proc = cli(*command, timeout=QUICK)
        clean(proc)
        assert f"{link.relative_to(tmp_path)}: a symbolic link to {target}, outside the output folder" \
               in proc.stderr, (command, proc.stderr)
    proc = run_again(cli)
    clean(proc)
    assert proc.returncode == 2 and "would leave outputs" in proc.stderr and "is a symbolic link to" in proc.stderr
    assert sorted(str(p) for p in target.rglob("*")) == files_before


def test_atomic_write_refuses_a_folder_leading_outside_and_replaces_a_final_link(tmp_path: Path) -> None:
    root, precious = tmp_path / "root", outside_file(tmp_path)
    root.mkdir()
    (root / "away").symlink_to(precious.parent, target_is_directory=True)
    with pytest.raises(UsageError, match=r"away is a symbolic link to .*outside the output folder"):
        atomic_write(root / "away" / "deeper" / "x.json", "{}", root=root)
    assert not (precious.parent / "deeper").exists()  # refused before any folder was made
    (root / "inside").mkdir()
    (root / "alias").symlink_to(root / "inside", target_is_directory=True)
    atomic_write(root / "alias" / "ok.json", "{}", root=root)  # a link inside the root is fine
    assert (root / "inside" / "ok.json").read_text() == "{}"
    (root / "link.txt").symlink_to(precious)
    atomic_write(root / "link.txt", "new", root=root)
    assert precious.read_text() == "precious" and (root / "link.txt").read_text() == "new"
    (root / "adir").mkdir()
    with pytest.raises(UsageError, match=r"cannot write .*adir: .*it is a folder: move it away"):
        write_output(root / "adir", "x", root=root)


# --- a broken store: one clear line, never a traceback --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["symlink", "folder"])
def test_a_lock_that_is_not_a_file_is_a_clear_error(store: Path, tmp_path: Path, cli: Cli, kind: str) -> None:
    precious = outside_file(tmp_path)
    (store / ".lock").unlink()
    if kind == "symlink":
        (store / ".lock").symlink_to(precious)
    else:
        (store / ".lock").mkdir()
    proc = run_again(cli)
    clean(proc)
    assert proc.returncode == 2
    what = "a symbolic link" if kind == "symlink" else "a folder"
    assert f"error: outputs/.lock is {what}, not this tool's lock file; remove it" in proc.stderr
    assert precious.read_text() == "precious"
    for command in ("compare", "report", "score"):  # the readers take no lock
        assert cli(command, timeout=QUICK).returncode == 0


def test_a_runs_file_does_not_stop_the_views(store: Path, cli: Cli) -> None:
    shutil.rmtree(store / "runs")
    (store / "runs").write_text("not a folder")
    for command in ("compare", "report", "score"):
        proc = cli(command, timeout=QUICK)
        clean(proc)
        assert proc.returncode == 0 and "outputs/runs: not a folder" in proc.stderr, (command, proc.stderr)


def test_a_record_that_is_not_an_object_is_answered_again(store: Path, cli: Cli) -> None:
    path = model_folder(store) / "2.json"
    path.write_text("[1, 2]\n")
    for command in ("compare", "report", "score"):
        proc = cli(command, timeout=QUICK)
        clean(proc)
        assert proc.returncode == 0
        assert proc.stderr.count(f"{path.relative_to(store.parent)}: not a JSON object (a JSON array); skipped") == 1
    proc = run_again(cli)
    clean(proc)
    assert proc.returncode == 0 and "not a JSON object" in proc.stderr
    assert json.loads(path.read_text())["n"] == 2  # answered again: the run was not blocked
    assert "not a JSON object" not in run_again(cli).stderr


def test_a_record_with_fields_of_the_wrong_type_is_skipped_with_a_warning(store: Path, cli: Cli) -> None:
    path = model_folder(store) / "1.json"
    record = json.loads(path.read_text())
    record.update(latency_s="slow", options=["A", "B"], persona_text=5, model_options=[1])
    path.write_text(json.dumps(record))
    for command in (["compare"], ["compare", "2"], ["report"], ["score"]):
        proc = cli(*command, timeout=QUICK)
        clean(proc)
        assert proc.returncode == 0, (command, proc.stderr)
        if command == ["compare", "2"]:  # reads only question 2's records: question 1's is not opened
            assert "field 'options'" not in proc.stderr
            continue
        assert f"{path.relative_to(store.parent)}: field 'options': Input should be a valid dictionary (also " \
               "wrong: 'model_options', 'latency_s')" in proc.stderr
        assert "question 1 counts as not answered" in proc.stderr
    report = (store / "report.html").read_text()
    assert "Which is an insulin?" in report and "Which is a statin?" not in report
    proc = run_again(cli)
    clean(proc)
    assert proc.returncode == 0 and "field 'options'" in proc.stderr
    assert read_record(path) is not None  # answered again


def test_a_record_whose_numbers_stand_for_text_does_not_break_a_variant_message(store: Path, cli: Cli) -> None:
    path = model_folder(store) / "1.json"
    record = json.loads(path.read_text())
    record.update(key="other", persona_text=5, persona_sha256="other")  # valid (numbers read as text), unusual
    path.write_text(json.dumps(record))
    proc = run_again(cli)
    clean(proc)
    assert proc.returncode == 2 and "persona text '5' ->" in proc.stderr


def test_a_fifo_in_the_store_never_blocks_a_command(store: Path, cli: Cli) -> None:
    folder = model_folder(store)
    (folder / "2.json").unlink()
    os.mkfifo(folder / "2.json")
    os.mkfifo(store / "runs" / "fifo.json")
    for command in (["compare"], ["compare", "1"], ["report"], ["score"], ["compare", "--json"]):
        proc = cli(*command, timeout=QUICK)  # a blocked open would hit the timeout
        clean(proc)
        assert proc.returncode == 0, (command, proc.stderr)
        # compare 1 reads only question 1's records: the FIFO at 2.json is not even looked at
        assert ("2.json: a FIFO, not a regular file; skipped" in proc.stderr) == (command != ["compare", "1"])
        assert "runs/fifo.json: a FIFO, not a regular file" in proc.stderr
    proc = cli("compare", "2", timeout=QUICK)  # and compare 2 names it without opening it
    assert "2.json: a FIFO, not a regular file; skipped" in proc.stderr
    proc = run_again(cli)
    clean(proc)
    assert proc.returncode == 0 and "2.json: a FIFO" in proc.stderr
    assert (folder / "2.json").is_file() and json.loads((folder / "2.json").read_text())["n"] == 2


def test_a_fifo_or_a_folder_is_never_opened_as_a_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "dir.json").mkdir()
    (tmp_path / "real.json").write_text('{"n": 1}')
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    for name, what in (("fifo.json", "a FIFO"), ("dir.json", "a folder"), ("link.json", "a symbolic link")):
        with pytest.raises(BadFile, match=what):
            read_json_file(tmp_path / name)
    assert read_json_file(tmp_path / "missing.json") is None
    assert read_json_file(tmp_path / "real.json") == {"n": 1}
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BadFile, match="nested too deeply"):
        read_json_file(tmp_path / "deep.json")


def test_files_read_ahead_are_read_as_one_at_a_time(tmp_path: Path) -> None:
    """``read_ahead`` (threads reading the next files while the caller parses) gives each file exactly what
    ``read_file_bytes`` gives, in order: the bytes, None for a file that is gone, the same BadFile for a FIFO, a
    folder or a symbolic link, listed as a regular file or not (the open never follows a link and checks again)."""
    from runner.core.records import read_ahead, read_file_bytes

    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "dir.json").mkdir()
    (tmp_path / "link.json").symlink_to(tmp_path / "dir.json")
    (tmp_path / "empty.json").write_bytes(b"")
    names = []
    for i in range(300):  # enough for several threads and chunks
        odd = ["fifo.json", "dir.json", "link.json", "empty.json", "missing.json"][i % 5]
        name = odd if i % 7 == 0 else f"{i}.json"
        if not (tmp_path / name).exists() and name != "missing.json":
            (tmp_path / name).write_bytes(json.dumps({"n": i, "text": "x" * i}).encode())
        names.append((tmp_path / name, i % 2 == 0))

    def one(path: Path, listed: bool) -> object:
        try:
            return read_file_bytes(path, listed_regular=listed)
        except BadFile as exc:
            return ("BadFile", str(exc))

    ahead = [("BadFile", str(f)) if isinstance(f, BadFile) else f for f in read_ahead(names)]
    assert ahead == [one(path, listed) for path, listed in names]
    assert sum(isinstance(f, tuple) for f in ahead) > 10 and ahead.count(None) > 5 and b"" in ahead


def _unprivileged() -> list[str]:
    """A command prefix under which permissions bite: none for a user; for root, setpriv without DAC override."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
              "--bounding-set=-dac_override,-dac_read_search"]
    if shutil.which("setpriv") is None:
        pytest.skip("root can write to read-only folders; no setpriv to drop that right")
    probe = Path(os.environ.get("TMPDIR", "/tmp"))
    try:
        ok = subprocess.run([*prefix, "true"], capture_output=True, cwd=probe, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    if not ok:
        pytest.skip("root can write to read-only folders, and setpriv cannot drop that right here")
    return prefix


def test_report_and_score_into_a_read_only_folder_are_one_line(store: Path, tmp_path: Path) -> None:
    prefix = _unprivileged()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(NO_PROGRESS="1", PYTHONPATH=str(REPO))
    store.chmod(0o555)
    try:
        for command, name in ((["report"], "report.html"), (["score"], "scores.json")):
            proc = subprocess.run([*prefix, sys.executable, str(REPO / "medical_model_runner.py"), *command],
                                  cwd=tmp_path, env=env, capture_output=True, text=True, timeout=QUICK)
            clean(proc)
            assert proc.returncode == 2, proc.stderr
            lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
            assert lines == [f"error: cannot write outputs/{name}: Permission denied; make outputs writable"
                             + (", or write the report elsewhere with --out PATH" if name == "report.html" else "")]
    finally:
        store.chmod(0o755)


# --- a deleted answer file -----------------------------------------------------------------------------------------


def test_a_deleted_answer_file_is_answered_again(store: Path, cli: Cli) -> None:
    folder = model_folder(store)
    text = (folder / "2.txt").read_text()
    (folder / "2.txt").unlink()
    proc = run_again(cli)
    clean(proc)
    assert proc.returncode == 0
    assert f"{(folder / '2.txt').relative_to(store.parent)}: missing; question 2 is answered again" in proc.stderr
    assert (folder / "2.txt").read_text() == text  # fake:echo answers the same again
    assert "2 answer(s) already saved, skipped" in proc.stderr
    assert "missing" not in run_again(cli).stderr  # whole again: nothing more to do


def test_a_failed_record_needs_no_answer_file(tmp_path: Path) -> None:
    space = Store(tmp_path).questions_set("s")
    space.save("p", "m", 1, {"n": 1, "key": "k", "error": "boom", "text": ""}, None)
    assert space.load_record("p", "m", 1) is not None and not space.is_done("p", "m", 1, "k")
    space.save("p", "m", 2, {"n": 2, "key": "k", "error": None, "text": "fine"}, "fine")
    assert space.is_done("p", "m", 2, "k")
    (tmp_path / "s" / "p" / "m" / "2.txt").unlink()
    assert space.load_record("p", "m", 2) is None and not space.is_done("p", "m", 2, "k")


def test_a_file_system_error_no_layer_expected_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import errno

    from runner import cli
    from runner.core.store import Store

    def full(self: Store) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", str(self.root / ".tmp-x"))

    monkeypatch.chdir(tmp_path)
    (tmp_path / "q.jsonl").write_text('{"question": "What is aspirin?"}\n', encoding="utf-8")
    monkeypatch.setattr(Store, "sweep_temporary_files", full)
    status = cli.main(["--models", "fake:echo", "--questions", "q.jsonl", "--no-progress"])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    assert "error: cannot write outputs/.tmp-x: No space left on device. Free some space" in err
