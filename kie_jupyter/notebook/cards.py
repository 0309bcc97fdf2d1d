"""The static output of a task: HTML with embedded images and a plain-text fallback.

This is what a saved notebook keeps, so it shows on GitHub or nbviewer with no kernel.
Images are embedded as bytes (result URLs expire), sized by the ``embed`` setting:
``thumb`` (a small copy when Pillow is installed), ``full`` or ``none``.
"""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..api.imagedata import sniff_image
from ..api.models import TaskStatus
from ..hints import status_text, with_hint

if TYPE_CHECKING:
    from ..engine.task import Task

__all__ = [
    "EMBED_CHOICES",
    "THUMB_SIZE",
    "static_bundle",
    "status_text",
    "summary_lines",
    "thumbnail",
]

EMBED_CHOICES = ("thumb", "full", "none")
#: Longest side of an embedded thumbnail, in pixels.
THUMB_SIZE = 320


def thumbnail(data: bytes, size: int = THUMB_SIZE) -> tuple[bytes, str]:
    """A small JPEG copy of an image, or the image itself when Pillow is missing."""
    info = sniff_image(data)
    mime = info.mime_type if info else "image/png"
    try:
        from PIL import Image
    except ImportError:
        return data, mime
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.thumbnail((size, size))
            out = io.BytesIO()
            im.convert("RGB").save(out, format="JPEG", quality=82, optimize=True)
            return out.getvalue(), "image/jpeg"
    except Exception:  # an image Pillow cannot read is embedded as it is
        return data, mime


def _safe_link(url: str) -> str | None:
    """An http(s) link worth saving: not to this machine (demo URLs die with the kernel)."""
    if not url.startswith(("http://", "https://")):
        return None
    host = urlsplit(url).hostname or ""
    return None if host in ("127.0.0.1", "localhost", "::1") else url


def _fix_of(task: Task) -> str | None:
    fix = getattr(task.error, "fix", None) if task.error else None
    return fix or ("resume" if task.status is TaskStatus.TIMED_OUT else None)


def summary_lines(task: Task) -> list[str]:
    """Plain-text lines describing a task: what a terminal shows."""
    p = task.params
    demo = " (demo)" if getattr(task, "demo", False) else ""
    head = f"kie4o task {task.task_id or '(not submitted)'} — {task.status.value}{demo}"
    lines = [head, f"prompt: {task.prompt}"]
    lines.append(f"size {p.get('size', '?')} · variants {p.get('variants', '?')}")
    if task.error:
        reason = with_hint(str(task.error), _fix_of(task), "notebook", task.task_id)
        lines.append(f"error: {reason}")
    lines.extend(f"image {n + 1}: {reason}" for n, reason in sorted(task.image_errors.items()))
    if task.save_error:
        lines.append(task.save_error)
    lines.extend(f"saved: {path}" for path in task.saved_paths)
    if task.done and task.completed:
        lines.append(f"time: {task.elapsed:.1f} s")
    return lines


def static_bundle(task: Task, embed: str = "thumb") -> dict[str, Any]:
    """The mimebundle of a task's static output (``text/html`` and ``text/plain``)."""
    esc = html.escape
    p = task.params
    chips = " ".join(
        f'<span style="background:#eef;border-radius:8px;padding:1px 7px;margin-right:4px">'
        f"{esc(str(label))}</span>"
        for label in (p.get("size"), f"×{p.get('variants', 1)}", task.status.value,
                      "demo" if getattr(task, "demo", False) else None)
        if label
    )
    parts = [
        '<div class="kie4o-static" style="font-family:sans-serif">',
        f'<div style="margin:2px 0"><b>kie4o</b> {chips} '
        f'<code style="font-size:85%">{esc(task.task_id or "")}</code></div>',
        f'<div style="white-space:pre-wrap;color:#333;margin:2px 0">'
        f"{esc(task.prompt[:2000])}</div>",
    ]
    if task.error:
        reason = with_hint(str(task.error), _fix_of(task), "notebook", task.task_id)
        parts.append(f'<div style="color:#b00020">{esc(reason)}</div>')
    images = task.numbered_images() if task.done else []
    if images and embed != "none":
        parts.append('<div style="display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start">')
        for n, data in images:
            body, mime = thumbnail(data) if embed == "thumb" else (data, _mime(data))
            src = f"data:{mime};base64," + base64.b64encode(body).decode("ascii")
            width = THUMB_SIZE if embed == "thumb" else 512
            link = _safe_link(task.urls[n]) if n < len(task.urls) else None
            caption = (f'<a href="{esc(link, quote=True)}" target="_blank" rel="noopener" '
                       f'style="color:#1a73e8;text-decoration:underline">'
                       f"full size</a>") if link else ""
            parts.append(
                f'<figure style="margin:0"><img src="{src}" alt="image {n + 1}" '
                f'style="max-width:{width}px;height:auto;display:block"/>'
                f'<figcaption style="font-size:85%">#{n + 1} {caption}</figcaption></figure>'
            )
        parts.append("</div>")
    notes = [f"image {n + 1}: {reason}" for n, reason in sorted(task.image_errors.items())]
    notes += [task.save_error] if task.save_error else []
    parts.extend(f'<div style="color:#b00020">{esc(note)}</div>' for note in notes)
    parts.append("</div>")
    return {"text/html": "".join(parts), "text/plain": "\n".join(summary_lines(task))}


def _mime(data: bytes) -> str:
    info = sniff_image(data)
    return info.mime_type if info else "image/png"
