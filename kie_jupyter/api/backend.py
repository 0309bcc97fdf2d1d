"""The seam between the engine and one family of KIE's APIs.

The engine drives every task the same way — upload inputs, ``submit`` a request, ``poll`` the
task id to a :class:`TaskSnapshot` until it is finished, download the result URLs — and asks
nothing else of the API. Each family (the 4o Image API in ``fouro``, KIE's Market job API in
``market``, Flux Kontext in ``kontext``) implements :class:`Backend` in a module of its own
beside this one, and its models are entries of ``registry``; adding a family needs a new
backend and its models, not edits to the engine or the front ends.

The families' records and requests are frozen dataclasses, so every data member here is a
read-only property: a protocol attribute would ask for a settable one, which they are not.
A record may also carry ``credits_consumed`` (what KIE said the task consumed); the engine
reads it where present, so a new family need not have it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal, Protocol

__all__ = ["Backend", "Request", "TaskSnapshot", "Transport", "SUBMIT_ENDPOINTS"]

#: The client's endpoint names of the requests that start (and charge) a task, one per family:
#: an error from one of these before a task id is known may mean a task was created anyway.
SUBMIT_ENDPOINTS = frozenset({"generate", "createTask", "kontext-generate"})


class Transport(Protocol):
    """What a family's endpoints need of the client: one JSON call on the API host, under the
    client's envelope check, retry rule, key handling and submission limiter
    (:meth:`~kie_jupyter.api.client.KieClient.call`)."""

    def call(self, method: str, path: str, endpoint: str, *, json: Any = None,
             params: dict[str, str] | None = None,
             kind: Literal["read", "submit"] = "read", retries: bool = True,
             stop: threading.Event | None = None,
             on_wait: Callable[[float], None] | None = None) -> Any:
        """Send one request to ``path``; return the envelope's ``data``."""
        ...


class Request(Protocol):
    """What the engine uses of a family's request (``GenerationRequest`` for 4o,
    ``MarketRequest``, ``KontextRequest``)."""

    @property
    def mask(self) -> str | None:
        """The mask URL (None for models without masks)."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """Our parameters as plain data (history, sidecars); ``model`` is our model name."""
        ...

    def with_files(self, files: tuple[str, ...], mask: str | None) -> Request:
        """The request with uploaded URLs in place of the pending local inputs."""
        ...

    def to_body(self) -> dict[str, Any]:
        """The exact JSON body the family's submit endpoint is sent."""
        ...


class TaskSnapshot(Protocol):
    """One look at a task on the server, in the family's own record type."""

    @property
    def progress(self) -> float:
        """0..1 as reported; families with no progress field report 0 until the end."""
        ...

    @property
    def urls(self) -> tuple[str, ...]:
        """The result URLs (empty until success)."""
        ...

    @property
    def params(self) -> dict[str, Any] | None:
        """The request as the API echoes it (its own field names), or None."""
        ...

    @property
    def error_code(self) -> int | None:
        """The API's error code on failure, else None."""
        ...

    @property
    def state(self) -> str:
        """The API's own word for where the task stands (``generating``, ``queuing``…), for
        front ends to show where there is no progress to show."""
        ...

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

    @property
    def family(self) -> str:
        """Our name of the family (``4o``, …), recorded with each task."""
        ...

    @property
    def reports_progress(self) -> bool:
        """Whether its records carry progress; without it the poller spaces polls from the
        model's earlier durations instead."""
        ...

    def submit(self, request: Any, *, stop: threading.Event | None = None,
               on_wait: Callable[[float], None] | None = None) -> str:
        """Send the request once (rate-limited, never re-sent once it may have arrived);
        return the task id. ``request`` is the family's own request type."""
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
