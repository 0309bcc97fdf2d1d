"""The class ledger: one SQLite file (WAL) with students, their tasks and the class settings.

Every change is one short transaction, so a proxy stopped at any moment loses no row, and a
restarted proxy knows every task it forwarded (in-flight tasks stay resolvable). Quota is
reserved and released with single conditional ``UPDATE`` statements, so two requests at once
can never spend the same image twice. Token secrets are stored hashed (see :mod:`.tokens`);
the teacher's KIE key is never stored here.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .tokens import mint_student_token, mint_teacher_token, new_student_id

__all__ = ["Ledger", "Student", "TaskRow", "LedgerError"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS students (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT,
    quota INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    revoked INTEGER NOT NULL DEFAULT 0,
    hub INTEGER NOT NULL DEFAULT 0,
    hub_name TEXT UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    student_id TEXT NOT NULL REFERENCES students(id),
    endpoint TEXT NOT NULL,
    images INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'running',
    prompt TEXT NOT NULL DEFAULT '',
    urls TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS tasks_by_student ON tasks (student_id, created);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class LedgerError(ValueError):
    """A teacher's command that cannot be done (unknown student, a name taken, bad quota)."""


@dataclass(frozen=True)
class Student:
    """One row of ``students`` (never the token)."""

    id: str
    name: str
    quota: int
    used: int
    revoked: bool
    hub: bool
    created: float

    @property
    def remaining(self) -> int:
        return max(self.quota - self.used, 0)


@dataclass(frozen=True)
class TaskRow:
    """One row of ``tasks``."""

    task_id: str
    student_id: str
    endpoint: str
    images: int
    state: str
    prompt: str
    urls: tuple[str, ...]
    created: float
    finished: float | None


def _student(row: sqlite3.Row) -> Student:
    return Student(row["id"], row["name"], row["quota"], row["used"], bool(row["revoked"]),
                   bool(row["hub"]), row["created"])


def _task(row: sqlite3.Row) -> TaskRow:
    return TaskRow(row["task_id"], row["student_id"], row["endpoint"], row["images"],
                   row["state"], row["prompt"], tuple(json.loads(row["urls"] or "[]")),
                   row["created"], row["finished"])


def _check_quota(quota: int) -> int:
    if isinstance(quota, bool) or not isinstance(quota, int) or quota < 0:
        raise LedgerError(f"quota: {quota!r} is not a whole number of images ≥ 0")
    return quota


class Ledger:
    """The proxy's state in one SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False,
                                   isolation_level=None, timeout=10.0)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- settings ---------------------------------------------------------------------------

    def setting(self, key: str) -> str | None:
        row = self._one("SELECT value FROM settings WHERE key = ?", (key,))
        return row["value"] if row else None

    def set_setting(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                       "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    @property
    def paused(self) -> bool:
        return self.setting("paused") == "1"

    def set_paused(self, paused: bool) -> None:
        self.set_setting("paused", "1" if paused else "0")

    def teacher_hash(self) -> str | None:
        return self.setting("teacher_hash")

    def new_teacher_token(self) -> str:
        """Mint (or replace) the teacher's token; returns it, to be shown once."""
        token, digest = mint_teacher_token()
        self.set_setting("teacher_hash", digest)
        return token

    # -- students ---------------------------------------------------------------------------

    def add_student(self, name: str, quota: int) -> str:
        """Add a roster student; returns their token (shown once, stored hashed)."""
        name = " ".join(str(name).split())
        if not name:
            raise LedgerError("a student needs a name")
        _check_quota(quota)
        student_id = new_student_id()
        token, digest = mint_student_token(student_id)
        with self._tx() as db:
            if db.execute("SELECT 1 FROM students WHERE name = ?", (name,)).fetchone():
                raise LedgerError(f"{name!r} is already in the class (re-issue their token "
                                  "instead)")
            db.execute("INSERT INTO students (id, name, token_hash, quota, created) "
                       "VALUES (?, ?, ?, ?, ?)", (student_id, name, digest, quota, time.time()))
        return token

    def hub_student(self, hub_name: str, quota: int) -> Student:
        """The row of a JupyterHub user (made on first use, with the default quota).

        Keyed by the hub user name, apart from the roster: a hub user called "ada" never gets
        the row of a roster student "ada" (theirs is shown as "ada (hub)").
        """
        with self._tx() as db:
            row = db.execute("SELECT * FROM students WHERE hub_name = ?", (hub_name,)).fetchone()
            if row is None:
                taken = db.execute("SELECT 1 FROM students WHERE name = ?",
                                   (hub_name,)).fetchone()
                shown = f"{hub_name} (hub)" if taken else hub_name
                db.execute("INSERT INTO students (id, name, token_hash, quota, hub, hub_name, "
                           "created) VALUES (?, ?, NULL, ?, 1, ?, ?)",
                           (new_student_id(), shown, _check_quota(quota), hub_name,
                            time.time()))
                row = db.execute("SELECT * FROM students WHERE hub_name = ?",
                                 (hub_name,)).fetchone()
        return _student(row)

    def student(self, student_id: str) -> Student | None:
        row = self._one("SELECT * FROM students WHERE id = ?", (student_id,))
        return _student(row) if row else None

    def student_named(self, name: str) -> Student:
        row = self._one("SELECT * FROM students WHERE name = ?", (" ".join(name.split()),))
        if row is None:
            raise LedgerError(f"no student named {name!r} in this class")
        return _student(row)

    def token_hash(self, student_id: str) -> str | None:
        row = self._one("SELECT token_hash FROM students WHERE id = ?", (student_id,))
        return row["token_hash"] if row else None

    def students(self) -> list[Student]:
        return [_student(r) for r in self._all("SELECT * FROM students ORDER BY name")]

    def add_quota(self, student_id: str, images: int) -> Student:
        """Give a student ``images`` more (a negative number takes back unused ones)."""
        if isinstance(images, bool) or not isinstance(images, int):
            raise LedgerError(f"{images!r} is not a whole number of images")
        with self._tx() as db:
            done = db.execute("UPDATE students SET quota = MAX(quota + ?, used) WHERE id = ?",
                              (images, student_id)).rowcount
        if not done:
            raise LedgerError("no such student")
        student = self.student(student_id)
        assert student is not None
        return student

    def revoke(self, student_id: str) -> None:
        with self._tx() as db:
            if not db.execute("UPDATE students SET revoked = 1 WHERE id = ?",
                              (student_id,)).rowcount:
                raise LedgerError("no such student")

    def restore(self, student_id: str) -> None:
        """Undo a revocation (a roster student's token, or a hub user, works again)."""
        with self._tx() as db:
            if not db.execute("UPDATE students SET revoked = 0 WHERE id = ?",
                              (student_id,)).rowcount:
                raise LedgerError("no such student")

    def add_students(self, names: Sequence[str], quota: int) -> list[tuple[str, str]]:
        """Add a roster at once, all or none: ``[(name, token)]`` (tokens shown once)."""
        _check_quota(quota)
        clean = [" ".join(str(n).split()) for n in names]
        if not clean or any(not n for n in clean):
            raise LedgerError("every student needs a name")
        if len(set(clean)) != len(clean):
            twice = next(n for n in clean if clean.count(n) > 1)
            raise LedgerError(f"{twice!r} is listed twice")
        minted = [(n, new_student_id()) for n in clean]
        tokens = [(n, sid, *mint_student_token(sid)) for n, sid in minted]
        with self._tx() as db:
            taken = [n for n in clean
                     if db.execute("SELECT 1 FROM students WHERE name = ?", (n,)).fetchone()]
            if taken:
                raise LedgerError(f"already in the class: {', '.join(taken)} (use reissue)")
            now = time.time()
            db.executemany("INSERT INTO students (id, name, token_hash, quota, created) "
                           "VALUES (?, ?, ?, ?, ?)",
                           [(sid, n, digest, quota, now) for n, sid, _, digest in tokens])
        return [(n, token) for n, _, token, _ in tokens]

    def reissue(self, student_id: str) -> str:
        """A new token for a roster student (the old one stops working); returns it."""
        token, digest = mint_student_token(student_id)
        with self._tx() as db:
            if not db.execute("UPDATE students SET token_hash = ?, revoked = 0 "
                              "WHERE id = ? AND hub = 0", (digest, student_id)).rowcount:
                raise LedgerError("no such roster student (hub users sign in with the hub)")
        return token

    # -- quota ------------------------------------------------------------------------------

    def reserve(self, student_id: str, images: int) -> bool:
        """Take ``images`` from the student's quota, atomically; False when it would not fit."""
        with self._tx() as db:
            return db.execute(
                "UPDATE students SET used = used + ? "
                "WHERE id = ? AND revoked = 0 AND used + ? <= quota",
                (images, student_id, images)).rowcount == 1

    def release(self, student_id: str, images: int) -> None:
        """Give back images reserved for a request that made no task."""
        with self._tx() as db:
            db.execute("UPDATE students SET used = MAX(used - ?, 0) WHERE id = ?",
                       (images, student_id))

    # -- tasks ------------------------------------------------------------------------------

    def record_task(self, task_id: str, student_id: str, endpoint: str, images: int,
                    prompt: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO tasks (task_id, student_id, endpoint, images, "
                       "prompt, created) VALUES (?, ?, ?, ?, ?, ?)",
                       (task_id, student_id, endpoint, images, prompt[:2000], time.time()))

    def task(self, task_id: str) -> TaskRow | None:
        row = self._one("SELECT * FROM tasks WHERE task_id = ?", (task_id,))
        return _task(row) if row else None

    def task_failed(self, task_id: str) -> bool:
        """Mark a running task failed and give its images back (once); True if it was."""
        with self._tx() as db:
            row = db.execute("SELECT student_id, images FROM tasks "
                             "WHERE task_id = ? AND state = 'running'", (task_id,)).fetchone()
            if row is None:
                return False
            db.execute("UPDATE tasks SET state = 'failed', finished = ? WHERE task_id = ?",
                       (time.time(), task_id))
            db.execute("UPDATE students SET used = MAX(used - ?, 0) WHERE id = ?",
                       (row["images"], row["student_id"]))
        return True

    def task_succeeded(self, task_id: str, urls: Sequence[str]) -> bool:
        """Mark a running task done with its image URLs (once). A task that made more images
        than were reserved is charged the difference; True if it was running."""
        with self._tx() as db:
            row = db.execute("SELECT student_id, images FROM tasks "
                             "WHERE task_id = ? AND state = 'running'", (task_id,)).fetchone()
            if row is None:
                return False
            extra = max(len(urls) - row["images"], 0)
            db.execute("UPDATE tasks SET state = 'success', finished = ?, urls = ?, "
                       "images = images + ? WHERE task_id = ?",
                       (time.time(), json.dumps(list(urls)[:16]), extra, task_id))
            if extra:
                db.execute("UPDATE students SET used = used + ? WHERE id = ?",
                           (extra, row["student_id"]))
        return True

    def tasks_of(self, student_id: str, limit: int | None = None) -> list[TaskRow]:
        sql = "SELECT * FROM tasks WHERE student_id = ? ORDER BY created DESC"
        args: list[Any] = [student_id]
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_task(r) for r in self._all(sql, args)]

    def task_counts(self) -> dict[str, int]:
        rows = self._all("SELECT student_id, COUNT(*) AS n FROM tasks GROUP BY student_id")
        return {r["student_id"]: r["n"] for r in rows}

    def all_tasks(self) -> list[TaskRow]:
        return [_task(r) for r in self._all("SELECT * FROM tasks ORDER BY created")]
