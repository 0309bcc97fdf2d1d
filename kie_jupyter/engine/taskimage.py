"""A task's images: ``task[i]`` as an object, and the files :meth:`Task.save` writes.

A :class:`TaskImage` holds the downloaded bytes, the API's URL, its index and its task. It
shows itself as a picture in a notebook, saves itself (``fox[1].save("out/")``) and is a valid
input to another task (``images=fox[1]``, ``-i $fox[1]``). Saved files are written atomically,
next to a ``<taskId>.json`` sidecar that says how they were made.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..api.errors import KieUsageError
from ..api.imagedata import check_image_bytes, sniff_image
from . import stephook
from .inputs import InputImage


class ImageOwner(Protocol):
    """What an image needs of its task (the task module implements it; no import cycle)."""

    task_id: str | None

    def save(self, directory: str | os.PathLike[str], index: int | None = None) -> list[Path]:
        """Write image ``index`` (or all) and the sidecar into ``directory``."""
        ...

    def save_image(self, index: int, path: Path) -> Path:
        """Write image ``index`` as the file ``path``."""
        ...

__all__ = ["TaskImage", "ImageIndexError", "ImageOwner"]


class ImageIndexError(KieUsageError, IndexError):
    """``task[i]`` out of range: a usage error, and an :class:`IndexError` so that ``for``
    loops and ``list(task)`` end where the images end."""


@dataclass(frozen=True, eq=False)
class TaskImage:
    """Image ``index`` of ``task``: ``data`` (the bytes), ``url`` (the API's result URL)."""

    task: ImageOwner
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
        return self.task.save_image(self.index, target)

    def as_input_images(self, option: str) -> list[InputImage]:
        """This image as an input: by its URL when the API gave one, else its bytes (the
        bytes go along either way: they give the edit its source's shape, the model's file
        limits something to check and the card the source to show)."""
        where = f"task {self.task.task_id}[{self.index}]"
        if self.url:
            return [InputImage(label=where, url=self.url, data=self.data, source=where,
                               parent=self.task.task_id)]
        check_image_bytes(self.data, f"{option} ({where})")
        return [InputImage(label=f"{self.task.task_id}_{self.index}.png", data=self.data,
                           source=where, parent=self.task.task_id)]

    # -- one-step follow-ups (run by the Python API: cost, budget and confirmation apply) ---

    def upscale(self, factor: int | str | None = None, *, model: str | None = None,
                **options: Any) -> Any:
        """A larger copy (``factor`` where the model documents one: Topaz takes 1, 2, 4, 8);
        returns the new task. ``options`` are :func:`kie_jupyter.generate`'s ``wait``,
        ``timeout``, ``save``, ``yes``, ``max_credits``, ``confirm_over_credits``,
        ``client``."""
        return stephook.run("upscale", self, factor=factor, model=model, **options)

    def remove_bg(self, *, model: str | None = None, **options: Any) -> Any:
        """The image with its background removed; returns the new task."""
        return stephook.run("remove-bg", self, model=model, **options)

    def vary(self, n: int = 1, *, prompt: str | None = None, model: str | None = None,
             **options: Any) -> Any:
        """``n`` variations: this image's prompt (or ``prompt``) with the image as input, on
        its own model where that takes an input image; returns the new task (a sweep of
        ``n`` tasks on a model that makes one image per task)."""
        return stephook.run("vary", self, variants=n, prompt=prompt, model=model, **options)

    def reframe(self, size: str, *, model: str | None = None, **options: Any) -> Any:
        """The image extended to the frame ``size`` (``"16:9"``); returns the new task."""
        return stephook.run("reframe", self, size=size, model=model, **options)

    def _repr_png_(self) -> bytes | None:
        return self.data if self.format == "png" else None

    def _repr_jpeg_(self) -> bytes | None:
        return self.data if self.format == "jpeg" else None

    def __repr__(self) -> str:
        info = sniff_image(self.data)
        size = f" {info.width}×{info.height}" if info else ""
        return (f"<kie4o image {self.task.task_id}[{self.index}]{size} "
                f"{self.format.upper()}, {len(self.data) / 1024:.0f} KiB>")
