"""The warm-up: what the first ``%%kie4o`` cell needs is imported between cells, never
during one, and never by ``%load_ext`` itself."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from kie_jupyter.notebook import warmup


class _Events:
    """IPython's ``shell.events``, enough for the warm-up."""

    def __init__(self) -> None:
        self.callbacks: dict[str, list[Any]] = {"pre_execute": [], "post_execute": []}

    def register(self, event: str, hook: Any) -> None:
        self.callbacks[event].append(hook)

    def unregister(self, event: str, hook: Any) -> None:
        self.callbacks[event].remove(hook)

    def trigger(self, event: str) -> None:
        for hook in self.callbacks[event][:]:
            hook()


class _Shell:
    def __init__(self) -> None:
        self.events = _Events()


@pytest.fixture()
def modules(tmp_path, monkeypatch):
    """Three modules of our own to import (none imported yet), as the warm-up's lists."""
    names = [f"kie_warm_{tmp_path.name.replace('-', '_')}_{k}" for k in range(3)]
    for name in names:
        (tmp_path / f"{name}.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(warmup, "HTTP_PARTS", ())
    monkeypatch.setattr(warmup, "HTTP", (names[0],))
    monkeypatch.setattr(warmup, "CELL", (names[1],))
    monkeypatch.setattr(warmup, "PANEL", (names[2],))
    yield names
    for name in names:
        sys.modules.pop(name, None)


def _wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_imports_once_the_loading_cell_ends_and_unhooks(modules):
    shell = _Shell()
    w = warmup.Warmup(shell, widgets=lambda: False)
    shell.events.trigger("pre_execute")  # the %load_ext cell
    w.arm()
    assert not any(name in sys.modules for name in modules)
    shell.events.trigger("post_execute")
    assert _wait_for(lambda: modules[1] in sys.modules)
    assert modules[0] in sys.modules and modules[2] not in sys.modules  # no widgets
    assert _wait_for(lambda: w._thread is not None and not w._thread.is_alive())
    shell.events.trigger("pre_execute")
    shell.events.trigger("post_execute")  # the next cell's end takes the hooks away
    assert shell.events.callbacks == {"pre_execute": [], "post_execute": []}


@pytest.fixture()
def imports(monkeypatch):
    """The warm-up's imports as they happen: (module, "start" | "end", a cell was running),
    the last from the test's own flag (``imports.in_cell``), not from the warm-up."""
    real = importlib.import_module
    seen = SimpleNamespace(log=[], in_cell=False, gate=None)

    def spy(name: str, *args: Any) -> Any:
        seen.log.append((name, "start", seen.in_cell))
        if seen.gate is not None:
            seen.gate.wait(30)
        try:
            return real(name, *args)
        finally:
            seen.log.append((name, "end", seen.in_cell))

    monkeypatch.setattr(warmup.importlib, "import_module", spy)
    return seen


def test_no_import_while_a_cell_runs(modules, imports):
    shell = _Shell()
    w = warmup.Warmup(shell, widgets=lambda: True)
    w.arm()
    for _ in range(5):  # cells back to back (Run All), each running a while
        shell.events.trigger("post_execute")
        shell.events.trigger("pre_execute")  # returns once no import is in flight
        imports.in_cell = True
        time.sleep(2 * warmup.QUIET)  # the warm-up's chance to go wrong
        imports.in_cell = False
    shell.events.trigger("post_execute")
    assert _wait_for(lambda: all(name in sys.modules for name in modules))
    mine = [step for step in imports.log if step[0] in modules]
    assert mine and not any(in_cell for _, _, in_cell in mine), mine


def test_a_cell_that_starts_waits_for_the_import_in_flight(modules, imports):
    shell = _Shell()
    imports.gate = threading.Event()
    order: list[str] = []
    w = warmup.Warmup(shell, widgets=lambda: False)
    w.arm()
    shell.events.trigger("post_execute")
    assert _wait_for(lambda: imports.log)  # the first import has started, held at the gate

    def cell() -> None:
        shell.events.trigger("pre_execute")
        order.append("cell")

    starting = threading.Thread(target=cell)
    starting.start()
    time.sleep(0.1)
    assert order == []  # the cell has not started: an import is in flight
    imports.gate.set()
    starting.join(30)
    first = imports.log[0][0]
    assert [s for n, s, _ in imports.log if n == first] + order == ["start", "end", "cell"]
    w.stop()


def test_a_module_that_fails_to_import_is_passed_over(modules, monkeypatch):
    monkeypatch.setattr(warmup, "HTTP_PARTS", ("kie_no_such_module_anywhere",))
    shell = _Shell()
    warmup.Warmup(shell, widgets=lambda: True).arm()
    shell.events.trigger("post_execute")
    assert _wait_for(lambda: all(name in sys.modules for name in modules))


def test_stop_ends_it_after_the_import_in_flight_and_takes_the_hooks(modules, imports):
    shell = _Shell()
    imports.gate = threading.Event()
    unregister = shell.events.unregister

    def unhook(event: str, hook: Any) -> None:  # stop() takes the hooks, then waits
        unregister(event, hook)
        imports.gate.set()

    shell.events.unregister = unhook  # type: ignore[method-assign]
    w = warmup.Warmup(shell, widgets=lambda: True)
    w.arm()
    shell.events.trigger("post_execute")
    assert _wait_for(lambda: imports.log)  # an import in flight, held at the gate
    w.stop()
    assert shell.events.callbacks == {"pre_execute": [], "post_execute": []}
    assert w._thread is not None and not w._thread.is_alive()  # stop waited for it
    assert [n for n, step, _ in imports.log if step == "end"] == [modules[0]]  # no more


_CHILD = """
import json, sys, time, threading
from IPython.utils.capture import capture_output
from kie_jupyter.testing.shell import TestingShell
shell = TestingShell.instance()
with capture_output():
    if sys.argv[1] == "cell":
        shell.run_cell("%load_ext kie_jupyter")
    else:
        shell.run_line_magic("load_ext", "kie_jupyter")
after_load = "requests" in sys.modules
if sys.argv[1] == "cell":  # the loading cell has ended: the warm-up runs; wait for its end
    for t in threading.enumerate():
        if t.name == "kie4o-warmup":
            t.join(60)
else:
    time.sleep(0.5)  # time it would take, were it (wrongly) started
print(json.dumps({
    "after_load": after_load,
    "requests": "requests" in sys.modules,
    "options": "kie_jupyter.notebook.options" in sys.modules,
    "ipywidgets": "ipywidgets" in sys.modules,
    "threads": [t.name for t in threading.enumerate() if t.name == "kie4o-warmup"],
}))
"""


def _child(how: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _CHILD, how], capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_fresh_shell_is_warmed_after_the_loading_cell(server):
    got = _child("cell")
    assert not got["after_load"]  # %load_ext itself imports none of it
    assert got["requests"] and got["options"]
    assert not got["ipywidgets"]  # a shell with no kernel shows text
    assert not got["threads"]


def test_a_load_outside_a_cell_warms_nothing(server):
    got = _child("line")
    assert not (got["after_load"] or got["requests"] or got["options"] or got["threads"])
