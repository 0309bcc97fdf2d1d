"""The ``%%kie4o`` panel and its card in a real browser: JupyterLab 4 and Notebook 7, demo mode.

Each test writes a notebook into the server's root, opens it, runs its cells the way a person
does (click into the cell, Shift+Enter) and checks the DOM: the live panel and its progress bar
while the task runs, then one static card in its place (the images once, no widget left), Stop,
a failure in plain words, the dark theme, and what a saved notebook shows when it is opened
again with the kernel gone.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from browser_server import write_notebook
from browser_ui import NotebookPage, PanelState, dark_theme

pytestmark = pytest.mark.browser

LOAD = "%load_ext kie_jupyter"
DONE = re.compile(r"^Done in \d+(\.\d+)? s$")
GENERATING = re.compile(r"^Generating (\d+) %$")
#: What a blocking cell's panel shows instead of a Stop button while the task runs.
INTERRUPT_HINT = "interrupt the kernel"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: Text a page must never show for a saved notebook's outputs.
RESIDUE = ("Error displaying widget", "Loading widget")
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "card.png"


def shot(nb: NotebookPage, artifacts: Path, state: str, cell: int | None = None) -> Path:
    """A screenshot of the page with ``cell`` scrolled into view."""
    if cell is not None:
        nb.cell(cell).scroll_into_view_if_needed()
    path = artifacts / f"{nb.frontend}-{state}.png"
    nb.page.screenshot(path=str(path))
    return path


def load_extension(nb: NotebookPage) -> None:
    nb.run_cell(0)
    nb.wait_cell_done(0, timeout=60)
    text = "\n".join(nb.outputs_text(0))
    assert "kie4o: demo mode on http://127.0.0.1:" in text, text


def follow_panel(nb: NotebookPage, cell: int, timeout: float = 60) -> list[PanelState]:
    """Sample cell ``cell``'s panel until its card has replaced it; return the samples."""
    nb.wait_panel(cell, lambda s: s.width is not None and s.status != "",
                  "the panel with its progress bar and status", timeout=30)
    samples: list[PanelState] = []
    deadline = time.monotonic() + timeout
    while True:
        state = nb.panel(cell)
        if state is None:
            break
        samples.append(state)
        assert time.monotonic() < deadline, f"task did not end; last {state}"
        time.sleep(0.1)
    return samples


def saved_outputs(saved: dict[str, Any], cell: int) -> tuple[list[dict[str, Any]], str]:
    """The outputs of a saved cell and the HTML of its card outputs, joined."""
    outputs = saved["cells"][cell]["outputs"]
    html = ["".join(h) if isinstance(h, list) else h
            for o in outputs for m, h in o.get("data", {}).items() if m == "text/html"]
    return outputs, "".join(html)


def page_text(nb: NotebookPage) -> str:
    return str(nb.page.locator(".jp-Notebook").inner_text())


# -- a blocking cell: progress, one card, then the saved notebook without its kernel -----------


def test_blocking_cell_progress_then_one_card_and_saved_notebook(
        frontend: str, jupyter: Any, new_page: Any, artifacts: Path) -> None:
    name = f"blocking-{frontend}.ipynb"
    prompt = "A red fox in the snow, watercolor"
    write_notebook(jupyter.root, name, [LOAD, f"%%kie4o -n 2 -o fox\n{prompt}"])
    nb = NotebookPage(new_page(), jupyter, frontend, name)
    nb.open(n_cells=2)
    load_extension(nb)

    nb.run_cell(1)
    samples = follow_panel(nb, 1)
    running = [s for s in samples if GENERATING.match(s.status)]
    assert running and not any(s.stop_visible for s in running), "Stop shown in a blocking cell"
    assert any(INTERRUPT_HINT in s.text for s in running), running[-1:]
    widths = [s.width for s in samples]
    assert all(w is not None for w in widths), "no progress bar in the panel"
    assert widths == sorted(widths), f"the progress bar went backwards: {widths}"
    moving = sorted({s.width for s in running if 0 < (s.width or 0) < 100})
    assert len(moving) >= 2, f"the bar did not advance while generating: {samples}"
    percents = [int(m.group(1)) for m in map(GENERATING.match, [s.status for s in samples]) if m]
    assert percents == sorted(percents) and len(set(percents)) >= 2, percents

    # The panel gave way to one card, in the same output: the images once, no widget left.
    state = nb.wait_card(1, lambda c: DONE.match(c["status"]) is not None
                         and len(c["images"]) == 2
                         and all(im["complete"] and im["w"] > 0 for im in c["images"]),
                         "one card, Done, with its 2 images")
    assert state.widgets == 0 and state.imgs == 2, state
    card = state.cards[0]
    assert card["text"].count(prompt) == 1 and "fox[0]" in card["text"], card["text"]
    nb.wait_cell_done(1, timeout=30)
    assert len(nb.output_elements(1)) == 1, nb.output_elements(1)
    shot(nb, artifacts, "done", cell=1)
    if frontend == "lab":
        nb.cell(1).scroll_into_view_if_needed()
        nb.cell(1).screenshot(path=str(artifacts / "lab-card-cell.png"))
        if os.environ.get("KIE_UPDATE_DOCS_SCREENSHOT", "") not in ("", "0"):
            DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
            nb.cell(1).screenshot(path=str(DOCS_SCREENSHOT))

    # Save, then check what the file holds: the card, and no widget anywhere.
    nb.save()
    saved = jupyter.read_notebook(name)
    outputs, html = saved_outputs(saved, 1)
    assert not any(WIDGET_VIEW in o.get("data", {}) for o in outputs), outputs
    assert html.count("kie4o-card") == 1 and html.count('<img src="data:image/') == 2
    # Shown once (the images' alt text repeats it for screen readers).
    assert re.sub(r' (alt|aria-label)="[^"]*"', "", html).count(prompt) == 1
    state_saved = saved["metadata"].get("widgets", {}).get(
        "application/vnd.jupyter.widget-state+json", {}).get("state", {})
    assert state_saved == {}, sorted(state_saved)

    # Shut the kernel down, then open the notebook again in a fresh browser context.
    old_kernel = jupyter.session_for(name)["kernel"]["id"]
    nb.page.context.close()
    assert jupyter.shutdown_kernel_of(name)
    observed: dict[str, Any] = {}

    # (a) Opened again the usual way: Jupyter starts a new kernel.
    again = NotebookPage(new_page(), jupyter, frontend, name)
    again.open(n_cells=2)
    assert old_kernel not in {k["id"] for k in jupyter.api("GET", "/api/kernels")}
    images = again.wait_static_images(1, 2)
    assert all(im["w"] > 0 for im in images), images
    observed["new kernel"] = _settled_outputs(again, 1)
    assert not any(r in page_text(again) for r in RESIDUE), observed
    shot(again, artifacts, "reopened", cell=1)
    again.page.context.close()
    jupyter.shutdown_kernel_of(name)

    # (b) Opened with no kernel at all (the server refuses to start one).
    bare = NotebookPage(_page_without_kernels(new_page()), jupyter, frontend, name)
    bare.open(n_cells=2, expect_kernel=False)
    images = bare.wait_static_images(1, 2)
    assert all(im["w"] > 0 for im in images), images
    assert jupyter.session_for(name) is None
    observed["dialogs"] = bare.dismiss_dialogs()
    observed["no kernel"] = _settled_outputs(bare, 1)
    assert not any(r in page_text(bare) for r in RESIDUE), observed
    shot(bare, artifacts, "reopened-nokernel", cell=1)
    bare.page.context.close()

    # (c) An untrusted copy (as a notebook from someone else is), with no kernel: the static
    # HTML is sanitized but keeps its data: images.
    untrusted = f"untrusted-{name}"
    saved["metadata"]["kie4o_test"] = "changed, so the signature no longer matches"
    (jupyter.root / untrusted).write_text(json.dumps(saved), encoding="utf-8")
    other = NotebookPage(_page_without_kernels(new_page()), jupyter, frontend, untrusted)
    other.open(n_cells=2, expect_kernel=False)
    images = other.wait_static_images(1, 2)
    assert all(im["w"] > 0 for im in images), images
    other.dismiss_dialogs()
    observed["untrusted, no kernel"] = _settled_outputs(other, 1)
    assert not any(r in page_text(other) for r in RESIDUE), observed
    shot(other, artifacts, "reopened-untrusted", cell=1)

    (artifacts / f"{frontend}-reopened.json").write_text(json.dumps(observed, indent=2),
                                                        encoding="utf-8")
    print(f"\n{frontend}: the saved card, reopened: {json.dumps(observed, indent=2)}")


def _page_without_kernels(page: Any) -> Any:
    """A page whose requests to start a session (and so a kernel) get a 503."""

    def refuse(route: Any) -> None:
        if route.request.method == "POST":
            route.fulfill(status=503, content_type="application/json",
                          body=json.dumps({"message": "no kernel: refused by the test"}))
        else:
            route.continue_()

    page.route("**/api/sessions*", refuse)
    return page


def _settled_outputs(nb: NotebookPage, cell: int, timeout: float = 10) -> list[str]:
    """The text of each output of ``cell`` once no widget output says "Loading widget...".

    (An output still loading after ``timeout`` is reported as it is.)
    """
    deadline = time.monotonic() + timeout
    while True:
        outs = nb.output_elements(cell)
        texts = [o["text"].strip() for o in outs]
        if not any("Loading widget" in t for t in texts) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return [
        ("[widget output] " if "jupyter-widgets" in o["cls"] else "")
        + re.sub(r"\s+", " ", o["text"]).strip()[:160]
        for o in outs
    ]


# -- the dark theme ---------------------------------------------------------------------------


def test_dark_theme_card_is_readable(
        frontend: str, jupyter: Any, new_page: Any, artifacts: Path) -> None:
    with dark_theme(jupyter):
        name = f"dark-{frontend}.ipynb"
        write_notebook(jupyter.root, name, [LOAD, "%%kie4o -o owl\nAn owl at night, ink"])
        nb = NotebookPage(new_page(), jupyter, frontend, name)
        nb.open(n_cells=2)
        nb.page.wait_for_function(
            "() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
        load_extension(nb)
        nb.run_cell(1)
        nb.wait_card(1, lambda c: DONE.match(c["status"]) is not None and c["images"]
                     and c["images"][0]["w"] > 0, "the card, Done")
        contrast = nb.contrast(1)
        shot(nb, artifacts, "dark", cell=1)
        print(f"\n{frontend} dark theme: prompt {contrast}")
        assert contrast is not None and contrast["ratio"] >= 4.5, contrast


# -- --no-wait: Stop, and each task's card in place of its panel ------------------------------


def test_stop_button_and_no_wait_cards(
        frontend: str, jupyter: Any, new_page: Any, artifacts: Path) -> None:
    name = f"nowait-{frontend}.ipynb"
    write_notebook(jupyter.root, name, [
        LOAD,
        "%%kie4o --no-wait\nA slow owl that will be stopped",
        "%%kie4o --no-wait -s 3:2 -o boat\nA paper boat on a pond",
    ])
    nb = NotebookPage(new_page(), jupyter, frontend, name)
    nb.open(n_cells=3)
    load_extension(nb)

    nb.run_cell(1)
    nb.wait_cell_done(1, timeout=15)  # --no-wait: the cell returns at once…
    # …while the task goes on: stop it once the bar has moved.
    running = nb.wait_panel(1, lambda s: GENERATING.match(s.status) is not None
                            and (s.width or 0) >= 20 and s.stop_visible,
                            "Generating past 20 % with a Stop button")
    assert (running.width or 0) < 100, running
    assert INTERRUPT_HINT not in running.text, running  # the kernel is free: Stop works
    nb.cell(1).locator(".kie4o-panel button", has_text="Stop").click()
    stopped_at = time.monotonic()
    state = nb.wait_card(1, lambda c: c["status"] == "Stopped", "a Stopped card", timeout=15)
    assert "Stopped locally" in state.cards[0]["text"], state
    assert state.widgets == 0 and state.imgs == 0, state
    shot(nb, artifacts, "stopped", cell=1)

    nb.run_cell(2)
    nb.wait_cell_done(2, timeout=15)
    nb.wait_panel(2, lambda s: s.stop_visible, "the panel with Stop", timeout=15)
    # The task's own thread puts its card in place while no cell runs.
    done = nb.wait_card(2, lambda c: DONE.match(c["status"]) is not None
                        and len(c["images"]) == 1 and c["images"][0]["w"] > 0,
                        "Done with its image", timeout=45)
    img = done.cards[0]["images"][0]
    assert abs(img["w"] / img["h"] - 1.5) < 0.05, f"3:2 image expected, got {img}"
    assert done.widgets == 0 and done.imgs == 1, done
    assert "boat[0]" in done.cards[0]["text"]
    shot(nb, artifacts, "nowait-done", cell=2)

    # Long after the stopped task would have ended, its card still says Stopped.
    remaining = stopped_at + 5.5 - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    after = nb.cards(1)
    assert len(after.cards) == 1 and after.cards[0]["status"] == "Stopped", after
    assert after.imgs == 0 and after.widgets == 0, after

    # Saved: both cells hold their cards and no widget.
    nb.save()
    saved = jupyter.read_notebook(name)
    for cell, images in ((1, 0), (2, 1)):
        outputs, html = saved_outputs(saved, cell)
        assert not any(WIDGET_VIEW in o.get("data", {}) for o in outputs), outputs
        assert html.count("kie4o-card") == 1 and html.count("data:image/") == images


# -- a failed task ---------------------------------------------------------------------------


def test_failed_task_in_plain_words(
        frontend: str, jupyter: Any, new_page: Any, artifacts: Path) -> None:
    name = f"failed-{frontend}.ipynb"
    write_notebook(jupyter.root, name, [LOAD, "%%kie4o\nA cat [mock:fail]"])
    nb = NotebookPage(new_page(), jupyter, frontend, name)
    nb.open(n_cells=2)
    load_extension(nb)

    nb.run_cell(1)
    state = nb.wait_card(1, lambda c: c["status"] in ("Failed", "Stopped")
                         or c["status"].startswith("Done"), "the end of the task", timeout=45)
    card = state.cards[0]
    assert card["status"] == "Failed" and re.search(r"content polic", card["text"]), card
    assert card["text"].count("content polic") == 1, card["text"]
    assert state.widgets == 0 and state.imgs == 0, state
    nb.wait_cell_done(1, timeout=30)
    texts = "\n".join(nb.outputs_text(1))
    assert "Traceback" not in texts and "Error" not in texts.replace("Failed", ""), texts
    shot(nb, artifacts, "failed", cell=1)


# -- a blocking cell: no Stop button; the kernel's interrupt stops it ---------------------------


def test_interrupt_stops_following_a_blocking_cell(
        frontend: str, jupyter: Any, new_page: Any, artifacts: Path) -> None:
    name = f"interrupt-{frontend}.ipynb"
    write_notebook(jupyter.root, name, [LOAD, "%%kie4o\nA blocking owl, interrupted"])
    nb = NotebookPage(new_page(), jupyter, frontend, name)
    nb.open(n_cells=2)
    load_extension(nb)

    nb.run_cell(1)
    running = nb.wait_panel(1, lambda s: GENERATING.match(s.status) is not None
                            and (s.width or 0) >= 20, "Generating past 20 %")
    # While the cell blocks, a click could reach the kernel only after the task ends: no Stop
    # button, a hint to interrupt instead.
    assert not running.stop_visible, running
    assert INTERRUPT_HINT in running.text, running
    # The toolbar's ■ (Kernel > Interrupt), the same command in both front ends.
    nb.page.locator('[data-command="notebook:interrupt-kernel"]').first.click()
    state = nb.wait_card(1, lambda c: c["status"] == "Stopped", "a Stopped card", timeout=15)
    assert state.widgets == 0, state
    nb.wait_cell_done(1, timeout=15)
    texts = "\n".join(nb.outputs_text(1))
    assert "stopped following task" in texts and "%kie4o resume" in texts, texts
    assert "KeyboardInterrupt" not in texts and "Traceback" not in texts, texts
    shot(nb, artifacts, "interrupted", cell=1)
