"""Pictures for the fake server, drawn with Pillow: synthetic PNGs, and the type of an upload.

A picture is a four-corner colour gradient in the prompt's colours under the model's own
drawing (:mod:`.pictures`: discs for 4o, rings for GPT Image…), styled by the prompt's style
words, with its opening words on top and a "DEMO" mark, all seeded from ``sha256(prompt,
size, variant, model)``, plus a faint grain. The grain is there for the file size: a clean
drawing compresses too well, and downloads of a realistic size are what the client and the
demo should meet.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import io
import random

from PIL import Image, ImageChops, ImageDraw, ImageFont

from .pictures import compose, finish, palette_hue

__all__ = ["RATIOS", "SIZES", "image_dimensions", "render_png", "render_marked_png",
           "sniff_mime"]

#: Aspect ratios the 4o API accepts, as (width, height) fractions of the long side.
SIZES: dict[str, tuple[int, int]] = {"1:1": (3, 3), "3:2": (3, 2), "2:3": (2, 3)}
#: Every ratio a picture can be drawn at (the Market and Kontext models' too), as (w, h).
RATIOS: dict[str, tuple[int, int]] = {
    r: (int(r.split(":")[0]), int(r.split(":")[1]))
    for r in ("1:1 3:2 2:3 4:3 3:4 16:9 9:16 21:9 4:5 5:4 1:4 4:1 1:8 8:1").split()
}

RGB = tuple[int, int, int]
# Grey grain: one pixel in sixteen a level darker, one a level lighter (stored +1, taken off
# by ``offset``). Enough to bring a 512-pixel picture from ~45 KB to ~120 KB, and cheap.
_GRAIN = [(0, *(1,) * 14, 2)[v % 16] for v in range(256)]
_MIME_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "MPO": "image/jpeg",
               "WEBP": "image/webp", "GIF": "image/gif"}


def image_dimensions(size: str, long_side: int = 512) -> tuple[int, int]:
    """``(width, height)`` of a picture of aspect ratio ``size`` (any of :data:`RATIOS`):
    the longer side is ``long_side``."""
    w, h = RATIOS[size]
    if w >= h:
        return long_side, max(1, long_side * h // w)
    return max(1, long_side * w // h), long_side


def sniff_mime(data: bytes) -> str:
    """The MIME type of an upload (PNG, JPEG, WEBP, GIF), else ``application/octet-stream``.

    The fake server's own copy: it may not import the client's ``api.imagedata``.
    """
    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG", "WEBP", "GIF")) as im:
            return _MIME_TYPES.get(im.format or "", "application/octet-stream")
    except Exception:  # not an image Pillow knows: the live API stores it all the same
        return "application/octet-stream"


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return round(r * 255), round(g * 255), round(b * 255)


@functools.lru_cache(maxsize=64)
def render_png(prompt: str, size: str = "1:1", variant: int = 0, long_side: int = 512,
               model: str = "4o") -> bytes:
    """A PNG picture deterministic in its arguments; cached, so repeated calls are free.

    ``model`` picks its kind of drawing, the prompt's colour and style words its palette and
    rendering, and its opening words are written on it (:mod:`.pictures`)."""
    width, height = image_dimensions(size, long_side)
    rng = random.Random(hashlib.sha256(
        f"{prompt}\x00{size}\x00{variant}\x00{model}".encode()).digest())
    # The palette comes from the prompt alone, so variants of one prompt look related.
    base = hashlib.sha256(prompt.encode()).digest()
    hue, named = palette_hue(prompt, base[0] / 256)
    spread = 0.05 + base[1] / 256 * (0.08 if named else 0.3)
    corners = [
        _hsv((hue + spread * (k - 1.5)) % 1.0, 0.3 + base[2 + k] / 256 * 0.4,
             0.55 + base[6 + k] / 256 * 0.4)
        for k in range(4)
    ]  # top-left, top-right, bottom-left, bottom-right
    if variant % 2:  # odd variants flip the gradient
        corners.reverse()

    # Four corner pixels, stretched: the box runs centre to centre, so the corners are exact.
    im = Image.new("RGB", (2, 2))
    im.putdata(corners)
    im = im.resize((width, height), Image.Resampling.BILINEAR, box=(0.5, 0.5, 1.5, 1.5))
    compose(im, model, hue, rng)
    im = finish(im, prompt, model)

    grain = Image.frombytes("L", (width, height), rng.randbytes(width * height)).point(_GRAIN)
    im = ImageChops.add(im, grain.convert("RGB"), offset=-1)
    out = io.BytesIO()
    im.save(out, format="PNG", compress_level=3)
    return out.getvalue()


@functools.lru_cache(maxsize=64)
def render_marked_png(prompt: str, size: str = "1:1", variant: int = 0, long_side: int = 512,
                      label: str = "synthetic", model: str = "4o") -> bytes:
    """:func:`render_png` with ``label`` written across its foot on a dark band.

    Used while a replay pack is loaded: a picture the pack did not have says it is made up,
    on the image itself, so the card, the gallery and a saved file all show it.
    """
    with Image.open(io.BytesIO(render_png(prompt, size, variant, long_side, model))) as src:
        im = src.convert("RGB")
    width, height = im.size
    band = max(14, height // 12)
    try:
        font: ImageFont.ImageFont | ImageFont.FreeTypeFont = ImageFont.load_default(
            size=int(band * 0.6))
    except (TypeError, OSError):  # Pillow < 10.1, or no FreeType: the small bitmap font
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(im, "RGBA")
    draw.rectangle((0, height - band, width, height), fill=(20, 20, 30, 170))
    left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
    draw.text(((width - (right - left)) / 2 - left,
               height - band + (band - (bottom - top)) / 2 - top),
              label, fill=(255, 255, 255, 255), font=font)
    out = io.BytesIO()
    im.save(out, format="PNG", compress_level=3)
    return out.getvalue()
