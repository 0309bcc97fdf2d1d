"""Replay packs, the reading side: real images recorded by a teacher, served by demo mode.

A pack is a zip file (``.kiepack``) holding ``manifest.json`` and the images it names::

    {"format": "kiepack", "version": 1, "created": "…", "title": "…",
     "tasks": [{"task_id": "…", "prompt": "…", "key": "<normalised prompt>", "model": "4o",
                "match_models": ["4o"], "size": "3:2", "edit": false, "params": {…},
                "images": ["images/<task id>_0.png", …], "created": "…"}]}

The fake server answers a generate request whose prompt, model and size match a recorded task,
and that gives input images exactly when the task did (``edit``; a pack written before it was
recorded holds text-to-image tasks), with that task's images (:meth:`ReplayPack.match`); any
other request gets the usual synthetic pictures. Prompts match when they are equal after
:func:`normalise_prompt`. The writing side is ``kie_jupyter.engine.packs``; the two share the
format's constants and :func:`normalise_prompt` from ``kie_jupyter.packformat`` (stdlib only:
the fake server still stands alone).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..packformat import FORMAT, MANIFEST, VERSION, normalise_prompt
from .images import sniff_mime

__all__ = ["FORMAT", "VERSION", "MANIFEST", "PackError", "PackTask", "ReplayPack",
           "load_pack", "normalise_prompt"]

#: A pack image larger than this is refused (a result image is a few MB at most).
MAX_IMAGE_BYTES = 50 * 1024 * 1024
_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})


class PackError(ValueError):
    """A file that cannot be used as a replay pack; the message is one line, naming it."""


@dataclass(frozen=True)
class PackTask:
    """One recorded task of a pack."""

    task_id: str
    prompt: str
    key: str
    model: str
    #: The API model ids a request may name to match (``4o`` for the 4o Image API).
    match_models: tuple[str, ...]
    #: The size (aspect ratio) as the API was sent it.
    size: str
    images: tuple[str, ...]
    #: Whether the task was given input images (an edit) rather than text alone.
    edit: bool = False


class ReplayPack:
    """A loaded pack: its recorded tasks and their image bytes, all in memory."""

    def __init__(self, path: Path, title: str, tasks: list[PackTask],
                 images: dict[str, tuple[bytes, str]]) -> None:
        self.path = path
        self.title = title
        self.tasks = tasks
        self._images = images
        self._by_key: dict[tuple[str, str, bool], list[PackTask]] = {}
        for task in tasks:
            self._by_key.setdefault((task.key, task.size, task.edit), []).append(task)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def image_count(self) -> int:
        return sum(len(t.images) for t in self.tasks)

    def match(self, prompt: str, model: str, size: str, *, edit: bool = False) -> list[str]:
        """The names of the recorded images for this request, in order (empty: none match).

        Every recorded task with the same normalised prompt, size and model, and given input
        images exactly when the request is (``edit``), gives its images, so a request for
        several variants gets as many different recorded ones. A student's edit of their own
        picture never gets a recorded text-to-image result, nor a text prompt a recorded edit.
        """
        found = self._by_key.get((normalise_prompt(prompt), str(size), bool(edit)), [])
        return [name for task in found if model in task.match_models for name in task.images]

    def image(self, name: str) -> tuple[bytes, str]:
        """``(bytes, MIME type)`` of one image of the pack."""
        return self._images[name]

    def __repr__(self) -> str:
        return (f"<ReplayPack {self.name}: {len(self.tasks)} task(s), "
                f"{self.image_count} image(s)>")


def load_pack(path: str | os.PathLike[str]) -> ReplayPack:
    """Read and check a pack; :class:`PackError` (one line, naming the file) if unusable."""
    shown = str(path)
    file = Path(path).expanduser()
    if not file.is_file():
        raise PackError(f"{shown}: no such file")
    if not zipfile.is_zipfile(file):
        raise PackError(f"{shown}: not a replay pack (not a zip file; make one with "
                        "`%kie4o pack export FILE.kiepack`)")
    try:
        with zipfile.ZipFile(file) as zf:
            manifest = _manifest(zf, shown)
            tasks = [_task(item, n, shown) for n, item in enumerate(manifest["tasks"])]
            images = {name: _image(zf, name, shown) for t in tasks for name in t.images}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise PackError(f"{shown}: damaged replay pack ({exc})") from None
    title = manifest.get("title")
    return ReplayPack(file, title if isinstance(title, str) else "", tasks, images)


def _manifest(zf: zipfile.ZipFile, shown: str) -> dict[str, Any]:
    try:
        raw = zf.read(MANIFEST)
    except KeyError:
        raise PackError(f"{shown}: not a replay pack (no {MANIFEST} in the zip)") from None
    try:
        manifest = json.loads(raw)
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PackError(f"{shown}: not a replay pack ({MANIFEST} is not a kiepack manifest)")
    version = manifest.get("version")
    if version != VERSION:
        newer = isinstance(version, int) and version > VERSION
        raise PackError(f"{shown}: replay pack format version {version!r}, this kie-jupyter "
                        f"reads version {VERSION}"
                        + ("; upgrade kie-jupyter" if newer else ""))
    tasks = manifest.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise PackError(f"{shown}: the replay pack holds no task")
    return manifest


def _task(item: Any, n: int, shown: str) -> PackTask:
    where = f"{shown}: task {n + 1} of the manifest"
    if not isinstance(item, dict):
        raise PackError(f"{where} is not an object")
    prompt, images = item.get("prompt"), item.get("images")
    if not isinstance(prompt, str) or not prompt.strip():
        raise PackError(f"{where} has no prompt")
    if (not isinstance(images, list) or not images
            or not all(isinstance(i, str) and i for i in images)):
        raise PackError(f"{where} names no image")
    model = str(item.get("model") or "4o")
    edit = item.get("edit", False)
    if not isinstance(edit, bool):
        raise PackError(f"{where}: edit must be true or false")
    matches = item.get("match_models")
    if not isinstance(matches, list) or not matches:
        matches = [model]
    return PackTask(task_id=str(item.get("task_id") or f"task-{n + 1}"), prompt=prompt,
                    key=normalise_prompt(prompt), model=model,
                    match_models=tuple(str(m) for m in matches),
                    size=str(item.get("size") or ""), images=tuple(images), edit=edit)


def _image(zf: zipfile.ZipFile, name: str, shown: str) -> tuple[bytes, str]:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise PackError(f"{shown}: damaged replay pack (the manifest names {name}, which is "
                        "not in the zip)") from None
    if info.file_size > MAX_IMAGE_BYTES:
        raise PackError(f"{shown}: {name} is larger than {MAX_IMAGE_BYTES // 2**20} MB")
    data = zf.read(info)
    mime = sniff_mime(data)
    if mime not in _IMAGE_TYPES:
        raise PackError(f"{shown}: {name} in the pack is not an image")
    return data, mime
