"""The history's database: SQLite in ``<folder>/history.sqlite``, one row per task.

WAL mode, so readers never wait for a writer and several processes (kernels, ``kie4o
--batch``) write one history at once: each record is one short ``BEGIN IMMEDIATE``
transaction (read the row, fold the change in, write it back), so a crash loses at most the
write in flight and never corrupts what was committed. The whole entry is kept as JSON in
``data``; the columns beside it are what the gallery and ``%kie4o history`` filter and sort on,
with an index each. Prompts are searched with an FTS5 trigram index (any substring of three
characters or more, case-insensitive) where the interpreter's SQLite has it, else by a scan.

The JSON-lines history of earlier versions (``history.jsonl``) is read in once, transparently,
and never written again (a backup). Lines appended to it later (a kernel still running an
older version) are read in at the next open, from where the last import stopped.

The standard library's :mod:`sqlite3`, as IPython's own ``history.sqlite``: no dependency.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import historyindex

__all__ = ["DB_NAME", "JSONL_NAME", "HistoryDB", "HistoryUnavailable", "DBInfo", "Fold",
           "existing_files", "file_bytes"]

DB_NAME = "history.sqlite"
JSONL_NAME = "history.jsonl"

#: Folds a later record into what is known (``None`` if nothing was): the new whole entry.
Fold = Callable[[dict[str, Any] | None, dict[str, Any]], dict[str, Any]]

#: A writer waits this long for another process's transaction before giving up.
BUSY_SECONDS = 30.0

#: The write-ahead log is cut back to this size after a checkpoint (SQLite keeps it
#: otherwise: a 50,000-task import would leave tens of MB that every reader maps).
_WAL_LIMIT = 4 * 1024 * 1024

#: Rows a transaction of the thumbnail cap drops at most.
_DROP_BATCH = 500

_COLUMNS = "prompt, created, status, model, demo, starred, has_images, thumb_bytes, data"

_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL UNIQUE,
    prompt TEXT NOT NULL DEFAULT '',
    created TEXT,
    status TEXT NOT NULL DEFAULT '',
    model TEXT,
    demo INTEGER,
    starred INTEGER NOT NULL DEFAULT 0,
    has_images INTEGER NOT NULL DEFAULT 0,
    thumb_bytes INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks (created);
CREATE INDEX IF NOT EXISTS tasks_model ON tasks (model, seq);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status, seq);
CREATE INDEX IF NOT EXISTS tasks_starred ON tasks (starred, seq);
CREATE INDEX IF NOT EXISTS tasks_demo ON tasks (demo, seq);
CREATE INDEX IF NOT EXISTS tasks_thumbs_old ON tasks (seq) WHERE starred = 0 AND thumb_bytes > 0;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- The bytes of unstarred tasks' thumbnails, kept by triggers: the cap's check reads one row.
CREATE TABLE IF NOT EXISTS totals (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- (summed only the first time: not on every open)
INSERT INTO totals SELECT 'unstarred_thumbs',
    (SELECT COALESCE(SUM(thumb_bytes), 0) FROM tasks WHERE starred = 0)
    WHERE NOT EXISTS (SELECT 1 FROM totals WHERE name = 'unstarred_thumbs');
CREATE TRIGGER IF NOT EXISTS tasks_thumbs_insert AFTER INSERT ON tasks
    WHEN new.starred = 0 AND new.thumb_bytes > 0 BEGIN
    UPDATE totals SET value = value + new.thumb_bytes WHERE name = 'unstarred_thumbs';
END;
CREATE TRIGGER IF NOT EXISTS tasks_thumbs_update AFTER UPDATE OF starred, thumb_bytes ON tasks
    WHEN old.starred IS NOT new.starred OR old.thumb_bytes IS NOT new.thumb_bytes BEGIN
    UPDATE totals SET value = value
        + CASE WHEN new.starred = 0 THEN new.thumb_bytes ELSE 0 END
        - CASE WHEN old.starred = 0 THEN old.thumb_bytes ELSE 0 END
        WHERE name = 'unstarred_thumbs';
END;
CREATE TRIGGER IF NOT EXISTS tasks_thumbs_delete AFTER DELETE ON tasks
    WHEN old.starred = 0 AND old.thumb_bytes > 0 BEGIN
    UPDATE totals SET value = value - old.thumb_bytes WHERE name = 'unstarred_thumbs';
END;
COMMIT;
"""

#: Open databases of this process, by path, most recently used last: kernels make a store per
#: call, the connection (and its schema check and import) is made once. Past ``_OPEN_MAX``
#: the least recently used is forgotten (closed once no call still holds it).
_open: OrderedDict[tuple[int, str], HistoryDB] = OrderedDict()
_open_lock = threading.Lock()
_OPEN_MAX = 8


class HistoryUnavailable(OSError):
    """The history database cannot be opened or used (one line: which file, and why)."""


@dataclass(frozen=True)
class DBInfo:
    """What ``%kie4o history --info`` shows."""

    path: str
    tasks: int
    starred: int
    size_bytes: int
    search: str
    thumbs: int
    thumb_bytes: int
    thumbs_dropped: int
    backup: str | None


class HistoryDB:
    """One history database; every method is one transaction, safe across threads."""

    def __init__(self, conn: sqlite3.Connection, path: str, fts: bool,
                 readonly: bool = False, snapshot: bool = False) -> None:
        self._conn = conn
        self.path = path
        #: Opened for reading only (a file this user cannot write): nothing is written.
        self.readonly = readonly
        #: Read as the file was when opened (SQLite's ``immutable``): never kept open.
        self.snapshot = snapshot
        #: Whether prompts are searched with the FTS5 trigram index (else a scan).
        self.fts = fts
        self._lock = threading.Lock()

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, directory: Path, fold: Fold, *, create: bool) -> HistoryDB | None:
        """The folder's database, the JSON-lines history read in. ``None`` when there is no
        history yet and ``create`` is false (reading an empty history creates nothing).
        A folder that cannot hold it raises :class:`OSError` when ``create``; for reading, a
        database there is opened read-only, else the JSON-lines history read into memory."""
        path = directory / DB_NAME
        key = (os.getpid(), str(path.absolute()))
        jsonl = directory / JSONL_NAME
        with _open_lock:
            db = _open.get(key)
            if db is not None and _still_good(db, path, create):
                _open.move_to_end(key)
            else:
                db = None
        if db is not None:
            db.import_jsonl(jsonl, fold)
            return db
        with _open_lock:
            if not create and not path.exists() and not jsonl.exists():
                return None
            if key in _open and _still_good(_open[key], path, create):
                db = _open[key]  # another thread opened it meanwhile
                _open.move_to_end(key)
                return db
            try:
                db = cls._connect(path)
            except HistoryUnavailable:
                raise  # the file is there but is not a usable database: say so
            except OSError as exc:
                if create:
                    raise
                db = cls._fallback(path, jsonl, exc)
            if not db.snapshot:  # a snapshot is read again at each call: later writes seen
                _open[key] = db
            while len(_open) > _OPEN_MAX:
                _open.popitem(last=False)
        db.import_jsonl(jsonl, fold)
        return db

    @classmethod
    def _fallback(cls, path: Path, jsonl: Path, why: OSError) -> HistoryDB:
        """For reading a folder this user cannot write: its database read-only, else its
        JSON-lines history in memory."""
        if path.exists():  # the history: never the older backup instead
            try:
                return cls._connect_readonly(path)
            except sqlite3.Error as exc:
                raise HistoryUnavailable(f"cannot open {path}: {exc}") from None
        if not jsonl.exists():
            raise HistoryUnavailable(f"cannot open {path}: {why.strerror or why}") from None
        return cls._connect(None)

    @classmethod
    def _connect_readonly(cls, path: Path) -> HistoryDB:
        uri = "file:" + quote(str(path.absolute()))
        last: sqlite3.Error | None = None
        # mode=ro needs the WAL's shared-memory file (or the right to make it); immutable
        # reads the file as it is (nobody can be writing it where we cannot).
        wal = Path(f"{path}-wal")
        for query in ("?mode=ro", "?immutable=1"):
            if "immutable" in query and wal.exists() and wal.stat().st_size:
                break  # what is in the log would not be seen: refuse rather than mislead
            try:
                conn = sqlite3.connect(uri + query, uri=True, check_same_thread=False,
                                       isolation_level=None, timeout=BUSY_SECONDS)
                conn.create_function("kie_casefold", 1, historyindex.casefold,
                                     deterministic=True)
                conn.execute("SELECT COUNT(*) FROM tasks").fetchone()
            except sqlite3.Error as exc:
                last = exc
                continue
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            fts = historyindex.available() and version >= historyindex.VERSION
            return cls(conn, str(path), fts, readonly=True, snapshot="immutable" in query)
        raise last or sqlite3.OperationalError("its write-ahead log cannot be read here")

    @classmethod
    def _connect(cls, path: Path | None) -> HistoryDB:
        if path is None:
            conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            where = ":memory:"
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Made 0600 before SQLite opens it (its -wal and -shm files take its mode).
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            try:
                conn = sqlite3.connect(path, timeout=BUSY_SECONDS, check_same_thread=False,
                                       isolation_level=None)
                # Another process making the same new file at this moment holds a lock the
                # busy timeout does not wait for: wait here instead.
                _when_free(lambda: conn.execute("PRAGMA journal_mode=WAL"))
                conn.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")
            except sqlite3.Error as exc:
                raise HistoryUnavailable(f"cannot open {path}: {exc}") from None
            where = str(path)
        # Each commit synced to disk: a record that said a task was submitted survives a
        # power cut as well as a crash (what keeps a batch's resume from paying twice).
        conn.execute("PRAGMA synchronous=FULL")
        conn.create_function("kie_casefold", 1, historyindex.casefold, deterministic=True)
        try:
            _when_free(lambda: _script(conn, _SCHEMA))
            fts = _when_free(lambda: _prepare_index(conn))
        except sqlite3.Error as exc:
            raise HistoryUnavailable(f"cannot use {where}: {exc}") from None
        return cls(conn, where, fts)

    # -- writing -------------------------------------------------------------------------

    def upsert(self, task_id: str, fields: dict[str, Any], fold: Fold,
               thumb_bytes: int | None = None) -> dict[str, Any]:
        """Fold ``fields`` into the task's row (made if new); return the whole entry."""
        with self._write() as cur:
            return self._fold_in(cur, task_id, fields, fold, thumb_bytes)

    def _fold_in(self, cur: sqlite3.Cursor, task_id: str, fields: dict[str, Any], fold: Fold,
                 thumb_bytes: int | None) -> dict[str, Any]:
        """In the caller's transaction: ``fields`` folded into the task's row; the entry."""
        row = cur.execute("SELECT seq, prompt, data FROM tasks WHERE task_id = ?",
                          (task_id,)).fetchone()
        entry = fold(json.loads(row[2]) if row else None, fields)
        self._put(cur, task_id, entry, thumb_bytes, row[:2] if row else None)
        return entry

    def _put(self, cur: sqlite3.Cursor, task_id: str, entry: dict[str, Any],
             thumb_bytes: int | None, old: tuple[int, str] | None) -> None:
        """Write the entry to its row (``old``: the row's seq and prompt; ``None``: new)."""
        demo = entry.get("demo")
        values = (str(entry.get("prompt") or ""), entry.get("created"), entry.get("status") or "",
                  entry.get("model"), None if demo is None else int(bool(demo)),
                  int(bool(entry.get("starred"))),
                  int(bool(entry.get("urls") or entry.get("thumbs"))),
                  json.dumps(entry, ensure_ascii=False, separators=(",", ":")))
        if old is not None:
            cur.execute("UPDATE tasks SET prompt=?, created=?, status=?, model=?, demo=?, "
                        "starred=?, has_images=?, data=? WHERE task_id=?", (*values, task_id))
            seq, before = old
        else:
            cur.execute("INSERT INTO tasks (task_id, prompt, created, status, model, demo, "
                        "starred, has_images, data) VALUES (?,?,?,?,?,?,?,?,?)",
                        (task_id, *values))
            seq, before = cur.lastrowid or 0, None
        if before != values[0]:
            if self.fts:
                historyindex.index(cur, seq, before, values[0])
            else:
                historyindex.mark_stale(cur)
        if thumb_bytes is not None:
            cur.execute("UPDATE tasks SET thumb_bytes=? WHERE task_id=?", (thumb_bytes, task_id))

    def record(self, task_id: str, fields: dict[str, Any], fold: Fold, thumb_bytes: int,
               cap: int) -> tuple[dict[str, Any], list[str], bool]:
        """:meth:`upsert` of a task with thumbnails (``thumb_bytes`` of them), and in the same
        transaction (one sync to disk) the oldest unstarred thumbnails dropped to keep them
        within ``cap`` bytes: the entry, the files to delete, and whether the history is
        still over the cap (far over it: :meth:`drop_thumbnails_over` does the rest)."""
        with self._write() as cur:
            entry = self._fold_in(cur, task_id, fields, fold, thumb_bytes)
            files, over = _drop_some(cur, cap)
            return entry, files, over

    def drop_thumbnails_over(self, cap: int) -> Iterator[list[str]]:
        """Make the unstarred tasks' thumbnails fit in ``cap`` bytes, the oldest dropped
        first: yield, after each transaction, the files to delete (the rows already say
        they were dropped). A few hundred rows per transaction, so a history far over the
        cap (the first record after an upgrade) never keeps other writers waiting long."""
        over = True
        while over:
            with self._write() as cur:
                files, over = _drop_some(cur, cap)
            yield files

    def import_jsonl(self, jsonl: Path, fold: Fold) -> None:
        """Read in what ``history.jsonl`` has beyond what was read before (all of it, the
        first time); a corrupt line is skipped, with one warning for the import."""
        if self.readonly:
            return
        try:
            size = jsonl.stat().st_size
        except OSError:
            return
        with self._reading():
            self._import_from(jsonl, size, fold)

    def _import_from(self, jsonl: Path, size: int, fold: Fold) -> None:
        done = self._imported()
        if size <= done:
            return
        raw = _read_from(jsonl, done)
        if raw is None:
            return
        records, bad, used = _parse_lines(raw)
        if not used:
            return  # only a line still being written: nothing to read in yet
        if bad:
            shown = ", ".join(str(n) for n in bad[:5]) + (" …" if len(bad) > 5 else "")
            warnings.warn(f"kie4o history: skipped {len(bad)} corrupt "
                          f"line{'s' if len(bad) > 1 else ''} of {jsonl} (line {shown}"
                          " of what was read in)", stacklevel=5)
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            if self._imported() == done:  # else another process read it meanwhile
                for task_id, lines in records.items():
                    row = cur.execute("SELECT seq, prompt, data FROM tasks WHERE task_id = ?",
                                      (task_id,)).fetchone()
                    # Each line onto what is known, as it was once appended (a line
                    # says only what changed: a star given since stays).
                    entry = json.loads(row[2]) if row else None
                    for line in lines:
                        entry = fold(entry, line)
                    assert entry is not None
                    # The thumbnails count toward the cap from the start.
                    self._put(cur, task_id, entry, file_bytes(entry.get("thumbs") or []),
                              row[:2] if row else None)
                cur.execute("INSERT OR REPLACE INTO meta VALUES ('jsonl_read', ?)",
                            (str(done + used),))
            cur.execute("COMMIT")
        except BaseException:
            _undo(self._conn)
            raise
        if len(records) > 100:
            # A large import leaves a large log; fold it into the file and cut it back (a
            # reader in another process may keep part of it: that is fine, just not cut).
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass

    def _imported(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key='jsonl_read'").fetchone()
        return int(row[0]) if row else 0

    def _write(self) -> _Transaction:
        return _Transaction(self)

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """The lock, and a database that cannot be read as one line (which file, why)."""
        with self._lock:
            try:
                yield
            except sqlite3.Error as exc:
                raise HistoryUnavailable(f"cannot read {self.path}: {exc}") from None

    # -- reading -------------------------------------------------------------------------

    def get(self, task_id: str) -> dict[str, Any] | None:
        """One task's entry, if recorded."""
        with self._reading():
            row = self._conn.execute("SELECT data FROM tasks WHERE task_id = ?",
                                     (task_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def all(self) -> Iterator[dict[str, Any]]:
        """Every entry, oldest first."""
        with self._reading():
            rows = self._conn.execute("SELECT data FROM tasks ORDER BY seq").fetchall()
        return (json.loads(data) for (data,) in rows)

    def labelled(self, label: str) -> Iterator[dict[str, Any]]:
        """Every entry that has ``label`` among its labels, oldest first."""
        path = '$.labels."' + label.replace('"', '') + '"'
        with self._reading():
            rows = self._conn.execute("SELECT data FROM tasks WHERE json_extract(data, ?) "
                                      "IS NOT NULL ORDER BY seq", (path,)).fetchall()
        return (json.loads(data) for (data,) in rows)

    def costs(self, demo: bool) -> list[dict[str, Any]]:
        """What a spend report reads of each live (``demo``: demo) task, oldest first: id,
        creation, model, demo, status, cost, params and error_source (to estimate a cost
        not recorded). Not the whole entry: a 50,000-task history is summed
        in a fraction of the time."""
        where = "demo = 1" if demo else "(demo IS NULL OR demo = 0)"
        with self._reading():
            rows = self._conn.execute(
                "SELECT task_id, created, model, demo, status, json_extract(data, '$.cost'), "
                "json_extract(data, '$.params'), json_extract(data, '$.error_source') "
                f"FROM tasks WHERE {where} ORDER BY seq").fetchall()
        return [{"task_id": task_id, "created": created, "model": model, "status": status,
                 "demo": None if is_demo is None else bool(is_demo),
                 "cost": _json_or_none(cost), "params": _dict_or_empty(_json_or_none(params)),
                 "error_source": error_source}
                for task_id, created, model, is_demo, status, cost, params, error_source
                in rows]

    def ids_starting(self, prefix: str, limit: int = 50) -> list[str]:
        """Task ids that start with ``prefix`` (at most ``limit``)."""
        with self._reading():
            rows = self._conn.execute(
                "SELECT task_id FROM tasks WHERE task_id >= ? AND task_id < ? ORDER BY task_id "
                "LIMIT ?", (prefix, prefix + "\U0010ffff", limit)).fetchall()
        return [r[0] for r in rows]

    def page(self, *, search: str | None = None, starred: bool = False,
             demo: bool | None = None, with_images_only: bool = False,
             offset: int = 0, limit: int = 24) -> tuple[list[dict[str, Any]], int]:
        """Matching entries newest first, ``limit`` from ``offset``, and how many match."""
        where, args = [], []
        if search:
            found = historyindex.match(search)  # None: shorter than a trigram
            if found is not None and not self._index_ready():
                found = None
            clause, arg = found or ("instr(kie_casefold(prompt), ?) > 0",
                                    historyindex.casefold(search))
            where.append(clause)
            args.append(arg)
        if starred:
            where.append("starred = 1")
        if demo is not None:
            where.append("demo = 1" if demo else "(demo IS NULL OR demo = 0)")
        if with_images_only:
            where.append("NOT (status = 'stopped' AND has_images = 0)")
        sql_where = (" WHERE " + " AND ".join(where)) if where else ""
        with self._reading():
            (total,) = self._conn.execute(f"SELECT COUNT(*) FROM tasks{sql_where}",
                                          args).fetchone()
            rows = self._conn.execute(
                f"SELECT data FROM tasks{sql_where} ORDER BY seq DESC LIMIT ? OFFSET ?",
                [*args, limit, offset]).fetchall()
        return [json.loads(data) for (data,) in rows], total

    def _index_ready(self) -> bool:
        """Whether searches can use the prompt index now: rebuilt first if an interpreter
        without the tokenizer wrote tasks meanwhile (read-only: a scan until then)."""
        if not self.fts:
            return False
        with self._reading():
            stale = historyindex.is_stale(self._conn)
        if not stale:
            return True
        if self.readonly:
            return False
        try:
            with self._write() as cur:
                if historyindex.is_stale(cur):
                    historyindex.rebuild(cur)
        except HistoryUnavailable:
            return False  # another process holds the history for long: a scan answers
        return True

    def info(self, backup: Path) -> DBInfo:
        """Counts and sizes for ``%kie4o history --info``."""
        with self._reading():
            c = self._conn
            (tasks, starred) = c.execute("SELECT COUNT(*), COALESCE(SUM(starred), 0) "
                                         "FROM tasks").fetchone()
            (thumbs, tbytes) = c.execute("SELECT COUNT(*), COALESCE(SUM(thumb_bytes), 0) "
                                         "FROM tasks WHERE thumb_bytes > 0").fetchone()
            (dropped,) = c.execute("SELECT COUNT(*) FROM tasks WHERE "
                                   "json_extract(data, '$.thumbs_dropped')").fetchone()
        size = 0
        if self.path != ":memory:":
            for suffix in ("", "-wal"):
                try:
                    size += os.stat(self.path + suffix).st_size
                except OSError:
                    pass
        search = ("full-text (SQLite FTS5, trigram: any 3+ characters)" if self.fts
                  else "a scan of every prompt (this SQLite has no FTS5 trigram)")
        return DBInfo(self.path, tasks, starred, size, search, thumbs, tbytes, dropped,
                      str(backup) if backup.exists() else None)


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on an error), under the lock."""

    def __init__(self, db: HistoryDB) -> None:
        self.db = db
        self.cur: sqlite3.Cursor | None = None

    def __enter__(self) -> sqlite3.Cursor:
        self.db._lock.acquire()
        try:
            self.cur = self.db._conn.cursor()
            self.cur.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self.db._lock.release()
            raise HistoryUnavailable(f"cannot write {self.db.path}: {exc}") from None
        except BaseException:
            self.db._lock.release()
            raise
        return self.cur

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        assert self.cur is not None
        try:
            if kind is None:
                try:
                    self.cur.execute("COMMIT")
                except sqlite3.Error as err:
                    self._undo()
                    raise HistoryUnavailable(f"cannot write {self.db.path}: {err}") from None
            else:
                self._undo()
                if isinstance(exc, sqlite3.Error):
                    raise HistoryUnavailable(f"cannot write {self.db.path}: {exc}") from None
        finally:
            self.db._lock.release()

    def _undo(self) -> None:
        _undo(self.db._conn)


def _still_good(db: HistoryDB, path: Path, create: bool) -> bool:
    """Whether an open database can serve this call: the file's, while it exists; an
    in-memory copy (a folder that could not hold the file) only for reading, with no file."""
    if db.path == ":memory:":
        return not create and not path.exists()
    if db.readonly:
        return not create and path.exists()
    return path.exists()


def _when_free(step: Callable[[], Any]) -> Any:
    """``step()``, tried again while another process holds a lock SQLite does not wait for
    by itself (making the file, changing its journal), for up to :data:`BUSY_SECONDS`."""
    deadline = time.monotonic() + BUSY_SECONDS
    pause = 0.005
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _script(conn: sqlite3.Connection, script: str) -> None:
    """Run a script that is one transaction; undo what it began if it fails."""
    try:
        conn.executescript(script)
    except BaseException:
        _undo(conn)
        raise


def _undo(conn: sqlite3.Connection) -> None:
    """Roll back what SQLite has not rolled back itself, quietly: the error that led here
    is the one to report."""
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def _prepare_index(conn: sqlite3.Connection) -> bool:
    cur = conn.cursor()
    cur.execute("BEGIN IMMEDIATE")
    try:
        fts = historyindex.prepare(cur)
        cur.execute("COMMIT")
    except BaseException:
        _undo(conn)
        raise
    return fts


def _drop_some(cur: sqlite3.Cursor, cap: int) -> tuple[list[str], bool]:
    """Drop the oldest unstarred thumbnails, up to :data:`_DROP_BATCH` rows, until they fit
    in ``cap``: the files to delete, and whether they are still over it."""
    total = _unstarred_thumb_bytes(cur)
    if total <= cap:
        return [], False
    # The oldest, through the index that holds only the rows with thumbnails.
    rows = cur.execute(
        "SELECT seq, thumb_bytes, json_extract(data, '$.thumbs') FROM tasks "
        "INDEXED BY tasks_thumbs_old WHERE starred = 0 AND thumb_bytes > 0 "
        "ORDER BY seq LIMIT ?", (_DROP_BATCH,)).fetchall()
    chosen: list[tuple[int]] = []
    files: list[str] = []
    for seq, size, thumbs in rows:
        if total <= cap:
            break
        chosen.append((seq,))
        files.extend(_json_or_none(thumbs) or [])
        total -= size
    cur.executemany(
        "UPDATE tasks SET thumb_bytes = 0, data = json_set(data, '$.thumbs', "
        "json('[]'), '$.thumbs_dropped', json('true')) WHERE seq = ?", chosen)
    return files, bool(rows) and total > cap


def _unstarred_thumb_bytes(cur: sqlite3.Cursor) -> int:
    row = cur.execute("SELECT value FROM totals WHERE name = 'unstarred_thumbs'").fetchone()
    return int(row[0]) if row else 0


def existing_files(paths: list[str]) -> tuple[list[str], int]:
    """Those of ``paths`` that are files, and their sizes added up (one stat each)."""
    kept: list[str] = []
    total = 0
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            kept.append(p)
            total += st.st_size
    return kept, total


def file_bytes(paths: list[str]) -> int:
    """The files' sizes added up (a missing one counts 0)."""
    return existing_files(paths)[1]


def _dict_or_empty(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _json_or_none(text: Any) -> Any:
    """What ``json_extract`` gave: JSON text parsed, a number or NULL as it is."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _read_from(path: Path, offset: int) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read()
    except OSError:
        return None


def _parse_lines(raw: bytes) -> tuple[dict[str, list[dict[str, Any]]], list[int], int]:
    """The records of JSON lines, by task in order; the corrupt lines' numbers; how many
    bytes were read. A last line with no line break yet is read only if whole (an older
    kernel may be writing it): else it is left for the next read."""
    records: dict[str, list[dict[str, Any]]] = {}
    bad: list[int] = []
    lines = raw.split(b"\n")
    used = len(raw)
    if lines and lines[-1].strip():
        try:
            json.loads(lines[-1])
        except ValueError:
            used -= len(lines[-1])
            lines.pop()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            item = None
        if not isinstance(item, dict) or not isinstance(item.get("task_id"), str):
            bad.append(number)  # a line cut by a crash is one of these
            continue
        records.setdefault(item["task_id"], []).append(item)
    return records, bad, used
