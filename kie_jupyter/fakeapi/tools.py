"""What the mock server's tools make of their input image (demo realism, Pillow only).

KIE's tools transform the image they are given; a demo that drew a new picture for them would
show nothing of the step. Here an upscale is the input resized by its factor, a background
removal makes the input's background transparent, a reframe extends the input to the new
frame. Only inputs this server holds (its uploads and results) can be read: the mock server
never reaches the internet, so any other input gets the usual drawn picture.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from ._models import QWEN_SIZES
from .images import RATIOS

__all__ = ["TOOL_MODELS", "input_url", "apply_tool"]

#: The tools' API model ids and the field that holds their input image.
TOOL_MODELS = {
    "topaz/image-upscale": "image_url",
    "recraft/crisp-upscale": "image",
    "recraft/remove-background": "image",
    "ideogram/v3-reframe": "image_url",
}

#: The demo keeps upscales at most this long on their long side (memory, not KIE's limit).
MAX_SIDE = 4096
#: Crisp upscale's page documents no factor: the demo doubles.
CRISP_FACTOR = 2
#: Flood-fill tolerance for the demo's background removal (per channel, 0–255).
_THRESHOLD = 24
_SENTINEL = (255, 0, 254)


def input_url(model_id: str, fields: dict[str, Any]) -> str | None:
    """The input image URL of a tool task, else None (not a tool, or no URL)."""
    field = TOOL_MODELS.get(model_id)
    value = fields.get(field) if field else None
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) else None


def apply_tool(model_id: str, fields: dict[str, Any], source: bytes) -> bytes | None:
    """The tool's result for ``source`` as PNG bytes; None when it cannot be read."""
    try:
        with Image.open(io.BytesIO(source)) as opened:
            image = opened.convert("RGBA")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    if model_id == "topaz/image-upscale":
        result = _upscale(image, _factor(fields.get("upscale_factor")))
    elif model_id == "recraft/crisp-upscale":
        result = _upscale(image, CRISP_FACTOR)
    elif model_id == "recraft/remove-background":
        result = _remove_background(image)
    elif model_id == "ideogram/v3-reframe":
        result = _reframe(image, QWEN_SIZES.get(str(fields.get("image_size")), "1:1"))
    else:
        return None
    out = io.BytesIO()
    result.save(out, "PNG")
    return out.getvalue()


def _factor(value: Any) -> int:
    try:
        return max(1, int(str(value)))
    except ValueError:
        return 2  # the page's default


def _upscale(image: Image.Image, factor: int) -> Image.Image:
    w, h = image.size
    scale = min(float(factor), MAX_SIDE / max(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image.convert("RGB").resize(size, Image.Resampling.LANCZOS)


def _remove_background(image: Image.Image) -> Image.Image:
    """Transparent where the colour joins the border's (flood fills from points all along
    the border: a gradient background is removed piece by piece)."""
    full = image.size
    small = image.copy()
    small.thumbnail((512, 512))  # the fill on a small copy: a big upscale stays quick
    rgb = small.convert("RGB")
    w, h = rgb.size
    step = max(4, min(w, h) // 64)
    border = ([(x, y) for x in range(0, w, step) for y in (0, h - 1)]
              + [(x, y) for y in range(0, h, step) for x in (0, w - 1)])
    for point in border:
        if rgb.getpixel(point) != _SENTINEL:
            ImageDraw.floodfill(rgb, point, _SENTINEL, thresh=_THRESHOLD)
    r, g, b = rgb.split()
    filled = ImageChops.multiply(
        ImageChops.multiply(r.point(lambda v: 255 if v == _SENTINEL[0] else 0),
                            g.point(lambda v: 255 if v == _SENTINEL[1] else 0)),
        b.point(lambda v: 255 if v == _SENTINEL[2] else 0))
    mask = ImageChops.invert(filled).resize(full, Image.Resampling.BILINEAR)
    result = image.copy()
    result.putalpha(mask.filter(ImageFilter.GaussianBlur(1)))
    return result


def _reframe(image: Image.Image, ratio: str) -> Image.Image:
    """The image, whole, in a frame of ``ratio``; the new area a blurred stretch of it."""
    rw, rh = RATIOS.get(ratio, (1, 1))
    w, h = image.size
    side = max(w, h)
    frame = (side, max(1, round(side * rh / rw))) if rw >= rh else (
        max(1, round(side * rw / rh)), side)
    fw, fh = frame
    cover = max(fw / w, fh / h)
    back = image.convert("RGB").resize((max(1, round(w * cover)), max(1, round(h * cover))))
    left, top = (back.width - fw) // 2, (back.height - fh) // 2
    back = back.crop((left, top, left + fw, top + fh)).filter(ImageFilter.GaussianBlur(18))
    fit = min(fw / w, fh / h)
    inner = image.convert("RGB").resize((max(1, round(w * fit)), max(1, round(h * fit))))
    back.paste(inner, ((fw - inner.width) // 2, (fh - inner.height) // 2))
    return back
