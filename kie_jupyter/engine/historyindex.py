"""The history's prompt index: SQLite FTS5 with the trigram tokenizer, over prompts case-folded
as Python folds them (``Straße`` as ``strasse``), so that a search finds exactly what
``text.casefold() in prompt.casefold()`` finds, any part of a prompt of 3 characters or more.

Kept by the writer (:meth:`.historydb.HistoryDB._put` calls :func:`index`), not by triggers:
an interpreter whose SQLite has no trigram tokenizer (older than 3.34) fails every statement
that touches the index, so it writes its tasks as usual and marks the index stale
(:func:`mark_stale`), and the next interpreter that has the tokenizer rebuilds it before it
searches. Contentless: the prompts themselves are in ``tasks``.
"""

from __future__ import annotations

import functools
import sqlite3

__all__ = ["available", "prepare", "is_stale", "mark_stale", "rebuild", "index", "match",
           "casefold"]

#: ``PRAGMA user_version`` of a history whose index is this one; below it the index is made
#: anew (1 and 0: made by development versions, or not at all).
VERSION = 2

_TABLE = "CREATE VIRTUAL TABLE IF NOT EXISTS prompts USING fts5(prompt, content='', " \
         "tokenize='trigram')"
#: Triggers that kept the index in development versions: dropped wherever they are found.
_OLD_TRIGGERS = ("tasks_fts_insert", "tasks_fts_delete", "tasks_fts_update")


def casefold(text: object) -> str:
    """The text as the index and the scan compare it."""
    return str(text).casefold() if text is not None else ""


@functools.cache
def available() -> bool:
    """Whether this interpreter's SQLite has FTS5 with the trigram tokenizer."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE VIRTUAL TABLE probe USING fts5(x, tokenize='trigram')")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def prepare(cur: sqlite3.Cursor) -> bool:
    """At open, in the caller's write transaction: old triggers gone; where the tokenizer
    exists, the index made (anew below :data:`VERSION`) and rebuilt if it is not whole.
    Whether searches can use it."""
    names = {n for (n,) in cur.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    for name in names & set(_OLD_TRIGGERS):
        cur.execute(f"DROP TRIGGER {name}")
    if not available():
        return False
    (version,) = cur.execute("PRAGMA user_version").fetchone()
    if version < VERSION:
        cur.execute("DROP TABLE IF EXISTS prompts")
        cur.execute(_TABLE)
        cur.execute(f"PRAGMA user_version = {VERSION}")
        rebuild(cur)
        return True
    (count,) = cur.execute("SELECT COUNT(*) FROM tasks").fetchone()
    (indexed,) = cur.execute("SELECT COUNT(*) FROM prompts_docsize").fetchone()
    if indexed != count or is_stale(cur):
        rebuild(cur)
    return True


def is_stale(cur: sqlite3.Cursor | sqlite3.Connection) -> bool:
    """Whether an interpreter without the tokenizer wrote tasks since the last rebuild."""
    return cur.execute("SELECT 1 FROM meta WHERE key = 'fts_stale'").fetchone() is not None


def mark_stale(cur: sqlite3.Cursor) -> None:
    """Say the index misses what this transaction writes (no tokenizer here)."""
    cur.execute("INSERT OR REPLACE INTO meta VALUES ('fts_stale', '1')")


def rebuild(cur: sqlite3.Cursor) -> None:
    """Index every prompt again (in the caller's write transaction)."""
    cur.execute("INSERT INTO prompts (prompts) VALUES ('delete-all')")
    rows = cur.execute("SELECT seq, prompt FROM tasks").fetchall()
    cur.executemany("INSERT INTO prompts (rowid, prompt) VALUES (?, ?)",
                    [(seq, casefold(prompt)) for seq, prompt in rows])
    cur.execute("DELETE FROM meta WHERE key = 'fts_stale'")


def index(cur: sqlite3.Cursor, seq: int, old: str | None, new: str) -> None:
    """A task's prompt written (``old``: the one it replaces, ``None`` for a new task)."""
    if old is not None:
        cur.execute("INSERT INTO prompts (prompts, rowid, prompt) VALUES ('delete', ?, ?)",
                    (seq, casefold(old)))
    cur.execute("INSERT INTO prompts (rowid, prompt) VALUES (?, ?)", (seq, casefold(new)))


def match(text: str) -> tuple[str, str] | None:
    """The SQL condition and its argument that find ``text`` through the index, or ``None``
    when it is shorter than a trigram once folded (a scan finds it)."""
    folded = casefold(text)
    if len(folded) < 3:
        return None
    return ("seq IN (SELECT rowid FROM prompts WHERE prompts MATCH ?)",
            '"' + folded.replace('"', '""') + '"')
