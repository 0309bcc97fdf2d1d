"""Input images and masks: resolve what the user gave into URLs or checked local bytes.

Everything is checked here, before anything is sent: a missing file, a directory, a file that
is not an image, one over 25 MiB, too many images, a mask with no image or of another size.
Local files are read once; the task uploads their bytes when it starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import KieUsageError
from .imageinfo import sniff_image
from .localfiles import check_image_bytes, read_image_file
from .models import MAX_FILES, GenerationRequest

__all__ = ["InputImage", "resolve_images", "resolve_mask", "request_with_inputs", "PENDING_UPLOAD"]

#: Stands in for the URL of a local file until the task uploads it.
PENDING_UPLOAD = "https://upload.pending/local-file"


@dataclass(frozen=True)
class InputImage:
    """One input: a public URL as is, or local bytes to upload first."""

    label: str
    url: str | None = None
    data: bytes | None = None

    @property
    def name(self) -> str:
        return Path(self.label).name or "image.png"

    def size(self) -> tuple[int | None, int | None]:
        """Pixel size of local bytes, (None, None) for a URL."""
        info = sniff_image(self.data) if self.data else None
        return (info.width, info.height) if info else (None, None)


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _expand(source: Any, option: str) -> list[InputImage]:
    # A finished task stands for all its images; its type is imported late to avoid a cycle.
    from .task import Task

    if isinstance(source, Task):
        if not source.urls:
            raise KieUsageError(
                f"{option}: task {source.task_id or '(not submitted)'} has no images "
                f"(status: {source.status.value})"
            )
        return [InputImage(label=u, url=u) for u in source.urls]
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        check_image_bytes(data, f"{option} (bytes)")
        return [InputImage(label="image.png", data=data)]
    if isinstance(source, (list, tuple)):
        out: list[InputImage] = []
        for item in source:
            out.extend(_expand(item, option))
        return out
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source).strip()
        if not text:
            raise KieUsageError(f"{option}: empty path")
        if _is_url(text):
            return [InputImage(label=text, url=text)]
        if "://" in text:
            raise KieUsageError(f"{option}: {text!r} is not an http(s) URL or a local file")
        return [InputImage(label=text, data=read_image_file(text))]
    raise KieUsageError(
        f"{option}: expected a file path, an http(s) URL, image bytes or a task, "
        f"not {type(source).__name__}"
    )


def resolve_images(sources: Iterable[Any]) -> tuple[InputImage, ...]:
    """Resolve ``--image`` sources (paths, URLs, bytes, tasks, lists of them)."""
    images: list[InputImage] = []
    for source in sources:
        images.extend(_expand(source, "--image"))
    if len(images) > MAX_FILES:
        raise KieUsageError(
            f"--image: {len(images)} images given; at most {MAX_FILES} are allowed"
        )
    return tuple(images)


def resolve_mask(source: Any, images: tuple[InputImage, ...]) -> InputImage | None:
    """Resolve ``--mask``; it needs exactly one image, of the same size if both are local."""
    if source is None:
        return None
    if not images:
        raise KieUsageError("--mask: needs an --image to edit (black = edit, white = keep)")
    if len(images) > 1:
        raise KieUsageError(
            f"--mask: works with exactly one --image ({len(images)} given); "
            "the API ignores a mask when several images are sent"
        )
    found = _expand(source, "--mask")
    if len(found) != 1:
        raise KieUsageError(f"--mask: expected one image, got {len(found)}")
    mask = found[0]
    mw, mh = mask.size()
    iw, ih = images[0].size()
    if None not in (mw, mh, iw, ih) and (mw, mh) != (iw, ih):
        raise KieUsageError(
            f"--mask: {mw}×{mh} does not match the image's {iw}×{ih}; "
            "the mask must have the same size as the image"
        )
    return mask


def request_with_inputs(prompt: str, images: tuple[InputImage, ...], mask: InputImage | None,
                        **params: Any) -> GenerationRequest:
    """A checked request whose local inputs hold :data:`PENDING_UPLOAD` until uploaded."""
    return GenerationRequest(
        prompt=prompt,
        files=tuple(i.url or PENDING_UPLOAD for i in images),
        mask=(mask.url or PENDING_UPLOAD) if mask else None,
        **params,
    )
