"""The store's index: ``<output root>/index.db``, an SQLite database (WAL mode) of what every saved record is.

The per-answer files stay the source of truth (each answer is committed by its own atomic rename); the index is a
cache of what they hold, so that a resume or a view does not open 150,000 files to learn which answers exist::

    sqlite3 outputs/index.db "select model, persona, count(*), sum(ok) from records group by 1, 2"

Schema (``SCHEMA_VERSION``; version 1 gains the letter columns in place, any other version is rebuilt):

``records``: one row per numbered record file (``<n>.json``) under a question set, valid or not.
    ``path`` (primary key, relative to the root, ``/``-separated), ``folder`` (its folder, relative), ``n``,
    ``set_name``, ``space`` (``""`` for answers, ``_grades/<judge>`` or ``_pairwise/<judge>`` for judgements),
    ``persona``, ``model_folder`` (``slug`` or ``slug@tag``; for a pair ``a+vs+b``), ``sample`` (``--samples``: 2..K
    for the files under ``_samples/<k>/``, else NULL), ``kind`` (``generate``, ``embed``, ``loglik``, ``grade``,
    ``pairwise``), ``key`` (the answer key), ``ok`` (1 without error), ``error``, ``has_txt`` (its ``<n>.txt``
    exists), ``model``, ``alias``, ``slug``, ``model_id``, ``tag``, ``task``, ``answer`` (the right letter),
    ``prompt_tokens``, ``completion_tokens``, ``reasoning_tokens``, ``latency_s``, ``score`` (a grade's score),
    ``run_id``, ``time``, ``problem`` (why the file cannot be used; NULL for a valid record), the file as
    indexed: ``ino``, ``mtime_ns``, ``size``, and for a multiple-choice answer ``chosen``, the letter its text
    chose (NULL: unparseable), with ``chosen_by``, the version of the letter extractor that read it (NULL: not read
    yet). A run fills both in as it saves each answer, a view the ones it had to extract; a letter read by another
    version of the extractor is read again, never used.
``meta``: ``schema_version``.

Never trusted over the files: before a folder's rows are used, the folder is listed and each record file's inode,
modification time and size compared with its row (``os.scandir``: about 0.2 s per 100,000 files here); a file that
is new or differs is read again, a row whose file is gone is dropped, and a changed ``<n>.txt`` updates ``has_txt``.
A run adds each record's row as it is saved (buffered, written every ``FLUSH_ROWS`` rows or ``FLUSH_SECONDS`` and at
the end of the run), so the next command finds the index current; rows lost to a kill are found again by that
check. An index that is missing, of another schema, or corrupt is rebuilt from the files; one that cannot be written
(a read-only store, a locked database) is read as far as it can be and otherwise left out: every reader then reads
the files, as it did before the index existed.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sqlite3
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.core.modes import default_file_mode
from runner.core.records import NOT_FETCHED, Fetched, inspect_record

log = logging.getLogger("runner")

INDEX_FILE = "index.db"
SCHEMA_VERSION = "2"
FLUSH_ROWS = 2000
FLUSH_SECONDS = 2.0
MAX_OPEN = 4  # databases one process keeps open at once
SAMPLES_DIR = "_samples"  # the same folder name as ``store.SAMPLES_DIR`` (kept here: the store imports this module)

# Columns taken from the record (name in the record -> column); the rest describe the file and where it lies.
_RECORD_COLUMNS = ("kind", "key", "error", "model", "alias", "slug", "model_id", "tag", "task", "answer",
                   "prompt_tokens", "completion_tokens", "reasoning_tokens", "latency_s", "run_id", "time")
_COLUMNS = ("path", "folder", "n", "set_name", "space", "persona", "model_folder", "sample", "ok", "has_txt",
            "score", "problem", "ino", "mtime_ns", "size", "chosen", "chosen_by", *_RECORD_COLUMNS)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS records (
    path TEXT PRIMARY KEY, folder TEXT NOT NULL, n INTEGER NOT NULL, set_name TEXT, space TEXT, persona TEXT,
    model_folder TEXT, sample INTEGER, ok INTEGER, has_txt INTEGER, score REAL, problem TEXT,
    ino INTEGER, mtime_ns INTEGER, size INTEGER, chosen TEXT, chosen_by TEXT,
    {", ".join(f"{c} {'INTEGER' if c.endswith('tokens') else 'REAL' if c == 'latency_s' else 'TEXT'}"
               for c in _RECORD_COLUMNS)}
);
CREATE INDEX IF NOT EXISTS records_folder ON records (folder);
CREATE INDEX IF NOT EXISTS records_question ON records (set_name, n);
"""


_OPEN: dict[str, Index] = {}  # root -> its index, least recently used first
_OPEN_LOCK = threading.Lock()


@dataclass(frozen=True)
class Row:
    """What the index knows of one record file (the columns a reader of the store needs)."""

    name: str  # the file name, ``<n>.json``
    n: int
    ino: int
    mtime_ns: int
    size: int
    has_txt: bool
    key: str | None
    ok: bool
    problem: str | None  # why the file cannot be used; None for a valid record
    chosen: str | None = None  # the letter the answer chose, as extractor ``chosen_by`` read it
    chosen_by: str | None = None  # None: not read yet

    @property
    def saved(self) -> bool:
        """A saved answer, as ``SetStore.load_record`` counts one: a valid, successful record with its ``.txt``."""
        return self.problem is None and self.ok and self.has_txt


class KnownChoices:
    """The letters the index holds for the answers a stream of records yields (``Store.iter_records(known=...)``),
    as extractor ``version`` read them: a view that scores 150,000 answers extracts none it extracted before.

    The stream notes each record's row as it yields it (``seen``); ``get`` answers for that last record only (None
    when the index has no letter of this version for it); ``put`` hands back a letter the view extracted, written to
    the index if the file is still the one its row describes. An empty ``version`` (the extractor's source could not
    be read) turns it off.
    """

    def __init__(self, version: str) -> None:
        self.version = version
        self._last: tuple[Any, Index, Path, Row] | None = None

    def seen(self, record: Any, index: Index, folder: Path, row: Row) -> None:
        """``record`` (read from ``row``'s file in ``folder``) is about to be yielded."""
        self._last = (record, index, folder, row)

    def get(self, record: Any) -> tuple[str | None] | None:
        """``(letter,)`` as the index holds it for ``record`` (the last one seen), else None."""
        last = self._last
        if last is None or last[0] is not record or not self.version or last[3].chosen_by != self.version:
            return None
        return (last[3].chosen,)

    def put(self, record: Any, chosen: str | None) -> None:
        """The letter extracted from ``record`` (the last one seen), for the index."""
        last = self._last
        if last is not None and last[0] is record and self.version:
            last[1].remember_choice(last[2], last[3], chosen, self.version)


class Index:
    """The index of one output root (one per root and process: ``Index.of``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / INDEX_FILE
        self._db: sqlite3.Connection | None = None
        self._unusable = False
        self._lock = threading.RLock()
        self._pending: list[tuple[Any, ...]] = []
        self._choices: list[tuple[Any, ...]] = []  # letters views extracted (``remember_choice``)
        self._places: dict[Path, tuple[str, str | None, str, str | None, str | None, int | None]] = {}
        self._last_flush = time.monotonic()

    @classmethod
    def of(cls, root: Path) -> Index:
        """The index of ``root`` (one object per root and process, so a run's writes and reads meet)."""
        name = os.path.abspath(root)  # no system call: asked once per saved record
        with _OPEN_LOCK:
            index = _OPEN.pop(name, None) or cls(root)
            _OPEN[name] = index  # the most recently used last
            closing = [_OPEN.pop(old) for old in list(_OPEN)[:-MAX_OPEN]]
        for old in closing:  # a process that reads many stores (tests) keeps a few databases open, not all
            old.close()
        return index

    @classmethod
    def flush_all(cls) -> None:
        """Write every buffered row of every open index (end of a run; at exit)."""
        with _OPEN_LOCK:
            indexes = list(_OPEN.values())
        for index in indexes:
            index.flush()

    @classmethod
    def forget_all(cls) -> None:
        """Close every open index and forget what this process checked (the files may change under it: tests)."""
        with _OPEN_LOCK:
            indexes = list(_OPEN.values())
            _OPEN.clear()
        for index in indexes:
            index.close()

    # -- the database ---------------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection | None:
        """The open database, created or rebuilt when missing, of another schema or corrupt; None when unusable."""
        if self._db is not None or self._unusable:
            return self._db
        if not self.root.is_dir():
            return None
        for attempt in (1, 2):
            try:
                self._db = self._open_db()
                return self._db
            except sqlite3.DatabaseError as exc:  # corrupt, not a database, or of another schema: rebuild once
                self._close_db()
                if attempt == 2 or not self._remove(f"{exc}"):
                    break
            except (sqlite3.Error, OSError) as exc:
                log.debug("index %s not used: %s", self.path, exc)
                self._close_db()
                break
        self._unusable = True
        return None

    def _open_db(self) -> sqlite3.Connection:
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
            raise sqlite3.DatabaseError("not a regular file")
        if not self.path.exists():  # created with the permissions any new file gets (SQLite's own are 0644)
            with contextlib.suppress(FileExistsError):
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                             default_file_mode())
                os.fchmod(fd, default_file_mode())
                os.close(fd)
        db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            version = None
            if db.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone():
                found = db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
                version = found[0] if found else None
                if version == "1":  # the letters came in version 2: two columns added, nothing read again
                    db.executescript("BEGIN; ALTER TABLE records ADD COLUMN chosen TEXT; "
                                     "ALTER TABLE records ADD COLUMN chosen_by TEXT; "
                                     f"UPDATE meta SET value = '{SCHEMA_VERSION}' WHERE name = 'schema_version'; "
                                     "COMMIT;")
                    version = SCHEMA_VERSION
                if version != SCHEMA_VERSION:
                    raise sqlite3.DatabaseError(f"schema version {version}, not {SCHEMA_VERSION}")
            else:
                db.executescript(_SCHEMA)
                db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            db.execute("SELECT count(*) FROM records WHERE rowid < 0").fetchone()  # reads a page: finds corruption
        except BaseException:
            db.close()
            raise
        return db

    def _remove(self, why: str) -> bool:
        """Delete a database that cannot be used (and its WAL files), to rebuild it; False when it cannot be."""
        try:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.path}{suffix}")
        except OSError:
            return False
        log.info("%s: %s; rebuilt from the saved files", self.path, why)
        return True

    def _close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def close(self) -> None:
        """Write what is buffered and close the database."""
        with self._lock:
            self.flush()
            self._close_db()

    def _execute(self, sql: str, rows: list[tuple[Any, ...]] | None = None) -> list[tuple[Any, ...]] | None:
        """Run one statement (``executemany`` with ``rows``); None when the database cannot be used now."""
        db = self._connect()
        if db is None:
            return None
        try:
            if rows is None:
                return db.execute(sql).fetchall()
            db.execute("BEGIN")
            try:
                db.executemany(sql, rows)
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
            return []
        except sqlite3.OperationalError as exc:  # locked past the timeout, read-only, disk full: the files serve
            log.debug("index %s: %s", self.path, exc)
            return None
        except sqlite3.DatabaseError as exc:  # corrupted while open: rebuilt by the next command
            log.debug("index %s: %s", self.path, exc)
            self._close_db()
            self._remove(str(exc))
            self._unusable = True
            return None

    # -- reading --------------------------------------------------------------------------------------------
    def folder(self, folder: Path) -> dict[str, Row]:
        """The rows of one record folder's files, by file name, after checking them against the files.

        Files that are new or changed since they were indexed are read (and their rows written); rows of files that
        are gone are dropped. A folder that cannot be listed has no rows.
        """
        return self.folder_read(folder)[0]

    def folder_read(self, folder: Path, defer: bool = False) -> tuple[dict[str, Row], set[str]]:
        """``folder``'s rows, as ``folder`` gives them; with ``defer``, the files that are new or changed are not
        read here: their names are returned (the second item, rows with only the file's stat), for a reader of
        every record to read each once with ``read_unread`` (nothing parsed is held for a whole folder)."""
        rel = self._rel(folder)
        with self._lock:
            self.flush()  # this process's own rows first, so its fresh files are not read again
            on_disk = _list_folder(folder)
            if on_disk is None:
                return {}, set()
            rows = {} if self._connect() is None else self._rows(rel)
            changed: list[tuple[Any, ...]] = []
            out: dict[str, Row] = {}
            unread: set[str] = set()
            for name, (ino, mtime_ns, size, regular, has_txt) in on_disk.items():
                row = rows.get(name)
                if row is not None and (row.ino, row.mtime_ns, row.size) == (ino, mtime_ns, size):
                    if row.has_txt != has_txt:
                        row = Row(name, row.n, ino, mtime_ns, size, has_txt, row.key, row.ok, row.problem,
                                  row.chosen, row.chosen_by)
                        changed.append(self._columns(folder, name, None, row))
                    out[name] = row
                    continue
                row = Row(name, int(name[:-5]), ino, mtime_ns, size, has_txt, None, False,
                          None if regular else "not a regular file")
                if defer:
                    unread.add(name)
                else:
                    data, _, problem = _read(folder / name)
                    row = _described(row, data, problem)
                    changed.append(self._columns(folder, name, data, row))
                out[name] = row
            gone = [(f"{rel}/{name}",) for name in rows if name not in on_disk]
            if changed:
                self._execute(f"INSERT OR REPLACE INTO records ({', '.join(_COLUMNS)}) "
                              f"VALUES ({', '.join('?' * len(_COLUMNS))})", changed)
            if gone:
                self._execute("DELETE FROM records WHERE path = ?", gone)
            return out, unread

    def read_unread(self, folder: Path, row: Row, set_name: str | None = None,
                    fetched: Fetched = NOT_FETCHED) -> tuple[Row, Any, str | None]:
        """Read the file of a row ``folder_read(defer=True)`` left unread (``fetched``: its bytes as ``read_ahead``
        read them): its row as now known, its Record (``set_name`` filled in; None when it cannot be used) and what
        is wrong with it (None when usable or gone); the row is buffered for the database like a run's."""
        data, record, problem = _read(folder / row.name, set_name, fetched)
        row = _described(row, data, problem)
        with self._lock:
            self._pending.append(self._columns(folder, row.name, data, row))
            if len(self._pending) >= FLUSH_ROWS:
                self.flush()
        return row, record, None if problem == _MISSING else problem

    def model_names(self, folder: Path) -> set[str] | None:
        """Every name a model filter may use for the records of one folder (as ``Record.names``: model, alias,
        slug, model id, each also ``name@tag``), after checking the folder; None when the index cannot say."""
        self.folder(folder)
        if self._connect() is None:
            return None
        found = self._execute_query("SELECT DISTINCT model, alias, slug, model_id, tag FROM records "
                                    "WHERE folder = ? AND problem IS NULL", (self._rel(folder),))
        names: set[str] = set()
        for *spellings, tag in found:
            plain = {str(v) for v in spellings if v}
            names |= plain | ({f"{name}@{tag}" for name in plain} if tag else set())
        return names

    def _rows(self, rel: str) -> dict[str, Row]:
        found = self._execute_query("SELECT path, n, ino, mtime_ns, size, has_txt, key, ok, problem, chosen, "
                                    "chosen_by FROM records WHERE folder = ?", (rel,))
        out = {}
        for path, n, ino, mtime_ns, size, has_txt, key, ok, problem, chosen, chosen_by in found:
            name = path.rsplit("/", 1)[-1]
            out[name] = Row(name, n, ino, mtime_ns, size, bool(has_txt), key, bool(ok), problem, chosen, chosen_by)
        return out

    def _execute_query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        db = self._connect()
        if db is None:
            return []
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []
        except sqlite3.DatabaseError as exc:
            self._close_db()
            self._remove(str(exc))
            self._unusable = True
            return []

    # -- writing --------------------------------------------------------------------------------------------
    def note(self, path: Path, record: dict[str, Any], has_txt: bool, st: os.stat_result | None = None,
             chosen: tuple[str | None, str] | None = None) -> None:
        """A record a run has just saved at ``path`` (its ``.txt`` written when ``has_txt``; ``st``: the file's stat
        when the writer has it; ``chosen``: the letter its answer chose and the extractor version that read it),
        buffered for the database (rows lost to a kill are found again by the next check against the files)."""
        if st is None:
            try:
                st = os.lstat(path)
            except OSError:
                return
        folder, name = path.parent, path.name
        row = Row(name, int(name[:-5]), st.st_ino, st.st_mtime_ns, st.st_size, has_txt,
                  _text(record.get("key")), not record.get("error"), None, *(chosen or (None, None)))
        with self._lock:
            self._pending.append(self._columns(folder, name, record, row))
            if len(self._pending) >= FLUSH_ROWS or time.monotonic() - self._last_flush >= FLUSH_SECONDS:
                self.flush()

    def remember_choice(self, folder: Path, row: Row, chosen: str | None, version: str) -> None:
        """The letter a view extracted from the answer of ``row`` (a row ``folder_read`` gave), buffered like a run's
        rows; written only where the file is still the one that row describes (same inode, time and size)."""
        with self._lock:
            self._choices.append((chosen, version, f"{self._rel(folder)}/{row.name}", row.ino, row.mtime_ns,
                                  row.size))
            if len(self._choices) >= FLUSH_ROWS * 10:
                self.flush()

    def flush(self) -> None:
        """Write the buffered rows (one transaction); rows that cannot be written are left to the next check."""
        with self._lock:
            pending, self._pending = self._pending, []
            choices, self._choices = self._choices, []
            self._last_flush = time.monotonic()
            if pending:
                self._execute(f"INSERT OR REPLACE INTO records ({', '.join(_COLUMNS)}) "
                              f"VALUES ({', '.join('?' * len(_COLUMNS))})", pending)
            if choices:
                self._execute("UPDATE records SET chosen = ?, chosen_by = ? "
                              "WHERE path = ? AND ino = ? AND mtime_ns = ? AND size = ?", choices)

    # -- helpers ---------------------------------------------------------------------------------------------
    def _place(self, folder: Path) -> tuple[str, str | None, str, str | None, str | None, int | None]:
        """Where a folder lies: its relative path, set, space, persona, model folder and sample (once per folder)."""
        place = self._places.get(folder)
        if place is None:
            rel = self._rel(folder)
            parts = rel.split("/")
            sample = None
            if len(parts) >= 2 and parts[-2] == SAMPLES_DIR and parts[-1].isdigit():
                sample, parts = int(parts[-1]), parts[:-2]
            place = self._places[folder] = (
                rel, parts[0] if parts else None,
                "/".join(parts[1:3]) if len(parts) >= 5 and parts[1].startswith("_") else "",
                parts[-2] if len(parts) >= 3 else None, parts[-1] if len(parts) >= 3 else None, sample)
        return place

    def _rel(self, folder: Path) -> str:
        try:
            return folder.relative_to(self.root).as_posix()
        except ValueError:
            return folder.as_posix()

    def _columns(self, folder: Path, name: str, data: dict[str, Any] | None, row: Row) -> tuple[Any, ...]:
        """The values of one row, in ``_COLUMNS`` order (``data`` None: the record's own columns left empty)."""
        rel, set_name, space, persona, model_folder, sample = self._place(folder)
        values = dict.fromkeys(_RECORD_COLUMNS)
        score = None
        if data:
            for column in _RECORD_COLUMNS:
                value = data.get(column)
                values[column] = value if isinstance(value, (str, int, float)) and not isinstance(value, bool) \
                    else None
            found = data.get("score")
            score = float(found) if isinstance(found, (int, float)) and not isinstance(found, bool) else None
        return (f"{rel}/{name}", rel, row.n, set_name, space, persona, model_folder, sample, int(row.ok),
                int(row.has_txt), score, row.problem, row.ino, row.mtime_ns, row.size, row.chosen, row.chosen_by,
                *(values[c] for c in _RECORD_COLUMNS))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _list_folder(folder: Path) -> dict[str, tuple[int, int, int, bool, bool]] | None:
    """The numbered record files of one folder: name -> (inode, mtime_ns, size, regular file, ``.txt`` present)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return None
    txt = {e.name for e in entries if e.name.endswith(".txt") and _regular(e)}
    out = {}
    for entry in entries:
        name = entry.name
        stem = name[:-5]
        if not name.endswith(".json") or not stem.isascii() or not stem.isdigit() or str(int(stem)) != stem:
            continue  # not a record's name (``<n>.json``, as the store writes it; ``01.json`` is not question 1's)
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        out[name] = (st.st_ino, st.st_mtime_ns, st.st_size, stat.S_ISREG(st.st_mode), f"{name[:-5]}.txt" in txt)
    return out


def _regular(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file(follow_symlinks=False)
    except OSError:
        return False


_MISSING = "missing"  # the problem of a file gone between the listing and the read


def _read(path: Path, set_name: str | None = None,
          fetched: Fetched = NOT_FETCHED) -> tuple[dict[str, Any] | None, Any, str | None]:
    """A record file's JSON object, its Record (None when it cannot be used) and what is wrong with it (in words)."""
    data, record, problem = inspect_record(path, set_name, fetched=fetched)
    if data is None and problem is None:
        return None, None, _MISSING
    return (data, record, None) if record is not None else (None, None, problem or "not a valid record")


def _described(row: Row, data: dict[str, Any] | None, problem: str | None) -> Row:
    """``row`` (a file's stat) with what its file holds: its key and status, or the problem that makes it unusable."""
    return Row(row.name, row.n, row.ino, row.mtime_ns, row.size, row.has_txt,
               _text(data.get("key")) if data else None, bool(data) and not data.get("error"), problem)


def _close_at_exit() -> None:
    """At exit: write and close every index (SQLite folds its WAL file back and removes it). A Ctrl-C landing here,
    after the command's work is done, leaves at most a WAL file the next command folds back: no traceback."""
    with contextlib.suppress(KeyboardInterrupt):
        Index.forget_all()


atexit.register(_close_at_exit)
