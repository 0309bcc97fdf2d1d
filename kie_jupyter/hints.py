"""The words front ends show: a task's one-line status, and what to do about an error in
each front end's own commands (nobody else's).

Errors and task failures carry a neutral ``fix`` (``key``, ``credits``, ``options``,
``resume``); the front end that prints them turns it into its own words with :func:`hint`, so
a notebook user reads ``%kie4o login`` and a shell user ``kie4o --resume ID``.
"""

from __future__ import annotations

import math
import time
from typing import Any

from .api.models import TaskStatus

__all__ = ["hint", "with_hint", "status_text", "FRONT_ENDS"]

_HINTS: dict[str, dict[str, str]] = {
    "notebook": {
        "key": "run `%kie4o login`, or `%kie4o demo` to try without a key",
        "credits": "`%kie4o credits` shows the balance",
        "options": "see `%%kie4o?` for the options",
        "resume": "`%kie4o resume {task_id}`",
    },
    "cli": {
        "key": "or run `kie4o --demo …` to try without a key",
        "credits": "`kie4o --credits` shows the balance",
        "options": "see `kie4o --help` for the options",
        "resume": "`kie4o --resume {task_id}`",
    },
    "python": {
        "key": "or pass client=KieClient(api_key=...)",
        "credits": "`KieClient().credits()` shows the balance",
        "options": "see help(kie_jupyter.generate)",
        "resume": "`kie_jupyter.resume({task_id!r})`",
    },
}

FRONT_ENDS = tuple(_HINTS)


def hint(fix: str | None, front_end: str, task_id: str | None = None) -> str:
    """The front end's words for ``fix`` ('' when there is nothing to add)."""
    if not fix:
        return ""
    text = _HINTS[front_end].get(fix, "")
    if "{task_id" in text:
        if not task_id:
            return ""
        text = text.format(task_id=task_id)
    return text


def with_hint(message: str, fix: str | None, front_end: str, task_id: str | None = None) -> str:
    """``message`` followed by the front end's hint, if any (never twice)."""
    extra = hint(fix, front_end, task_id)
    if not extra or extra in message:
        return message
    return f"{message} — {extra}"


def status_text(task: Any, front_end: str | None = None) -> str:
    """The one-line status a person reads: Submitting → Generating 42 % → … → Done in 31.2 s.

    ``front_end`` (``"notebook"``, ``"cli"``, ``"python"``) adds its words for what to do
    about a failure (see :func:`hint`); None adds nothing (the caller adds its own).
    """
    s = task.status
    if s is TaskStatus.SUBMITTING:
        queued = getattr(task, "queued_until", None)
        left = queued - time.monotonic() if queued is not None else 0.0
        if left > 0:
            return f"Queued: rate limit, sending in {math.ceil(left)} s"
        return "Submitting…"
    if s is TaskStatus.GENERATING:
        return f"Generating {task.progress * 100:.0f} %"
    if s is TaskStatus.DOWNLOADING:
        return "Downloading…"
    if s is TaskStatus.SUCCESS:
        n = len(task.numbered_images())
        missing = f" ({len(task.urls) - n} could not be downloaded)" if n < len(task.urls) else ""
        unsaved = f"; {task.save_error}" if task.save_error else ""
        return f"Done in {task.elapsed:.1f} s{missing}{unsaved}"
    if s is TaskStatus.STOPPED:
        if not task.task_id:
            return "Stopped before the request was sent; nothing was charged"
        where = getattr(task, "runs_at", "KIE.AI")
        text = f"Stopped locally — the task goes on at {where}; resume it with its id"
        return _with_fix(text, "resume", front_end, task.task_id)
    fix = getattr(task.error, "fix", None) if task.error else None
    if s is TaskStatus.TIMED_OUT:
        text = f"Timed out: {task.error.message if task.error else ''}"
        return _with_fix(text, fix or "resume", front_end, task.task_id)
    text = f"Failed: {task.error.message if task.error else 'unknown reason'}"
    return _with_fix(text, fix, front_end, task.task_id)


def _with_fix(text: str, fix: str | None, front_end: str | None, task_id: str | None) -> str:
    extra = hint(fix, front_end, task_id) if front_end else ""
    return f"{text} — {extra}" if extra and extra not in text else text
