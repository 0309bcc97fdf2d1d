"""Plain values of a task's state, shared by the task, its runner and its subscribers."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TaskError"]


@dataclass(frozen=True)
class TaskError:
    """Why a task did not give images: the API's code (if any), the message, and ``fix``,
    what the user can do in front-end-neutral words (``key``, ``credits``, ``options``,
    ``resume``; see :mod:`kie_jupyter.hints`), or None."""

    code: int | None
    message: str
    fix: str | None = None
    #: "kie" when KIE's own record says the task failed; "local" when it ended here (a
    #: timeout, a lost connection, a download): the task may still exist and succeed.
    source: str = "local"

    def __str__(self) -> str:
        return f"{self.message} (error {self.code})" if self.code is not None else self.message
