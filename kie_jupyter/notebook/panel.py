"""``TaskPanel``: the live ipywidgets view of one task.

Built once, then only its traits change (from the task's thread: setting traits sends comm
messages, which reach the front end on ipykernel 6 and 7 alike; printing from a thread would
not). The task's thread and the cell's thread both update it: each update reads the task's
state under one lock, so the last one always writes the newest state. The panel never makes a
request: Stop calls ``task.stop()``; Save writes bytes the task already holds.
"""

from __future__ import annotations

import html
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..api.models import TaskStatus
from .cards import status_text, thumbnail

if TYPE_CHECKING:
    from ..engine.task import Task

__all__ = ["TaskPanel"]

_BAR_STYLE = {
    TaskStatus.SUCCESS: "success",
    TaskStatus.FAILED: "danger",
    TaskStatus.TIMED_OUT: "warning",
    TaskStatus.STOPPED: "warning",
}
#: Front ends reset link styles inside widgets: make the link look like one.
_LINK_STYLE = "color:#1a73e8;text-decoration:underline"
_TILE_WIDTH = {"1:1": 256, "3:2": 300, "2:3": 200}
_CHIP_STYLE = ("border-radius:10px;padding:1px 8px;margin-right:4px;font-size:85%;"
               "background:{}")
_CHIP_BG = "#e8eaf6"
#: A demo task's chip stands out: its images are made up and cost nothing.
_DEMO_BG = "var(--jp-warn-color3, #ffe0b2)"


class TaskPanel(w.VBox):
    """Prompt, parameter chips, progress bar, status, elapsed time, task id, Stop, images.

    ``show_images`` puts the images in the panel (for ``--no-wait``); otherwise the magic
    shows them in a static output below and the panel keeps only their Save buttons and
    full-size links, so a person sees each image once.
    """

    def __init__(self, task: Task, *, show_images: bool = True,
                 save_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        self.task = task
        self.show_images = show_images
        self._update_lock = threading.Lock()
        self.save_dir = Path(save_dir) if save_dir else None
        esc = html.escape
        p = task.params
        chips = [p.get("size"), f"{p.get('variants', 1)} variant(s)"]
        if p.get("files"):
            chips.append(f"{len(p['files'])} input image(s)")
        if p.get("mask"):
            chips.append("mask")
        if p.get("enhance"):
            chips.append("enhance")
        if p.get("fallback"):
            chips.append(f"fallback {p.get('fallback_model') or 'FLUX_MAX'}")
        chip_html = "".join(
            f'<span class="kie4o-chip" style="{_CHIP_STYLE.format(_CHIP_BG)}">'
            f"{esc(str(c))}</span>"
            for c in chips if c
        )
        if getattr(task, "demo", False):
            chip_html = (
                f'<span class="kie4o-chip kie4o-demo" style="{_CHIP_STYLE.format(_DEMO_BG)}" '
                'title="demo mode: made-up images from the bundled mock server, no credits '
                'spent">demo</span>' + chip_html
            )
        self.prompt = w.HTML(
            f'<div class="kie4o-prompt" style="white-space:pre-wrap;max-height:6em;'
            f'overflow:auto;line-height:1.3">{esc(task.prompt)}</div>'
        )
        self.chips = w.HTML(chip_html)
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, bar_style="info",
                                   layout=w.Layout(width="60%"))
        self.status = w.HTML(value=esc(status_text(task, front_end="notebook")))
        self.elapsed = w.HTML(value="0.0 s")
        self.task_id = w.HTML(value="")
        self.stop_button = w.Button(description="Stop", icon="stop", button_style="warning",
                                    tooltip="Stop following this task (it goes on at KIE.AI)",
                                    layout=w.Layout(width="auto"))
        self.stop_button.on_click(lambda _b: self.task.stop())
        # A blocking cell keeps the kernel busy, so a click would only be read after the task
        # ends: there the kernel's interrupt stops it (and says how to resume).
        self.hint = w.HTML('<span style="color:#777;font-size:85%">interrupt the kernel (■) '
                           "to stop following it</span>")
        if show_images:
            self.hint.layout.display = "none"
        else:
            self.stop_button.layout.display = "none"
        self.grid = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        self.message = w.HTML(value="")
        for item in (self.bar, self.elapsed, self.task_id):
            item.layout.margin = "0 12px 0 0"
        row = w.HBox([self.bar, self.status], layout=w.Layout(align_items="center"))
        meta = w.HBox([self.elapsed, self.task_id, self.stop_button, self.hint],
                      layout=w.Layout(align_items="center"))
        super().__init__([self.prompt, self.chips, row, meta, self.grid, self.message],
                         **kwargs)
        self.add_class("kie4o-panel")
        self._grid_filled = False
        self.update()

    def update(self, task: Task | None = None) -> None:
        """Bring every trait up to date with the panel's task (safe from any thread).

        ``task`` is accepted so ``update`` can be a task listener; the state is always read
        from ``self.task`` under the lock, so concurrent calls are ordered and the last one
        writes the newest state. Calling it again with nothing new changes nothing.
        """
        with self._update_lock:
            task = self.task
            status = task.status
            self.bar.value = task.progress
            self.bar.bar_style = _BAR_STYLE.get(status, "info")
            self.status.value = html.escape(status_text(task, front_end="notebook"))
            self.elapsed.value = f"{task.elapsed:.1f} s"
            if task.task_id:
                self.task_id.value = f"<code>{html.escape(task.task_id)}</code>"
            if status.finished:
                self.stop_button.disabled = True
                self.stop_button.layout.display = "none"
                self.hint.layout.display = "none"
            if status is TaskStatus.SUCCESS and not self._grid_filled:
                self._grid_filled = True
                self.grid.children = tuple(self._tile(n, data)
                                           for n, data in task.numbered_images())

    def __repr__(self) -> str:
        parts = ["kie4o", self.task.task_id or "", status_text(self.task)]
        return " ".join(p for p in parts if p)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        # ipywidgets cuts text/plain at 110 characters; a saved notebook keeps this text,
        # so it must hold the whole status (an error in plain words, or the task id).
        bundle = super()._repr_mimebundle_(**kwargs)
        text = repr(self)
        if not self.task.done and not self.show_images:
            text = f"{text} (the panel follows it while the kernel runs)"
        elif not self.task.done:
            text = (f"{text} — a --no-wait task: display the task when it is done to keep "
                    "its images in the saved notebook")
        bundle["text/plain"] = text
        return bundle

    def _tile(self, n: int, data: bytes) -> w.Widget:
        width = _TILE_WIDTH.get(str(self.task.params.get("size")), 256)
        save = w.Button(description=f"Save #{n + 1}", icon="download",
                        layout=w.Layout(width="auto"))
        save.on_click(lambda _b, n=n: self._save(n))
        url = self.task.urls[n] if n < len(self.task.urls) else ""
        link = w.HTML(
            f'<a href="{html.escape(url, quote=True)}" target="_blank" rel="noopener" '
            f'style="{_LINK_STYLE}">full size</a>'
            if url.startswith(("http://", "https://")) else ""
        )
        save.layout.margin = "0 6px 0 0"
        actions = w.HBox([save, link], layout=w.Layout(align_items="center",
                                                       margin="0 12px 4px 0"))
        if not self.show_images:
            return actions
        # A screen-sized copy: the widget state a notebook saves stays small.
        small, mime = thumbnail(data, 2 * width)
        image = w.Image(value=small, format=mime.split("/")[1],
                        layout=w.Layout(width=f"{width}px", height="auto"))
        return w.VBox([image, actions], layout=w.Layout(margin="0 8px 8px 0"))

    def _save(self, n: int) -> None:
        """Save image ``n`` only (with the task's sidecar), and name the file written."""
        target = self.save_dir or Path.cwd() / "kie4o_images"
        try:
            paths = self.task.save(target, index=n)
        except Exception as exc:  # shown in the panel; a click has no cell to raise into
            self.message.value = f'<span style="color:#b00020">{html.escape(str(exc))}</span>'
            return
        chosen = [p for p in paths if p.stem.endswith(f"_{n}")] or paths
        shown = chosen[0] if chosen else target
        self.message.value = f"saved <code>{html.escape(str(shown))}</code>"
