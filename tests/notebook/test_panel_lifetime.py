"""The panel's lifetime: it gives way to the card, closes every widget, lets go of its task
(a weak proxy, as tqdm.notebook does), and reaches its final state without background-thread
updates (the front ends that drop them: VS Code, Colab)."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from typing import Any

import ipywidgets as w

import kie_jupyter
from kie_jupyter.api.client import KieClient
from kie_jupyter.api.models import TaskStatus
from kie_jupyter.notebook import panel as panel_module
from kie_jupyter.notebook.panel import TaskPanel, _descendants, resend_cards

from magic_helpers import KEY, run


class FakeHandle:
    """A display handle that records its updates."""

    def __init__(self) -> None:
        self.updates: list[tuple[dict[str, Any], threading.Thread]] = []

    def update(self, obj: Any, **kwargs: Any) -> None:
        self.updates.append((obj, threading.current_thread()))


def generate(server: Any, prompt: str = "a fox") -> kie_jupyter.Task:
    client = KieClient(KEY, base_url=server.url, upload_url=server.url)
    return kie_jupyter.generate(prompt, client=client)


def test_finish_puts_the_card_in_place_closes_every_widget_and_lets_go(server):
    task = generate(server)
    panel = TaskPanel(task)
    panel._handle = handle = FakeHandle()
    panel.follow()
    calls = []
    panel.update = lambda *a: calls.append(a)  # type: ignore[method-assign]
    widgets = [panel, *_descendants(panel)]
    assert all(isinstance(x, w.Widget) and x.comm is not None for x in widgets)
    TaskPanel.finish(panel)
    ((bundle, _thread),) = handle.updates
    assert "kie4o-card" in bundle["text/html"] and task.task_id in bundle["text/plain"]
    assert all(x.comm is None for x in widgets), [type(x).__name__ for x in widgets
                                                   if x.comm is not None]
    task._notify()  # no longer a listener: the closed panel hears nothing
    assert len(calls) == 1  # (only finish's own final update)
    panel.finish()  # idempotent
    assert len(handle.updates) == 1


def collected(ref: weakref.ref[Any], limit: float = 10.0) -> bool:
    """Whether the object goes once nothing holds it (the task's own thread may still be on
    its way out when ``wait`` returns: wait for that, up to a generous limit)."""
    deadline = time.monotonic() + limit
    while True:
        gc.collect()
        if ref() is None:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def test_a_finished_task_with_a_shown_panel_is_freed(server):
    task = generate(server)
    panel = TaskPanel(task)
    panel._handle = FakeHandle()
    panel.follow()
    panel.finish()
    ref = weakref.ref(task)
    del task
    assert collected(ref)
    assert repr(panel) == "kie4o (task gone)"  # the panel outlives it without an error


def test_a_panel_on_a_live_task_does_not_keep_it(server):
    task = generate(server)
    panel = TaskPanel(task, background=True)  # never finished: still subscribed
    ref = weakref.ref(task)
    del task
    assert collected(ref)
    panel.update()  # a panel whose task is gone draws nothing and raises nothing


def test_the_magic_lets_go_of_a_finished_task(shell, server):
    made: list[TaskPanel] = []
    original = panel_module.TaskPanel.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    run(shell, "%config Kie4o.frontend = 'widget'")
    panel_module.TaskPanel.__init__ = spy
    try:
        run(shell, "%%kie4o -o t\na fox that goes away")
    finally:
        panel_module.TaskPanel.__init__ = original
    ref = weakref.ref(shell.user_ns["t"])
    del shell.user_ns["t"], shell.user_ns["_kie4o"]
    gc.collect()
    assert ref() is None
    assert made[0].comm is None


def test_blocking_cell_without_background_thread_updates(shell, server, monkeypatch):
    """Updates from the task's thread are dropped (as VS Code and Colab may): the cell's own
    thread still carries the panel from progress to its final state, and puts the card in."""
    made: list[TaskPanel] = []
    seen: dict[str, list] = {"bar": [], "status": []}
    original_init, original_update = TaskPanel.__init__, TaskPanel.update
    main = threading.current_thread()

    def spy(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        made.append(self)
        self.bar.observe(lambda c: seen["bar"].append(c["new"]), "value")
        self.status.observe(lambda c: seen["status"].append(c["new"]), "value")

    def cell_thread_only(self, task=None):
        if threading.current_thread() is main:
            original_update(self, task)

    server.script_next_task(duration=2.0)
    run(shell, "%config Kie4o.frontend = 'widget'")
    monkeypatch.setattr(TaskPanel, "__init__", spy)
    monkeypatch.setattr(TaskPanel, "update", cell_thread_only)
    cap = run(shell, "%%kie4o -n 2 -o t\na fox seen from the cell's thread")
    assert shell.user_ns["t"].status is TaskStatus.SUCCESS
    (panel,) = made
    assert any(s.startswith("Generating") and s != "Generating 0 %" for s in seen["status"])
    assert seen["status"][-1].startswith("Done in") and seen["bar"][-1] == 1.0
    assert panel.bar.bar_style == "success"
    html = [o.data.get("text/html", "") for o in cap.outputs]
    assert sum(h.count("kie4o-card") for h in html) == 1
    assert sum(h.count("data:image/") for h in html) == 2


def test_a_card_finished_between_cells_is_sent_again_by_the_next_cell(server):
    task = generate(server)
    panel = TaskPanel(task, background=True)
    panel._handle = handle = FakeHandle()
    worker = threading.Thread(target=panel.finish)  # as the task's own thread does
    worker.start()
    worker.join()
    assert [t for _, t in handle.updates] == [worker]
    resend_cards()  # the next cell's pre_run_cell hook, in the cell's thread
    assert [t for _, t in handle.updates] == [worker, threading.current_thread()]
    assert handle.updates[0][0] == handle.updates[1][0]
    resend_cards()  # once only
    assert len(handle.updates) == 2
