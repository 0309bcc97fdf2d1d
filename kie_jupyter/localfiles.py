"""Local images for upload: read a file or check bytes, with one clear error per problem.

What the API would refuse is refused here, before anything is sent: a missing file, a
directory, an empty file, one over 25 MiB, or a format the API does not take.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from .errors import KieUsageError
from .imageinfo import sniff_image
from .models import MAX_IMAGE_BYTES

__all__ = ["INPUT_FORMATS", "check_image_bytes", "read_image_file", "mime_of", "unique_name"]

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
