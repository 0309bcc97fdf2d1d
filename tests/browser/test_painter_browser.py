"""The mask painter in a real browser: JupyterLab 4 and Notebook 7 under Chromium, demo mode.

A person paints with the mouse (``page.mouse`` on the canvas), undoes, erases, clicks Done;
the result is read back through the kernel (not from a screenshot): the mask has the source's
exact size, black where the brush went and white elsewhere, the brush as thick as it looked.
The mask then drives an edit against the demo server; the saved notebook holds the static
overlay picture and no widget, and shows it when opened again. Screenshots of the painter
(strokes, "mask only", the dark theme) go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from browser_server import write_notebook
from browser_ui import NotebookPage, dark_theme

pytestmark = pytest.mark.browser

LOAD = "%load_ext kie_jupyter"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
RESIDUE = ("Error displaying widget", "Loading widget")
#: Each front end paints over another shape (3:2 in Lab, 2:3 in Notebook 7).
SHAPE = {"lab": "3:2", "notebook": "2:3"}
#: Brush diameter in screen pixels (the slider's default, see painter.js).
BRUSH = 36
STATUS = re.compile(r"^(<1|>99|\d+)% painted · mask (\d+)×(\d+)$")

#: The kernel's view of the mask, as JSON: its size, the source's size, the fraction painted,
#: named pixels (KIE's polarity: 0 = painted) and the painted rows of one column.
READ_BACK = """import io, json
from PIL import Image
w, h = m.size
src = Image.open(io.BytesIO(fox[0].data)).size
at = lambda fx, fy: m.image.getpixel((min(int(fx * w), w - 1), min(int(fy * h), h - 1)))
column = [y for y in range(h) if m.image.getpixel((int(0.25 * w), y)) == 0]
print(json.dumps({"size": [w, h], "source": list(src), "painted": m.painted,
                  "modes": m.image.mode, "values": sorted(set(m.image.tobytes())),
                  "stroke": at(0.25, 0.35), "erased": at(0.42, 0.35), "undone": at(0.8, 0.6),
                  "away": at(0.9, 0.9), "column": [min(column), max(column)] if column else []}))
"""


def cells(shape: str) -> list[str]:
    return [
        LOAD,
        f"%%kie4o -s {shape} -o fox\nA red fox in the snow, watercolor",
        "%kie4o mask $fox[0] -o m",
        READ_BACK,
        "%%kie4o -i $fox[0] -m $m -o edit\ngive the fox a red scarf",
    ]


def start(nb: NotebookPage, through: int) -> None:
    """Run cells 0..``through`` one after the other, each to its end."""
    for i in range(through + 1):
        nb.run_cell(i)
        nb.wait_cell_done(i, timeout=90)


def painter_in(nb: NotebookPage, cell: int) -> Any:
    """Cell ``cell``'s painter, once its image has loaded."""
    root = nb.cell(cell).locator(".kie4o-painter")
    root.wait_for(timeout=30_000)
    nb.page.wait_for_function(
        "el => { const im = el.querySelector('.kp-stage img'); "
        "return im && im.complete && im.naturalWidth > 0; }",
        arg=root.element_handle(), timeout=30_000)
    root.locator(".kp-stage").scroll_into_view_if_needed()
    return root


def drag(nb: NotebookPage, canvas: Any, points: list[tuple[float, float]]) -> None:
    """A stroke through ``points`` (fractions of the canvas), a pointer move every ~8 px."""
    box = canvas.bounding_box()
    assert box is not None
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    nb.page.mouse.move(*xy[0])
    nb.page.mouse.down()
    for (x0, y0), (x1, y1) in zip(xy, xy[1:], strict=False):
        steps = max(2, int(max(abs(x1 - x0), abs(y1 - y0)) / 8))
        nb.page.mouse.move(x1, y1, steps=steps)
    nb.page.mouse.up()


def status_of(root: Any) -> str:
    return str(root.locator(".kp-status").inner_text()).strip()


def wait_status(nb: NotebookPage, root: Any, predicate: Any, what: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        text = status_of(root)
        if predicate(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"painter status: {what} not seen; last {text!r}")
        time.sleep(0.05)


def read_json(nb: NotebookPage, cell: int) -> dict[str, Any]:
    nb.run_cell(cell)
    nb.wait_cell_done(cell, timeout=30)
    text = "\n".join(nb.outputs_text(cell))
    return dict(json.loads(text.strip().splitlines()[-1]))


def layout_problems(root: Any) -> list[str]:
    """Toolbar items cut off or outside the output area, overlapping layers."""
    return list(root.evaluate("""(root) => {
      const out = [];
      const area = root.getBoundingClientRect();
      for (const b of root.querySelectorAll('.kp-bar > *')) {
        const r = b.getBoundingClientRect();
        const name = b.innerText;
        if (r.right > area.right + 1 || r.left < area.left - 1) out.push('outside: ' + name);
        if (b.tagName === 'BUTTON' && b.scrollWidth > b.clientWidth + 1) out.push('cut: ' + name);
      }
      const img = root.querySelector('.kp-stage img').getBoundingClientRect();
      const cv = root.querySelector('.kp-stage canvas').getBoundingClientRect();
      for (const k of ['left', 'top', 'width', 'height'])
        if (Math.abs(img[k] - cv[k]) > 0.5) out.push(`layers differ in ${k}: ${img[k]} ${cv[k]}`);
      if (root.scrollWidth > root.clientWidth + 1) out.push('the painter scrolls sideways');
      return out;
    }"""))


# -- paint, done, read back, edit, save, reopen ------------------------------------------------


def test_paint_with_the_mouse_then_edit_and_the_saved_notebook_keeps_the_picture(
        frontend: str, jupyter: Any, new_page: Any, artifacts: Path) -> None:
    shape = SHAPE[frontend]
    name = f"painter-{frontend}.ipynb"
    write_notebook(jupyter.root, name, cells(shape))
    nb = NotebookPage(new_page(), jupyter, frontend, name)
    nb.open(n_cells=5)
    start(nb, 2)
    root = painter_in(nb, 2)
    canvas = root.locator(".kp-stage canvas")
    size = canvas.evaluate("c => [c.width, c.height]")
    shown = canvas.bounding_box()
    assert shown is not None
    text = wait_status(nb, root, lambda t: STATUS.match(t) is not None, "the status line")
    assert text == f"0% painted · mask {size[0]}×{size[1]}", text
    assert "Painted = will be changed · unpainted = kept" in root.inner_text()
    assert layout_problems(root) == []
    # The canvas is shown scaled, but its pixels are the source's: the display keeps its ratio.
    assert abs(shown["width"] / shown["height"] - size[0] / size[1]) < 0.02, (shown, size)
    assert (size[0] > size[1]) == (shape == "3:2")

    # A stroke across, a second one down the right side, undo the second, erase through the
    # first: the mask is the first stroke with a gap.
    drag(nb, canvas, [(0.10, 0.35), (0.30, 0.35), (0.55, 0.35)])
    first = wait_status(nb, root, lambda t: not t.startswith("0%"), "paint after a stroke")
    drag(nb, canvas, [(0.8, 0.2), (0.8, 0.5), (0.8, 0.8)])
    second = wait_status(nb, root, lambda t: t != first, "more paint after the second stroke")
    root.get_by_role("button", name="Undo").click()
    wait_status(nb, root, lambda t: t == first, "the first stroke's figure again after Undo")
    root.get_by_role("button", name="Eraser").click()
    drag(nb, canvas, [(0.42, 0.15), (0.42, 0.55)])
    root.get_by_role("button", name="Brush").click()
    after = wait_status(nb, root, lambda t: t != first, "less paint after erasing")
    print(f"\n{frontend}: status {first!r} → {second!r} → undo → erase {after!r}")
    nb.cell(2).screenshot(path=str(artifacts / f"{frontend}-painter-strokes.png"))
    root.get_by_role("button", name="Mask only").click()
    nb.cell(2).screenshot(path=str(artifacts / f"{frontend}-painter-mask-only.png"))
    root.get_by_role("button", name="Mask only").click()

    # Done: the painter gives way to the static picture in the same output.
    root.get_by_role("button", name="Done").click()
    nb.page.wait_for_function(
        "el => !el.querySelector('.kie4o-painter') && "
        "Array.from(el.querySelectorAll('.kie4o-static img'))"
        ".some(im => im.complete && im.naturalWidth > 0)",
        arg=nb.cell(2).element_handle(), timeout=20_000)
    assert len(nb.output_elements(2)) == 1, nb.output_elements(2)
    nb.cell(2).screenshot(path=str(artifacts / f"{frontend}-painter-done.png"))

    # Through the kernel: the source's size, KIE's polarity, the paint where the brush went.
    facts = read_json(nb, 3)
    print(f"{frontend}: the kernel's mask {facts}")
    assert facts["size"] == facts["source"] == size, facts
    assert facts["modes"] == "L" and facts["values"] == [0, 255], facts
    assert facts["stroke"] == 0, facts  # on the first stroke
    assert facts["erased"] == 255 and facts["undone"] == 255 and facts["away"] == 255, facts
    # The brush was BRUSH screen pixels wide: in source pixels, at the canvas's scale.
    thickness = facts["column"][1] - facts["column"][0] + 1
    expected = BRUSH * size[0] / shown["width"]
    assert abs(thickness - expected) <= max(3, 0.08 * expected), (thickness, expected)
    centre = (facts["column"][0] + facts["column"][1]) / 2
    assert abs(centre - 0.35 * size[1]) <= 3, (centre, size)
    assert 0.01 < facts["painted"] < 0.2, facts

    # The mask drives an edit against the demo server.
    nb.run_cell(4)
    nb.wait_card(4, lambda c: c["status"].startswith("Done in") and "edit[0]" in c["text"]
                 and c["images"] and all(im["w"] > 0 for im in c["images"]),
                 "the edit's card, Done, with its image", timeout=90)
    nb.wait_cell_done(4, timeout=30)

    nb.save()
    saved = jupyter.read_notebook(name)
    outputs = saved["cells"][2]["outputs"]
    assert [sorted(o.get("data", {})) for o in outputs] == [
        ["image/png", "text/html", "text/plain"]], outputs
    html = "".join(outputs[0]["data"]["text/html"])
    assert "kie4o-mask" in html and "data:image/jpeg;base64," in html, html[:300]
    everywhere = [o for c in saved["cells"] for o in c.get("outputs", [])]
    assert not any(WIDGET_VIEW in o.get("data", {}) for o in everywhere)
    assert not any(r in nb.page.locator(".jp-Notebook").inner_text() for r in RESIDUE)
    nb.page.context.close()

    again = NotebookPage(new_page(), jupyter, frontend, name)
    again.open(n_cells=5)
    images = again.wait_static_images(2, 1)
    assert images and all(im["w"] > 0 for im in images), images
    assert again.cell(2).locator(".kie4o-painter").count() == 0
    assert not any(r in again.page.locator(".jp-Notebook").inner_text() for r in RESIDUE)
    again.cell(2).scroll_into_view_if_needed()
    again.cell(2).screenshot(path=str(artifacts / f"{frontend}-painter-reopened.png"))


# -- the dark theme ----------------------------------------------------------------------------


def test_dark_theme_painter_is_readable(
        frontend: str, jupyter: Any, new_page: Any, artifacts: Path) -> None:
    with dark_theme(jupyter):
        name = f"painter-dark-{frontend}.ipynb"
        shape = "2:3" if SHAPE[frontend] == "3:2" else "3:2"  # the other shape here
        write_notebook(jupyter.root, name, cells(shape)[:3])
        nb = NotebookPage(new_page(), jupyter, frontend, name)
        nb.open(n_cells=3)
        nb.page.wait_for_function(
            "() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
        start(nb, 2)
        root = painter_in(nb, 2)
        canvas = root.locator(".kp-stage canvas")
        drag(nb, canvas, [(0.2, 0.3), (0.5, 0.45), (0.7, 0.4)])
        wait_status(nb, root, lambda t: not t.startswith("0%"), "paint after a stroke")
        assert layout_problems(root) == []
        nb.cell(2).screenshot(path=str(artifacts / f"{frontend}-painter-dark.png"))
        readable = nb.contrast_of(root, ".kp-help, .kp-status, .kp-bar label, "
                                        ".kp-bar button:not(:disabled)")
        print(f"\n{frontend} dark painter: {json.dumps(readable)}")
        low = [c for c in readable if c["ratio"] < 4.5]
        assert readable and not low, low
