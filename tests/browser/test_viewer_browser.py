"""One click opens an image at full size, and two compare at the same zoom — in a real
browser, JupyterLab 4 and Notebook 7, demo mode: click, see the image's own pixels, compare
another beside it, close with Escape (the focus goes back); Enter opens it from the keyboard;
no card text runs into its neighbour in a four-model grid."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from browser_server import write_notebook
from browser_ui import NotebookPage, dark_theme

pytestmark = pytest.mark.browser
#: Where ``KIE_UPDATE_DOCS_SCREENSHOT=1`` writes the README's pictures of the grid and viewer.
DOCS = Path(__file__).resolve().parents[2] / "docs"

LOAD = "%load_ext kie_jupyter"
SWEEP = ("%%kie4o --model 4o,gpt-image-1.5,nano-banana-pro,seedream-4.5 -s 3:2 -o sw\n"
         "An old lighthouse keeper, watercolor")

_VIEWER_JS = """
() => {
  const box = document.querySelector('.kie4o-viewer');
  if (!box) return null;
  return {
    label: box.getAttribute('aria-label'),
    images: Array.from(box.querySelectorAll('img.kie4o-viewer-img')).map(im => ({
      natural: im.naturalWidth, naturalHeight: im.naturalHeight,
      width: im.getBoundingClientRect().width, complete: im.complete})),
    zoom: box.querySelector('span').innerText,
  };
}
"""

#: Pairs of text boxes in the grid's card headers and captions that overlap.
_OVERLAPS_JS = """
(root) => {
  const boxes = Array.from(root.querySelectorAll(
      '.kie4o-head > *, .kie4o-figure figcaption, .kie4o-col, .kie4o-row'))
    .map(e => ({e, r: e.getBoundingClientRect()})).filter(b => b.r.width && b.r.height);
  const out = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i].r, b = boxes[j].r;
    if (boxes[i].e.contains(boxes[j].e) || boxes[j].e.contains(boxes[i].e)) continue;
    const x = Math.min(a.right, b.right) - Math.max(a.left, b.left);
    const y = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
    if (x > 1 && y > 1) out.push([boxes[i].e.innerText.slice(0, 30),
                                  boxes[j].e.innerText.slice(0, 30)]);
  }
  return out;
}
"""


def _viewer(nb: NotebookPage) -> dict[str, Any] | None:
    found = nb.page.evaluate(_VIEWER_JS)
    return dict(found) if found else None


def test_click_opens_full_size_and_two_compare_at_the_same_zoom(
        frontend: str, jupyter: Any, new_page: Any, artifacts: Path) -> None:
    name = f"viewer-{frontend}.ipynb"
    write_notebook(jupyter.root, name, [LOAD, SWEEP])
    nb = NotebookPage(new_page(), jupyter, frontend, name)
    nb.open(n_cells=2)
    nb.run_cell(0)
    nb.wait_cell_done(0, timeout=60)
    nb.run_cell(1)
    cell = nb.cell(1)
    nb.wait_sweep_done(1, 4)
    nb.page.wait_for_function(
        """(el) => {
             const ims = Array.from(el.querySelectorAll('img.kie4o-zoom'));
             return ims.length >= 4 && ims.every(im => im.complete && im.naturalWidth > 0);
           }""",
        arg=cell.element_handle(), timeout=30_000)
    grid = cell.locator(".kie4o-sweep").first
    grid.scroll_into_view_if_needed()
    overlaps = grid.evaluate(_OVERLAPS_JS)
    nb.page.screenshot(path=str(artifacts / f"{frontend}-viewer-grid.png"))
    assert overlaps == [], overlaps
    docs = os.environ.get("KIE_UPDATE_DOCS_SCREENSHOT", "") not in ("", "0") and frontend == "lab"
    if docs:
        cell.screenshot(path=str(DOCS / "sweep.png"))

    first = cell.locator("img.kie4o-zoom").first
    first.click()
    nb.page.wait_for_selector(".kie4o-viewer", timeout=10_000)
    nb.page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.kie4o-viewer img.kie4o-viewer-img'))"
        ".every(im => im.complete && im.naturalWidth > 0)", timeout=10_000)
    shown = _viewer(nb)
    report = json.dumps(shown)
    assert shown is not None and shown["label"] == "full-size image", report
    (image,) = shown["images"]
    # 100 %: the image's own pixels, one CSS pixel each (the demo's are 512 × 341).
    assert (image["natural"], image["naturalHeight"]) == (512, 341), report
    assert abs(image["width"] - image["natural"]) <= 1, report
    assert shown["zoom"] == "100 %", report

    nb.page.get_by_role("button", name="put another image beside this one").click()
    nb.page.locator(".kie4o-viewer-choice").nth(1).click()
    nb.page.wait_for_function(
        "() => document.querySelectorAll('.kie4o-viewer img.kie4o-viewer-img').length == 2"
        " && Array.from(document.querySelectorAll('.kie4o-viewer img.kie4o-viewer-img'))"
        ".every(im => im.complete && im.naturalWidth > 0)", timeout=10_000)
    nb.page.screenshot(path=str(artifacts / f"{frontend}-viewer-compare.png"))
    if docs:
        nb.page.screenshot(path=str(DOCS / "compare.png"))
    both = _viewer(nb)
    report = json.dumps(both)
    assert both is not None and both["label"] == "2 images side by side at the same zoom"
    widths = [im["width"] / im["natural"] for im in both["images"]]
    assert all(abs(w - 1) < 0.01 for w in widths), report  # the same zoom: 100 % each
    nb.page.get_by_role("button", name="zoom out").click()
    both = _viewer(nb)
    assert both is not None
    scales = [im["width"] / im["natural"] for im in both["images"]]
    assert abs(scales[0] - scales[1]) < 0.01 and scales[0] < 0.9, json.dumps(both)

    nb.page.keyboard.press("Escape")
    nb.page.wait_for_function("() => !document.querySelector('.kie4o-viewer')",
                              timeout=5_000)

    # From the keyboard: focus an image, Enter opens it, Escape closes it.
    second = cell.locator("img.kie4o-zoom").nth(1)
    second.focus()
    nb.page.keyboard.press("Enter")
    nb.page.wait_for_selector(".kie4o-viewer", timeout=10_000)
    nb.page.keyboard.press("Escape")
    nb.page.wait_for_function("() => !document.querySelector('.kie4o-viewer')",
                              timeout=5_000)
    assert second.evaluate("el => document.activeElement === el")


def test_dark_theme_grid_compare_and_viewer_are_readable(
        frontend: str, jupyter: Any, new_page: Any, artifacts: Path) -> None:
    """JupyterLab Dark: the grid's header and labels, compare's marked words and the viewer's
    controls all keep a readable contrast (≥ 4.5:1), and no grid text overlaps another."""
    with dark_theme(jupyter):
        name = f"viewer-dark-{frontend}.ipynb"
        write_notebook(jupyter.root, name, [
            LOAD, "%%kie4o -s 3:2 -o sw\nAn old lighthouse keeper, {watercolor|charcoal sketch}",
            "%kie4o compare $sw"])
        nb = NotebookPage(new_page(), jupyter, frontend, name)
        nb.open(n_cells=3)
        nb.page.wait_for_function(
            "() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
        nb.run_cell(0)
        nb.wait_cell_done(0, timeout=60)
        nb.run_cell(1)
        grid_cell = nb.cell(1)
        nb.wait_sweep_done(1, 2)
        nb.run_cell(2)
        nb.wait_cell_done(2, timeout=60)
        compare = nb.cell(2).locator(".kie4o-compare").first
        compare.wait_for(timeout=30_000)
        grid = grid_cell.locator(".kie4o-sweep").first
        grid.scroll_into_view_if_needed()
        nb.page.screenshot(path=str(artifacts / f"{frontend}-dark-grid.png"))
        compare.scroll_into_view_if_needed()
        nb.page.screenshot(path=str(artifacts / f"{frontend}-dark-compare.png"))

        assert grid.evaluate(_OVERLAPS_JS) == []
        texts = (nb.contrast_of(grid, ".kie4o-sweep-head, .kie4o-col, .kie4o-row, figcaption")
                 + nb.contrast_of(compare, "ins, del, mark"))
        marked = nb.contrast_of(compare, "ins, del, mark")
        assert {m["text"] for m in marked} >= {"watercolor", "charcoal sketch"}, marked
        poor = [t for t in texts if t["ratio"] < 4.5]
        assert texts and not poor, json.dumps(poor, indent=1)

        compare.locator("img.kie4o-zoom").first.click()
        nb.page.wait_for_selector(".kie4o-viewer", timeout=10_000)
        viewer = nb.page.locator(".kie4o-viewer")
        # Compare embeds small copies: the viewer says it shows one, and the true size.
        caption = viewer.locator("figcaption").first
        nb.page.wait_for_function("(el) => el.innerText.includes('embedded')",
                                  arg=caption.element_handle(), timeout=10_000)
        assert "512×341" in caption.inner_text() and "320×213" in caption.inner_text()
        nb.page.screenshot(path=str(artifacts / f"{frontend}-dark-viewer.png"))
        controls = nb.contrast_of(viewer, "button, span, figcaption")
        poor = [t for t in controls if t["ratio"] < 4.5]
        assert controls and not poor, json.dumps(poor, indent=1)
        nb.page.keyboard.press("Escape")
        nb.page.wait_for_function("() => !document.querySelector('.kie4o-viewer')",
                                  timeout=5_000)


def _data_url(width: int, height: int, colour: str) -> str:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _viewer_page(browser: Any) -> Any:
    """A page of two outputs (a tall and a short image, then one more), the viewer's script
    sent twice as each output sends it: no Jupyter needed."""
    from kie_jupyter.notebook.viewer import script_tag, zoom_attrs

    tall, short, other = (_data_url(2000, 3000, "red"), _data_url(2000, 1000, "blue"),
                          _data_url(300, 300, "green"))
    page_html = (
        '<html><body><button id="before">before</button><div class="kie4o-view">'
        f'<img src="{tall}" {zoom_attrs(alt="tall", pick="fox[0]")} style="width:100px">'
        f'<img src="{short}" {zoom_attrs(alt="short", pick="fox[1]")} style="width:100px">'
        f'</div><div class="kie4o-view"><img src="{other}" {zoom_attrs(alt="other")} '
        f'style="width:100px"></div>{script_tag()}{script_tag()}</body></html>')
    ctx = browser.new_context(viewport={"width": 1200, "height": 800}, device_scale_factor=1)
    page = ctx.new_page()
    page.set_content(page_html)
    return page


_SCROLL_JS = """
async ([pane, top]) => {
  const views = Array.from(document.querySelectorAll('.kie4o-viewer figure > div'));
  views[pane].scrollTop = top === 'end' ? views[pane].scrollHeight : top;
  for (let i = 0; i < 6; i++) await new Promise(r => requestAnimationFrame(r));
  return views.map(v => ({top: v.scrollTop, max: v.scrollHeight - v.clientHeight}));
}
"""

_COUNT_JS = "() => document.querySelectorAll('.kie4o-viewer').length"
_WHERE_JS = """
() => { const a = document.activeElement;
        return (a.closest('.kie4o-viewer') ? 'in:' : 'out:') + a.tagName; }
"""


def test_compare_scrolls_a_larger_image_past_a_smaller_ones_end(
        browser: Any, artifacts: Path) -> None:
    page = _viewer_page(browser)
    try:
        page.click("img[alt=tall]")
        page.get_by_role("button", name="put another image beside this one").click()
        page.locator(".kie4o-viewer-choice").first.click()
        page.wait_for_function(
            "() => Array.from(document.querySelectorAll('.kie4o-viewer-img'))"
            ".filter(im => im.complete && im.naturalWidth).length === 2")
        tall, short = page.evaluate(_SCROLL_JS, [0, "end"])
        page.screenshot(path=str(artifacts / "static-viewer-compare-scrolled.png"))
        # The tall image reaches its own end; the short one stops at its own.
        assert tall["top"] == tall["max"] > short["max"] > 0, (tall, short)
        assert short["top"] == short["max"], (tall, short)
        tall, short = page.evaluate(_SCROLL_JS, [1, 100])  # and back, from the other pane
        assert tall["top"] == short["top"] == 100, (tall, short)
        tall, short = page.evaluate(_SCROLL_JS, [0, 1500])
        assert (tall["top"], short["top"]) == (1500, short["max"]), (tall, short)
    finally:
        page.context.close()


def test_the_viewer_keeps_the_focus_and_opens_once(browser: Any, artifacts: Path) -> None:
    page = _viewer_page(browser)
    try:
        page.focus("img[alt=tall]")
        page.keyboard.press("Enter")
        page.wait_for_selector(".kie4o-viewer")
        where = []
        for _ in range(10):
            page.keyboard.press("Tab")
            where.append(page.evaluate(_WHERE_JS))
        for _ in range(10):
            page.keyboard.press("Shift+Tab")
            where.append(page.evaluate(_WHERE_JS))
        assert all(w.startswith("in:") for w in where), where
        # An image behind, focused by a script and entered: no second viewer, and the
        # focus comes back to the open one.
        page.focus("img[alt=other]")
        assert page.evaluate(_WHERE_JS).startswith("in:")
        page.evaluate("() => document.querySelector('img[alt=other]').click()")
        page.keyboard.press("Enter")
        assert page.evaluate(_COUNT_JS) == 1
        caption = page.locator(".kie4o-viewer figcaption").first.inner_text()
        assert caption.startswith("fox[0]"), caption
        page.screenshot(path=str(artifacts / "static-viewer-one.png"))
        page.keyboard.press("Escape")
        assert page.evaluate(_COUNT_JS) == 0
        assert page.evaluate("() => document.activeElement.alt") == "tall"
    finally:
        page.context.close()
