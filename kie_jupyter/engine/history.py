"""The local task history: one row per task in ``<output folder>/history.sqlite``.

Each change of a task is folded into its row in one transaction (:mod:`.historydb`), so a
crash loses at most the write in flight, and several tasks (or kernels, or ``kie4o --batch``)
finishing at once lose nothing. The key is never written: only the fields listed in
:meth:`HistoryStore.record` are. The JSON-lines history of earlier versions is read in once
and kept as it was; :meth:`HistoryStore.export_jsonl` writes one.

A history that cannot be written (the folder is under a file, read-only, on a full disk) is
never a reason to drop a task that was paid for: :meth:`HistoryStore.record_safely` warns once
per folder, in one line, and the task goes on.

Thumbnails of unstarred tasks are kept within a size cap (``KIE_THUMBS_MAX_MB``, 256 MB by
default), the oldest dropped first; a dropped task's entry says so (``thumbs_dropped``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import sys
import threading
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from ..api.models import TaskStatus
from .historydb import DB_NAME, JSONL_NAME, DBInfo, HistoryDB, existing_files

__all__ = ["HistoryStore", "HistoryEntry", "RecordedTask", "default_output_dir",
           "thumb_cap_bytes", "DEFAULT_THUMBS_MAX_MB"]


class RecordedTask(Protocol):
    """What history reads of a task (the task module implements it; no import cycle)."""

    task_id: str | None
    params: dict[str, Any]
    status: TaskStatus
    created: datetime
    completed: datetime | None
    urls: tuple[str, ...]
    saved_paths: list[str]
    error: Any

    @property
    def prompt(self) -> str: ...

    @property
    def demo(self) -> bool: ...

    @property
    def model(self) -> str: ...

    @property
    def parents(self) -> list[str]: ...

    thumb_paths: list[str]
    labels: dict[str, str]

#: The thumbnails of unstarred tasks are kept within this many MB unless
#: ``KIE_THUMBS_MAX_MB`` says otherwise.
DEFAULT_THUMBS_MAX_MB = 256

log = logging.getLogger("kie_jupyter")

#: Folders whose history could not be written and were already warned about (once each).
_warned: set[str] = set()
_warned_lock = threading.Lock()


def default_output_dir() -> Path:
    """``KIE_OUTPUT_DIR`` or ``~/.kie_jupyter``."""
    env = os.environ.get("KIE_OUTPUT_DIR")
    return Path(env).expanduser() if env else Path.home() / ".kie_jupyter"


def thumb_cap_bytes() -> int:
    """The thumbnails' cap in bytes: ``KIE_THUMBS_MAX_MB`` (a number ≥ 0, ``inf`` for no
    cap) or the default."""
    raw = os.environ.get("KIE_THUMBS_MAX_MB", "").strip()
    if raw:
        try:
            value = float(raw)
            if value == math.inf:
                return sys.maxsize  # "no cap"
            if 0 <= value < math.inf:
                return int(value * 1024 * 1024)
        except ValueError:
            pass
        _warn_once(f"cap:{raw}", "kie4o: KIE_THUMBS_MAX_MB=%r is not a size in MB (≥ 0); "
                   "the thumbnails are kept within %d MB", raw, DEFAULT_THUMBS_MAX_MB)
    return DEFAULT_THUMBS_MAX_MB * 1024 * 1024


def _warn_once(key: str, message: str, *args: object) -> None:
    with _warned_lock:
        first = key not in _warned
        _warned.add(key)
    if first:
        log.warning(message, *args)


@dataclass
class HistoryEntry:
    """What history knows of one task."""

    task_id: str
    prompt: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    status: str = ""
    created: str | None = None
    completed: str | None = None
    urls: list[str] = field(default_factory=list)
    saved_paths: list[str] = field(default_factory=list)
    error: str | None = None
    base_url: str | None = None
    #: True for a task run on the demo server, False for a live one, None if not recorded.
    demo: bool | None = None
    model: str | None = None
    #: Ids of the tasks whose images were this task's inputs.
    parents: list[str] = field(default_factory=list)
    #: Small local copies of the images (absolute paths), kept for every finished task.
    thumbs: list[str] = field(default_factory=list)
    starred: bool = False
    #: Where a failure was decided: "kie" (KIE's record) or "local" (timeout, connection…).
    error_source: str | None = None
    #: Tags given by the front end (``batch``: the key of a batch line, for resuming).
    labels: dict[str, str] = field(default_factory=dict)
    #: What the task cost (``Cost.to_dict()``: reported by KIE or estimated), if recorded.
    cost: dict[str, Any] | None = None
    #: The thumbnails were deleted to keep within the cap (the full images are elsewhere).
    thumbs_dropped: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistoryEntry:
        """An entry from its stored form (fields this version does not know are left)."""
        known = {k: v for k, v in data.items() if k in _ENTRY_FIELDS}
        return cls(**known)

    def merge(self, fields: dict[str, Any]) -> None:
        """Fold a later record in: new values win, but nothing known is blanked or moved
        (a resumed task keeps its first creation time and its saved files)."""
        for name, value in fields.items():
            if name not in self.__dataclass_fields__ or name == "task_id" or value is None:
                continue
            if value in ([], {}, "") or (name == "created" and self.created):
                continue
            setattr(self, name, value)


_ENTRY_FIELDS = frozenset(f.name for f in fields(HistoryEntry))


def _fold(known: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, Any]:
    """What is known of a task with a later record folded in (:meth:`HistoryEntry.merge`)."""
    entry = (HistoryEntry.from_dict(known) if known is not None
             else HistoryEntry(task_id=str(record["task_id"])))
    entry.merge(record)
    return asdict(entry)


class HistoryStore:
    """The history of tasks in ``<directory>/history.sqlite``."""

    def __init__(self, directory: str | os.PathLike[str] | None = None, *,
                 thumb_cap: int | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory else default_output_dir()
        self.path = self.directory / DB_NAME
        #: The JSON-lines history of earlier versions: read in once, then kept as a backup.
        self.jsonl_path = self.directory / JSONL_NAME
        #: Bytes of thumbnails kept for unstarred tasks (``None``: ``KIE_THUMBS_MAX_MB``).
        self.thumb_cap = thumb_cap

    def _db(self, create: bool = False) -> HistoryDB | None:
        return HistoryDB.open(self.directory, _fold, create=create)

    def record(self, task: RecordedTask, base_url: str | None = None) -> None:
        """Write the task's current state (call on submit and when it ends)."""
        if not task.task_id:
            return
        record: dict[str, Any] = {
            "task_id": task.task_id,
            "prompt": task.prompt,
            "params": task.params,
            "status": task.status.value,
            "created": task.created.isoformat(),
            "completed": task.completed.isoformat() if task.completed else None,
            "urls": list(task.urls),
            # Absolute, so history shown from another working folder still finds them.
            "saved_paths": [str(Path(p).expanduser().absolute()) for p in task.saved_paths],
            "error": str(task.error) if task.error else None,
            "error_source": getattr(task.error, "source", None) if task.error else None,
            "base_url": base_url,
            "demo": task.demo,
            "model": task.model,
            "parents": task.parents,
            "thumbs": list(task.thumb_paths),
            "labels": dict(task.labels),
            "cost": task.cost.to_dict() if hasattr(task, "cost") else None,
        }
        self.append(record)

    def record_safely(self, task: RecordedTask, base_url: str | None = None) -> bool:
        """:meth:`record`, but a write that fails is one warning (once per folder), not an
        error: the task itself must go on. Return whether the record was written."""
        try:
            self.record(task, base_url)
            return True
        except (OSError, ValueError, TypeError, sqlite3.Error) as exc:
            # ValueError: e.g. an unencodable path
            why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            _warn_once(str(self.directory), "kie4o: could not write the history in %s (%s); "
                       "tasks still run, but are not recorded there", self.directory, why)
            return False

    def append(self, record: dict[str, Any]) -> None:
        """Fold one record (``task_id`` and the fields that changed) into its task."""
        db = self._db(create=True)
        assert db is not None
        thumbs, size = existing_files(record.get("thumbs") or [])
        if record.get("thumbs"):
            # Only files still there: a task object still holding the paths of thumbnails
            # the cap deleted (re-recorded on a save, say) does not bring them back; new
            # ones (a resume that made them again) replace the note that they were dropped.
            record = {**record, "thumbs": thumbs,
                      **({"thumbs_dropped": False} if thumbs else {})}
        if not thumbs:
            db.upsert(str(record["task_id"]), record, _fold)
            return
        cap = self.thumb_cap if self.thumb_cap is not None else thumb_cap_bytes()
        _, files, over = db.record(str(record["task_id"]), record, _fold, size, cap)
        self._delete_thumbnails(files)
        if over:  # far over the cap (the first record after an upgrade): the rest
            for more in db.drop_thumbnails_over(cap):
                self._delete_thumbnails(more)

    def _delete_thumbnails(self, names: list[str]) -> None:
        folder = self.thumbs_dir().absolute()
        for name in names:
            path = Path(name)
            if path.parent.absolute() == folder:  # only ever our own copies
                try:
                    path.unlink()
                except OSError:
                    pass

    def entries(self) -> list[HistoryEntry]:
        """Every task, oldest first (first recorded first)."""
        db = self._db()
        return [] if db is None else [HistoryEntry.from_dict(d) for d in db.all()]

    def labelled(self, label: str) -> list[HistoryEntry]:
        """The tasks that carry ``label`` (e.g. ``batch``), oldest first."""
        db = self._db()
        return [] if db is None else [HistoryEntry.from_dict(d) for d in db.labelled(label)]

    def cost_entries(self, *, demo: bool = False) -> list[HistoryEntry]:
        """The live (``demo``: demo) tasks with what a spend report reads of them (id,
        creation, model, status, cost; params where no cost was recorded), oldest first."""
        db = self._db()
        return [] if db is None else [HistoryEntry.from_dict(d) for d in db.costs(demo)]

    def recent(self, n: int = 20, search: str | None = None) -> list[HistoryEntry]:
        """The ``n`` most recent tasks, newest first, optionally whose prompt has ``search``."""
        return self.query(search=search, per_page=n)[0]

    def star(self, task_id: str, starred: bool = True) -> HistoryEntry:
        """Mark a recorded task as starred (or not)."""
        db = self._db()
        if db is None or db.get(task_id) is None:
            raise KeyError(task_id)
        db = self._db(create=True)
        assert db is not None
        entry = db.upsert(task_id, {"task_id": task_id, "starred": bool(starred)}, _fold)
        return HistoryEntry.from_dict(entry)

    def query(self, *, search: str | None = None, starred: bool = False,
              demo: bool | None = None, page: int = 1, per_page: int = 24,
              stopped_empty: bool = True) -> tuple[list[HistoryEntry], int]:
        """One page of tasks, newest first, and how many match in all.

        ``search`` looks in the prompt (case-insensitive), ``starred`` keeps starred tasks,
        ``demo`` keeps demo (True) or live (False) tasks; ``stopped_empty=False`` leaves out
        tasks stopped with no image (nothing to see).
        """
        db = self._db()
        if db is None:
            return [], 0
        rows, total = db.page(search=search, starred=starred, demo=demo,
                              with_images_only=not stopped_empty,
                              offset=(max(page, 1) - 1) * per_page, limit=per_page)
        return [HistoryEntry.from_dict(d) for d in rows], total

    def thumbs_dir(self) -> Path:
        """Where the small copies of every finished task's images are kept."""
        return self.directory / "thumbs"

    def get(self, task_id: str) -> HistoryEntry | None:
        """The entry for one task id, if recorded."""
        db = self._db()
        found = None if db is None else db.get(task_id)
        return None if found is None else HistoryEntry.from_dict(found)

    def ids_starting(self, prefix: str, limit: int = 50) -> list[str]:
        """Recorded task ids that start with ``prefix`` (at most ``limit``)."""
        db = self._db()
        return [] if db is None else db.ids_starting(prefix, limit)

    def export_jsonl(self, target: str | os.PathLike[str]) -> int:
        """Write every task as one JSON line (oldest first) to ``target``; return how many.
        The same format the history once was: such a file, named ``history.jsonl`` in an
        empty output folder, is read in as a history."""
        path = Path(target).expanduser()
        if path.resolve() == self.jsonl_path.resolve():
            raise ValueError(f"{path} is the backup of the earlier history (read in from it)")
        db = self._db()
        rows = [] if db is None else list(db.all())
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return len(rows)

    def info(self) -> DBInfo | None:
        """The database's file, counts, search mode and thumbnails (``None``: no history)."""
        db = self._db()
        return None if db is None else db.info(self.jsonl_path)

