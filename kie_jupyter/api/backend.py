"""The seam between the engine and one family of KIE's APIs.

The engine drives every task the same way — upload inputs, ``submit`` a request, ``poll`` the
task id to a :class:`TaskSnapshot` until it is finished, download the result URLs — and asks
nothing else of the API. Each family (the 4o Image API today; KIE's Market job API and Flux
Kontext next) implements :class:`Backend` in a module of its own beside this one; adding a
family needs a new backend and its models, not edits to the engine or the front ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Backend", "TaskSnapshot"]


class TaskSnapshot(Protocol):
    """One look at a task on the server, in the family's own record type."""

    #: 0..1 as reported; families with no progress field report 0 until the end.
    progress: float
    #: The result URLs (empty until success).
    urls: tuple[str, ...]
    #: The request as the API echoes it (its own field names), or None.
    params: dict[str, Any] | None
    #: The API's error code on failure, else None.
    error_code: int | None

    @property
    def finished(self) -> bool: ...

    @property
    def succeeded(self) -> bool: ...

    @property
    def failed(self) -> bool: ...

    def failure_reason(self) -> str:
        """Why the task failed, in the API's words."""
        ...


class Backend(Protocol):
    """One API family, as the engine uses it."""

    #: Our name of the family (``4o``, …), recorded with each task.
    family: str

    def submit(self, request: Any, *, stop: threading.Event | None = None,
               on_wait: Callable[[float], None] | None = None) -> str:
        """Send the request once (rate-limited, never re-sent once it may have arrived);
        return the task id."""
        ...

    def poll(self, task_id: str) -> TaskSnapshot | None:
        """One look at the task (one attempt: the poller retries); None while the API has
        no record yet."""
        ...

    def params_of(self, snapshot: TaskSnapshot) -> dict[str, Any]:
        """Our parameters (``prompt``, ``size``…) from the API's echo of the request."""
        ...

    def download_url(self, task_id: str, url: str) -> str:
        """A direct download URL for one result, where the family has one."""
        ...
