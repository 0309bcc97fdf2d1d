"""Build the example replay pack of ``notebooks/teaching.ipynb``: ``python binder/make_pack.py
OUT.kiepack`` (``binder/postBuild`` runs it, so the repository holds no binary).

A real class pack is exported from the teacher's own history after running the lesson once
with a key (``%kie4o pack export lesson.kiepack --search lighthouse``, see
``docs/teaching.md``). This repository has no key and no real results to ship, so this script
draws two small pictures with Pillow for two of the lesson's prompts, records them in a
scratch history as a teacher's saved tasks would be, and exports them with the same
:func:`kie_jupyter.engine.packs.export_pack` that ``%kie4o pack export`` uses.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

from kie_jupyter.engine.history import HistoryStore
from kie_jupyter.engine.packs import export_pack

#: The lesson's prompts this pack answers (notebooks/teaching.ipynb, sections 1 and 2).
SUBJECT, LIGHTING, MOOD = ("a lighthouse on a rocky island", "golden hour sunlight",
                           "calm and hopeful")
STYLES = ("watercolor illustration", "pixel art")
SIZE = "3:2"
WIDTH, HEIGHT = 384, 256
TITLE = ("Example class pack for notebooks/teaching.ipynb: drawings made by "
         "binder/make_pack.py, standing in for a teacher's real results")


def prompt(style: str) -> str:
    return f"{SUBJECT}, {style}, {LIGHTING}, {MOOD}"


def scene(width: int, height: int) -> Image.Image:
    """A lighthouse on rocks at golden hour, in flat shapes."""
    im = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(im)
    horizon = int(height * 0.62)
    for y in range(horizon):  # sky: pale blue above, gold at the horizon
        t = y / horizon
        draw.line([(0, y), (width, y)], fill=(int(150 + 105 * t), int(190 + 20 * t),
                                              int(230 - 130 * t)))
    sun = (int(width * 0.74), horizon - int(height * 0.06))
    r = int(height * 0.09)
    draw.ellipse((sun[0] - r, sun[1] - r, sun[0] + r, sun[1] + r), fill=(255, 214, 120))
    for y in range(horizon, height):  # sea, darker further down
        t = (y - horizon) / (height - horizon)
        draw.line([(0, y), (width, y)], fill=(int(70 - 40 * t), int(120 - 50 * t),
                                              int(160 - 40 * t)))
    for k in range(6):  # the sun's glitter on the water
        y = horizon + 4 + k * (height - horizon) // 7
        half = int(width * (0.08 - k * 0.01))
        draw.line([(sun[0] - half, y), (sun[0] + half, y)], fill=(250, 200, 120), width=2)
    rocks = [(int(width * x), int(height * y)) for x, y in (
        (0.05, 0.80), (0.12, 0.66), (0.22, 0.60), (0.33, 0.58), (0.43, 0.63), (0.52, 0.74),
        (0.58, 0.84), (0.02, 0.86))]
    draw.polygon(rocks, fill=(92, 72, 60))
    base, top = int(height * 0.60), int(height * 0.20)
    cx, half_base, half_top = int(width * 0.26), int(width * 0.035), int(width * 0.022)
    draw.polygon([(cx - half_base, base), (cx + half_base, base), (cx + half_top, top),
                  (cx - half_top, top)], fill=(245, 242, 235))
    for k in range(3):  # red bands
        y0 = base - (k + 1) * (base - top) // 4
        y1 = y0 + (base - top) // 9
        draw.rectangle((cx - half_base, y0, cx + half_base, y1), fill=(200, 50, 45))
    draw.rectangle((cx - half_top, top - int(height * 0.06), cx + half_top, top),
                   fill=(255, 236, 140))
    draw.polygon([(cx - half_top - 3, top - int(height * 0.06)),
                  (cx + half_top + 3, top - int(height * 0.06)),
                  (cx, top - int(height * 0.11))], fill=(60, 50, 50))
    glow = int(height * 0.10)
    draw.polygon([(cx + half_top, top - int(height * 0.03)), (cx + half_top + 3 * glow,
                  top - glow), (cx + half_top + 3 * glow, top + glow // 2)],
                 fill=(255, 240, 190))
    return im


def watercolor() -> Image.Image:
    im = scene(WIDTH, HEIGHT).filter(ImageFilter.GaussianBlur(2.2))
    return im.quantize(48).convert("RGB")


def pixel_art() -> Image.Image:
    small = scene(WIDTH // 6, HEIGHT // 6).quantize(16)
    return small.resize((WIDTH, HEIGHT), Image.Resampling.NEAREST).convert("RGB")


def build(out: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        store = HistoryStore(Path(scratch) / "history")
        for style, picture in zip(STYLES, (watercolor(), pixel_art()), strict=True):
            text = prompt(style)
            task_id = hashlib.sha256(text.encode()).hexdigest()[:32]
            path = Path(scratch) / f"{task_id}_0.png"
            picture.save(path, format="PNG", optimize=True)
            store.append({"task_id": task_id, "prompt": text, "status": "success",
                          "model": "4o", "params": {"size": SIZE, "variants": 1},
                          "saved_paths": [str(path)], "demo": False})
        report = export_pack(store.entries(), out, title=TITLE)
    print(f"{out}: {report.tasks} prompts, {report.images} images, {report.bytes:,} bytes")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python binder/make_pack.py OUT.kiepack")
    build(Path(sys.argv[1]))
