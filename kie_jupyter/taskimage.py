"""A task's images: ``task[i]`` as an object, and the files :meth:`Task.save` writes.

A :class:`TaskImage` holds the downloaded bytes, the API's URL, its index and its task. It
shows itself as a picture in a notebook, saves itself (``fox[1].save("out/")``) and is a valid
input to another task (``images=fox[1]``, ``-i $fox[1]``). Saved files are written atomically,
next to a ``<taskId>.json`` sidecar that says how they were made.
"""

from __future__ import annotations

import json
import operator
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from .errors import KieError, KieUsageError
from .imageinfo import sniff_image

if TYPE_CHECKING:
    from .task import Task

__all__ = ["TaskImage", "ImageIndexError", "pick", "write_images"]


class ImageIndexError(KieUsageError, IndexError):
    """``task[i]`` out of range: a usage error, and an :class:`IndexError` so that ``for``
    loops and ``list(task)`` end where the images end."""


@dataclass(frozen=True, eq=False)
class TaskImage:
    """Image ``index`` of ``task``: ``data`` (the bytes), ``url`` (the API's result URL)."""

    task: Task
    index: int
    data: bytes
    url: str | None = None

    @property
    def format(self) -> str:
        """``png``, ``jpeg``, ``webp``… from the bytes (``png`` if unknown)."""
        info = sniff_image(self.data)
        return info.format if info else "png"

    @property
    def suffix(self) -> str:
        """The file extension for :attr:`format` (``.png``, ``.jpg``…)."""
        return ".jpg" if self.format == "jpeg" else f".{self.format}"

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the image; return its absolute path.

        ``path`` is a folder (an existing one, one ending in ``/``, or a name without an
        extension): the image goes in as ``<taskId>_<n>.png`` next to the task's
        ``<taskId>.json`` sidecar. Otherwise it is the file to write.
        """
        text = os.fspath(path)
        target = Path(text).expanduser().absolute()
        if target.is_dir() or text.endswith(("/", os.sep)) or not target.suffix:
            return self.task.save(target, index=self.index)[0]
        target.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(target, self.data)
        self.task._note_saved([target])
        return target

    def _repr_png_(self) -> bytes | None:
        return self.data if self.format == "png" else None

    def _repr_jpeg_(self) -> bytes | None:
        return self.data if self.format == "jpeg" else None

    def __repr__(self) -> str:
        info = sniff_image(self.data)
        size = f" {info.width}×{info.height}" if info else ""
        return (f"<kie4o image {self.task.task_id}[{self.index}]{size} "
                f"{self.format.upper()}, {len(self.data) / 1024:.0f} KiB>")


@overload
def pick(task: Task, index: int) -> TaskImage: ...
@overload
def pick(task: Task, index: slice) -> list[TaskImage]: ...
def pick(task: Task, index: int | slice) -> TaskImage | list[TaskImage]:
    """``task[index]``: one image (0-based, negative from the end) or a list for a slice."""
    images = task._ready_images()  # raises why there are none (failed, stopped, running)
    count = len(images)
    if isinstance(index, slice):
        return [pick(task, n) for n in range(*index.indices(count)) if images[n] is not None]
    if isinstance(index, bool):
        raise KieUsageError(f"task[{index!r}]: the index must be an int, not bool")
    try:
        n = operator.index(index)
    except TypeError:
        raise KieUsageError(
            f"task[{index!r}]: the index must be an int, not {type(index).__name__}"
        ) from None
    if not -count <= n < count:
        raise ImageIndexError(
            f"task[{n}]: task {task.task_id} has {count} image(s); use 0 to {count - 1} "
            "(or -1 for the last)" if count else f"task[{n}]: task {task.task_id} has no images"
        )
    n %= count
    data = images[n]
    if data is None:
        reason = task.image_errors.get(n, "it could not be downloaded")
        raise KieError(f"task[{n}]: image {n} of task {task.task_id} is missing: {reason}")
    url = task.urls[n] if n < len(task.urls) else None
    return TaskImage(task, n, data, url)


def write_images(task: Task, target: Path, numbered: Sequence[tuple[int, bytes]]) -> list[Path]:
    """Write ``<taskId>_<n>.<ext>`` for each (n, bytes) into ``target`` and the sidecar."""
    target.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for n, data in numbered:
        info = sniff_image(data)
        ext = "jpg" if info and info.format == "jpeg" else (info.format if info else "png")
        path = target / f"{task.task_id}_{n}.{ext}"
        _atomic_write(path, data)
        paths.append(path)
    task._note_saved(paths)
    # The sidecar lists every file of this task in the folder, also earlier single saves.
    files = [Path(p).name for p in task.saved_paths if Path(p).parent == target]
    _atomic_write(target / f"{task.task_id}.json",
                  json.dumps(_sidecar(task, files), indent=2, ensure_ascii=False).encode())
    return paths


def _sidecar(task: Task, files: list[str]) -> dict[str, Any]:
    """What ``<taskId>.json`` holds: enough to know later how each image was made."""
    sidecar: dict[str, Any] = {
        "task_id": task.task_id,
        "prompt": task.prompt,
        "params": task.params,
        "urls": list(task.urls),
        "created": task.created.isoformat(),
        "completed": task.completed.isoformat() if task.completed else None,
        "demo": task.demo,
        "files": files,
    }
    # Uploaded inputs get temporary URLs: keep where each came from (local path, URL, task).
    sent = list(task.params.get("files") or [])
    inputs, mask = task._inputs, task._mask
    if inputs:
        sidecar["inputs"] = [
            {"source": item.source, "url": sent[n] if n < len(sent) else item.url}
            for n, item in enumerate(inputs)
        ]
    elif sent:  # a resumed task: only the URLs are known
        sidecar["inputs"] = [{"source": None, "url": url} for url in sent]
    mask_url = task.params.get("mask")
    if mask is not None:
        sidecar["mask"] = {"source": mask.source, "url": mask_url or mask.url}
    elif mask_url:
        sidecar["mask"] = {"source": None, "url": mask_url}
    return sidecar


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
