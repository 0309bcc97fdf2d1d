"""Input images and masks: resolve what the user gave into URLs or checked local bytes.

Everything is checked here, before anything is sent: a missing file, a directory, a file that
is not an image, one over 30 MiB (:func:`check_limits`: over the model's own limits), too many
images, a mask with no image or of another size.
Local files are read once; the task uploads their bytes when it starts. ``option`` names the
argument in each message: ``--image``/``--mask`` for the magic and the shell, ``images``/``mask``
for the Python API.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from ..api.errors import KieUsageError
from ..api.imagedata import check_image_bytes, read_image_file, sniff_image
from ..api.models import MAX_FILES, GenerationRequest, is_http_url
from .provenance import task_id_in

__all__ = [
    "ImageSource",
    "InputImage",
    "resolve_images",
    "resolve_mask",
    "check_limits",
    "request_with_inputs",
    "PENDING_UPLOAD",
]

#: Stands in for the URL of a local file until the task uploads it.
PENDING_UPLOAD = "https://upload.pending/local-file"


@dataclass(frozen=True)
class InputImage:
    """One input: a public URL as is, or local bytes to upload first.

    ``source`` says where it came from, for the sidecar: the absolute local path, the URL, or
    ``task ID[n]`` for an earlier task's image (None for bytes). ``parent`` is the id of the
    task that made it, when known (an earlier task, or a PNG this tool wrote).
    """

    label: str
    url: str | None = None
    data: bytes | None = None
    source: str | None = None
    parent: str | None = None

    @property
    def name(self) -> str:
        return Path(self.label).name or "image.png"

    def size(self) -> tuple[int | None, int | None]:
        """Pixel size of local bytes, (None, None) for a URL."""
        info = sniff_image(self.data) if self.data else None
        return (info.width, info.height) if info else (None, None)


def _is_url(text: str) -> bool:
    return is_http_url(text)


@runtime_checkable
class ImageSource(Protocol):
    """Something that stands for input images: a finished task (all its images) or one of
    them (``task[1]``). Declared here so that this module needs no task type (no cycle)."""

    def as_input_images(self, option: str) -> list[InputImage]:
        """The inputs it stands for; a one-line :class:`KieUsageError` naming ``option``
        when it has none."""
        ...


def _normal_url(text: str) -> str:
    """The URL with its scheme in lower case (``HTTPS://`` is valid, but not every server
    agrees); the rest, case-sensitive in a path, is kept as written."""
    parts = urlsplit(text)
    return urlunsplit(parts._replace(scheme=parts.scheme.lower()))


def _expand(source: Any, option: str) -> list[InputImage]:
    if isinstance(source, ImageSource):  # a task (all its images) or one image of one
        return source.as_input_images(option)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        check_image_bytes(data, f"{option} (bytes)")
        return [InputImage(label="image.png", data=data, parent=task_id_in(data))]
    if isinstance(source, (list, tuple)):
        out: list[InputImage] = []
        for item in source:
            out.extend(_expand(item, option))
        return out
    tasks = getattr(source, "tasks", None)
    if isinstance(tasks, list) and tasks and all(isinstance(t, ImageSource) for t in tasks):
        return _expand(tasks, option)  # a sweep: the images of each of its tasks, in order
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source).strip()
        if not text:
            raise KieUsageError(f"{option}: empty path")
        if _is_url(text):
            url = _normal_url(text)
            return [InputImage(label=text, url=url, source=url)]
        if "://" in text:
            raise KieUsageError(
                f"{option}: {text!r} is not an http(s) URL with a host, nor a local file"
            )
        absolute = str(Path(text).expanduser().absolute())
        try:
            data = read_image_file(text)
        except KieUsageError as exc:  # name the option the value was given to
            raise KieUsageError(f"{option}: {exc}") from None
        return [InputImage(label=text, data=data, source=absolute, parent=task_id_in(data))]
    raise KieUsageError(
        f"{option}: expected a file path, an http(s) URL, image bytes, a task or a task "
        f"image (task[n]), not {type(source).__name__}"
    )


def resolve_images(sources: Iterable[Any], option: str = "--image",
                   max_images: int = MAX_FILES) -> tuple[InputImage, ...]:
    """Resolve ``--image`` sources (paths, URLs, bytes, tasks, task images, lists of them);
    at most ``max_images`` (the 4o API's 5 unless the model takes another number)."""
    images: list[InputImage] = []
    for source in sources:
        images.extend(_expand(source, option))
    if len(images) > max_images:
        raise KieUsageError(
            f"{option}: {len(images)} images given; at most {max_images} are allowed"
        )
    return tuple(images)


def check_limits(images: Iterable[InputImage], limits: Any, model: str,
                 option: str = "--image") -> None:
    """Each input whose bytes are at hand against ``limits`` (a
    :class:`~kie_jupyter.api.registry.FileLimits`: what the model's page allows), before
    anything is uploaded or paid; one line naming the image, the limit and what to do."""
    if limits is None:
        return
    for image in images:
        if image.data is None:
            continue  # a URL whose bytes we do not have: KIE checks it
        size = len(image.data)
        where = f"{option}: {image.label}"
        if limits.max_bytes and size > limits.max_bytes:
            raise KieUsageError(f"{where} is {size / 2**20:.1f} MB; {model} takes at most "
                                f"{limits.max_bytes / 2**20:g} MB per image — save it as "
                                "JPEG or smaller first")
        info = sniff_image(image.data)
        if info is None:
            continue
        if limits.formats and info.format not in limits.formats:
            raise KieUsageError(f"{where} is {info.format.upper()}; {model} takes "
                                f"{'/'.join(f.upper() for f in limits.formats)}")
        w, h = info.width, info.height
        too_big = ((limits.max_pixels and w * h > limits.max_pixels)
                   or (limits.max_side and max(w, h) > limits.max_side))
        if too_big:
            # The long side that meets both the side and the pixel limit.
            scale = min(limits.max_side / max(w, h) if limits.max_side else 1.0,
                        (limits.max_pixels / (w * h)) ** 0.5 if limits.max_pixels else 1.0)
            side = int(max(w, h) * scale)
            short = int(min(w, h) * scale)
            fix = (f"downscale it first (e.g. Pillow's image.thumbnail(({side}, {side})))"
                   if not (limits.min_side and short < limits.min_side) else
                   "no downscale fits its sides; crop it first")
            raise KieUsageError(f"{where} is {w}×{h}; {model} takes {limits.describe()} — "
                                f"{fix}")
        if limits.min_side and min(w, h) < limits.min_side:
            raise KieUsageError(f"{where} is {w}×{h}; {model} needs sides of at least "
                                f"{limits.min_side} px")


def resolve_mask(source: Any, images: tuple[InputImage, ...], option: str = "--mask",
                 image_option: str = "--image") -> InputImage | None:
    """Resolve ``--mask``; it needs exactly one image, of the same size if both are local.

    ``image_option`` is how the messages call the input image (``--image``, "input image").
    """
    if source is None:
        return None
    if not images:
        raise KieUsageError(
            f"{option}: needs an {image_option} to edit (black = edit, white = keep)"
        )
    if len(images) > 1:
        raise KieUsageError(
            f"{option}: works with exactly one {image_option} ({len(images)} given); "
            "the API ignores a mask when several images are sent"
        )
    found = _expand(source, option)
    if len(found) != 1:
        raise KieUsageError(f"{option}: expected one image, got {len(found)}")
    mask = found[0]
    mw, mh = mask.size()
    iw, ih = images[0].size()
    if None not in (mw, mh, iw, ih) and (mw, mh) != (iw, ih):
        raise KieUsageError(
            f"{option}: {mw}×{mh} does not match the image's {iw}×{ih}; "
            "the mask must have the same size as the image"
        )
    return mask


def request_with_inputs(prompt: str, images: tuple[InputImage, ...], mask: InputImage | None,
                        *, size: str = "1:1", variants: int = 1, enhance: bool = False,
                        fallback: bool = False, fallback_model: str | None = None,
                        callback_url: str | None = None,
                        upload_cn: bool = False) -> GenerationRequest:
    """A checked 4o request whose local inputs hold :data:`PENDING_UPLOAD` until uploaded."""
    return GenerationRequest(
        prompt=prompt,
        size=size,
        variants=variants,
        files=tuple(i.url or PENDING_UPLOAD for i in images),
        mask=(mask.url or PENDING_UPLOAD) if mask else None,
        enhance=enhance,
        fallback=fallback,
        fallback_model=fallback_model,
        callback_url=callback_url,
        upload_cn=upload_cn,
    )
