"""The ``%%kie4o`` panel in a real browser: JupyterLab 4 and Notebook 7, demo mode.

Each test writes a notebook into the server's root, opens it, runs its cells the way a person
does (click into the cell, Shift+Enter) and checks the DOM: the panel, its progress bar moving,
the status line, the images, Stop, a failure in plain words, and what a saved notebook shows
when it is opened again with the kernel gone.
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
from browser_ui import NotebookPage, PanelState

pytestmark = pytest.mark.browser

LOAD = "%load_ext kie_jupyter"
DONE = re.compile(r"^Done in \d+(\.\d+)? s$")
GENERATING = re.compile(r"^Generating (\d+) %$")
#: What a blocking cell's panel shows instead of a Stop button while the task runs.
INTERRUPT_HINT = "interrupt the kernel"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "panel.png"


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


# -- a blocking cell: progress, images, then the saved notebook without its kernel ------------


def test_blocking_cell_progress_images_and_saved_notebook(
        frontend: str, jupyter: Any, new_page: Any, artifacts: Path) -> None:
    name = f"blocking-{frontend}.ipynb"
    write_notebook(jupyter.root, name, [LOAD, "%%kie4o -n 2\nA red fox in the snow, watercolor"])
    nb = NotebookPage(new_page(), jupyter, frontend, name)
    nb.open(n_cells=2)
    load_extension(nb)

    nb.run_cell(1)
    # The panel's box renders first, its children (the bar, the status) right after.
    nb.wait_panel(1, lambda s: s.width is not None and s.status != "",
                  "the panel with its progress bar and status", timeout=30)

    # Follow the panel until the task ends: the bar must move and the status must change.
    samples: list[PanelState] = []
    generating_shot = False
    deadline = time.monotonic() + 60
    while True:
        state = nb.panel(1)
        assert state is not None, "the panel went away"
        samples.append(state)
        if (not generating_shot and GENERATING.match(state.status)
                and (state.width or 0) >= 25):
            shot(nb, artifacts, "generating", cell=1)
            generating_shot = True
        if state.status.startswith(("Done", "Failed", "Stopped", "Timed out")):
            break
        assert time.monotonic() < deadline, f"task did not end; last {state}"
        time.sleep(0.1)

    running = [s for s in samples if GENERATING.match(s.status)]
    assert running and not any(s.stop_visible for s in running), "Stop shown in a blocking cell"
    assert any(INTERRUPT_HINT in s.text for s in running), running[-1:]
    statuses = [s.status for s in samples]
    widths = [s.width for s in samples]
    assert all(w is not None for w in widths), "no progress bar in the panel"
    assert widths == sorted(widths), f"the progress bar went backwards: {widths}"
    pairs = list(zip(statuses, widths, strict=True))
    moving = sorted({w for s, w in pairs if GENERATING.match(s) and 0 < w < 100})
    assert len(moving) >= 2, f"the bar did not advance while generating: {pairs}"
    percents = [int(m.group(1)) for m in map(GENERATING.match, statuses) if m]
    assert percents == sorted(percents) and len(set(percents)) >= 2, statuses
    assert generating_shot, f"never saw the bar past 25 % while generating: {statuses}"

    final = samples[-1]
    assert DONE.match(final.status), statuses
    # The text keeps updating after the bar reached 100 % (elapsed time): read it once more.
    final = nb.wait_panel(1, lambda s: s.width == 100 and not s.stop_visible
                          and "progress-bar-success" in (s.bar_class or "")
                          and "Save #2" in s.text and INTERRUPT_HINT not in s.text,
                          "a full green bar, Save buttons, no Stop, no hint")
    assert "Save #1" in final.text and "Save #2" in final.text, final.text
    assert final.images == [], "a blocking cell shows the images below the panel, not in it"

    nb.wait_cell_done(1, timeout=30)
    images = nb.wait_static_images(1, 2)
    assert len(images) == 2, images
    assert all(im["w"] > 0 and im["h"] > 0 for im in images), images
    all_imgs = nb.cell(1).locator("img").evaluate_all("els => els.length")
    assert all_imgs == 2, f"each image once: {all_imgs} <img> in the cell"
    shot(nb, artifacts, "done", cell=1)
    if frontend == "lab":
        nb.cell(1).scroll_into_view_if_needed()
        nb.cell(1).screenshot(path=str(artifacts / "lab-panel-cell.png"))
        if os.environ.get("KIE_UPDATE_DOCS_SCREENSHOT", "") not in ("", "0"):
            DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
            nb.cell(1).screenshot(path=str(DOCS_SCREENSHOT))

    # Save, then check what the file holds.
    nb.save()
    saved = jupyter.read_notebook(name)
    outputs = saved["cells"][1]["outputs"]
    kinds = [sorted(o.get("data", {})) for o in outputs]
    assert ["application/vnd.jupyter.widget-view+json", "text/plain"] in kinds, kinds
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    html_text = "".join("".join(h) if isinstance(h, list) else h for h in html)
    assert "kie4o-static" in html_text and html_text.count("<img src=\"data:image/") == 2

    # Shut the kernel down, then open the notebook again in a fresh browser context.
    old_kernel = jupyter.session_for(name)["kernel"]["id"]
    nb.page.context.close()
    assert jupyter.shutdown_kernel_of(name)
    observed: dict[str, Any] = {}

    # (a) Opened again the usual way: Jupyter starts a new kernel, which has none of the old
    # widget models.
    again = NotebookPage(new_page(), jupyter, frontend, name)
    again.open(n_cells=2)
    assert old_kernel not in {k["id"] for k in jupyter.api("GET", "/api/kernels")}
    images = again.wait_static_images(1, 2)
    assert all(im["w"] > 0 for im in images), images
    observed["new kernel"] = _settled_outputs(again, 1)
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
    shot(other, artifacts, "reopened-untrusted", cell=1)

    (artifacts / f"{frontend}-reopened.json").write_text(json.dumps(observed, indent=2),
                                                        encoding="utf-8")
    print(f"\n{frontend}: the saved panel, reopened: {json.dumps(observed, indent=2)}")


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


# -- --no-wait: Stop, and images inside the panel --------------------------------------------


def test_stop_button_and_no_wait_images(
        frontend: str, jupyter: Any, new_page: Any, artifacts: Path) -> None:
    name = f"nowait-{frontend}.ipynb"
    write_notebook(jupyter.root, name, [
        LOAD,
        "%%kie4o --no-wait\nA slow owl that will be stopped",
        "%%kie4o --no-wait -s 3:2\nA paper boat on a pond",
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
    stop = nb.cell(1).locator(".kie4o-panel button", has_text="Stop")
    stop.click()
    stopped_at = time.monotonic()
    state = nb.wait_panel(1, lambda s: s.status.startswith("Stopped"), "Stopped", timeout=15)
    assert "Stopped locally" in state.status, state
    assert state.width is not None and state.width < 100, state
    nb.wait_panel(1, lambda s: not s.stop_visible
                  and "progress-bar-warning" in (s.bar_class or ""),
                  "Stop hidden and an amber bar")
    shot(nb, artifacts, "stopped", cell=1)

    nb.run_cell(2)
    nb.wait_cell_done(2, timeout=15)
    done = nb.wait_panel(2, lambda s: DONE.match(s.status) is not None
                         and len(s.images) == 1 and s.images[0]["w"] > 0,
                         "Done with its image in the panel", timeout=45)
    img = done.images[0]
    assert abs(img["w"] / img["h"] - 1.5) < 0.05, f"3:2 image expected, got {img}"
    assert nb.static_images(2) == [], "a --no-wait panel shows its images itself"
    shot(nb, artifacts, "nowait-done", cell=2)

    # Long after the stopped task would have ended, its panel still says Stopped.
    remaining = stopped_at + 5.5 - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    after = nb.panel(1)
    assert after is not None and after.status.startswith("Stopped"), after
    assert after.images == [] and after.width == state.width, (state, after)


# -- a failed task ---------------------------------------------------------------------------


def test_failed_task_in_plain_words(
        frontend: str, jupyter: Any, new_page: Any, artifacts: Path) -> None:
    name = f"failed-{frontend}.ipynb"
    write_notebook(jupyter.root, name, [LOAD, "%%kie4o\nA cat [mock:fail]"])
    nb = NotebookPage(new_page(), jupyter, frontend, name)
    nb.open(n_cells=2)
    load_extension(nb)

    nb.run_cell(1)
    state = nb.wait_panel(1, lambda s: s.status.startswith(("Failed", "Done")),
                          "the end of the task", timeout=45)
    assert re.match(r"^Failed: .*content polic", state.status), state
    nb.wait_cell_done(1, timeout=30)
    state = nb.wait_panel(1, lambda s: "progress-bar-danger" in (s.bar_class or "")
                          and not s.stop_visible and INTERRUPT_HINT not in s.text,
                          "a red bar, no Stop, no hint")
    assert state.images == [], state
    texts = "\n".join(nb.outputs_text(1))
    assert "Traceback" not in texts and "Error" not in texts.replace("Failed", ""), texts
    assert nb.static_images(1) == []
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
    nb.wait_panel(1, lambda s: s.status.startswith("Stopped"), "Stopped", timeout=15)
    # Each trait is a message of its own: the hint goes a moment after the status changed.
    nb.wait_panel(1, lambda s: INTERRUPT_HINT not in s.text, "the hint gone", timeout=5)
    nb.wait_cell_done(1, timeout=15)
    texts = "\n".join(nb.outputs_text(1))
    assert "stopped following task" in texts and "%kie4o resume" in texts, texts
    assert "KeyboardInterrupt" not in texts and "Traceback" not in texts, texts
    shot(nb, artifacts, "interrupted", cell=1)
