"""Replay packs, the writing side: chosen history tasks and their real images in one file.

A teacher runs the lesson's prompts once with a key, exports them
(``%kie4o pack export lesson.kiepack --search lighthouse``) and ships the file with the
notebooks; demo mode with the pack (``KIE_DEMO_PACK`` or ``%kie4o demo --pack FILE``) then
answers those prompts with those images, with no key and no proxy. The format (a zip with
``manifest.json`` and the images) is in ``kie_jupyter.packformat``, shared with the reading
side, ``kie_jupyter.fakeapi.packs`` (which this module does not import: the fake server stands
apart from the engine).

``edit`` says whether the task was given input images: a recorded edit answers only an edit
(of any picture) and a recorded text-to-image task only a request with no input image.

Images come from the files history knows were saved (``--save``, ``task.save``), else they
are downloaded from the task's result URLs while those still work (KIE keeps them 14 days);
an image that can be had neither way is left out and said so in :attr:`PackReport.missing`.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._version import __version__
from ..api.imagedata import sniff_image
from ..api.registry import MODELS
from ..packformat import FORMAT, MANIFEST, SUFFIX, VERSION, normalise_prompt
from .files import atomic_write
from .history import HistoryEntry

__all__ = ["SUFFIX", "PackReport", "export_pack", "normalise_prompt"]

_EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "gif": ".gif"}


@dataclass
class PackReport:
    """What :func:`export_pack` wrote, and what it had to leave out (one line each)."""

    path: Path
    tasks: int = 0
    images: int = 0
    bytes: int = 0
    missing: list[str] = field(default_factory=list)
    #: How many of the tasks written ran in demo mode (their images are synthetic).
    demo_tasks: int = 0


def _short(task_id: str) -> str:
    return task_id if len(task_id) <= 14 else task_id[:12] + "…"


def _is_edit(entry: HistoryEntry) -> bool:
    """Whether the task was given input images (an edit), not text alone."""
    return bool(entry.params.get("files"))


def _api_match(entry: HistoryEntry) -> tuple[list[str], str]:
    """The API model ids a request may name to match this task, and its size as sent."""
    size = str(entry.params.get("size") or "")
    spec = MODELS.get(entry.model or "4o")
    if spec is None or spec.family == "4o":
        return [entry.model or "4o"], size
    mode = spec.edit if _is_edit(entry) and spec.edit else spec.text or spec.edit
    choice = mode.size if mode is not None else None
    if choice is not None:
        size = choice.values.get(size, size) if size else (
            choice.values.get(choice.default, choice.default) if choice.default else "")
    # The id of the mode it ran in: an edit model never answers a text-to-image request.
    return [mode.model_id] if mode is not None else list(spec.model_ids), size


def _saved_images(entry: HistoryEntry) -> dict[int, bytes]:
    """Image ``n`` -> bytes, from files history knows were saved as ``<task id>_<n>.<ext>``."""
    pattern = re.compile(re.escape(entry.task_id) + r"_(\d+)\.(png|jpe?g|webp|gif)",
                         re.IGNORECASE)
    found: dict[int, bytes] = {}
    for path in entry.saved_paths:
        match = pattern.fullmatch(Path(path).name)
        if not match or int(match[1]) in found:
            continue
        try:
            data = Path(path).read_bytes()
        except OSError:
            continue
        if sniff_image(data) is not None:
            found[int(match[1])] = data
    return found


def _images_of(entry: HistoryEntry, fetch: Callable[[str], bytes] | None,
               missing: list[str]) -> list[tuple[int, bytes]]:
    images = _saved_images(entry)
    for n, url in enumerate(entry.urls):
        if n in images:
            continue
        why = "not saved, and no way to download it here"
        if fetch is not None:
            try:
                data = fetch(url)
                if sniff_image(data) is not None:
                    images[n] = data
                    continue
                why = "its URL did not answer with an image"
            except Exception as exc:  # one image lost never loses the others
                why = f"not saved, and its URL no longer works ({exc})"
        missing.append(f"task {_short(entry.task_id)} image {n + 1}: {why}; not included")
    return sorted(images.items())


def export_pack(entries: Iterable[HistoryEntry], out: str | os.PathLike[str], *,
                fetch: Callable[[str], bytes] | None = None, title: str = "") -> PackReport:
    """Write ``entries`` (their prompt, model, size, parameters and images) as a replay pack.

    Only tasks that succeeded are taken; ``fetch(url)`` downloads an image that was not
    saved. Nothing is written when no image at all could be had (:class:`ValueError`);
    the file is written atomically.
    """
    path = Path(out).expanduser()
    if path.suffix.lower() != SUFFIX:
        raise ValueError(f"{out}: a replay pack's name ends in {SUFFIX}")
    report = PackReport(path=path)
    tasks: list[dict[str, Any]] = []
    images: list[tuple[str, bytes]] = []
    for entry in entries:
        if entry.status != "success":
            report.missing.append(f"task {_short(entry.task_id)}: {entry.status or 'unknown'}"
                                  ", not a success; not included")
            continue
        got = _images_of(entry, fetch, report.missing)
        if not got:
            continue
        names = []
        for n, data in got:
            info = sniff_image(data)
            ext = _EXTENSIONS.get(info.format if info else "png", ".png")
            names.append(f"images/{entry.task_id}_{n}{ext}")
            images.append((names[-1], data))
        match_models, size = _api_match(entry)
        tasks.append({
            "task_id": entry.task_id, "prompt": entry.prompt,
            "key": normalise_prompt(entry.prompt), "model": entry.model or "4o",
            "match_models": match_models, "size": size, "edit": _is_edit(entry),
            "params": entry.params,
            "images": names, "created": entry.created, "completed": entry.completed,
            "demo": bool(entry.demo),
        })
        report.demo_tasks += bool(entry.demo)
    if not tasks:
        raise ValueError("no image of these tasks could be had (" + "; ".join(report.missing)
                         + ")" if report.missing else "no task to export")
    manifest = {"format": FORMAT, "version": VERSION, "title": title,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "software": f"kie-jupyter {__version__}", "tasks": tasks}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False),
                    compress_type=zipfile.ZIP_DEFLATED)
        for name, data in images:  # already compressed: stored as they are
            zf.writestr(name, data, compress_type=zipfile.ZIP_STORED)
    data = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)
    report.tasks, report.images, report.bytes = len(tasks), len(images), len(data)
    return report
