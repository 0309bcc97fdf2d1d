"""The 4o Image API as a :class:`~kie_jupyter.api.backend.Backend` (the first family).

Its three endpoints live here, as the Market's and Flux Kontext's live in theirs:
``POST /api/v1/gpt4o-image/generate`` (the body is
:meth:`~kie_jupyter.api.models.GenerationRequest.to_body`), ``GET
/api/v1/gpt4o-image/record-info`` (a :class:`~kie_jupyter.api.models.TaskRecord`; ``data`` is
null just after submit) and ``POST /api/v1/gpt4o-image/download-url``. They are sent through
the client's :meth:`~kie_jupyter.api.client.KieClient.call` (any
:class:`~kie_jupyter.api.backend.Transport`), which owns the envelope check, retries, the key
and the rate limit; this module imports no client, so the client's own ``generate`` and
``record_info`` can hand over to it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from .backend import TaskSnapshot, Transport
from .errors import KieUsageError, MalformedResponseError
from .models import GenerationRequest, TaskRecord, download_link

__all__ = [
    "FourOBackend",
    "generate",
    "record_info",
    "download_url",
    "GENERATE_PATH",
    "RECORD_INFO_PATH",
    "DOWNLOAD_URL_PATH",
]

GENERATE_PATH = "/api/v1/gpt4o-image/generate"
RECORD_INFO_PATH = "/api/v1/gpt4o-image/record-info"
DOWNLOAD_URL_PATH = "/api/v1/gpt4o-image/download-url"


def generate(client: Transport, request: GenerationRequest, *,
             stop: threading.Event | None = None,
             on_wait: Callable[[float], None] | None = None) -> str:
    """Create a task; return its ``taskId``. Sent once: retried only when the server surely
    did not take it, never after it may have arrived (no double charge).

    Setting ``stop`` while it waits for a submission slot cancels it before anything is
    sent (:class:`~kie_jupyter.api.errors.SubmissionCancelled`). ``on_wait(seconds)`` is
    called when the request must wait for the rate limiter, and ``on_wait(0.0)`` when that
    wait is over, so a front end can show "queued" instead of a silent pause.
    """
    data = client.call("POST", GENERATE_PATH, "generate", kind="submit",
                       json=request.to_body(), stop=stop, on_wait=on_wait)
    task_id = data.get("taskId") if isinstance(data, dict) else None
    if not task_id:
        raise MalformedResponseError("generate", "no taskId in the answer")
    return str(task_id)


def record_info(client: Transport, task_id: str, *,
                retries: bool = True) -> TaskRecord | None:
    """One snapshot of a task; None while the API has no record yet (just after submit).

    An unknown id raises :class:`~kie_jupyter.api.errors.TaskNotFoundError`.
    ``retries=False`` makes a single attempt (the poller retries with its own schedule and
    deadline).
    """
    if not task_id or not str(task_id).strip():
        raise KieUsageError("task id: empty")
    data = client.call("GET", RECORD_INFO_PATH, "record-info",
                       params={"taskId": str(task_id).strip()}, retries=retries)
    if data is None:
        return None
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise MalformedResponseError("record-info", "data is not a record") from exc
    if not isinstance(data, dict):
        raise MalformedResponseError("record-info", "data is not a record")
    return TaskRecord.from_api(data, task_id=str(task_id))


def download_url(client: Transport, task_id: str, url: str) -> str:
    """A direct download URL for one result image of a 4o task (valid 20 minutes)."""
    data = client.call("POST", DOWNLOAD_URL_PATH, "download-url",
                       json={"taskId": task_id, "url": url})
    return download_link(data, "download-url")


def fouro_params(api: dict[str, Any] | None) -> dict[str, Any]:
    """Our parameters from the API's echo of a generate body (``paramJson``)."""
    api = api or {}
    return {
        "prompt": api.get("prompt", ""),
        "size": api.get("size", ""),
        "variants": api.get("nVariants", 1),
        "files": api.get("filesUrl") or [],
        "mask": api.get("maskUrl"),
        "enhance": bool(api.get("isEnhance", False)),
        "fallback": bool(api.get("enableFallback", False)),
        "fallback_model": api.get("fallbackModel"),
        "callback_url": api.get("callBackUrl"),
        "upload_cn": bool(api.get("uploadCn", False)),
    }


class FourOBackend:
    """``/api/v1/gpt4o-image/*`` over a :class:`~kie_jupyter.api.client.KieClient` (which
    owns transport, retries, the rate limit, uploads and downloads)."""

    family = "4o"
    reports_progress = True
    #: Where submissions go (shown by dry runs).
    submit_path = GENERATE_PATH

    def __init__(self, client: Transport) -> None:
        self.client = client

    def submit(self, request: GenerationRequest, *, stop: threading.Event | None = None,
               on_wait: Callable[[float], None] | None = None) -> str:
        return generate(self.client, request, stop=stop, on_wait=on_wait)

    def poll(self, task_id: str) -> TaskRecord | None:
        # One attempt per poll: the poller's own backoff and deadline handle errors.
        return record_info(self.client, task_id, retries=False)

    def params_of(self, snapshot: TaskSnapshot) -> dict[str, Any]:
        return fouro_params(snapshot.params)

    def download_url(self, task_id: str, url: str) -> str:
        return download_url(self.client, task_id, url)
