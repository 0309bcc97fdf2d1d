"""Demo pictures show the idea: they differ by model, follow the size, take the prompt's
colour and style words, carry its words and a "demo" mark — and a four-model sweep in demo
mode, through the magic, gives four different pictures of the size asked."""

from __future__ import annotations

import colorsys
import io

import pytest
from IPython.utils.capture import capture_output
from PIL import Image, ImageStat

from kie_jupyter.fakeapi.images import render_png
from kie_jupyter.fakeapi.pictures import palette_hue, short_model, styles_of


def picture(prompt: str, size: str = "1:1", model: str = "4o") -> Image.Image:
    return Image.open(io.BytesIO(render_png(prompt, size, 0, 256, model))).convert("RGB")


def mean_hue(im: Image.Image) -> float:
    # The middle of the picture (below the caption, above the mark).
    w, h = im.size
    r, g, b = ImageStat.Stat(im.crop((w // 4, h // 4, 3 * w // 4, 3 * h // 4))).mean
    return colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)[0]


def differ(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel, 0..255."""
    small = (64, 64)
    pa, pb = a.resize(small).tobytes(), b.resize(small).tobytes()
    return sum(abs(x - y) for x, y in zip(pa, pb, strict=True)) / len(pa)


def test_each_model_draws_its_own_picture():
    models = ["4o", "gpt-image/1.5-text-to-image", "nano-banana-2", "nano-banana-2-lite",
              "nano-banana-pro", "seedream/4.5-text-to-image", "qwen/text-to-image",
              "flux-2/pro-text-to-image", "flux-kontext-pro"]
    pictures = [picture("a lighthouse at dusk", model=m) for m in models]
    for i, a in enumerate(pictures):
        for b in pictures[i + 1:]:
            assert differ(a, b) > 8


def test_colour_words_set_the_palette():
    assert palette_hue("a red fox", 0.5) == (0.0, True)
    assert palette_hue("a fox", 0.5) == (0.5, False)
    red, blue = picture("a red fox"), picture("a blue fox")
    assert mean_hue(red) < 0.1 or mean_hue(red) > 0.9
    assert 0.5 < mean_hue(blue) < 0.75


def test_style_words_change_the_rendering():
    assert styles_of("an owl, charcoal sketch, watercolor") == ["sketch", "soft"]
    plain = picture("an owl")
    sketch = picture("an owl, charcoal sketch")
    r, g, b = ImageStat.Stat(sketch).mean
    assert max(r, g, b) - min(r, g, b) < 6  # grey
    assert differ(plain, picture("an owl, pixel art")) > 8
    assert differ(plain, picture("an owl, watercolor")) > 3


@pytest.mark.parametrize("size", ["1:1", "3:2", "2:3", "16:9", "9:16", "21:9"])
def test_pictures_follow_the_size(size):
    w, h = picture("a fox", size).size
    a, b = map(int, size.split(":"))
    assert abs(w / h - a / b) < 0.02 and max(w, h) == 256


def test_the_mark_names_the_model():
    assert short_model("seedream/4.5-text-to-image") == "seedream 4.5"
    assert short_model("gpt-image/1.5-image-to-image") == "gpt-image 1.5"
    assert short_model("flux-2/pro-text-to-image") == "flux-2 pro"
    assert short_model("qwen/image-edit") == "qwen"
    # The corner holds the dark mark whatever the picture: a bright picture still has it.
    im = picture("white snow, minimal")
    w, h = im.size
    corner = ImageStat.Stat(im.crop((w - 30, h - 12, w - 4, h - 4))).mean
    assert max(corner) < 120


def test_a_four_model_demo_sweep_gives_four_pictures_of_the_size_asked(monkeypatch, tmp_path):
    from kie_jupyter.testing.shell import TestingShell

    monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "kie"))
    monkeypatch.setenv("KIE_DEMO_DURATION", "0.2")
    for name in ("KIE_API_KEY", "KIE_BASE_URL", "KIE_UPLOAD_URL", "KIE_DEMO"):
        monkeypatch.delenv(name, raising=False)
    sh = TestingShell.instance()
    sh.config.pop("Kie4o", None)
    try:
        with capture_output():
            sh.run_cell("%load_ext kie_jupyter")
            sh.run_cell("%kie4o demo")
            result = sh.run_cell("%%kie4o --model 4o,gpt-image-1.5,nano-banana-pro,seedream-4.5 "
                                 "-s 3:2 -o sw\nAn old lighthouse keeper, watercolor")
        assert result.error_in_exec is None, result.error_in_exec
        sw = sh.user_ns["sw"]
        images = [Image.open(io.BytesIO(t.images[0])).convert("RGB") for t in sw.tasks]
        assert len(images) == 4
        for im in images:
            w, h = im.size
            assert abs(w / h - 1.5) < 0.02
        for i, a in enumerate(images):
            for b in images[i + 1:]:
                assert differ(a, b) > 8
    finally:
        with capture_output():
            sh.run_cell("%kie4o demo off")
            sh.run_cell("%unload_ext kie_jupyter")
        sh.user_ns.pop("sw", None)
