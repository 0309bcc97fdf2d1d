"""``TaskPanel``: the live ipywidgets view of one task, until its static card replaces it.

Built once, then only its traits change. While the task runs, the task's thread updates it
(setting traits sends comm messages, which reach the front end on ipykernel 6 and 7 alike;
printing from a thread would not) and, in a blocking cell, the cell's own thread too, for front
ends that drop updates sent from background threads (VS Code, Colab). Each update reads the
task's state under one lock, so the last one always writes the newest state.

When the task ends, :meth:`TaskPanel.finish` updates the panel's display in place (the same
display id) to the task's static card, closes every widget of the panel and lets go of the
task: a saved notebook keeps the card and no widget state. The panel never makes a request:
Stop calls ``task.stop()``. It holds its task through a weak proxy (as tqdm.notebook does), so
a panel on the screen never keeps a task and its images alive.
"""

from __future__ import annotations

import html
import threading
import weakref
from typing import TYPE_CHECKING, Any

import ipywidgets as w
from IPython.display import DisplayHandle, display

from ..api.models import TaskStatus
from .cards import MUTED, TEXT, Card, card_bundle, chip_html, status_text
from .resend import remember_card, resend_cards

if TYPE_CHECKING:
    from ..engine.task import Task

__all__ = ["TaskPanel", "resend_cards"]  # resend_cards: from .resend, kept importable here

_BAR_STYLE = {
    TaskStatus.SUCCESS: "success",
    TaskStatus.FAILED: "danger",
    TaskStatus.TIMED_OUT: "warning",
    TaskStatus.STOPPED: "warning",
}



class TaskPanel(w.VBox):
    """Prompt, chips, progress bar, status, elapsed time, task id, and Stop (``--no-wait``).

    ``background``: the task runs on while the kernel is free (``--no-wait``): Stop is live
    and the task's own thread puts the card in place when it ends. Otherwise the cell blocks:
    the cell's thread updates the panel as well and calls :meth:`finish` itself. ``name`` is
    the notebook name of the task, for the card's ``fox[0]``; ``embed`` sizes its images.
    """

    def __init__(self, task: Task, *, background: bool = False, name: str | None = None,
                 embed: str = "thumb", **kwargs: Any) -> None:
        self._task_ref = weakref.ref(task)
        self.task: Task = weakref.proxy(task)
        self.background = background
        self.name = name
        self.embed = embed
        self._update_lock = threading.Lock()
        self._finish_lock = threading.Lock()
        self._finished = False
        self._handle: DisplayHandle | None = None
        self._cell_thread = threading.current_thread()
        esc = html.escape
        self.prompt = w.HTML(
            f'<div class="kie4o-prompt" style="white-space:pre-wrap;max-height:6em;'
            f'overflow:auto;line-height:1.3;color:{TEXT}">{esc(task.prompt)}</div>'
        )
        self.chips = w.HTML(f'<b style="color:{TEXT};margin-right:6px">kie4o</b>'
                            + chip_html(task))
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, bar_style="info",
                                   layout=w.Layout(width="60%"))
        self.status = w.HTML(value=esc(status_text(task, front_end="notebook")))
        self.elapsed = w.HTML(value="0.0 s")
        self.task_id = w.HTML(value="")
        self.stop_button = w.Button(description="Stop", icon="stop", button_style="warning",
                                    tooltip="Stop following this task (it goes on at KIE.AI)",
                                    layout=w.Layout(width="auto"))
        self.stop_button.on_click(self._stop)
        # A blocking cell keeps the kernel busy, so a click would only be read after the task
        # ends: there the kernel's interrupt stops it (and says how to resume).
        self.hint = w.HTML(f'<span style="color:{MUTED};font-size:85%">interrupt the kernel '
                           "(■) to stop following it</span>")
        if background:
            self.hint.layout.display = "none"
        else:
            self.stop_button.layout.display = "none"
        for item in (self.bar, self.elapsed, self.task_id):
            item.layout.margin = "0 12px 0 0"
        row = w.HBox([self.bar, self.status], layout=w.Layout(align_items="center"))
        meta = w.HBox([self.elapsed, self.task_id, self.stop_button, self.hint],
                      layout=w.Layout(align_items="center"))
        super().__init__([self.chips, self.prompt, row, meta], **kwargs)
        self.add_class("kie4o-panel")
        self.update()

    # -- following the task -----------------------------------------------------------------

    def follow(self) -> None:
        """Listen to the task's events (until :meth:`finish` lets go)."""
        self._owner().subscribe(self._on_change)

    def _on_change(self, task: Task) -> None:
        """A task listener (the task's thread): update; a background task's end is its card."""
        self.update()
        if self.background and task.status.finished:
            self.finish()

    def _owner(self) -> Task:
        """The task itself (not the proxy); ReferenceError once it was freed."""
        task = self._task_ref()
        if task is None:
            raise ReferenceError("the panel's task was freed")
        return task

    def _stop(self, _button: Any) -> None:
        try:
            self.task.stop()
        except ReferenceError:  # the task is gone: nothing to stop
            pass

    def update(self, task: Task | None = None) -> None:
        """Bring every trait up to date with the panel's task (safe from any thread).

        ``task`` is accepted so ``update`` can be a task listener; the state is always read
        from ``self.task`` under the lock, so concurrent calls are ordered and the last one
        writes the newest state. Calling it again with nothing new changes nothing; once the
        card has replaced the panel it does nothing.
        """
        with self._update_lock:
            if self._finished:
                return
            try:
                task = self.task
                status = task.status
                progress, elapsed, task_id = task.progress, task.elapsed, task.task_id
                text = status_text(task, front_end="notebook")
            except ReferenceError:  # the task was freed: nothing left to show
                return
            self.bar.value = progress
            self.bar.bar_style = _BAR_STYLE.get(status, "info")
            self.status.value = html.escape(text)
            self.elapsed.value = f"{elapsed:.1f} s"
            if task_id:
                self.task_id.value = f"<code>{html.escape(task_id)}</code>"
            if status.finished:
                self.stop_button.disabled = True
                self.stop_button.layout.display = "none"
                self.hint.layout.display = "none"

    # -- the display and the card -----------------------------------------------------------

    def show(self) -> DisplayHandle | None:
        """Display the panel with a display id (the card takes its place later)."""
        self._cell_thread = threading.current_thread()
        self._handle = display(self, display_id=True)
        return self._handle

    def finish(self) -> None:
        """Replace the panel by the task's card (same display), close every widget, let go.

        Idempotent, and safe from any thread: from the cell's thread (a blocking cell) the
        update carries the cell's parent header; from the task's thread it carries the one of
        whatever runs then (ipykernel 6 and 7 alike), and it is sent again when the next cell
        starts (:func:`resend_cards`) in case no cell ran.
        """
        with self._finish_lock:
            if self._finished:
                return
            self.update()  # the final state, for front ends still drawing the widgets
            with self._update_lock:
                self._finished = True
            try:
                task = self._owner()
            except ReferenceError:
                task = None
            if task is not None:
                task.unsubscribe(self._on_change)
                if self._handle is not None:
                    names = {id(task): self.name} if self.name else None
                    bundle = card_bundle(task, self.embed, names=names)
                    self._handle.update(bundle, raw=True)
                    if threading.current_thread() is not self._cell_thread:
                        remember_card(self._handle, bundle)
            self.close()
            if task is not None and threading.current_thread() is self._cell_thread:
                # The card was drawn here, after the task's own thread returned what it freed.
                from ..engine.runner import release_memory

                release_memory()

    def card(self) -> Card:
        """The task's static card (what replaces the panel)."""
        names = {id(self._owner()): self.name} if self.name else None
        return Card(self._owner(), self.embed, names=names)

    def close(self) -> None:
        """Close the panel and every widget in it (no widget state is left to save)."""
        for child in list(_descendants(self)):
            child.close()
        super().close()

    # -- text -------------------------------------------------------------------------------

    def __repr__(self) -> str:
        try:
            parts = ["kie4o", self.task.task_id or "", status_text(self.task)]
        except ReferenceError:
            return "kie4o (task gone)"
        return " ".join(p for p in parts if p)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        # The text a front end with no widget manager shows (ipywidgets would cut it at 110
        # characters); the card replaces it when the task ends.
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = (f"{self!r} (a live panel: progress shows in a widget front "
                                "end; the card replaces it when the task ends)")
        return bundle


def _descendants(root: w.Widget) -> list[w.Widget]:
    """Every widget under ``root`` (children, and their layouts and styles), deepest first."""
    found: list[w.Widget] = []
    for child in getattr(root, "children", ()):
        found.extend(_descendants(child))
        found.append(child)
    for attr in ("layout", "style"):
        part = getattr(root, attr, None)
        if isinstance(part, w.Widget):
            found.append(part)
    return found
