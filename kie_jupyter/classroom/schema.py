"""The ledger's tables, and the migration that brings an older ``class.db`` up to date.

A ledger made before credit budgets has no credit, expiry or model columns: :func:`migrate`
adds each missing column with ``ALTER TABLE … ADD COLUMN`` (rows and their values stay), in
one transaction that checks again what is missing, so two processes opening the same old file
at once (the proxy and a ``kie4o class`` command) add each column once.
"""

from __future__ import annotations

import sqlite3

__all__ = ["SCHEMA", "migrate", "ADDED_COLUMNS"]

SCHEMA = """
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
-- Images and credits reserved for a submit not yet answered by KIE: 'waiting' (for a fair
-- turn: never sent, given back when a restarted proxy finds it), 'sending' (sent, no answer
-- yet) and 'unsure' (sent when the proxy stopped or KIE's answer was lost: KIE may have made
-- the task, so they stay charged, and the teacher page shows them apart).
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    student_id TEXT NOT NULL REFERENCES students(id),
    endpoint TEXT NOT NULL,
    images INTEGER NOT NULL,
    credits REAL,
    period TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'waiting',
    created REAL NOT NULL,
    sent REAL
);
-- Submits sent to KIE (wall-clock times), so a restarted proxy keeps KIE's rate window.
CREATE TABLE IF NOT EXISTS submits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sent REAL NOT NULL,
    answered REAL
);
CREATE INDEX IF NOT EXISTS submits_by_time ON submits (sent);
-- Fair turns each student was given since the class was last idle (kept across restarts).
CREATE TABLE IF NOT EXISTS served (student_id TEXT PRIMARY KEY, turns INTEGER NOT NULL);
-- What the teacher did, and when: the audit trail (teacher page, CSV).
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    student TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
"""

#: Columns added since the first ledger: (table, column, declaration).
ADDED_COLUMNS = (
    # The student's own credit budget (NULL: the class's default, if any), and use.
    ("students", "credits", "REAL"),
    ("students", "credits_used", "REAL NOT NULL DEFAULT 0"),
    # The last UTC day the token works (ISO date; NULL: no end).
    ("students", "expires", "TEXT"),
    # The student's own allowed models (a JSON list; NULL: the class's).
    ("students", "models", "TEXT"),
    # Our model name, the credits charged (NULL: unknown price), how they are known
    # ('estimate' or 'reported'), and the budget period they were charged in.
    ("tasks", "model", "TEXT"),
    ("tasks", "credits", "REAL"),
    ("tasks", "credits_basis", "TEXT NOT NULL DEFAULT 'estimate'"),
    ("tasks", "period", "TEXT NOT NULL DEFAULT ''"),
)

#: The 4o endpoint: an older ledger's tasks there were all 4o tasks.
_FOURO_ENDPOINT = "/api/v1/gpt4o-image/generate"


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def migrate(db: sqlite3.Connection) -> list[str]:
    """Create the tables, then add the columns an older file lacks; the ``table.column``
    names added (none for an up-to-date file). ``db`` is in autocommit mode."""
    db.executescript(SCHEMA)
    wanted = [(t, c, d) for t, c, d in ADDED_COLUMNS if c not in _columns(db, t)]
    if not wanted:
        return []
    added: list[str] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for table, column, declaration in ADDED_COLUMNS:
            if column not in _columns(db, table):  # another process may have added it
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
                added.append(f"{table}.{column}")
        if "tasks.model" in added:
            db.execute("UPDATE tasks SET model = '4o' WHERE model IS NULL AND endpoint = ?",
                       (_FOURO_ENDPOINT,))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return added
