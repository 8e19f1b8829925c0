"""The output store: question sets, each holding ``<persona>/<model-folder>/<n>.txt`` plus ``<n>.json`` records.

Layout (store version 2)::

    <root>/<set>/set.json                       where the set's questions came from
    <root>/<set>/<persona>/<model>[@<tag>]/<n>.txt and <n>.json
    <root>/runs/<run-id>.json                   one manifest per run

A *set* is one questions file or dataset (named after it, or ``--set NAME``), so two question sets share one
root without ever meeting under the same numbers. A *tag* names a variant of a model's answers (another persona
text, other settings) kept beside the untagged ones. Stores written before sets existed (``<root>/<persona>/…``,
version 1) are read in place and moved into sets by the first run that takes the lock (``migrate_legacy``).

Every file is written atomically (temporary file in the same folder, then rename), so a process killed at any
moment leaves the old file or the new one, never a part; the rename replaces a symbolic link at the target rather
than writing through it. Nothing is written through a folder that is a symbolic link leading outside the output
root (``atomic_write(..., root=)`` refuses with a UsageError naming the link), and the readers skip such folders
with a warning. Only regular files are ever opened for reading (``records.read_json_file``).

The ``.json`` record is written last and is the commit marker: an answer counts as saved only when its record
exists, is a valid record, its key matches, and (for a successful answer) its ``.txt`` exists; anything else is
answered again by the next run. Files are not fsync'd one by one (two fsyncs per answer cost more than the answers
of a fast server); after a power loss a record the filesystem did not keep is simply answered again. Temporary
files left by a killed run are swept at the start of the next one. Nothing
here knows about models.

Reading: ``iter_records`` yields typed ``Record`` objects (``runner.core.records``); ``snapshot`` reads the whole
store once (records, run manifests, sets) for the views, so a command parses each record once.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from runner.core.errors import UsageError
from runner.core.index import Index, KnownChoices
from runner.core.modes import default_file_mode
from runner.core.records import (
    BadFile,
    Record,
    Snapshot,
    ValuePool,
    check_record,
    read_ahead,
    read_json_file,
    read_record,
    read_record_json,
    skipped_note,
    warn_once,
)

SAFE_PART = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,127}$")
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,47}$")
RUNS_DIR = "runs"
# A set's grades: ``<set>/_grades/<judge>/<persona>/<model>/<n>.json`` (no persona name starts with ``_``).
GRADES_DIR = "_grades"
# A set's pairwise comparisons: ``<set>/_pairwise/<judge>/<persona>/<modelA>+vs+<modelB>/<n>.json`` (personas
# compared: ``<personaA>+vs+<personaB>/<model>``); ``engine/pairwise.py`` names the pair folders.
PAIRWISE_DIR = "_pairwise"
# Self-consistency (``--samples K``): sample 1 is the answer itself; sample k >= 2 of a model's answer to question n
# is ``<set>/<persona>/<model>[@<tag>]/_samples/<k>/<n>.json`` (and ``<n>.txt``), out of the way of every answer reader.
SAMPLES_DIR = "_samples"
SET_FILE = "set.json"
LEGACY_SET = "legacy"
DEFAULT_SET = "questions"


def encode_record(record: dict[str, Any]) -> str:
    """A record as saved: compact JSON on one line (no indentation: a store of 150,000 records reads faster), UTF-8
    text as it is; still JSON any tool reads (``python -m json.tool 1.json`` shows it indented)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def atomic_write(path: Path, data: str | bytes, *, root: Path | None = None,
                 mode: int | None = None) -> os.stat_result:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    The data goes to a new temporary file in the same folder (created exclusively, so never through a link), which
    is then renamed over ``path``: a symbolic link at ``path`` is replaced, never followed. With ``root`` (the
    output folder), a folder on the way that is a symbolic link leading outside ``root`` is refused (UsageError)
    before anything is created. ``mode`` sets the file's permissions; by default they follow the umask
    (``default_file_mode``), so colleagues sharing an output folder can read it as they read any other file (the
    temporary file is private until it is complete). Returns the written file's stat (its inode, size and
    modification time are those of ``path`` after the rename).
    """
    with atomic_stream(path, root=root, mode=mode) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        fh.flush()
        written = os.fstat(fh.fileno())  # what the rename keeps: its permissions change only its ctime
    return written


def write_output(path: Path, data: str | bytes, *, root: Path | None = None, mode: int | None = None,
                 fix: str = "") -> Path:
    """``atomic_write`` for a command's own output (report, scores, chart); returns ``path``.

    A failed write becomes one UsageError naming the file, the reason and ``fix`` (what to do), not a traceback.
    """
    with output_stream(path, root=root, mode=mode, fix=fix) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
    return path


@contextmanager
def atomic_stream(path: Path, *, root: Path | None = None, mode: int | None = None) -> Iterator[BinaryIO]:
    """``atomic_write`` for data written a piece at a time: the block writes to the binary file this yields.

    The file is a new temporary file in ``path``'s folder, renamed over ``path`` when the block ends; when the
    block raises, it is removed and ``path`` is left as it was. ``root`` and ``mode`` as for ``atomic_write`` (the
    temporary file stays private until it is complete).
    """
    if root is not None:
        check_inside(root, path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            os.fchmod(fh.fileno(), default_file_mode() if mode is None else mode)  # by descriptor: never a link
            fh.flush()
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


@contextmanager
def output_stream(path: Path, *, root: Path | None = None, mode: int | None = None,
                  fix: str = "") -> Iterator[BinaryIO]:
    """``write_output`` for data written a piece at a time (``atomic_stream``): a failed write, in the block too,
    becomes the same UsageError naming the file, the reason and ``fix``."""
    try:
        with atomic_stream(path, root=root, mode=mode) as fh:
            yield fh
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if path.is_dir() and not path.is_symlink():
            fix = "it is a folder: move it away"
        raise UsageError(f"cannot write {path}: {reason}; {fix or f'make {path.parent} writable'}") from None


def outside_link(root: Path, folder: Path) -> tuple[Path, str] | None:
    """The first folder on the way from ``root`` to ``folder`` that is a symbolic link leading outside ``root``,
    with where it leads; None when ``folder`` stays inside ``root`` (links inside it are followed)."""
    try:
        base, target = root.resolve(), folder.resolve()
    except (OSError, RuntimeError):  # a loop of links
        target = None
    else:
        if target == base or base in target.parents:
            return None
    try:
        parts = folder.relative_to(root).parts
    except ValueError:
        return folder, str(target or folder)
    step = root
    for part in parts:
        step = step / part
        if step.is_symlink():
            return step, os.readlink(step)
    return folder, str(target or folder)


def check_inside(root: Path, folder: Path) -> None:
    """Refuse (UsageError) a folder that leaves the output root, naming the symbolic link that leads out."""
    found = outside_link(root, folder)
    if found is not None:
        link, target = found
        what = f"{link} is a symbolic link to {target}" if link.is_symlink() else f"{link} resolves to {target}"
        raise UsageError(f"output folder {folder} would leave {root}: {what}, outside the output folder; nothing is "
                         f"written through it. Remove the link (or choose another --output-dir)")


def set_name_for(source: str | Path | None) -> str:
    """The default set name of a questions file or dataset: its file stem (``medqa_test.jsonl`` -> ``medqa_test``)."""
    if source is None:
        return DEFAULT_SET
    stem = Path(str(source)).name
    for suffix in (".jsonl", ".json", ".parquet", ".gz"):
        stem = stem.removesuffix(suffix)
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", stem).lstrip("._")[:64]
    return name if name and name != RUNS_DIR else DEFAULT_SET


def check_tag(tag: str | None) -> str | None:
    """A valid variant tag (letters, digits, ``._+-``; up to 48 characters), or a UsageError."""
    if tag is not None and not TAG_RE.match(tag):
        raise UsageError(f"invalid --tag {tag!r}: use letters, digits and ._+- (up to 48 characters, "
                         "starting with a letter or digit)")
    return tag


def with_tag(name: str, tag: str | None) -> str:
    """A model's folder or label for a named variant (``slug@tag``, ``label@tag``); the name alone without a tag."""
    return f"{name}@{tag}" if tag else name


@dataclass(frozen=True)
class SetRef:
    """Which question set a run writes to.

    ``source`` says where the questions came from (a resolved file path or ``dataset:NAME``; None when unknown);
    ``explicit`` is True when the user named the set (``--set``), which lets a run join a set of another source.
    """

    name: str
    source: str | None = None
    explicit: bool = False

    @classmethod
    def for_path(cls, path: str | Path | None, name: str | None = None) -> SetRef:
        """The set of a questions file: named after the file unless ``name`` is given."""
        source = str(Path(path).resolve()) if path is not None else None
        return cls(name=name or set_name_for(path), source=source, explicit=name is not None)


class SetStore:
    """Reads and writes the answers of one question set."""

    def __init__(self, root: Path, name: str) -> None:
        if not SAFE_PART.match(name) or name in (".", "..", RUNS_DIR):
            raise UsageError(f"invalid question set name {name!r}: use letters, digits and ._+- (not 'runs')")
        self.root, self.name = root, name
        self.path = root / name
        self._checked: dict[tuple[str, str], Path] = {}
        self._samples: dict[int, SetStore] = {}

    def model_dir(self, persona: str, folder: str) -> Path:
        """The folder of one model (``slug`` or ``slug@tag``) under one persona; refuses any escaping part."""
        if (persona, folder) in self._checked:
            return self._checked[persona, folder]
        slug, _, tag = folder.partition("@")
        for part in (persona, slug):
            if not SAFE_PART.match(part) or part in (".", ".."):
                raise UsageError(f"unsafe name for an output folder: {part!r}")
        if tag:
            check_tag(tag)
        path = self.path / persona / folder
        check_inside(self.root, path)
        self._checked[persona, folder] = path
        return path

    def load_record(self, persona: str, folder: str, n: int) -> dict[str, Any] | None:
        """The saved record of answer ``n`` (as saved), or None when there is no saved answer.

        Counted as absent, so that the next run answers the question again: no record; a record that cannot be
        used (not a regular file, not JSON, not an object, a field of the wrong type: one warning names it); and a
        successful record whose ``<n>.txt`` is gone (one warning: the record alone is not a saved answer, and
        answering again rebuilds both files the way every answer is written, whatever its kind).
        """
        path = self.model_dir(persona, folder) / f"{n}.json"
        data = read_record_json(path)
        if data is None:
            return None
        record, problem = check_record(data)
        if record is None:
            warn_once(path, problem or "not a valid record", skipped_note(path))
            return None
        # The values as the Record read them (numbers where text belongs become text), unknown keys as saved.
        data = {**data, **record.model_dump(by_alias=True, exclude_unset=True, exclude={"kind"})}
        if not data.get("error"):
            body = path.with_suffix(".txt")
            try:
                regular = stat.S_ISREG(os.lstat(body).st_mode)
                problem = None if regular else "not a regular file"
            except FileNotFoundError:
                problem = "missing"
            except OSError as exc:
                problem = f"cannot be read ({exc.strerror or exc})"
            if problem:
                warn_once(body, problem, f"question {n} is answered again (its record {path.name} alone is not a "
                                         "saved answer)")
                return None
        return data

    def is_done(self, persona: str, folder: str, n: int, key: str) -> bool:
        """True when answer ``n`` is saved, succeeded, and was made for exactly this key."""
        record = self.load_record(persona, folder, n)
        return bool(record and record.get("key") == key and not record.get("error"))

    def save(self, persona: str, folder: str, n: int, record: dict[str, Any], body: str | None,
             chosen: tuple[str | None, str] | None = None) -> None:
        """Save one answer: the ``.txt`` body (when there is one), then the record that commits it.

        A failed answer never replaces a saved, successful answer to the same key. ``chosen``: the letter a
        multiple-choice answer chose and the extractor version that read it, for the index.
        """
        path = self.model_dir(persona, folder)
        if record.get("error"):
            if self.is_done(persona, folder, n, record["key"]):
                return
            stale = path / f"{n}.txt"
            if stale.is_symlink() or stale.exists():
                stale.unlink()
        elif body is not None:
            atomic_write(path / f"{n}.txt", body, root=self.root)
        written = atomic_write(path / f"{n}.json", encode_record(record), root=self.root)
        has_txt = not record.get("error") and (body is not None or (path / f"{n}.txt").is_file())
        Index.of(self.root).note(path / f"{n}.json", record, has_txt, written, chosen)

    def saved_keys(self, persona: str, folder: str) -> dict[int, str]:
        """The key of every answer saved in one model folder (a valid, successful record with its ``.txt``), by
        question number, from the store's index once checked against the files (``core/index.py``).

        A question missing here may still be saved (read its record to know): this is the fast path of a resume.
        """
        rows = Index.of(self.root).folder(self.model_dir(persona, folder))
        return {row.n: row.key for row in rows.values() if row.saved and row.key is not None}

    def grades(self, judge_folder: str) -> SetStore:
        """The grades one judge (``slug`` or ``slug@tag``) gave this set's answers, kept like answers."""
        return self._judge_space(GRADES_DIR, judge_folder)

    def _judge_space(self, kind_dir: str, judge_folder: str) -> SetStore:
        """``<set>/<kind_dir>/<judge>``: where one judge's records of one kind go, a store space like the set's."""
        space = SetStore(self.root, self.name)
        space.path = self.path / kind_dir / judge_folder
        for part in judge_folder.split("@"):
            if not SAFE_PART.match(part) or part in (".", ".."):
                raise UsageError(f"unsafe name for an output folder: {judge_folder!r}")
        check_inside(self.root, space.path)
        return space

    def _judge_records(self, kind_dir: str, question: int | None = None) -> list[Record]:
        """Every record under ``<set>/<kind_dir>/<judge>/<persona>/<folder>/`` (and its ``_samples/<k>/``), judge by
        judge; only question ``question``'s when given."""
        out: list[Record] = []
        root, pool = (self.root if question is None else None), ValuePool()
        for judge_dir in _subdirs(self.path / kind_dir, self.root):
            for persona_dir in _subdirs(judge_dir, self.root):
                for folder in _subdirs(persona_dir, self.root):
                    out.extend(_records_in(folder, self.name, question, root=root, pool=pool))
                    for sample_dir in _subdirs(folder / SAMPLES_DIR, self.root):
                        out.extend(_records_in(sample_dir, self.name, question, root=root, pool=pool))
        return out

    def grade_records(self, question: int | None = None) -> list[Record]:
        """Every grade saved for this set's answers and their samples (``--samples``: under the graded model's
        ``_samples/<k>/``, each record naming its ``sample``), judge by judge; unreadable ones left out, warned.
        With ``question``, only that question's grades are read."""
        return self._judge_records(GRADES_DIR, question)

    def samples(self, k: int) -> SetStore:
        """Where sample ``k`` (2, 3, ...) of each answer is kept, read and written like answers: each model folder's
        ``_samples/<k>/`` (sample 1 is the answer itself, ``<n>.json`` in the model folder)."""
        if k < 2:
            raise ValueError("sample 1 is the answer itself; samples() is for k >= 2")
        if k not in self._samples:
            space = _SampleSpace(self.root, self.name, k)
            space.path = self.path  # a judge's space (``grades``) keeps its samples' grades under its own folders
            self._samples[k] = space
        return self._samples[k]

    def sample_records(self) -> list[Record]:
        """Every saved sample 2..K of this set's answers (``--samples``), model folder by model folder, sample by
        sample; each record's ``sample`` is its number (its folder's). Unreadable ones are left out, warned."""
        out: list[Record] = []
        pool = ValuePool()
        for persona_dir in _subdirs(self.path, self.root):
            if persona_dir.name.startswith("_"):  # _grades, _pairwise: no persona name starts with _
                continue
            for folder in _subdirs(persona_dir, self.root):
                numbered = [(int(d.name), d) for d in _subdirs(folder / SAMPLES_DIR, self.root)
                            if d.name.isascii() and d.name.isdigit() and int(d.name) >= 2]
                for k, sample_dir in sorted(numbered):
                    out.extend(r if r.sample == k else r.model_copy(update={"sample": k})
                               for r in _records_in(sample_dir, self.name, root=self.root, pool=pool))
        return out

    def pairwise(self, judge_folder: str) -> SetStore:
        """The pairwise comparisons one judge (``slug`` or ``slug@tag``) made of this set's answers, kept like
        answers."""
        return self._judge_space(PAIRWISE_DIR, judge_folder)

    def pairwise_records(self) -> list[Record]:
        """Every pairwise comparison saved for this set's answers, judge by judge (unreadable ones left out,
        warned)."""
        return self._judge_records(PAIRWISE_DIR)

    def write_embedding_matrix(self, persona: str, folder: str) -> Path | None:
        """Write ``embeddings.npy`` (rows in question order) and ``embeddings.json`` (row -> n) for an encoder."""
        import io

        import numpy as np

        path = self.model_dir(persona, folder)
        rows = []
        for record in _records_in(path, self.name):
            if record.embedding and record.ok:
                rows.append((record.n, record.embedding))
        if not rows:
            return None
        buffer = io.BytesIO()
        np.save(buffer, np.asarray([v for _, v in rows], dtype=np.float32))
        atomic_write(path / "embeddings.npy", buffer.getvalue(), root=self.root)
        atomic_write(path / "embeddings.json", json.dumps({"rows": [n for n, _ in rows]}) + "\n", root=self.root)
        return path / "embeddings.npy"

    def info(self) -> dict[str, Any] | None:
        """The set's ``set.json`` (where its questions came from), or None before the set exists."""
        path = self.path / SET_FILE
        try:
            data = read_json_file(path)
        except BadFile as exc:
            warn_once(path, str(exc), "read as a set of unknown source")
            return None
        if data is not None and not isinstance(data, dict):
            warn_once(path, "not a JSON object", "read as a set of unknown source")
            return None
        return data

    def claim(self, ref: SetRef) -> None:
        """Create the set, or check that this run's questions belong in it.

        A set named after a file refuses questions from another file of the same name unless the user
        named the set (``--set``): two files never meet under the same question numbers by accident.
        """
        check_inside(self.root, self.path)
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"{self.path} exists and is not a question set folder; choose another --set NAME")
        info = self.info()
        if info is None:
            data = {"name": self.name, "source": ref.source,
                    "created": datetime.now(UTC).isoformat(timespec="seconds")}
            atomic_write(self.path / SET_FILE, json.dumps(data, ensure_ascii=False, indent=1) + "\n", root=self.root)
            return
        saved = info.get("source")
        if ref.explicit or saved is None or ref.source is None or saved == ref.source:
            return
        raise UsageError(f"question set {self.name!r} in {self.root} holds answers to {saved}, not to {ref.source}; "
                         f"give this one its own name with --set NAME, or add it to that set with --set {self.name}")


class _SampleSpace(SetStore):
    """Sample ``k`` of every answer of a set (``SetStore.samples``): each model folder's ``_samples/<k>/``."""

    def __init__(self, root: Path, name: str, k: int) -> None:
        super().__init__(root, name)
        self.k = k
        self._inner: dict[tuple[str, str], Path] = {}

    def model_dir(self, persona: str, folder: str) -> Path:
        """The sample's folder inside the model folder (``<persona>/<model>/_samples/<k>``)."""
        path = self._inner.get((persona, folder))
        if path is None:
            path = super().model_dir(persona, folder) / SAMPLES_DIR / str(self.k)
            check_inside(self.root, path)
            self._inner[persona, folder] = path
        return path


class Store:
    """The output root: its question sets, run manifests and lock."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._sets: dict[str, SetStore] = {}

    def questions_set(self, name: str) -> SetStore:
        """The store of one question set (created on first write)."""
        if name not in self._sets:
            self._sets[name] = SetStore(self.root, name)
        return self._sets[name]

    def check_writable(self) -> None:
        """Fail early, with a clear message, when the output root cannot be written."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".write-test-"):
                pass
        except OSError as exc:
            raise UsageError(f"output directory {self.root} is not writable: {exc.strerror or exc}") from None

    def sweep_temporary_files(self) -> int:
        """Remove ``.*.tmp`` files a killed run left behind; returns how many."""
        count = 0
        if self.root.is_dir():
            for path in self.root.rglob(".*.tmp"):
                with suppress(OSError):
                    path.unlink()
                    count += 1
        return count

    def write_manifest(self, run_id: str, manifest: dict[str, Any]) -> Path:
        """Write (or rewrite) the manifest of one run under ``<root>/runs/``."""
        path = self.root / RUNS_DIR / f"{run_id}.json"
        atomic_write(path, json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", root=self.root)
        return path

    def manifests(self) -> list[dict[str, Any]]:
        """Every usable run manifest, oldest first; one that cannot be used is skipped with a warning naming it."""
        folder = self.root / RUNS_DIR
        if folder.is_symlink() and outside_link(self.root, folder):
            warn_once(folder, f"a symbolic link to {os.readlink(folder)}, outside the output folder {self.root}",
                      "no run manifest is read through it")
            return []
        if not folder.is_dir():
            if folder.exists():
                warn_once(folder, "not a folder", "no run manifest is read (runs/ is where they go: move it away)")
            return []
        out = []
        for path in sorted(folder.glob("*.json")):
            try:
                data = read_json_file(path)
            except BadFile as exc:
                warn_once(path, str(exc), "this run manifest is skipped")
                continue
            problem = manifest_problem(data)
            if problem:
                warn_once(path, problem, "this run manifest is skipped")
                continue
            out.append(data)
        return out

    def set_dirs(self) -> list[Path]:
        """The question set folders under the root, by name (one whose name no set can have is skipped, warned)."""
        out = []
        for path in _subdirs(self.root, self.root):
            if path.name == RUNS_DIR or not _is_set(path):
                continue
            if SAFE_PART.match(path.name) and path.name not in (".", ".."):
                out.append(path)
            else:
                warn_once(path, "not a valid question set name (letters, digits and ._+-)", "skipped (rename it "
                          "to read its answers)")
        return out

    def set_names(self) -> list[str]:
        """Every question set that holds records, legacy (version 1) ones included."""
        names = {p.name for p in self.set_dirs()}
        if self._legacy_dirs():
            names.update(r.set_name for r in self._legacy_records() if r.set_name)
        return sorted(names)

    def iter_records(self, set_name: str | None = None, *, share: bool = True,
                     known: KnownChoices | None = None) -> Iterator[Record]:
        """Every saved record (of one set, or all), in a stable order; each carries its set (``set_name``).

        Each call reads the files again: a command that reads the store more than once takes a ``snapshot``.
        ``share=False``: the values records repeat are not shared (``ValuePool``), for a reader that keeps little
        of each record (``score``: about 10 us a record saved). ``known`` learns each record's row as it is yielded
        (the letter its answer chose, when the index has it: ``KnownChoices``).
        """
        for set_dir in self.set_dirs():
            if set_name is None or set_dir.name == set_name:
                yield from _set_records(set_dir, self.root, share=share, known=known)
        for record in self._legacy_records():
            if set_name is None or record.set_name == set_name:
                yield record

    def sample_records(self, set_name: str | None = None) -> list[Record]:
        """Every saved sample 2..K (``--samples``) of one set's answers, or of every set's
        (``SetStore.sample_records``); sample 1 of each is the answer itself, among ``iter_records``."""
        return [r for p in self.set_dirs() if set_name in (None, p.name)
                for r in self.questions_set(p.name).sample_records()]

    def snapshot(self, set_name: str | None = None, question: int | None = None, *,
                 personas: set[str] | None = None, models: set[str] | None = None,
                 records: bool = True) -> Snapshot:
        """One walk over the store: its records (of one set, or all), run manifests and sets, each file read once.

        The views take a snapshot, so a command that shows the store several ways parses each record once. With
        ``question``, only that question's records are read (``compare N``: one file per model and persona, however
        large the store); version-1 stores are read whole. ``personas`` and ``models`` (names as ``Record.names``
        gives them) leave out the folders the index says hold none of them, unread; the records kept are not
        filtered further (the views filter them as before). ``records=False``: the manifests and sets only, for a
        view that reads the records once as they come (``iter_records``), so that it never holds them all.
        """
        manifests = self.manifests()
        set_dirs = self.set_dirs()
        infos = {p.name: info for p in set_dirs if (info := self.questions_set(p.name).info()) is not None}
        legacy = list(self._legacy_records(manifests))  # every one: their sets are known only once read
        found = [r for p in set_dirs if set_name in (None, p.name) and records
                 for r in _set_records(p, self.root, question, personas, models)]
        found += [r for r in legacy if set_name in (None, r.set_name) and question in (None, r.n) and records]
        names = {p.name for p in set_dirs} | {r.set_name for r in legacy if r.set_name}
        return Snapshot(root=self.root, records=found, manifests=manifests, set_names=sorted(names), infos=infos,
                        scope=set_name)

    def _legacy_dirs(self) -> list[Path]:
        return [p for p in _subdirs(self.root, self.root) if p.name != RUNS_DIR and _is_legacy_persona(p)]

    def _legacy_records(self, manifests: list[dict[str, Any]] | None = None) -> Iterator[Record]:
        """Records of a version-1 store (``<root>/<persona>/<model>/``), each given the set of its run."""
        legacy = self._legacy_dirs()
        if not legacy:
            return
        runs = {m.get("run_id"): m for m in (self.manifests() if manifests is None else manifests)}
        for persona_dir in legacy:
            for folder in _subdirs(persona_dir, self.root):
                for record in _records_in(folder):
                    yield record.model_copy(update={"set_name": legacy_set_name(runs.get(record.run_id))})

    def migrate_legacy(self) -> int:
        """Move a version-1 store's answers into question sets (the set of the run that made each); returns how many.

        Each answer's ``.txt`` moves before its record, so a kill half-way leaves every answer whole, in one
        place or the other; the next run finishes the move. Encoder matrices are rebuilt per set.
        """
        legacy = self._legacy_dirs()
        if not legacy:
            return 0
        runs = {m.get("run_id"): m for m in self.manifests()}
        moved, encoders = 0, set()
        for persona_dir in legacy:
            for folder in _subdirs(persona_dir):
                for path in _numbered(folder):
                    record = read_record_json(path) or {}
                    target = self.questions_set(legacy_set_name(runs.get(record.get("run_id"))))
                    if target.info() is None:
                        target.claim(SetRef(target.name))
                    dest = target.model_dir(persona_dir.name, folder.name)
                    dest.mkdir(parents=True, exist_ok=True)
                    body = path.with_suffix(".txt")
                    if body.exists():
                        os.replace(body, dest / body.name)
                    os.replace(path, dest / path.name)
                    moved += 1
                    if record.get("embedding"):
                        encoders.add((target.name, persona_dir.name, folder.name))
                for extra in ("embeddings.npy", "embeddings.json"):
                    with suppress(OSError):
                        (folder / extra).unlink()
                with suppress(OSError):
                    _remove_empty(folder)
            with suppress(OSError):
                _remove_empty(persona_dir)
        for set_name, persona, folder_name in sorted(encoders):
            self.questions_set(set_name).write_embedding_matrix(persona, folder_name)
        return moved

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the output root's lock for a run; a second run into the same root fails clearly.

        The lock file is opened without following a link (by filelock); a ``.lock`` that is not a regular file,
        or a ``runs`` folder that is a link leading outside the root, stops the run with a message saying what
        to remove.
        """
        from filelock import FileLock, Timeout

        self.check_writable()
        path = self.root / ".lock"
        try:
            mode: int | None = os.lstat(path).st_mode
        except OSError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            kind = ("a symbolic link" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode)
                    else "not a regular file")
            raise UsageError(f"{path} is {kind}, not this tool's lock file; remove it (no run of this tool uses "
                             "it) and run again")
        runs = self.root / RUNS_DIR
        check_inside(self.root, runs)
        lock = FileLock(str(path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise UsageError(f"another run is writing to {self.root} (lock file {path}); "
                             "wait for it to finish or use a different --output-dir") from None
        except OSError as exc:
            raise UsageError(f"cannot take the lock file {path}: {exc.strerror or exc}; remove it if it is not a "
                             "regular file, or use a different --output-dir") from None
        try:
            self.sweep_temporary_files()
            moved = self.migrate_legacy()
            if moved:
                import logging

                logging.getLogger("runner").info("%s: moved %d saved answer(s) into question sets "
                                                 "(the store layout of this version)", self.root, moved)
            yield
        finally:
            lock.release()


def legacy_set_name(manifest: dict[str, Any] | None) -> str:
    """The set a version-1 answer belongs to: named after the questions file (or dataset) of the run that made it."""
    if not manifest:
        return LEGACY_SET
    path = (manifest.get("questions") or {}).get("path")
    if path:
        return set_name_for(path)
    argv = manifest.get("argv") or []
    sources = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--data", "--questions", "--dataset")]
    sources += [a.split("=", 1)[1] for a in argv if a.startswith(("--data=", "--questions=", "--dataset="))]
    return set_name_for(sources[0]) if len(sources) == 1 else LEGACY_SET


MANIFEST_TYPES: dict[str, type | tuple[type, ...]] = {
    "run_id": str, "started": str, "finished": str, "status": str, "set": str, "tag": str, "method": str,
    "kind": str, "python": str, "platform": str, "questions": dict, "settings": dict, "packages": dict,
    "process": dict, "argv": list, "models": list, "personas": list, "summary": list, "sets": list,
}
_MANIFEST_ITEMS = {"argv": str, "models": dict, "personas": dict, "summary": dict, "sets": str}


def manifest_problem(data: Any) -> str | None:
    """What makes a run manifest unusable (a field of the wrong type, in words), or None."""
    if not isinstance(data, dict):
        return "not a JSON object"
    for name, kind in MANIFEST_TYPES.items():
        value = data.get(name)
        if value is not None and not isinstance(value, kind):
            return f"field {name!r} has the wrong type"
        item = _MANIFEST_ITEMS.get(name)
        if item is not None and value is not None and not all(isinstance(x, item) for x in value):
            return f"field {name!r} holds an item of the wrong type"
    return None


def _subdirs(path: Path, root: Path | None = None) -> list[Path]:
    """The real sub-folders of ``path``, by name.

    Symbolic links are not followed: one leading inside the root is read through its real folder, and one leading
    outside it (``root`` given) is skipped with a warning, as ``run`` refuses to write through it.
    """
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        return []
    out = []
    for entry in entries:
        try:
            if entry.is_symlink():
                link = Path(entry.path)
                if root is not None and entry.is_dir() and outside_link(root, link):
                    warn_once(link, f"a symbolic link to {os.readlink(link)}, outside the output folder {root}",
                              "skipped (nothing is read or written through it)")
                continue
            if entry.is_dir(follow_symlinks=False):
                out.append(Path(entry.path))
        except OSError:
            continue
    return out


def _numbered(folder: Path) -> list[Path]:
    return sorted((p for p in folder.glob("*.json") if p.stem.isascii() and p.stem.isdigit()),
                  key=lambda p: int(p.stem))


def _set_records(set_dir: Path, root: Path, question: int | None = None, personas: set[str] | None = None,
                 models: set[str] | None = None, share: bool = True,
                 known: KnownChoices | None = None) -> Iterator[Record]:
    """The records of one question set folder, persona by persona, model by model (only question ``question``'s
    when given; folders of other ``personas``, or that the index says hold none of ``models``, left out)."""
    pool = ValuePool() if share else None
    index = Index.of(root)
    for persona_dir in _subdirs(set_dir, root):
        if personas is not None and persona_dir.name not in personas:
            continue
        for folder in _subdirs(persona_dir, root):
            if models is not None and question is None:
                names = index.model_names(folder)
                if names is not None and not names & models:
                    continue
            yield from _records_in(folder, set_dir.name, question, root=root, pool=pool, known=known)


def _records_in(folder: Path, set_name: str | None = None, question: int | None = None, *,
                root: Path | None = None, pool: ValuePool | None = None,
                known: KnownChoices | None = None) -> Iterator[Record]:
    """The valid records of one model folder, in number order (unreadable or invalid ones left out); with
    ``question``, only that question's record is read (no listing of the folder's files).

    With ``root``, the folder is listed through the store's index (``core/index.py``), which it also brings up to
    date; ``pool`` shares the values records repeat (``ValuePool``); ``known`` is told each record's row.
    """
    if question is None and root is not None:
        index = Index.of(root)
        rows, unread = index.folder_read(folder, defer=True)
        ordered = sorted(rows.values(), key=lambda r: r.n)
        where = str(folder)
        paths = [(os.path.join(where, row.name), row.problem is None) for row in ordered]
        for row, (path, listed), fetched in zip(ordered, paths, read_ahead(paths), strict=True):
            if row.name in unread:  # new or changed since indexed: read once, here, and its row written
                row, record, problem = index.read_unread(folder, row, set_name, fetched)
                if problem:
                    warn_once(path, problem, skipped_note(path))
                if record is not None and pool is not None:
                    record = pool.share(record)
            else:  # a path as text: a Path object per file is ~5 us, at 150,000 files
                record = read_record(path, set_name, listed_regular=listed, pool=pool, fetched=fetched)
            if record is not None:
                if known is not None:
                    known.seen(record, index, folder, row)
                yield record
        return
    paths = _numbered(folder) if question is None else [folder / f"{question}.json"]
    for path in paths:
        if question is not None and not os.path.lexists(path):
            continue
        record = read_record(path, set_name, pool=pool)
        if record is not None:
            yield record


def _is_legacy_persona(path: Path) -> bool:
    """A version-1 persona folder: no ``set.json``, and numbered records one level down."""
    if (path / SET_FILE).exists():
        return False
    return any(_numbered(folder) for folder in _subdirs(path))


def _is_set(path: Path) -> bool:
    """A question set folder: its ``set.json``, or numbered records two levels down (a set whose file was lost)."""
    if (path / SET_FILE).exists():
        return True
    return any(_numbered(folder) for persona in _subdirs(path) for folder in _subdirs(persona))


def _remove_empty(path: Path) -> None:
    for child in path.iterdir():
        if child.name.startswith(".") and child.name.endswith(".tmp"):
            child.unlink()
    path.rmdir()


