"""Image work the engine does with Pillow: small copies for the gallery and the cards."""

from __future__ import annotations

import io

from PIL import Image

__all__ = ["thumbnail_jpeg"]


def thumbnail_jpeg(data: bytes, side: int) -> bytes:
    """A JPEG copy of an image whose longest side is at most ``side`` pixels.

    Raises ``ValueError`` for bytes Pillow cannot read.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.thumbnail((side, side))
            out = io.BytesIO()
            im.convert("RGB").save(out, format="JPEG", quality=82, optimize=True)
            return out.getvalue()
    except (OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable image: {exc}") from None
