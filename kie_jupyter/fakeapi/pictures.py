"""What a demo picture shows: the prompt's colours and style, a drawing per model, its words.

Demo mode must make the features visible without a key, so its pictures differ where real
ones would: each model draws its own kind of picture (discs for 4o, rings for GPT Image,
tiles for Nano Banana Pro…), colour words in the prompt set the palette ("a red fox" is red),
style words change the rendering (watercolor is soft, charcoal sketch is grey lines, pixel art
is blocky), the prompt's opening words are written across the top, and a small "DEMO · model"
mark sits in a corner, so no one takes one for KIE's.

:func:`compose` draws the shapes; :func:`finish` applies the style and writes the words.
"""

from __future__ import annotations

import colorsys
import math
import random
import re
from collections.abc import Callable

from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

__all__ = ["palette_hue", "styles_of", "compose", "finish", "short_model", "FAMILIES"]

RGB = tuple[int, int, int]

#: Colour words → hue (0..1); a prompt naming one is drawn in it.
_HUES = {"red": 0.0, "crimson": 0.97, "scarlet": 0.99, "orange": 0.07, "amber": 0.1,
         "gold": 0.12, "golden": 0.12, "yellow": 0.15, "lime": 0.22, "green": 0.33,
         "emerald": 0.38, "teal": 0.47, "turquoise": 0.48, "cyan": 0.5, "blue": 0.61,
         "azure": 0.57, "navy": 0.64, "indigo": 0.7, "purple": 0.78, "violet": 0.8,
         "lavender": 0.75, "magenta": 0.85, "pink": 0.92, "rose": 0.95, "brown": 0.08}
#: Style words → the effect :func:`finish` applies.
_STYLES = {"watercolor": "soft", "watercolour": "soft", "pastel": "soft", "dreamy": "soft",
           "charcoal": "sketch", "sketch": "sketch", "pencil": "sketch", "ink": "sketch",
           "drawing": "sketch", "oil": "bold", "painting": "bold", "acrylic": "bold",
           "pop": "bold", "neon": "neon", "cyberpunk": "neon", "night": "night",
           "pixel": "pixel", "8-bit": "pixel", "voxel": "pixel", "mosaic": "pixel",
           "noir": "mono", "monochrome": "mono", "black-and-white": "mono",
           "vintage": "sepia", "sepia": "sepia", "retro": "sepia"}
_WORD = re.compile(r"[a-z0-9][a-z0-9-]*")


def _words(prompt: str) -> list[str]:
    return _WORD.findall(prompt.lower())


def palette_hue(prompt: str, fallback: float) -> tuple[float, bool]:
    """The hue of the first colour word of ``prompt`` (and True), else ``fallback``."""
    for word in _words(prompt):
        if word in _HUES:
            return _HUES[word], True
    return fallback, False


def styles_of(prompt: str) -> list[str]:
    """The effects the prompt's style words ask for, in order, once each."""
    return list(dict.fromkeys(_STYLES[w] for w in _words(prompt) if w in _STYLES))


def _hsv(h: float, s: float, v: float, alpha: int | None = None) -> tuple[int, ...]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    rgb = (round(r * 255), round(g * 255), round(b * 255))
    return rgb if alpha is None else (*rgb, alpha)


# -- one drawing per model ------------------------------------------------------------------

Drawer = Callable[[ImageDraw.ImageDraw, int, int, float, random.Random], None]


def _discs(d: ImageDraw.ImageDraw, w: int, h: int, hue: float, rng: random.Random) -> None:
    for _ in range(rng.randint(4, 6)):
        r = int(min(w, h) * rng.uniform(0.08, 0.28))
        cx, cy = rng.randrange(w), rng.randrange(h)
        d.ellipse((cx - r, cy - r, cx + r, cy + r),
                  fill=_hsv(hue + rng.uniform(-0.06, 0.06), rng.uniform(0.5, 0.9),
                            rng.uniform(0.7, 1.0), 190),
                  outline=(20, 20, 40, 90), width=max(1, r // 10))


def _rings(d: ImageDraw.ImageDraw, w: int, h: int, hue: float, rng: random.Random) -> None:
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
    step = max(w, h) / 14
    for k in range(14, 0, -1):
        r = k * step
        d.ellipse((cx - r, cy - r, cx + r, cy + r),
                  fill=_hsv(hue + 0.02 * (k % 3), 0.35 + 0.05 * (k % 2) * 6, 0.45 + 0.04 * k,
                            230))


def _stripes(d: ImageDraw.ImageDraw, w: int, h: int, hue: float, rng: random.Random) -> None:
    bands = rng.randint(7, 11)
    for k in range(bands):
        y0, y1 = h * k / bands, h * (k + 1) / bands
        d.rectangle((0, y0, w, y1), fill=_hsv(hue + 0.03 * (k % 2), 0.3 + 0.5 * (k % 2),
                                               0.55 + 0.4 * k / bands, 210))


def _dots(d: ImageDraw.ImageDraw, w: int, h: int, hue: float, rng: random.Random) -> None:
    step = max(w, h) / 9
    r = step * 0.32
    y = step / 2
    while y < h:
        x = step / 2
        while x < w:
            d.ellipse((x - r, y - r, x + r, y + r),
                      fill=_hsv(hue + rng.uniform(-0.04, 0.04), 0.75, rng.uniform(0.6, 1.0),
                                220))
            x += step
        y += step


def _tiles(d: ImageDraw.ImageDraw, w: int, h: int, hue: float, rng: random.Random) -> None:
    step = max(w, h) / 7
    y = 0.0
    while y < h:
        x = 0.0
        while x < w:
            d.rectangle((x + 2, y + 2, x + step - 2, y + step - 2),
                        fill=_hsv(hue + rng.uniform(-0.08, 0.08), rng.uniform(0.4, 0.9),
                                  rng.uniform(0.55, 1.0), 235))
            x += step
        y += step


def _waves(d: ImageDraw.ImageDraw, w: int, h: int, hue: float, rng: random.Random) -> None:
    for k in range(6):
        base = h * (k + 1) / 7
        amp, freq = h * rng.uniform(0.03, 0.08), rng.uniform(1.5, 3.5)
        points = [(x, base + amp * math.sin(freq * 2 * math.pi * x / w + k))
                  for x in range(0, w + 8, 8)]
        d.polygon([*points, (w, h), (0, h)], fill=_hsv(hue + 0.02 * k, 0.55, 0.5 + 0.08 * k,
                                                      120))


def _triangles(d: ImageDraw.ImageDraw, w: int, h: int, hue: float,
               rng: random.Random) -> None:
    for _ in range(rng.randint(6, 9)):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), min(w, h) * rng.uniform(0.1, 0.3)
        d.polygon([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)],
                  fill=_hsv(hue + rng.uniform(-0.05, 0.05), 0.7, rng.uniform(0.6, 1.0), 200))


def _rays(d: ImageDraw.ImageDraw, w: int, h: int, hue: float, rng: random.Random) -> None:
    cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h
    n, reach = 18, max(w, h) * 1.5
    for k in range(n):
        a0, a1 = 2 * math.pi * k / n, 2 * math.pi * (k + 0.5) / n
        d.polygon([(cx, cy), (cx + reach * math.cos(a0), cy + reach * math.sin(a0)),
                   (cx + reach * math.cos(a1), cy + reach * math.sin(a1))],
                  fill=_hsv(hue, 0.6, 0.95, 150))


def _blocks(d: ImageDraw.ImageDraw, w: int, h: int, hue: float, rng: random.Random) -> None:
    for _ in range(rng.randint(5, 8)):
        x0, y0 = rng.uniform(-0.1, 0.8) * w, rng.uniform(-0.1, 0.8) * h
        d.rectangle((x0, y0, x0 + rng.uniform(0.15, 0.45) * w, y0 + rng.uniform(0.1, 0.3) * h),
                    fill=_hsv(hue + rng.uniform(-0.07, 0.07), 0.65, rng.uniform(0.55, 0.95),
                              200), outline=(20, 20, 40, 120), width=2)


#: Our model name (or the start of an API model id) → its drawing.
FAMILIES: dict[str, Drawer] = {
    "4o": _discs, "gpt-image": _rings, "nano-banana-2-lite": _dots,
    "nano-banana-pro": _tiles, "nano-banana": _stripes, "seedream": _waves, "qwen": _triangles,
    "flux-2": _rays, "flux-kontext": _blocks,
}


def _drawer(model: str) -> Drawer:
    name = model.lower()
    for prefix in sorted(FAMILIES, key=len, reverse=True):  # the most specific first
        if name.startswith(prefix):
            return FAMILIES[prefix]
    return _discs


def short_model(model: str) -> str:
    """An API model id as the demo mark names it: ``seedream/4.5-edit`` → ``seedream 4.5``."""
    name = re.sub(r"[-/](text-to-image|image-to-image|image-edit|edit)$", "", model.strip())
    return name.replace("/", " ")


def compose(im: Image.Image, model: str, hue: float, rng: random.Random) -> None:
    """Draw ``model``'s kind of picture onto ``im`` in the prompt's ``hue``."""
    draw = ImageDraw.Draw(im, "RGBA")
    _drawer(model)(draw, im.width, im.height, hue, rng)


# -- style and words --------------------------------------------------------------------------


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1, or no FreeType: the small bitmap font
        return ImageFont.load_default()


def _styled(im: Image.Image, effect: str) -> Image.Image:
    if effect == "soft":
        soft = im.filter(ImageFilter.GaussianBlur(max(2, im.width // 120)))
        return Image.blend(soft, Image.new("RGB", im.size, (250, 247, 240)), 0.25)
    if effect == "sketch":
        edges = ImageOps.grayscale(im).filter(ImageFilter.FIND_EDGES)
        lines = edges.point(lambda v: max(0, 255 - v * 6))  # dark strokes on paper
        shade = ImageOps.grayscale(im).point(lambda v: 200 + v // 5)
        return ImageChops.darker(lines, shade).filter(ImageFilter.SMOOTH).convert("RGB")
    if effect == "bold":
        return ImageOps.posterize(ImageEnhance.Color(im).enhance(1.7), 3)
    if effect in ("neon", "night"):
        edges = im.filter(ImageFilter.FIND_EDGES)
        dark = Image.blend(im, Image.new("RGB", im.size, (8, 8, 24)), 0.75)
        return Image.blend(dark, ImageOps.autocontrast(edges), 0.6 if effect == "neon" else 0.3)
    if effect == "pixel":
        small = im.resize((max(1, im.width // 24), max(1, im.height // 24)),
                          Image.Resampling.BILINEAR)
        return small.resize(im.size, Image.Resampling.NEAREST)
    if effect == "mono":
        return ImageOps.autocontrast(ImageOps.grayscale(im)).convert("RGB")
    if effect == "sepia":
        return ImageOps.colorize(ImageOps.grayscale(im), (60, 40, 20), (245, 225, 190))
    return im


def _caption(prompt: str, limit: int = 42) -> str:
    text = " ".join(prompt.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip(" ,.;:") + "…"


def finish(im: Image.Image, prompt: str, model: str) -> Image.Image:
    """Apply the prompt's style words, write its opening words across the top and a small
    ``DEMO · model`` mark in the bottom-right corner."""
    for effect in styles_of(prompt):
        im = _styled(im, effect)
    draw = ImageDraw.Draw(im, "RGBA")
    width, height = im.size
    band = max(14, min(width, height) // 11)
    if prompt.strip():
        font = _font(int(band * 0.55))
        text = _caption(prompt)
        draw.rectangle((0, 0, width, band), fill=(255, 255, 255, 170))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        draw.text((band * 0.3 - left, (band - (bottom - top)) / 2 - top), text,
                  fill=(20, 20, 30, 255), font=font)
    mark = f"DEMO · {short_model(model)}" if model else "DEMO"
    font = _font(max(9, band // 3))
    left, top, right, bottom = draw.textbbox((0, 0), mark, font=font)
    pad = max(3, band // 6)
    x1, y1 = width - pad, height - pad
    x0, y0 = x1 - (right - left) - 2 * pad, y1 - (bottom - top) - 2 * pad
    draw.rectangle((x0, y0, x1, y1), fill=(20, 20, 30, 190))
    draw.text((x0 + pad - left, y0 + pad - top), mark, fill=(255, 255, 255, 255), font=font)
    return im
