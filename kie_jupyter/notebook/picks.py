"""What a subcommand's TASK argument may be, the same for all of them: a task variable
(``$fox``), one of its images (``$fox[1]``), a sweep (``$sw``: each of its tasks), a full
task id, or a unique prefix of one (6 characters or more) from the history."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError

from ..engine.history import HistoryStore
from ..engine.sweep import Sweep
from ..engine.task import Task
from ..engine.taskimage import TaskImage

__all__ = ["task_ids", "history_id", "PREFIX_MIN"]

#: The shortest id prefix taken for a whole id.
PREFIX_MIN = 6


def history_id(text: str, history: HistoryStore, where: str, *,
               unknown_ok: bool = False) -> str:
    """The history's id for ``text``: the id itself, or the one id it is a prefix of.
    ``unknown_ok``: an id the history does not know is taken as it is (KIE's dashboard)."""
    text = text.strip()
    if history.get(text) is not None:
        return text
    if len(text) >= PREFIX_MIN:
        found = history.ids_starting(text)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise UsageError(f"{where}: {text!r} starts {len(found)} task ids in the history; "
                             "give more of it")
    if unknown_ok:
        return text
    short = (f" (an id prefix needs {PREFIX_MIN} characters or more)"
             if len(text) < PREFIX_MIN else "")
    raise UsageError(f"{where}: {text!r} is not a task in the history{short} — give a task "
                     "id, or $name of a task, image or sweep")


def task_ids(value: Any, history: HistoryStore, where: str, *,
             unknown_ok: bool = False) -> list[str]:
    """The task ids ``value`` stands for (see the module)."""
    if isinstance(value, TaskImage):
        value = value.task
    if isinstance(value, Task):
        if not value.task_id:
            raise UsageError(f"{where}: that task was never sent, so it has no id")
        return [value.task_id]
    if isinstance(value, Sweep):
        return [t.task_id for t in value.tasks if t.task_id]
    if isinstance(value, str) and value.strip():
        return [history_id(value, history, where, unknown_ok=unknown_ok)]
    raise UsageError(f"{where}: expected a task, one of its images, a sweep or a task id, "
                     f"not {type(value).__name__}")
