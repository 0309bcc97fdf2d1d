"""Image bytes and files as the API takes them: recognise the format and pixel size, check
what the API would refuse (empty, over 25 MiB, not PNG/JPEG/WEBP), read a local file with one
clear error per problem, and name uploads. The one owner of these rules: the client checks
uploads with them and the engine checks inputs before anything is sent."""

from __future__ import annotations

import os
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

from .errors import KieUsageError
from .models import MAX_IMAGE_BYTES

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


@dataclass(frozen=True)
class ImageInfo:
    """An image's format (``png``, ``jpeg``, ``webp``, ``gif``) and size in pixels."""

    format: str
    width: int | None
    height: int | None

    @property
    def mime_type(self) -> str:
        return MIME_TYPES[self.format]


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        # SOF0..SOF15 carry the size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8 " and len(data) >= 30:
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def sniff_image(data: bytes) -> ImageInfo | None:
    """Return the format and size of ``data``, or None if it is not a known image."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(data) >= 24 and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return ImageInfo("png", w, h)
        return ImageInfo("png", None, None)
    if data.startswith(b"\xff\xd8\xff"):
        size = _jpeg_size(data)
        return ImageInfo("jpeg", *(size or (None, None)))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        size = _webp_size(data)
        return ImageInfo("webp", *(size or (None, None)))
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return ImageInfo("gif", w, h)
    return None

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
    """Refuse what the API would refuse: empty, over 25 MiB, or not an image."""
    if not data:
        raise KieUsageError(f"{label}: the file is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise KieUsageError(
            f"{label}: {len(data) / 1048576:.1f} MiB is over the API's 25 MiB limit per image"
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
        if size > MAX_IMAGE_BYTES:
            raise KieUsageError(
                f"{path}: {size / 1048576:.1f} MiB is over the API's 25 MiB limit per image"
            )
        data = p.read_bytes()
    except OSError as exc:  # unreadable (permissions, a vanished file): one line, not a trace
        raise KieUsageError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__})"
                            ) from None
    check_image_bytes(data, str(path))
    return data
