"""The class ledger: one SQLite file (WAL) with students, their tasks and the class settings.

Every change is one short transaction, so a proxy stopped at any moment loses no row, and a
restarted proxy knows every task it forwarded (in-flight tasks stay resolvable). Images and
credits are reserved inside one ``BEGIN IMMEDIATE`` transaction that checks every limit (the
student's quota and credit budget, the class's budget) before it writes, so two requests at
once — from two processes even — can never spend the same image or credit twice. Token
secrets are stored hashed (see :mod:`.tokens`); the teacher's KIE key is never stored here.

With a reset period (:class:`.budget.ClassPolicy`), the period in force is a setting: when the
clock has passed into the next one, :meth:`Ledger.roll_period` zeroes the used images and
credits once and records the new period, so a restarted proxy neither resets early nor skips a
reset. A task remembers its period: giving back or settling a task of an earlier period
changes nothing in the current one.

(One class over one connection, its lock and its transactions: hence one module, longer than
most; its tables are in :mod:`.schema`, its rows in :mod:`.rows`.)
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .budget import (
    EPSILON,
    ClassPolicy,
    parse_credits,
    parse_date,
    parse_models,
    period_key,
    utc_day,
)
from .dbfile import prepare_ledger_file
from .rows import AuditRow, ModelSpend, PendingRow, Student, TaskRow, student_of, task_of
from .schema import migrate
from .tokens import mint_student_token, mint_teacher_token, new_student_id

__all__ = ["Ledger", "Student", "TaskRow", "ModelSpend", "PendingRow", "AuditRow", "LedgerError",
           "StudentExtras", "Reservation"]

_student = student_of
_task = task_of
#: A task whose credits count as spent: not failed, or failed with a figure KIE reported.
_PAID = "(state != 'failed' OR credits_basis = 'reported')"

class LedgerError(ValueError):
    """A teacher's command that cannot be done (unknown student, a name taken, bad quota)."""


def _check_quota(quota: int) -> int:
    if isinstance(quota, bool) or not isinstance(quota, int) or quota < 0:
        raise LedgerError(f"quota: {quota!r} is not a whole number of images ≥ 0")
    return quota


StudentExtras = tuple[float | None, str | None, str | None]

#: How long the ledger remembers submits sent to KIE (far longer than KIE's 10 s window).
_SUBMITS_KEPT = 3600.0


class Reservation(tuple[str, int]):
    """What :meth:`Ledger.reserve_pending` took: its budget ``period`` and ``pending`` row."""

    __slots__ = ()

    def __new__(cls, period: str, pending: int) -> Reservation:
        return super().__new__(cls, (period, pending))

    @property
    def period(self) -> str:
        return self[0]

    @property
    def pending(self) -> int:
        return self[1]


def _extras(credits: float | None, expires: str | None,
            models: Sequence[str] | str | None) -> StudentExtras:
    """A new student's own credit budget, expiry day and models, checked, as stored."""
    try:
        return (None if credits is None else parse_credits(credits),
                None if expires is None else parse_date(expires),
                None if models is None else json.dumps(list(parse_models(models))))
    except ValueError as exc:
        raise LedgerError(str(exc)) from None


class Ledger:
    """The proxy's state in one SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        #: The wall clock (UTC seconds) for reset periods and expiry dates; tests set it.
        self.clock = clock
        self._lock = threading.Lock()
        prepare_ledger_file(self.path)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False,
                                   isolation_level=None, timeout=10.0)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        migrate(self._db)

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

    def add_student(self, name: str, quota: int, *, credits: float | None = None,
                    expires: str | None = None,
                    models: Sequence[str] | str | None = None) -> str:
        """Add a roster student; returns their token (shown once, stored hashed).
        ``credits``, ``expires`` and ``models`` are their own budget, last day and models."""
        name = " ".join(str(name).split())
        if not name:
            raise LedgerError("a student needs a name")
        _check_quota(quota)
        extras = _extras(credits, expires, models)
        student_id = new_student_id()
        token, digest = mint_student_token(student_id)
        with self._tx() as db:
            if db.execute("SELECT 1 FROM students WHERE name = ?", (name,)).fetchone():
                raise LedgerError(f"{name!r} is already in the class (re-issue their token "
                                  "instead)")
            db.execute("INSERT INTO students (id, name, token_hash, quota, created, credits, "
                       "expires, models) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (student_id, name, digest, quota, time.time(), *extras))
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

    def hub_names(self) -> list[str]:
        """The hub user names the class has seen (their claims queue apart at sign-in)."""
        return [r["hub_name"] for r in self._all(
            "SELECT hub_name FROM students WHERE hub_name IS NOT NULL", [])]

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

    def add_students(self, names: Sequence[str], quota: int, *, credits: float | None = None,
                     expires: str | None = None,
                     models: Sequence[str] | str | None = None) -> list[tuple[str, str]]:
        """Add a roster at once, all or none: ``[(name, token)]`` (tokens shown once)."""
        _check_quota(quota)
        extras = _extras(credits, expires, models)
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
            db.executemany("INSERT INTO students (id, name, token_hash, quota, created, "
                           "credits, expires, models) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           [(sid, n, digest, quota, now, *extras)
                            for n, sid, _, digest in tokens])
        return [(n, token) for n, _, token, _ in tokens]

    def reissue(self, student_id: str) -> str:
        """A new token for a roster student (the old one stops working); returns it."""
        token, digest = mint_student_token(student_id)
        with self._tx() as db:
            if not db.execute("UPDATE students SET token_hash = ?, revoked = 0 "
                              "WHERE id = ? AND hub = 0", (digest, student_id)).rowcount:
                raise LedgerError("no such roster student (hub users sign in with the hub)")
        return token

    # -- a student's own rules ----------------------------------------------------------------

    def add_credits(self, student_id: str, credits: float) -> Student:
        """Give a student ``credits`` more (negative: take back unused ones). A student with
        no budget (their own or the class's) gets one of ``credits``."""
        try:
            amount = float(credits)
        except (TypeError, ValueError):
            raise LedgerError(f"{credits!r} is not a number of credits") from None
        if isinstance(credits, bool) or amount != amount or abs(amount) == float("inf"):
            raise LedgerError(f"{credits!r} is not a number of credits")
        with self._tx() as db:
            row = db.execute("SELECT * FROM students WHERE id = ?", (student_id,)).fetchone()
            if row is None:
                raise LedgerError("no such student")
            budget = _student(row).budget(self._policy(db))
            new = max((budget or 0.0) + amount, float(row["credits_used"] or 0), 0.0)
            db.execute("UPDATE students SET credits = ? WHERE id = ?", (new, student_id))
        return self._existing(student_id)

    def set_expires(self, student_id: str, day: str | None) -> Student:
        """Set the last UTC day a student's token works (None: no end)."""
        try:
            value = None if day is None else parse_date(day)
        except ValueError as exc:
            raise LedgerError(str(exc)) from None
        self._update_student(student_id, "expires", value)
        return self._existing(student_id)

    def set_models(self, student_id: str, models: Sequence[str] | str | None) -> Student:
        """Set the models a student may use (None: the class's)."""
        try:
            value = None if models is None else json.dumps(list(parse_models(models)))
        except ValueError as exc:
            raise LedgerError(str(exc)) from None
        self._update_student(student_id, "models", value)
        return self._existing(student_id)

    def _update_student(self, student_id: str, column: str, value: Any) -> None:
        with self._tx() as db:
            if not db.execute(f"UPDATE students SET {column} = ? WHERE id = ?",
                              (value, student_id)).rowcount:
                raise LedgerError("no such student")

    def _existing(self, student_id: str) -> Student:
        student = self.student(student_id)
        if student is None:
            raise LedgerError("no such student")
        return student

    # -- the class's rules and its budget period ----------------------------------------------

    @staticmethod
    def _policy(db: sqlite3.Connection) -> ClassPolicy:
        row = db.execute("SELECT value FROM settings WHERE key = 'policy'").fetchone()
        return ClassPolicy.from_json(row["value"] if row else None)

    def policy(self) -> ClassPolicy:
        """The class's rules (budgets, models, reset), as ``kie4o class serve`` set them."""
        return ClassPolicy.from_json(self.setting("policy"))

    def set_policy(self, policy: ClassPolicy) -> None:
        self.set_setting("policy", policy.to_json())
        self.roll_period()

    def today(self) -> str:
        """Today's UTC date by the ledger's clock (``2027-01-31``)."""
        return utc_day(self.clock()).isoformat()

    def period(self) -> str:
        """The budget period in force (``daily:2027-01-31``; ``""`` with no reset)."""
        return self.setting("period") or ""

    def roll_period(self) -> bool:
        """Move to the period the clock is in; True when that zeroed the used images and
        credits (once per boundary, however many processes ask)."""
        policy = self.policy()
        key = period_key(policy.reset, self.clock())
        now = f"{policy.reset}:{key}" if key else ""
        if now == self.period():
            return False
        with self._tx() as db:
            row = db.execute("SELECT value FROM settings WHERE key = 'period'").fetchone()
            stored = row["value"] if row else ""
            if stored == now:
                return False
            mode, _, since = stored.partition(":")
            if now and mode == policy.reset and key < since:
                return False  # the clock stepped back: stay in the later period
            # Only a later period of the same kind resets; turning a reset on, off or
            # to another kind starts counting from here.
            zero = bool(now) and mode == policy.reset and key > since
            if zero:
                db.execute("UPDATE students SET used = 0, credits_used = 0")
                db.execute("INSERT INTO settings (key, value) VALUES ('last_reset', ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           (json.dumps({"period": now, "at": self.clock()}),))
            db.execute("INSERT INTO settings (key, value) VALUES ('period', ?) "
                       "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (now,))
        return zero

    # -- quota and credits --------------------------------------------------------------------

    def reserve(self, student_id: str, images: int, credits: float | None = None) -> bool:
        """:meth:`reserve_for`, as a yes or no."""
        return self.reserve_for(student_id, images, credits) is not None

    def reserve_for(self, student_id: str, images: int,
                    credits: float | None = None) -> str | None:
        """Take ``images`` from the student's quota and ``credits`` (an estimate; None:
        unknown, not counted) from their budget and the class's, atomically: the budget
        period they were taken in, or None when any would not fit (nothing taken)."""
        with self._tx() as db:
            return self._reserve(db, student_id, images, credits)

    def _reserve(self, db: sqlite3.Connection, student_id: str, images: int,
                 credits: float | None) -> str | None:
        row = db.execute("SELECT * FROM students WHERE id = ?", (student_id,)).fetchone()
        if row is None or row["revoked"] or row["used"] + images > row["quota"]:
            return None
        if credits:
            policy = self._policy(db)
            budget = _student(row).budget(policy)
            if budget is not None and row["credits_used"] + credits > budget + EPSILON:
                return None
            if policy.class_credits is not None and \
                    self._class_used(db) + credits > policy.class_credits + EPSILON:
                return None
        db.execute("UPDATE students SET used = used + ?, credits_used = credits_used + ? "
                   "WHERE id = ?", (images, credits or 0.0, student_id))
        return self._period(db)

    def reserve_pending(self, student_id: str, images: int, credits: float | None,
                        endpoint: str) -> Reservation | None:
        """:meth:`reserve_for`, and a ``pending`` row for the submit in the same
        transaction: a proxy killed before the submit reached KIE gives it back when it
        starts again (:meth:`recover`). None when it would not fit (nothing taken)."""
        with self._tx() as db:
            period = self._reserve(db, student_id, images, credits)
            if period is None:
                return None
            cursor = db.execute("INSERT INTO pending (student_id, endpoint, images, credits, "
                                "period, created) VALUES (?, ?, ?, ?, ?, ?)",
                                (student_id, endpoint, images, credits, period, time.time()))
        assert cursor.lastrowid is not None
        return Reservation(period, cursor.lastrowid)

    def release(self, student_id: str, images: int, credits: float | None = None,
                period: str | None = None, *, pending: int | None = None) -> None:
        """Give back images (and credits) reserved for a request that made no task — only
        to the period that paid them (``period``, from :meth:`reserve_for`) — and drop its
        ``pending`` row (only once: a row already gone gives nothing back)."""
        with self._tx() as db:
            if pending is not None and not db.execute("DELETE FROM pending WHERE id = ?",
                                                      (pending,)).rowcount:
                return
            if period is None or period == self._period(db):
                self._give_back(db, student_id, images, credits)

    def sending(self, pending: int, student_id: str) -> int:
        """A reserved submit is about to be sent to KIE: its pending row says so, the
        student's fair turn is counted, and the send time joins KIE's window (returned: the
        ``submits`` row to :meth:`answered` when KIE's answer comes)."""
        now = time.time()
        with self._tx() as db:
            db.execute("UPDATE pending SET state = 'sending', sent = ? WHERE id = ?",
                       (now, pending))
            db.execute("INSERT INTO served (student_id, turns) VALUES (?, 1) ON CONFLICT"
                       "(student_id) DO UPDATE SET turns = turns + 1", (student_id,))
            db.execute("DELETE FROM submits WHERE sent < ?", (now - _SUBMITS_KEPT,))
            cursor = db.execute("INSERT INTO submits (sent) VALUES (?)", (now,))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def answered(self, submit: int) -> None:
        """KIE answered a submit (or it surely never arrived): it counts in KIE's window
        from now."""
        with self._tx() as db:
            db.execute("UPDATE submits SET answered = ? WHERE id = ? AND answered IS NULL",
                       (time.time(), submit))

    def requeue(self, pending: int) -> None:
        """KIE refused a sent submit over its rate (it made nothing): the reservation waits
        for its next turn again, so a stop meanwhile gives it back."""
        with self._tx() as db:
            db.execute("UPDATE pending SET state = 'waiting' WHERE id = ? AND state = 'sending'",
                       (pending,))

    def unsure(self, pending: int) -> None:
        """A sent submit had no readable answer: KIE may have made the task. Its images stay
        charged and the teacher page lists it apart."""
        with self._tx() as db:
            db.execute("UPDATE pending SET state = 'unsure' WHERE id = ?", (pending,))

    def recover(self) -> tuple[int, int]:
        """At start: give back every reservation that never reached KIE (``waiting``) and
        mark the ones sent with no answer ``unsure``; (released, unsure) counts."""
        with self._tx() as db:
            period = self._period(db)
            rows = db.execute("SELECT * FROM pending WHERE state = 'waiting'").fetchall()
            for row in rows:
                if row["period"] == period:
                    self._give_back(db, row["student_id"], row["images"], row["credits"])
            db.execute("DELETE FROM pending WHERE state = 'waiting'")
            unsure = db.execute("UPDATE pending SET state = 'unsure' WHERE state = 'sending'"
                                ).rowcount
        return len(rows), unsure

    def pending(self, state: str | None = None) -> list[PendingRow]:
        """Reservations KIE has not answered (``state``: only those), oldest first."""
        where, args = ("WHERE state = ?", [state]) if state else ("", [])
        return [PendingRow(r["id"], r["student_id"], r["endpoint"], r["images"], r["credits"],
                           r["period"], r["state"], r["created"], r["sent"])
                for r in self._all(f"SELECT * FROM pending {where} ORDER BY id", args)]

    def recent_submits(self, since: float) -> list[tuple[float, float | None]]:
        """(sent, answered) wall-clock times of the submits sent since ``since``."""
        return [(r["sent"], r["answered"]) for r in
                self._all("SELECT sent, answered FROM submits WHERE sent >= ? ORDER BY sent",
                          (since,))]

    def served(self) -> dict[str, int]:
        """Fair turns per student since the class was last idle."""
        return {r["student_id"]: r["turns"] for r in self._all("SELECT * FROM served")}

    def clear_served(self) -> None:
        """The class went idle: everyone starts level again."""
        with self._tx() as db:
            db.execute("DELETE FROM served")

    # -- the teacher's actions -----------------------------------------------------------------

    def note(self, actor: str, action: str, student: str = "", detail: str = "") -> None:
        """Keep one teacher action in the audit trail (``actor``: ``cli`` or ``page``)."""
        with self._tx() as db:
            db.execute("INSERT INTO audit (at, actor, action, student, detail) "
                       "VALUES (?, ?, ?, ?, ?)",
                       (time.time(), actor, action, student[:200], detail[:500]))

    def audit(self, limit: int | None = None) -> list[AuditRow]:
        """The teacher's actions, newest first."""
        sql = "SELECT * FROM audit ORDER BY id DESC"
        args: list[Any] = []
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [AuditRow(r["at"], r["actor"], r["action"], r["student"], r["detail"])
                for r in self._all(sql, args)]

    @staticmethod
    def _give_back(db: sqlite3.Connection, student_id: str, images: int,
                   credits: float | None) -> None:
        db.execute("UPDATE students SET used = MAX(used - ?, 0), "
                   "credits_used = MAX(credits_used - ?, 0) WHERE id = ?",
                   (images, credits or 0.0, student_id))

    @staticmethod
    def _class_used(db: sqlite3.Connection) -> float:
        return float(db.execute("SELECT COALESCE(SUM(credits_used), 0) FROM students")
                     .fetchone()[0])

    def class_credits_used(self) -> float:
        """The credits the whole class has used in this period."""
        with self._lock:
            return self._class_used(self._db)

    # -- tasks ------------------------------------------------------------------------------

    def record_task(self, task_id: str, student_id: str, endpoint: str, images: int,
                    prompt: str, *, model: str | None = None,
                    credits: float | None = None, period: str | None = None,
                    pending: int | None = None) -> None:
        """Keep a task KIE made, with what was reserved for it and in which period
        (``period`` from :meth:`reserve_for`; else the current one); its ``pending`` row
        goes in the same transaction."""
        with self._tx() as db:
            if pending is not None:
                db.execute("DELETE FROM pending WHERE id = ?", (pending,))
            db.execute("INSERT OR IGNORE INTO tasks (task_id, student_id, endpoint, images, "
                       "prompt, created, model, credits, period) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (task_id, student_id, endpoint, images, prompt[:2000], time.time(),
                        model, credits, self._period(db) if period is None else period))

    @staticmethod
    def _period(db: sqlite3.Connection) -> str:
        row = db.execute("SELECT value FROM settings WHERE key = 'period'").fetchone()
        return row["value"] if row else ""

    def task(self, task_id: str) -> TaskRow | None:
        row = self._one("SELECT * FROM tasks WHERE task_id = ?", (task_id,))
        return _task(row) if row else None

    def task_failed(self, task_id: str, reported: float | None = None) -> bool:
        """Mark a running task failed and give its images and credits back (once, and only
        to the period that paid them) — its credits less what KIE ``reported`` it consumed,
        where it did; True if it was running."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM tasks WHERE task_id = ? AND state = 'running'",
                             (task_id,)).fetchone()
            if row is None:
                return False
            db.execute("UPDATE tasks SET state = 'failed', finished = ? WHERE task_id = ?",
                       (time.time(), task_id))
            held = row["credits"] or 0.0
            if reported is not None:
                db.execute("UPDATE tasks SET credits = ?, credits_basis = 'reported' "
                           "WHERE task_id = ?", (reported, task_id))
            if row["period"] == self._period(db):
                back = held if reported is None else held - reported
                self._give_back(db, row["student_id"], row["images"], max(back, 0.0))
                if back < 0:  # KIE reported more than was held
                    db.execute("UPDATE students SET credits_used = credits_used + ? "
                               "WHERE id = ?", (-back, row["student_id"]))
        return True

    def task_succeeded(self, task_id: str, urls: Sequence[str]) -> bool:
        """Mark a running task done with its image URLs (once). A task that made more images
        than were reserved is charged the difference; True if it was running."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM tasks WHERE task_id = ? AND state = 'running'",
                             (task_id,)).fetchone()
            if row is None:
                return False
            extra = max(len(urls) - row["images"], 0)
            db.execute("UPDATE tasks SET state = 'success', finished = ?, urls = ?, "
                       "images = images + ? WHERE task_id = ?",
                       (time.time(), json.dumps(list(urls)[:16]), extra, task_id))
            if extra and row["period"] == self._period(db):
                db.execute("UPDATE students SET used = used + ? WHERE id = ?",
                           (extra, row["student_id"]))
        return True

    def task_reported(self, task_id: str, credits: float) -> bool:
        """KIE reported what a task consumed: it replaces the estimate (once), and the
        student's use moves by the difference; True if it did."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM tasks WHERE task_id = ? AND state != 'failed' "
                             "AND credits_basis != 'reported'", (task_id,)).fetchone()
            if row is None:
                return False
            db.execute("UPDATE tasks SET credits = ?, credits_basis = 'reported' "
                       "WHERE task_id = ?", (credits, task_id))
            change = credits - (row["credits"] or 0.0)
            if change and row["period"] == self._period(db):
                db.execute("UPDATE students SET credits_used = MAX(credits_used + ?, 0) "
                           "WHERE id = ?", (change, row["student_id"]))
        return True

    def spend_by_model(self, period: str | None = None) -> list[ModelSpend]:
        """What was spent per model (in ``period`` when given), most credits first."""
        where, args = ("WHERE period = ?", [period]) if period is not None else ("", [])
        rows = self._all(
            "SELECT COALESCE(model, '(not recorded)') AS model, COUNT(*) AS tasks, "
            "SUM(CASE WHEN state != 'failed' THEN images ELSE 0 END) AS images, "
            f"SUM(CASE WHEN {_PAID} THEN COALESCE(credits, 0) ELSE 0 END) AS credits, "
            f"SUM(CASE WHEN {_PAID} AND credits IS NULL THEN 1 ELSE 0 END) AS unknown, "
            f"MAX(CASE WHEN {_PAID} AND credits IS NOT NULL "
            "AND credits_basis != 'reported' THEN 1 ELSE 0 END) AS estimated "
            f"FROM tasks {where} GROUP BY 1 ORDER BY credits DESC, model", args)
        return [ModelSpend(r["model"], r["tasks"], r["images"] or 0, float(r["credits"] or 0),
                           r["unknown"] or 0, bool(r["estimated"])) for r in rows]

    def owns_url(self, student_id: str, url: str) -> bool:
        """Whether ``url`` is a result KIE made for one of the student's tasks."""
        return self._one("SELECT 1 FROM tasks, json_each(tasks.urls) AS u "
                         "WHERE tasks.student_id = ? AND json_valid(tasks.urls) "
                         "AND u.value = ?", (student_id, url)) is not None

    def tasks_of(self, student_id: str, limit: int | None = None) -> list[TaskRow]:
        sql = "SELECT * FROM tasks WHERE student_id = ? ORDER BY created DESC"
        args: list[Any] = [student_id]
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_task(r) for r in self._all(sql, args)]

    def credits_overall(self) -> dict[str, float]:
        """What each student has spent in every period (their tasks' credits)."""
        rows = self._all(f"SELECT student_id, SUM(CASE WHEN {_PAID} THEN COALESCE(credits, 0) "
                         "ELSE 0 END) AS c FROM tasks GROUP BY student_id")
        return {r["student_id"]: float(r["c"] or 0) for r in rows}

    def task_counts(self) -> dict[str, int]:
        rows = self._all("SELECT student_id, COUNT(*) AS n FROM tasks GROUP BY student_id")
        return {r["student_id"]: r["n"] for r in rows}

    def all_tasks(self) -> list[TaskRow]:
        return [_task(r) for r in self._all("SELECT * FROM tasks ORDER BY created")]
