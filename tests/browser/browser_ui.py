"""Driving one notebook page in JupyterLab 4 or Notebook 7 (both use the same cell DOM).

Everything waits on the DOM or the REST API; the only fixed pauses are short poll intervals.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from browser_server import JupyterServer
    from playwright.sync_api import Locator, Page

FRONTENDS = ("lab", "notebook")
PROMPT_STARTED = re.compile(r"\[(\*|\d+)\]")
PROMPT_DONE = re.compile(r"\[(\d+)\]")

#: One snapshot of every panel on the page: status text, bar width (%), bar classes, …
_PANELS_JS = """
() => Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell')).map((cell, i) => {
  const p = cell.querySelector('.kie4o-panel');
  if (!p) return null;
  // ipywidgets 8: .widget-hprogress (7: .widget-progress) > .progress > .progress-bar
  const bar = p.querySelector(
    '.widget-hprogress .progress-bar, .widget-vprogress .progress-bar, '
    + '.widget-progress .progress-bar');
  const stop = Array.from(p.querySelectorAll('button')).find(b => b.innerText.trim() === 'Stop');
  const imgs = Array.from(p.querySelectorAll('img'));
  return {
    cell: i,
    text: p.innerText,
    width: bar ? parseFloat(bar.style.width || '0') : null,
    barClass: bar ? bar.className : null,
    stopVisible: !!(stop && stop.offsetParent !== null),
    images: imgs.map(im => ({w: im.naturalWidth, h: im.naturalHeight, complete: im.complete})),
  };
})
"""


#: Each cell's cards: status, text, images, and how many widget views the cell still holds.
_CARDS_JS = """
() => Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell')).map((cell, i) => {
  const cards = Array.from(cell.querySelectorAll('.kie4o-card'));
  return {
    cell: i,
    cards: cards.map(c => ({
      text: c.innerText,
      status: (c.querySelector('.kie4o-status') || {innerText: ''}).innerText.trim(),
      images: Array.from(c.querySelectorAll('img')).map(im => ({
        w: im.naturalWidth, h: im.naturalHeight, complete: im.complete})),
    })),
    widgets: cell.querySelectorAll('.kie4o-panel, .jupyter-widgets').length,
    imgs: cell.querySelectorAll('img').length,
  };
})
"""

#: The contrast ratio of an element's text against the background drawn under it (called with
#: the element; ``contrast_of`` passes each match of a selector).
ELEMENT_CONTRAST_JS = """
(el) => {
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = c => {
      c /= 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  let bg = null;
  for (let n = el; n; n = n.parentElement) {
    const c = rgb(getComputedStyle(n).backgroundColor);
    if (c.length >= 3 && (c.length < 4 || c[3] > 0)) { bg = c; break; }
  }
  bg = bg || [255, 255, 255];
  const fg = rgb(getComputedStyle(el).color);
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return {fg: getComputedStyle(el).color, bg: 'rgb(' + bg.slice(0, 3).join(',') + ')',
          ratio: (a + 0.05) / (b + 0.05), text: el.innerText.slice(0, 40)};
}
"""


@contextmanager
def dark_theme(server: JupyterServer) -> Iterator[None]:
    """Pages opened inside use JupyterLab Dark (Lab and Notebook 7 read the same setting)."""
    settings = (Path(server.env["JUPYTER_CONFIG_DIR"]) / "lab" / "user-settings"
                / "@jupyterlab" / "apputils-extension" / "themes.jupyterlab-settings")
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"theme": "JupyterLab Dark"}), encoding="utf-8")
    try:
        yield
    finally:
        settings.unlink(missing_ok=True)


@dataclass
class CellCards:
    cell: int
    cards: list[dict[str, Any]]
    widgets: int
    imgs: int


@dataclass
class PanelState:
    cell: int
    text: str
    width: float | None
    bar_class: str | None
    stop_visible: bool
    images: list[dict[str, Any]]

    @property
    def status(self) -> str:
        """The status line (Submitting… / Generating N % / Done in … / Failed: … / Stopped …)."""
        for line in self.text.splitlines():
            if line.startswith(("Submitting", "Generating", "Downloading", "Done in", "Failed",
                                "Stopped", "Timed out")):
                return line.strip()
        return ""


def notebook_url(server: JupyterServer, frontend: str, name: str) -> str:
    if frontend == "lab":
        # A workspace of its own: Lab would otherwise reopen every notebook of earlier tests
        # (and start a kernel for each).
        workspace = f"t{uuid.uuid4().hex[:10]}"
        return f"{server.base}/lab/workspaces/{workspace}/tree/{name}?token={server.token}"
    if frontend == "notebook":
        return f"{server.base}/notebooks/{name}?token={server.token}"
    raise ValueError(frontend)


class NotebookPage:
    """One open notebook."""

    def __init__(self, page: Page, server: JupyterServer, frontend: str, name: str) -> None:
        self.page = page
        self.server = server
        self.frontend = frontend
        self.name = name

    # -- opening ------------------------------------------------------------------------------

    def open(self, *, n_cells: int, expect_kernel: bool = True, timeout: float = 90) -> None:
        self.page.goto(notebook_url(self.server, self.frontend, self.name),
                       timeout=timeout * 1000)
        self.page.locator(".jp-Notebook .jp-CodeCell").nth(n_cells - 1).wait_for(
            timeout=timeout * 1000)
        if expect_kernel:
            self.wait_kernel_ready(timeout)

    def wait_kernel_ready(self, timeout: float = 90) -> None:
        """The page's kernel is connected (REST) and idle (the page's own indicator)."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.server.session_for(self.name)
            if s and s["kernel"].get("connections", 0) >= 1 \
                    and s["kernel"].get("execution_state") == "idle":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"kernel of {self.name} not ready: {s}")
            time.sleep(0.2)
        self.page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').first.wait_for(
            timeout=max(deadline - time.monotonic(), 5) * 1000)

    # -- cells --------------------------------------------------------------------------------

    def cell(self, i: int) -> Locator:
        return self.page.locator(".jp-Notebook .jp-CodeCell").nth(i)

    def prompt(self, i: int) -> str:
        return self.cell(i).locator(".jp-InputPrompt").inner_text().strip()

    def run_cell(self, i: int, attempts: int = 3) -> None:
        """Click into cell ``i``'s editor and press Shift+Enter; check that it was queued.

        A key press right after the page settles is sometimes lost (the editor was not focused
        yet): the prompt then stays ``[ ]``, and the press is repeated.
        """
        cell = self.cell(i)
        before = self.prompt(i)
        for _attempt in range(attempts):
            cell.locator(".jp-InputArea-editor .cm-content").click()
            self.page.wait_for_function(
                "el => el.classList.contains('jp-mod-active') && "
                "el.querySelector('.cm-editor.cm-focused') !== null",
                arg=cell.element_handle(), timeout=10_000)
            self.page.keyboard.press("Shift+Enter")
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                now = self.prompt(i)
                if now != before and PROMPT_STARTED.search(now):
                    return
                time.sleep(0.1)
        raise AssertionError(f"cell {i} did not start after {attempts} Shift+Enter "
                             f"(prompt {self.prompt(i)!r})")

    def wait_cell_done(self, i: int, timeout: float = 60) -> None:
        self.page.wait_for_function(
            "el => /\\[\\d+\\]/.test(el.querySelector('.jp-InputPrompt').innerText)",
            arg=self.cell(i).element_handle(), timeout=timeout * 1000)

    def wait_sweep_done(self, i: int, total: int, timeout: float = 120) -> None:
        """Cell ``i``'s sweep header says all ``total`` tasks are done, and the cell ended."""
        self.page.wait_for_function(
            """([el, done]) => Array.from(el.querySelectorAll('.kie4o-sweep-head'))
                                 .some(h => h.innerText.includes(done))""",
            arg=[self.cell(i).element_handle(), f"{total} of {total} done"],
            timeout=timeout * 1000)
        self.wait_cell_done(i, timeout=60)

    def outputs_text(self, i: int) -> list[str]:
        return [t.strip() for t in self.cell(i).locator(".jp-OutputArea-output").all_inner_texts()]

    def output_elements(self, i: int) -> list[dict[str, str]]:
        """Each output of cell ``i``: its classes and its text (the first 300 characters)."""
        return self.cell(i).locator(".jp-OutputArea-output").evaluate_all(
            "els => els.map(e => ({cls: e.className, text: e.innerText.slice(0, 300)}))")

    # -- panels -------------------------------------------------------------------------------

    def panels(self) -> dict[int, PanelState]:
        out = {}
        for p in self.page.evaluate(_PANELS_JS):
            if p is not None:
                out[p["cell"]] = PanelState(p["cell"], p["text"], p["width"], p["barClass"],
                                            p["stopVisible"], p["images"])
        return out

    def panel(self, i: int) -> PanelState | None:
        return self.panels().get(i)

    def wait_panel(self, i: int, predicate: Any, what: str, timeout: float = 30,
                   interval: float = 0.1) -> PanelState:
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.panel(i)
            if state is not None and predicate(state):
                return state
            time.sleep(interval)
        raise AssertionError(f"panel of cell {i}: {what} not seen in {timeout} s; "
                             f"last state {state}")

    def cards(self, i: int) -> CellCards:
        """The cards of cell ``i`` and what else it holds (widget views, <img> elements)."""
        c = self.page.evaluate(_CARDS_JS)[i]
        return CellCards(c["cell"], c["cards"], c["widgets"], c["imgs"])

    def wait_card(self, i: int, predicate: Any, what: str, timeout: float = 45) -> CellCards:
        """Wait until cell ``i``'s cards satisfy ``predicate`` (given one card's dict)."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.cards(i)
            if len(state.cards) == 1 and predicate(state.cards[0]):
                return state
            time.sleep(0.1)
        raise AssertionError(f"cell {i}: {what} not seen in {timeout} s; last {state}")

    def contrast(self, i: int) -> dict[str, Any] | None:
        """The contrast of cell ``i``'s first card prompt against what is drawn under it."""
        found = self.cell(i).locator(".kie4o-card .kie4o-prompt")
        if found.count() == 0:
            return None
        return dict(found.first.evaluate(ELEMENT_CONTRAST_JS))

    def contrast_of(self, root: Locator, selector: str) -> list[dict[str, Any]]:
        """The contrast of every non-empty text matching ``selector`` inside ``root``."""
        return [dict(c) for c in root.locator(selector).evaluate_all(
            f"els => els.filter(e => e.innerText.trim()).map({ELEMENT_CONTRAST_JS})")]

    def static_images(self, i: int | None = None) -> list[dict[str, Any]]:
        """``<img>`` elements inside ``.kie4o-static`` outputs (of cell ``i`` or all)."""
        root = self.cell(i) if i is not None else self.page.locator(".jp-Notebook")
        return root.locator(".kie4o-static img").evaluate_all(
            "els => els.map(im => ({w: im.naturalWidth, h: im.naturalHeight, "
            "complete: im.complete, src: im.src.slice(0, 30)}))")

    def wait_static_images(self, i: int, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        self.page.wait_for_function(
            """([el, n]) => {
                 const ims = Array.from(el.querySelectorAll('.kie4o-static img'));
                 return ims.length >= n && ims.every(im => im.complete && im.naturalWidth > 0);
               }""",
            arg=[self.cell(i).element_handle(), count], timeout=timeout * 1000)
        return self.static_images(i)

    # -- saving -------------------------------------------------------------------------------

    def save(self, timeout: float = 30) -> None:
        """Ctrl+S (the save command in both front ends); wait until the file on disk changed."""
        path: Path = self.server.root / self.name
        before = path.stat().st_mtime_ns
        self.page.keyboard.press("Escape")  # command mode; Ctrl+S saves in either mode
        self.page.keyboard.press("ControlOrMeta+s")
        deadline = time.monotonic() + timeout
        while path.stat().st_mtime_ns == before:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} was not saved within {timeout} s")
            time.sleep(0.1)
        # The dirty marker goes away once the save round trip is over.
        time.sleep(0.3)

    def dismiss_dialogs(self, settle: float = 1.0) -> list[str]:
        """Answer the dialogs a notebook without a kernel brings up; return their texts.

        "Error Starting Kernel" gets Ok, "Select Kernel" gets No Kernel (what a person
        does); any other dialog is dismissed with Escape. Stops once no dialog has been
        seen for ``settle`` seconds.
        """
        texts: list[str] = []
        dialogs = self.page.locator(".jp-Dialog")
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < settle and len(texts) < 6:
            if dialogs.count() == 0:
                time.sleep(0.1)
                continue
            dialog = dialogs.first
            handle = dialog.element_handle()
            text = dialog.inner_text()
            texts.append(re.sub(r"\s+", " ", text).strip())
            no_kernel = dialog.locator(".jp-Dialog-footer button", has_text="No Kernel")
            ok = dialog.locator(".jp-Dialog-footer button", has_text="Ok")
            if no_kernel.count():
                no_kernel.first.click()
            elif ok.count():
                ok.first.click()
            else:
                self.page.keyboard.press("Escape")
            self.page.wait_for_function("el => !el.isConnected", arg=handle, timeout=5000)
            quiet_since = time.monotonic()
        return texts
