"""What happens around a task as it changes, as listeners of its events: the history record
and ``--save``. Neither may end a paid task: a folder that cannot be written is a warning."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol

from ..api.models import TaskStatus
from .files import atomic_write
from .history import HistoryStore, RecordedTask
from .images import thumbnail_jpeg

__all__ = ["HistoryRecorder", "SaveOnDownload", "ThumbnailKeeper", "THUMB_SIDE"]

#: Longest side of the thumbnails kept for the gallery, in pixels.
THUMB_SIDE = 256

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


class ThumbnailKeeper:
    """Keeps small JPEG copies of a finished task's images next to its history (so the
    gallery shows every task, not only saved ones), before history records the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._kept = False

    def __call__(self, task: Any) -> None:
        if self._kept or task.status is not TaskStatus.SUCCESS or not task.task_id:
            return
        self._kept = True
        paths: list[str] = []
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for n, data in task.numbered_images():
                path = self.directory / f"{task.task_id}_{n}.jpg"
                atomic_write(path, thumbnail_jpeg(data, THUMB_SIDE))
                paths.append(str(path.absolute()))
        except (OSError, ValueError) as exc:  # the gallery misses it; the task goes on
            log.warning("kie4o: could not keep thumbnails in %s: %s", self.directory, exc)
        task.thumb_paths = paths


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
