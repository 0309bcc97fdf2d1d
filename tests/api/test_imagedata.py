"""``api.imagedata``: the format and size of image bytes (Pillow reads the header) and the MIME
type everything else takes from it."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from kie_jupyter.api.imagedata import ImageInfo, mime_of, sniff_image
from kie_jupyter.fakeapi.images import image_dimensions, render_png


def encoded(fmt: str, size: tuple[int, int] = (37, 23), mode: str = "RGB", **options) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (200, 30, 40) if mode == "RGB" else (200, 30, 40, 90)).save(
        out, format=fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize(
    "data, expected",
    [
        (encoded("PNG", (640, 480)), ImageInfo("png", 640, 480)),
        (encoded("JPEG", (1024, 768)), ImageInfo("jpeg", 1024, 768)),
        (encoded("JPEG", (300, 200), progressive=True), ImageInfo("jpeg", 300, 200)),
        (encoded("WEBP", (320, 240)), ImageInfo("webp", 320, 240)),  # lossy, VP8
        (encoded("WEBP", (800, 600), lossless=True), ImageInfo("webp", 800, 600)),  # VP8L
        (encoded("WEBP", (33, 21), mode="RGBA"), ImageInfo("webp", 33, 21)),  # VP8X
        (encoded("GIF", (32, 16)), ImageInfo("gif", 32, 16)),
        (encoded("MPO", (30, 20), save_all=True, append_images=[Image.new("RGB", (30, 20))]),
         ImageInfo("jpeg", 30, 20)),  # a camera JPEG with extra pictures is still a JPEG
    ],
    ids=["png", "jpeg", "jpeg-progressive", "webp-vp8", "webp-vp8l", "webp-vp8x", "gif", "mpo"],
)
def test_sniff_image(data: bytes, expected: ImageInfo) -> None:
    assert sniff_image(data) == expected
    assert mime_of(data) == expected.mime_type


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
@pytest.mark.parametrize("keep", [1, 4, 8, 12, 20])
def test_a_cut_off_header_is_not_an_image(fmt: str, keep: int) -> None:
    assert sniff_image(encoded(fmt)[:keep]) is None


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world", b"<html><body>nope</body></html>", b'{"code": 200}', b"GIF8",
     b"GIF89a\x01", b"RIFF\x00\x00\x00\x00WAVEfmt ", b"\x89PNG", b"\xff\xd8", b"%PDF-1.7",
     b"\x00" * 64, encoded("BMP"), encoded("TIFF")],
    ids=["empty", "text", "html", "json", "gif8", "gif-short", "wav", "png-magic", "jpeg-magic",
         "pdf", "zeros", "bmp", "tiff"],
)
def test_what_is_not_a_png_jpeg_webp_or_gif_is_none(data: bytes) -> None:
    assert sniff_image(data) is None
    assert mime_of(data) == "application/octet-stream"


@pytest.mark.parametrize(
    "fmt, mime", [("png", "image/png"), ("jpeg", "image/jpeg"), ("webp", "image/webp"),
                  ("gif", "image/gif")],
)
def test_mime_types(fmt: str, mime: str) -> None:
    assert ImageInfo(fmt, 1, 1).mime_type == mime


def test_sniff_a_rendered_png() -> None:
    assert sniff_image(render_png("a fox", "3:2", 0, 96)) == ImageInfo(
        "png", *image_dimensions("3:2", 96))


def test_sniffing_reads_the_header_only(monkeypatch) -> None:
    # Called on every upload and download: a 12-megapixel file must not be decoded.
    from PIL import ImageFile

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("sniff_image decoded the pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert sniff_image(encoded("PNG", (4000, 3000))) == ImageInfo("png", 4000, 3000)
