"""A ``%%kie4o`` sweep in a real browser: JupyterLab 4 and Notebook 7, demo mode.

One blocking sweep cell (2 prompts × 2 sizes) must end as one labelled grid: its row and
column labels on screen, four cards with one image each shown at a real size, and no widget
output left in the cell.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from browser_server import write_notebook
from browser_ui import NotebookPage

pytestmark = pytest.mark.browser

LOAD = "%load_ext kie_jupyter"
SWEEP = "%%kie4o -s 1:1,3:2 -o sw\na {red|blue} fox"
ROWS = ["red", "blue"]
COLS = ["1:1", "3:2"]
#: Text a cell must never show where a widget was.
RESIDUE = ("Loading widget", "Error displaying widget")

#: The sweep cell's grids, cards, images and any widget output, as the page draws them.
_SWEEP_JS = """
(cell) => {
  const grids = Array.from(cell.querySelectorAll('.kie4o-sweep'));
  const g = grids[0];
  const texts = sel => g ? Array.from(g.querySelectorAll(sel)).map(e => e.innerText.trim()) : [];
  return {
    grids: grids.length,
    head: g ? (g.querySelector('.kie4o-sweep-head') || {innerText: ''}).innerText : '',
    rows: texts('.kie4o-row'),
    cols: texts('.kie4o-col'),
    cards: g ? Array.from(g.querySelectorAll('.kie4o-card'))
                 .map(c => c.querySelectorAll('img').length) : [],
    images: g ? Array.from(g.querySelectorAll('img')).map(im => ({
      complete: im.complete, natural: im.naturalWidth,
      width: im.getBoundingClientRect().width})) : [],
    widgets: cell.querySelectorAll(
      '.kie4o-panel, .jupyter-widgets, '
      + '[data-mime-type="application/vnd.jupyter.widget-view+json"]').length,
    outputText: Array.from(cell.querySelectorAll('.jp-OutputArea-output'))
                  .map(o => o.innerText).join('\\n'),
  };
}
"""

#: Whether an element is drawn on screen: a real box inside the viewport, and on top at its
#: centre (not hidden under something else).
_ON_SCREEN_JS = """
(el) => {
  const r = el.getBoundingClientRect();
  const s = getComputedStyle(el);
  const inView = r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0
    && r.bottom <= window.innerHeight && r.right <= window.innerWidth;
  const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return inView && s.visibility !== 'hidden' && s.display !== 'none'
    && parseFloat(s.opacity) > 0 && !!top && (top === el || el.contains(top));
}
"""


def _state(nb: NotebookPage, cell: int) -> dict[str, Any]:
    return dict(nb.page.evaluate(_SWEEP_JS, nb.cell(cell).element_handle()))


def _on_screen(label: Any) -> bool:
    label.scroll_into_view_if_needed()
    return bool(label.evaluate(_ON_SCREEN_JS))


def test_sweep_cell_shows_one_labelled_grid(
        frontend: str, jupyter: Any, new_page: Any, artifacts: Path) -> None:
    name = f"sweep-{frontend}.ipynb"
    write_notebook(jupyter.root, name, [LOAD, SWEEP])
    nb = NotebookPage(new_page(), jupyter, frontend, name)
    nb.open(n_cells=2)
    nb.run_cell(0)
    nb.wait_cell_done(0, timeout=60)
    assert "kie4o: demo mode on" in "\n".join(nb.outputs_text(0)), nb.outputs_text(0)

    nb.run_cell(1)
    cell = nb.cell(1)
    # Four demo tasks run in parallel (4 s each); be patient with a busy CPU.
    nb.wait_sweep_done(1, 4)
    # The images are data: URIs: wait until the page has decoded every one.
    nb.page.wait_for_function(
        """(el) => {
             const ims = Array.from(el.querySelectorAll('.kie4o-sweep img'));
             return ims.length >= 4 && ims.every(im => im.complete && im.naturalWidth > 0);
           }""",
        arg=cell.element_handle(), timeout=30_000)

    grid = cell.locator(".kie4o-sweep")
    grid.first.scroll_into_view_if_needed()
    nb.page.screenshot(path=str(artifacts / f"{frontend}-sweep.png"))
    state = _state(nb, 1)
    report = json.dumps(state, indent=1)[:3000]

    assert state["grids"] == 1, report
    assert grid.first.is_visible(), report
    assert "4 of 4 done" in state["head"] and "4 succeeded" in state["head"], report
    assert state["rows"] == ROWS and state["cols"] == COLS, report
    for selector, text in [(".kie4o-row", t) for t in ROWS] + [(".kie4o-col", t) for t in COLS]:
        label = grid.locator(selector, has_text=text).first
        assert _on_screen(label), f"{selector} {text!r} is not visible on screen; {report}"
    assert state["cards"] == [1, 1, 1, 1], report
    assert len(state["images"]) == 4, report
    for img in cell.locator(".kie4o-sweep img").all():
        img.scroll_into_view_if_needed()
        size = img.evaluate("im => ({natural: im.naturalWidth, "
                            "width: im.getBoundingClientRect().width})")
        assert size["natural"] > 0 and size["width"] >= 100, f"{size}; {report}"
    assert state["widgets"] == 0, report
    assert not any(r in state["outputText"] for r in RESIDUE), report
