"""Warm-up: what the first ``%%kie4o`` cell needs, imported while the kernel is idle.

``%load_ext`` stays light (no requests, engine, Pillow or ipywidgets: ``bench_load.py``).
After the cell that loaded the extension, one daemon thread imports them, a package at a
time (each a few ms; urllib3 and ipywidgets some 30 ms) and only once the kernel has been
idle for :data:`QUIET` seconds, so the first ``%%kie4o`` cell typed after ``%load_ext``
finds them imported (``benchmarks/bench_firstcell.py``), while cells run back to back (Run
All) never share the interpreter with it. Imports only: no request, no file, no output,
nothing that a module's mere presence turns on (the demo server, a class, the painter).

A cell and this thread never import at once: a cell that starts waits for the one import
in flight before its code runs, so its ``from requests.adapters import …`` never meets this
thread inside ``requests`` (Python would hand one of the two a partly made module). Only this
thread is kept apart from cells: a ``--no-wait`` task's own thread may still import what it
needs (Pillow for its thumbnails) whenever it does, as before.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["HTTP", "QUIET", "Warmup", "import_all"]

#: What sends the first request (the task's thread imports it on its first send).
HTTP = ("requests",)
#: Its parts, leaves first, each a step of its own (requests imports them all).
HTTP_PARTS = ("urllib3", "charset_normalizer", "idna", "http.cookiejar")
#: What a cell parses and plans with (Pillow for the input checks, the engine).
CELL = ("PIL.Image", "kie_jupyter.api.registry", "kie_jupyter.engine.task",
        "kie_jupyter.engine.plan", "kie_jupyter.notebook.options", "kie_jupyter.engine.checks")
#: The live panel, for the widget front end only.
PANEL = ("ipywidgets", "kie_jupyter.notebook.panel")
#: Seconds without a cell before each import (the kernel's reply, the next queued cell).
QUIET = 0.025


def import_all(names: Iterable[str]) -> None:
    """Import ``names`` in order, here (a no-op for those imported already)."""
    for name in names:
        importlib.import_module(name)


class Warmup:
    """Imports :data:`HTTP`, :data:`CELL` and (if ``widgets()``) :data:`PANEL` between cells.

    :meth:`arm` at load: the thread starts when the running cell ends (a load outside a cell,
    as ``bench_load.py`` times it, starts nothing until a cell has run); :meth:`stop` at
    unload. Cells are seen through IPython's ``pre_execute`` and ``post_execute`` events.
    """

    def __init__(self, shell: Any, widgets: Callable[[], bool]) -> None:
        self._events = getattr(shell, "events", None)
        self._widgets = widgets
        self._idle = threading.Event()  # set between cells
        self._cells = 0  # cells started so far
        self._importing = threading.Lock()  # held by the thread for each import
        self._stopped = False
        self._thread: threading.Thread | None = None

    def arm(self) -> None:
        """Start after the current cell (the one running ``%load_ext``) ends."""
        if self._events is None:
            return
        self._events.register("pre_execute", self._busy)
        self._events.register("post_execute", self._ended)

    def stop(self) -> None:
        """No more imports after the one in flight (waited for); the hooks go
        (``%unload_ext``)."""
        self._stopped = True
        self._idle.set()
        self._unhook()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)

    def _busy(self) -> None:
        """A cell starts: the thread pauses, and the cell waits for its import in flight."""
        self._cells += 1
        self._idle.clear()
        with self._importing:
            pass

    def _ended(self) -> None:
        self._idle.set()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kie4o-warmup",
                                            daemon=True)
            self._thread.start()
        elif not self._thread.is_alive():
            self._unhook()  # here: IPython calls its hooks on the main thread

    def _unhook(self) -> None:
        if self._events is None:
            return
        for event, hook in (("pre_execute", self._busy), ("post_execute", self._ended)):
            try:
                self._events.unregister(event, hook)
            except ValueError:  # not (or no longer) registered
                pass

    def _modules(self) -> Iterator[str]:
        yield from HTTP_PARTS
        yield from HTTP
        yield from CELL
        if self._widgets():  # the front end as it is by then
            yield from PANEL

    def _run(self) -> None:
        seen = -1  # the cells counted when the kernel was last seen quiet
        for name in self._modules():
            while True:
                if seen != self._cells or not self._idle.is_set():
                    seen = self._quiet()
                with self._importing:
                    if self._stopped:
                        return
                    if not self._idle.is_set() or seen != self._cells:  # a cell came
                        continue
                    try:
                        importlib.import_module(name)
                    except Exception:  # the cell that needs it says why, in its own words
                        pass
                    break

    def _quiet(self) -> int:
        """Wait until no cell has started for :data:`QUIET` s after the last one ended; the
        cells counted by then."""
        while True:
            self._idle.wait()
            cells = self._cells
            time.sleep(QUIET)
            if self._stopped or (self._idle.is_set() and self._cells == cells):
                return cells
