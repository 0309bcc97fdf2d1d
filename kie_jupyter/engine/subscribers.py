"""What happens around a task as it changes, as listeners of its events: the history record
and ``--save``. Neither may end a paid task: a folder that cannot be written is a warning."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol

from ..api.models import TaskStatus
from .history import HistoryStore, RecordedTask

__all__ = ["HistoryRecorder", "SaveOnDownload"]

log = logging.getLogger("kie_jupyter")


class HistoryRecorder:
    """Records a task the moment its id is known (so a crash loses no paid task), when it
    ends, and when files are saved after that."""

    def __init__(self, store: HistoryStore, base_url: str | None) -> None:
        self.store = store
        self.base_url = base_url
        self._last: tuple[Any, ...] | None = None

    def __call__(self, task: RecordedTask) -> None:
        if not task.task_id:
            return
        key = (task.task_id, task.status.finished, tuple(task.saved_paths))
        if key != self._last:
            self._last = key
            self.store.record_safely(task, self.base_url)


class SavingTask(Protocol):
    """What :class:`SaveOnDownload` needs of a task."""

    status: TaskStatus
    save_error: str | None

    def numbered_images(self) -> list[tuple[int, bytes]]: ...

    def save(self, directory: str | os.PathLike[str], index: int | None = None) -> list[Path]:
        ...


class SaveOnDownload:
    """``--save DIR``: writes the images once they are downloaded, before the task is
    announced done (so the card shows the files, or why they could not be written)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._saved = False

    def __call__(self, task: SavingTask) -> None:
        if self._saved or task.status is not TaskStatus.DOWNLOADING or not task.numbered_images():
            return
        self._saved = True
        try:
            task.save(self.directory)
        except OSError as exc:
            # The images are still in memory and shown: a warning, never a failure.
            task.save_error = f"could not save to {self.directory}: {exc.strerror or exc}"
            log.warning("kie4o: %s", task.save_error)
