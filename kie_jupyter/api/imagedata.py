"""Image bytes and files as the API takes them: recognise the format and pixel size, check
what no model takes (empty, over 30 MiB, not PNG/JPEG/WEBP), read a local file with one
clear error per problem, and name uploads. The one owner of these rules: the client checks
uploads with them and the engine checks inputs before anything is sent."""

from __future__ import annotations

import io
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .errors import KieUsageError
from .models import MAX_INPUT_BYTES

__all__ = [
    "ImageInfo",
    "sniff_image",
    "MIME_TYPES",
    "INPUT_FORMATS",
    "check_image_bytes",
    "read_image_file",
    "mime_of",
    "unique_name",
]

MIME_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
}
# Pillow's format names, as ours. MPO is Pillow's name for a camera JPEG carrying extra
# pictures: still a JPEG to the API.
_PIL_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp", "GIF": "gif"}
# Only these plugins are tried (faster; no BMP or TIFF); Pillow's JPEG one also opens MPO.
_PIL_OPENERS = ("PNG", "JPEG", "WEBP", "GIF")


@dataclass(frozen=True)
class ImageInfo:
    """An image's format (``png``, ``jpeg``, ``webp``, ``gif``) and size in pixels."""

    format: str
    width: int
    height: int

    @property
    def mime_type(self) -> str:
        return MIME_TYPES[self.format]


def sniff_image(data: bytes) -> ImageInfo | None:
    """The format and pixel size of ``data``, or None if it is not a PNG, JPEG, WEBP or GIF.

    Cheap enough for every upload and download: ``Image.open`` reads the header only and
    decodes no pixels.
    """
    try:
        with Image.open(io.BytesIO(data), formats=_PIL_OPENERS) as im:
            name, (width, height) = _PIL_FORMATS.get(im.format or ""), im.size
    except Exception:  # not an image, a cut-off header, a decompression bomb: all "unknown"
        return None
    return ImageInfo(name, width, height) if name else None


def mime_of(data: bytes) -> str:
    """The MIME type of image bytes (``application/octet-stream`` if unknown)."""
    info = sniff_image(data)
    return info.mime_type if info else "application/octet-stream"


def unique_name(name: str) -> str:
    """A file name made unique (reusing a name overwrites on the upload server)."""
    # Reusing a fileName overwrites on the server: make each upload's name unique.
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, "png"
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:40] or "image"
    return f"{safe}-{uuid.uuid4().hex[:8]}.{ext.lower()}"


def check_image_bytes(data: bytes, label: str) -> None:
    """Refuse what no model takes: empty, over 30 MiB (the largest any page allows; each
    model's own limit is checked with its request), or not an image."""
    if not data:
        raise KieUsageError(f"{label}: the file is empty")
    if len(data) > MAX_INPUT_BYTES:
        raise KieUsageError(
            f"{label}: {len(data) / 1048576:.1f} MiB is over the largest limit of any model "
            "(30 MiB per image)"
        )
    info = sniff_image(data)
    if info is None or info.format not in INPUT_FORMATS:
        found = f"a {info.format.upper()} image" if info else "not an image"
        raise KieUsageError(f"{label}: {found}; the API takes PNG, JPEG or WEBP")


#: Image formats the API accepts as inputs and masks.
INPUT_FORMATS = ("png", "jpeg", "webp")


def read_image_file(path: str | os.PathLike[str]) -> bytes:
    """Read a local image for upload, with a clear error for every way it can be wrong."""
    p = Path(path).expanduser()
    if not p.exists():
        raise KieUsageError(f"{path}: no such file")
    if p.is_dir():
        raise KieUsageError(f"{path}: is a directory, not an image file")
    try:
        size = p.stat().st_size
        if size > MAX_INPUT_BYTES:
            raise KieUsageError(
                f"{path}: {size / 1048576:.1f} MiB is over the largest limit of any model "
                "(30 MiB per image)"
            )
        data = p.read_bytes()
    except OSError as exc:  # unreadable (permissions, a vanished file): one line, not a trace
        raise KieUsageError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__})"
                            ) from None
    check_image_bytes(data, str(path))
    return data
