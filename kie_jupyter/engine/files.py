"""Files a task writes: images as ``<taskId>_<n>.<ext>`` and a JSON sidecar, each atomically
(a crash leaves the old file or the new one, never half of one)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..api.imagedata import sniff_image
from .provenance import embed_provenance

__all__ = ["atomic_write", "image_file_name", "write_images", "write_sidecar"]


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def image_file_name(task_id: str | None, n: int, data: bytes) -> str:
    """``<taskId>_<n>.<ext>``, the extension from the bytes (``png`` if unknown)."""
    info = sniff_image(data)
    ext = "jpg" if info and info.format == "jpeg" else (info.format if info else "png")
    return f"{task_id}_{n}.{ext}"


def write_images(target: Path, task_id: str | None, numbered: Sequence[tuple[int, bytes]],
                 provenance: Mapping[str, str] | None = None) -> list[Path]:
    """Write each (n, bytes) into ``target`` (created), PNGs with their ``provenance``
    chunks; return the paths."""
    target.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for n, data in numbered:
        path = target / image_file_name(task_id, n, data)
        atomic_write(path, embed_provenance(data, provenance) if provenance else data)
        paths.append(path)
    return paths


def write_sidecar(target: Path, task_id: str | None, sidecar: dict[str, Any]) -> Path:
    """Write ``<taskId>.json`` into ``target``; return its path."""
    path = target / f"{task_id}.json"
    atomic_write(path, json.dumps(sidecar, indent=2, ensure_ascii=False).encode("utf-8"))
    return path
