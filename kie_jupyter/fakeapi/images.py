"""Synthetic PNG pictures for the mock server: pure stdlib, deterministic, fast.

A picture is a two-way colour gradient with a few translucent discs and a diagonal band, all
seeded from ``sha256(prompt, size, variant)``, plus a light texture so files have a realistic
size. Rows are built with ``bytes.translate``: each pixel byte holds an *index* (its channel and
its horizontal position plus noise) and one 256-byte table per row maps indexes to colours, so
no Python code runs per pixel.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import struct
import zlib

__all__ = ["SIZES", "image_dimensions", "png_bytes", "render_png"]

#: Aspect ratios the API accepts, as (width, height) fractions of the long side.
SIZES: dict[str, tuple[int, int]] = {"1:1": (3, 3), "3:2": (3, 2), "2:3": (2, 3)}

# 85 index levels per channel: channel c uses byte values c*85 .. c*85+84 (3*85 = 255 < 256).
_LEVELS = 85
# Distinct texture rows; more than zlib's 32 KiB window holds, so rows never repeat within it
# (repeats would compress to nothing and make the files unrealistically small).
_TEXTURE_ROWS = 29
# Noise offsets 0, 1, 2 (level -1, 0, +1) with the middle one twice as likely: a light texture.
_NOISE = bytes((0, 1, 1, 2)[v % 4] for v in range(256))
RGB = tuple[int, int, int]


def image_dimensions(size: str, long_side: int = 512) -> tuple[int, int]:
    """``(width, height)`` of a picture of aspect ratio ``size`` ("1:1", "3:2", "2:3")."""
    w, h = SIZES[size]
    return max(1, long_side * w // 3), max(1, long_side * h // 3)


def png_bytes(width: int, height: int, rows: list[bytes], level: int = 3) -> bytes:
    """Encode 8-bit RGB ``rows`` (each ``3*width`` bytes) as a PNG file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + row for row in rows)  # filter type 0 on every row
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, level))
        + chunk(b"IEND", b"")
    )


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def _hsv(h: float, s: float, v: float) -> RGB:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return round(r * 255), round(g * 255), round(b * 255)


def _table(left: RGB, right: RGB) -> bytes:
    """Translation table mapping each channel's 85 levels onto the left→right ramp."""
    out = bytearray(256)
    for c in range(3):
        a, d = left[c], right[c] - left[c]
        out[c * _LEVELS : (c + 1) * _LEVELS] = bytes(
            round(a + d * k / (_LEVELS - 1)) for k in range(_LEVELS)
        )
    return bytes(out)


def _texture_rows(width: int, rng: random.Random) -> list[bytes]:
    """Index rows: each channel's horizontal level (1..83) plus noise of -1, 0 or +1 level."""
    # Adding a constant to a run of bytes is a translate with a shifted identity table, so the
    # noise is applied run by run (one run per level), not pixel by pixel.
    runs: list[tuple[int, int, int]] = []  # (x0, x1, level)
    for x in range(width):
        level = 1 + x * (_LEVELS - 3) // max(1, width - 1)
        if runs and runs[-1][2] == level:
            runs[-1] = (runs[-1][0], x + 1, level)
        else:
            runs.append((x, x + 1, level))
    shift = {k: bytes(range(k, 256)) + bytes(k) for k in range(256)}
    rows = []
    for _ in range(_TEXTURE_ROWS):
        row = bytearray(3 * width)
        for c in range(3):
            noise = rng.randbytes(width).translate(_NOISE)
            row[c::3] = b"".join(
                noise[x0:x1].translate(shift[c * _LEVELS + level - 1]) for x0, x1, level in runs
            )
        rows.append(bytes(row))
    return rows


@functools.lru_cache(maxsize=64)
def render_png(prompt: str, size: str = "1:1", variant: int = 0, long_side: int = 512) -> bytes:
    """A PNG picture deterministic in its arguments; cached, so repeated calls are free."""
    width, height = image_dimensions(size, long_side)
    digest = hashlib.sha256(f"{prompt}\x00{size}\x00{variant}".encode()).digest()
    base_digest = hashlib.sha256(prompt.encode()).digest()
    rng = random.Random(digest)
    # The palette comes from the prompt alone, so variants of one prompt look related.
    hue = base_digest[0] / 256
    spread = 0.08 + base_digest[1] / 256 * 0.3
    corners = [
        _hsv(
            (hue + spread * k) % 1.0,
            0.35 + base_digest[2 + k] / 256 * 0.5,
            0.55 + base_digest[6 + k] / 256 * 0.4,
        )
        for k in range(4)
    ]  # top-left, top-right, bottom-left, bottom-right
    if variant % 2:  # odd variants flip the gradient
        corners.reverse()

    texture = _texture_rows(width, rng)
    shapes = _shapes(width, height, rng, hue)
    band = _band(width, height, rng, hue)
    bg_tables: dict[int, bytes] = {}
    rows: list[bytes] = []
    steps = 96  # vertical gradient resolution; tables are cached per step
    for y in range(height):
        step = y * steps // height
        table = bg_tables.get(step)
        if table is None:
            t = step / (steps - 1)
            table = bg_tables[step] = _table(
                _mix(corners[0], corners[2], t), _mix(corners[1], corners[3], t)
            )
        index = texture[(y * 11) % _TEXTURE_ROWS]
        row = bytearray(index.translate(table))
        for x0, x1, tab in _spans(y, width, band, shapes):
            row[3 * x0 : 3 * x1] = index[3 * x0 : 3 * x1].translate(tab)
        rows.append(bytes(row))
    return png_bytes(width, height, rows)


# A shape is (cx, cy, r, table); the band is (x offset at top, slope, half width, table).
_Shape = tuple[int, int, int, bytes]
_Band = tuple[float, float, float, bytes]


def _shapes(width: int, height: int, rng: random.Random, hue: float) -> list[_Shape]:
    shapes = []
    for _ in range(rng.randint(3, 5)):
        r = int(min(width, height) * rng.uniform(0.08, 0.28))
        colour = _hsv(
            (hue + rng.uniform(0.3, 0.7)) % 1.0, rng.uniform(0.4, 0.8), rng.uniform(0.7, 1.0)
        )
        shade = _mix(colour, (20, 20, 40), 0.35)
        shapes.append((rng.randrange(width), rng.randrange(height), r, _table(colour, shade)))
    return shapes


def _band(width: int, height: int, rng: random.Random, hue: float) -> _Band:
    colour = _hsv((hue + 0.5) % 1.0, 0.25, 0.95)
    slope = rng.uniform(-1.2, 1.2)
    start = rng.uniform(0, width) - slope * height / 2
    return (
        start,
        slope,
        width * rng.uniform(0.04, 0.1),
        _table(colour, _mix(colour, (255,) * 3, 0.5)),
    )


def _spans(y: int, width: int, band: _Band, shapes: list[_Shape]) -> list[tuple[int, int, bytes]]:
    """Pixel spans ``[x0, x1)`` of row ``y`` under the band, then each disc (painted in order)."""
    out = []
    start, slope, half, tab = band
    centre = start + slope * y
    out.append((max(0, int(centre - half)), min(width, max(0, int(centre + half))), tab))
    for cx, cy, r, tab in shapes:
        dy = y - cy
        if -r <= dy <= r:
            w = int(math.sqrt(r * r - dy * dy))
            out.append((max(0, cx - w), min(width, cx + w), tab))
    return out
