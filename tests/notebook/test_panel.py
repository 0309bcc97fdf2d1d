"""The live panel: updates from two threads end on the final state; Stop; demo.

Widgets made outside a kernel have no comm, so trait values are what a front end would show.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import ipywidgets as w
import pytest

import kie_jupyter
from kie_jupyter.api.client import KieClient
from kie_jupyter.api.models import GenerationRequest, TaskStatus
from kie_jupyter.engine.task import Task
from kie_jupyter.notebook import panel as panel_module
from kie_jupyter.notebook.cards import status_text
from kie_jupyter.notebook.panel import TaskPanel
from kie_jupyter.testing import MockKieServer

KEY = "sk-PANEL-0123456789abcdef"


@pytest.fixture()
def srv() -> Iterator[MockKieServer]:
    with MockKieServer(api_key=KEY, duration=0.2, rate_limit=None) as server:
        yield server


def client_for(server: MockKieServer, **kwargs: Any) -> KieClient:
    return KieClient(KEY, base_url=server.url, upload_url=server.url, **kwargs)


def test_stop_button_only_for_background_tasks(srv):
    request = GenerationRequest(prompt="an owl", size="1:1", variants=1)
    task = Task(request, client=client_for(srv))
    blocking, background = TaskPanel(task), TaskPanel(task, background=True)
    assert blocking.stop_button.layout.display == "none" and "interrupt" in blocking.hint.value
    assert background.hint.layout.display == "none"
    background.stop_button.click()
    task.start()
    task.wait(10)
    assert task.status is TaskStatus.STOPPED


class _ContendedLock:
    """A lock that calls ``on_wait`` when a caller finds it held (then waits as usual)."""

    def __init__(self, on_wait: Callable[[], None]) -> None:
        self._lock = threading.Lock()
        self._on_wait = on_wait

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            self._on_wait()
            self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def test_update_from_two_threads_ends_on_the_final_state(srv, monkeypatch):
    """The cell's update reads "Submitting…", then the task runs to its end before that update
    writes: the panel must still end on "Done" with a success bar.

    The window is held open deterministically: the cell thread's read of the status waits
    until the task has finished (without the lock) or until the task's thread is waiting for
    the panel's lock (with it).
    """
    request = GenerationRequest(prompt="a race", size="1:1", variants=1)
    task = Task(request, client=client_for(srv))
    panel = TaskPanel(task)
    go = threading.Event()
    panel._update_lock = _ContendedLock(go.set)  # type: ignore[assignment]
    task.subscribe(panel.update)
    task.subscribe(lambda t: go.set() if t.status.finished else None)
    cell_thread = threading.current_thread()
    raced: list[str] = []

    def racing_status_text(t: Task, front_end: str | None = None) -> str:
        text = status_text(t, front_end=front_end)
        if threading.current_thread() is cell_thread and not raced:
            raced.append(text)
            t.start()  # the task moves on between this read and the panel's write
            assert go.wait(30)
        return text

    monkeypatch.setattr(panel_module, "status_text", racing_status_text)
    panel.update(task)
    task.wait(30)

    assert raced == ["Submitting…"]
    assert task.status is TaskStatus.SUCCESS
    assert panel.status.value.startswith("Done in")
    assert panel.status.value == status_text(task, front_end="notebook")
    assert panel.bar.bar_style == "success" and panel.bar.value == 1.0
    children = panel.children
    panel.update(task)  # idempotent: nothing is rebuilt
    assert panel.children is children
    assert panel.status.value == status_text(task, front_end="notebook")


def _chips(task: Task) -> str:
    return TaskPanel(task).chips.value


def test_demo_task_says_demo_and_a_live_one_does_not():
    request = GenerationRequest(prompt="a fox", size="1:1", variants=1)
    demo = Task(request, client=KieClient(KEY, base_url="http://127.0.0.1:9", demo=True))
    live = Task(request, client=KieClient(KEY, base_url="http://127.0.0.1:9"))
    assert demo.demo and not live.demo
    assert ">demo</span>" in _chips(demo)
    assert "demo" not in _chips(live)

