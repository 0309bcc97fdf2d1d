"""What the magic keeps of a task: nothing once it ended (the user's names alone hold it), and
every unfinished one until unload stops it, even with its names gone."""

from __future__ import annotations

import gc
import weakref

from kie_jupyter.api.models import TaskStatus
from kie_jupyter.engine.runner import on_image_thread, release_memory

from magic_helpers import run


def test_a_finished_no_wait_task_is_freed_with_its_names_before_any_other_cell(shell, server):
    run(shell, "%config Kie4o.frontend = 'widget'")
    run(shell, "%%kie4o --no-wait -o t\na fox in the background")
    task = shell.user_ns["t"]
    task.wait(30)
    task.join(10)  # its thread has returned (it holds the task until then)
    assert task.status is TaskStatus.SUCCESS
    ref = weakref.ref(task)
    del task, shell.user_ns["t"], shell.user_ns["_kie4o"]
    gc.collect()
    assert ref() is None


def test_an_unfinished_task_whose_names_went_is_still_stopped_at_unload(shell, server):
    run(shell, "%%kie4o --no-wait -o t\na slow fox [mock:fail]")
    ref = weakref.ref(shell.user_ns["t"])
    del shell.user_ns["t"], shell.user_ns["_kie4o"]
    gc.collect()
    task = ref()
    assert task is not None and not task.done  # its thread holds it while it runs
    magics = shell.magics_manager.registry["Kie4o"]
    assert task in magics.session.tasks
    run(shell, "%unload_ext kie_jupyter")
    assert task.wait(10).status is TaskStatus.STOPPED
    run(shell, "%load_ext kie_jupyter")  # the fixture unloads again


def test_image_work_runs_on_one_thread_and_nests():
    import threading

    names = set()

    def inner() -> str:
        names.add(threading.current_thread().name)
        return "inner"

    def outer() -> str:
        names.add(threading.current_thread().name)
        return on_image_thread(inner)  # already there: run in place, no deadlock

    assert on_image_thread(outer) == "inner"
    assert len(names) == 1 and next(iter(names)).startswith("kie4o-images")
    release_memory()  # harmless anywhere (a no-op without glibc)
