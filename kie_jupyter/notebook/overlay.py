"""A mask drawn over its image: what a painted mask or an edit's card shows.

Pure Pillow. The mask is in KIE's polarity (black = painted = will change, white = keep); the
painted area is tinted half red and outlined, so it reads on light and dark pictures alike.
"""

from __future__ import annotations

import io

from PIL import Image, ImageChops, ImageFilter

__all__ = ["mask_overlay", "PAINT_RGB"]

#: The paint's colour, here and in the painter (painter.js draws with the same).
PAINT_RGB = (255, 32, 64)
#: The outline: a dark line inside the edge and a white one outside, so the edge shows on
#: light, dark and red pictures alike.
_EDGE_IN = (150, 0, 24)
_EDGE_OUT = (255, 255, 255)
_TINT = 0.5


def _flat_rgb(image: Image.Image) -> Image.Image:
    """The image in RGB, any transparency laid on white."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def mask_overlay(source: bytes, mask: bytes, max_side: int = 640) -> bytes:
    """A PNG of ``source`` (long side at most ``max_side``) with ``mask``'s black tinted.

    The mask is scaled to the picture (a file mask of another size still shows where it
    falls); a pixel is painted where the mask is darker than mid-grey, as KIE reads it.
    """
    with Image.open(io.BytesIO(source)) as opened:
        picture = _flat_rgb(opened)
    picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    with Image.open(io.BytesIO(mask)) as opened:
        grey = _flat_rgb(opened).convert("L")
    grey = grey.resize(picture.size, Image.Resampling.BILINEAR)
    painted = grey.point([255 if v < 128 else 0 for v in range(256)])  # 255 = painted
    tint = Image.blend(picture, Image.new("RGB", picture.size, PAINT_RGB), _TINT)
    out = Image.composite(tint, picture, painted)
    # One pixel along each side of the painted area's edge.
    outside = ImageChops.subtract(painted.filter(ImageFilter.MaxFilter(3)), painted)
    inside = ImageChops.subtract(painted, painted.filter(ImageFilter.MinFilter(3)))
    out.paste(_EDGE_OUT, (0, 0, *out.size), outside)
    out.paste(_EDGE_IN, (0, 0, *out.size), inside)
    buffer = io.BytesIO()
    out.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
