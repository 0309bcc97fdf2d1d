"""The local task history: an append-only JSON-lines file under the output folder.

Each change of a task is one line (one ``write`` on a file opened for appending), so a crash
mid-write can only cut the last line, never lose what was recorded before, and several tasks
(or kernels) finishing at once cannot interleave within a line. Reading folds the lines by
task id; a corrupt line is skipped with a warning. The key is never written: only the fields
listed in :meth:`HistoryStore.record` are.

A history that cannot be written (the folder is under a file, read-only, on a full disk) is
never a reason to drop a task that was paid for: :meth:`HistoryStore.record_safely` warns once
per folder, in one line, and the task goes on.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from ..api.models import TaskStatus

__all__ = ["HistoryStore", "HistoryEntry", "RecordedTask", "default_output_dir"]


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

FILE_NAME = "history.jsonl"

log = logging.getLogger("kie_jupyter")

#: Folders whose history could not be written and were already warned about (once each).
_warned: set[str] = set()
_warned_lock = threading.Lock()


def default_output_dir() -> Path:
    """``KIE_OUTPUT_DIR`` or ``~/.kie_jupyter``."""
    env = os.environ.get("KIE_OUTPUT_DIR")
    return Path(env).expanduser() if env else Path.home() / ".kie_jupyter"


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

    def merge(self, fields: dict[str, Any]) -> None:
        """Fold a later record in: new values win, but nothing known is blanked or moved
        (a resumed task keeps its first creation time and its saved files)."""
        for name, value in fields.items():
            if name not in self.__dataclass_fields__ or name == "task_id" or value is None:
                continue
            if value in ([], {}, "") or (name == "created" and self.created):
                continue
            setattr(self, name, value)


class HistoryStore:
    """Append-only history of tasks in ``<directory>/history.jsonl``."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory else default_output_dir()
        self.path = self.directory / FILE_NAME
        self._lock = threading.Lock()

    def record(self, task: RecordedTask, base_url: str | None = None) -> None:
        """Write the task's current state (call on submit and when it ends)."""
        if not task.task_id:
            return
        fields: dict[str, Any] = {
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
        self.append(fields)

    def record_safely(self, task: RecordedTask, base_url: str | None = None) -> bool:
        """:meth:`record`, but a write that fails is one warning (once per folder), not an
        error: the task itself must go on. Return whether the record was written."""
        try:
            self.record(task, base_url)
            return True
        except (OSError, ValueError, TypeError) as exc:  # ValueError: e.g. an unencodable path
            key = str(self.directory)
            with _warned_lock:
                first = key not in _warned
                _warned.add(key)
            if first:
                why = getattr(exc, "strerror", None) or type(exc).__name__
                log.warning("kie4o: could not write the history in %s (%s); tasks still run, "
                            "but are not recorded there", self.directory, why)
            return False

    def append(self, fields: dict[str, Any]) -> None:
        """Append one record as a single line."""
        line = (json.dumps(fields, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    def _lines(self) -> Iterator[dict[str, Any]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        for number, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError:
                item = None
            if not isinstance(item, dict) or not isinstance(item.get("task_id"), str):
                warnings.warn(f"kie4o history: skipped corrupt line {number} of {self.path}",
                              stacklevel=3)
                continue
            yield item

    def entries(self) -> list[HistoryEntry]:
        """Every task, oldest first, each folded from all its lines."""
        by_id: dict[str, HistoryEntry] = {}
        for item in self._lines():
            entry = by_id.get(item["task_id"])
            if entry is None:
                entry = by_id[item["task_id"]] = HistoryEntry(task_id=item["task_id"])
            entry.merge(item)
        return list(by_id.values())

    def recent(self, n: int = 20, search: str | None = None) -> list[HistoryEntry]:
        """The ``n`` most recent tasks, newest first, optionally whose prompt has ``search``."""
        items = self.entries()
        if search:
            needle = search.casefold()
            items = [e for e in items if needle in e.prompt.casefold()]
        return list(reversed(items))[:n]

    def star(self, task_id: str, starred: bool = True) -> HistoryEntry:
        """Mark a recorded task as starred (or not): one more line, like every change."""
        entry = self.get(task_id)
        if entry is None:
            raise KeyError(task_id)
        self.append({"task_id": task_id, "starred": bool(starred)})
        entry.starred = bool(starred)
        return entry

    def query(self, *, search: str | None = None, starred: bool = False,
              demo: bool | None = None, page: int = 1, per_page: int = 24,
              stopped_empty: bool = True) -> tuple[list[HistoryEntry], int]:
        """One page of tasks, newest first, and how many match in all.

        ``search`` looks in the prompt (case-insensitive), ``starred`` keeps starred tasks,
        ``demo`` keeps demo (True) or live (False) tasks; ``stopped_empty=False`` leaves out
        tasks stopped with no image (nothing to see).
        """
        items = self.entries()
        if not stopped_empty:
            items = [e for e in items if not (e.status == "stopped" and not e.urls
                                              and not e.thumbs)]
        if search:
            needle = search.casefold()
            items = [e for e in items if needle in e.prompt.casefold()]
        if starred:
            items = [e for e in items if e.starred]
        if demo is not None:
            items = [e for e in items if bool(e.demo) == demo]
        items.reverse()
        start = (max(page, 1) - 1) * per_page
        return items[start:start + per_page], len(items)

    def thumbs_dir(self) -> Path:
        """Where the small copies of every finished task's images are kept."""
        return self.directory / "thumbs"

    def get(self, task_id: str) -> HistoryEntry | None:
        """The entry for one task id, if recorded."""
        for entry in self.entries():
            if entry.task_id == task_id:
                return entry
        return None
