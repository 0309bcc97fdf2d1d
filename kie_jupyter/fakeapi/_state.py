"""The mock server's data: requests, scripted faults and task scripts, and one task's life."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

#: (method, path) -> endpoint name, as used by ``MockKieServer.add_fault`` and ``MockRequest``.
ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/gpt4o-image/generate"): "generate",
    ("GET", "/api/v1/gpt4o-image/record-info"): "record-info",
    ("POST", "/api/v1/gpt4o-image/download-url"): "download-url",
    ("GET", "/api/v1/chat/credit"): "credit",
    ("POST", "/api/v1/common/download-url"): "common-download-url",
    ("POST", "/api/file-stream-upload"): "file-stream-upload",
    ("POST", "/api/file-base64-upload"): "file-base64-upload",
    ("POST", "/api/file-url-upload"): "file-url-upload",
    # KIE's Market job API (most newer image models) and Flux Kontext.
    ("POST", "/api/v1/jobs/createTask"): "createTask",
    ("GET", "/api/v1/jobs/recordInfo"): "recordInfo",
    ("POST", "/api/v1/flux/kontext/generate"): "kontext-generate",
    ("GET", "/api/v1/flux/kontext/record-info"): "kontext-record-info",
}
#: Endpoints whose envelope says ``message`` instead of ``msg`` (a documented quirk).
MESSAGE_KEY_ENDPOINTS = frozenset({"recordInfo"})
FILES_PREFIX = "/files/"
ENDPOINTS = frozenset(ROUTES.values()) | {"file"}
UPLOAD_ENDPOINTS = frozenset(e for e in ENDPOINTS if e.startswith("file-"))

#: A sensible ``msg`` per error code (the live API's wording where known).
DEFAULT_MSGS: dict[int, str] = {
    400: "Bad request",
    401: "You do not have access permissions",
    402: "Insufficient credits",
    404: "Not found",
    405: "Method not allowed",
    422: "Validation error",
    429: "Rate limited: too many requests, please try again later",
    451: "Failed to fetch the image",
    455: "Service unavailable: system maintenance in progress",
    500: "Internal server error",
    501: "Generation failed",
    502: "Bad gateway",
    503: "Service unavailable",
    505: "Feature disabled",
    550: "Queue is full, the task was rejected; please try again later",
}
CONTENT_POLICY_MSG = "Your content was flagged by OpenAI as violating content policies"
FAIL_MARKER = "[mock:fail]"
FAILED_STATUSES = ("GENERATE_FAILED", "CREATE_TASK_FAILED")


class Headers(dict[str, str]):
    """A ``dict[str, str]`` of header names, lower-cased, that looks names up in any case."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__((str(k).lower(), v) for k, v in dict(items).items())

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


@dataclass(frozen=True)
class MockRequest:
    """One request as the mock received it (``headers`` look up names in any case)."""

    method: str
    path: str
    endpoint: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    body: bytes
    time: float  # time.monotonic() on arrival


@dataclass
class Fault:
    """A scripted misbehaviour of one endpoint, for the next ``times`` requests to it.

    The answer is, in order of precedence: ``body`` as is; a ``malformed`` (non-JSON) body; an
    error envelope (when ``code`` is set or ``http_status`` is not 200); else the real answer.
    The first three replace the real work unless ``after_processing``, which does the real work
    first (a generate creates and charges its task) and then misbehaves: the request reached
    the server but the client can't know it. ``delay`` sleeps before answering (after that
    work, or before any work otherwise); ``drop`` then hangs up instead of answering; the
    byte-level fields (``truncate``, ``chunk_delay``, ``oversize``) shape whatever is sent.
    """

    http_status: int = 200
    code: int | None = None
    msg: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    drop: bool = False
    after_processing: bool = False
    malformed: bool = False
    body: bytes | None = None
    content_type: str | None = None
    truncate: bool = False
    chunk_delay: float = 0.0
    oversize: int = 0
    times: int = 1
    #: Apply only to requests whose path (with query) contains this text, e.g. ``"_1.png"``.
    match: str | None = None

    @property
    def is_error(self) -> bool:
        """Whether the answer is an error envelope rather than the real answer."""
        return self.code is not None or self.http_status != 200


@dataclass
class TaskScript:
    """How the next created task ends (the default: success after the server's duration)."""

    success_flag: int = 1
    status: str | None = None
    error_code: int | None = None
    error_message: str | None = None
    empty_url_polls: int = 0
    duration: float | None = None
    null_polls: int | None = None
    response_as_string: bool = False
    #: Result URLs to report instead of this server's own (e.g. another host, or a bad scheme).
    result_urls: list[str] | None = None
    #: The id to give the task instead of this server's usual shape (KIE's own examples show
    #: ``task_4o_abc123`` for a 4o task and bare hex for a Market one).
    task_id: str | None = None


def format_progress(fraction: float) -> str:
    """``"0.00"``..``"1.00"``, rounded down so it never shows done too early."""
    return f"{math.floor(max(0.0, min(1.0, fraction)) * 100) / 100:.2f}"


@dataclass
class MockTask:
    """One generation task; its state is a pure function of time plus a few poll counters."""

    task_id: str
    params: dict[str, Any]
    result_urls: list[str]
    created: float  # time.monotonic()
    create_ms: int  # wall clock, as the API reports it
    duration: float
    script: TaskScript
    null_polls: int
    empty_url_polls: int = 0
    polls: int = 0  # record-info queries so far
    failure: tuple[int, str] | None = field(default=None)  # forced (errorCode, errorMessage)

    @property
    def final_status(self) -> str:
        s = self.script
        if self.failure is not None:
            return s.status if s.status in FAILED_STATUSES else "GENERATE_FAILED"
        if s.status:
            return s.status
        return "SUCCESS" if s.success_flag == 1 else "GENERATE_FAILED"

    @property
    def final_flag(self) -> int:
        flag = self.script.success_flag
        failed = self.failure is not None or self.final_status in FAILED_STATUSES
        # A failing status with the default flag 1 means "failed": report flag 2.
        return 2 if failed and flag in (0, 1) else flag

    @property
    def succeeds(self) -> bool:
        return self.final_flag == 1 and self.final_status == "SUCCESS"

    def is_done(self, now: float) -> bool:
        return now - self.created >= self.duration

    def progress(self, now: float) -> str:
        if self.duration <= 0:
            fraction = 1.0
        else:
            fraction = (now - self.created) / self.duration
        if self.is_done(now):
            if self.succeeds:
                return "1.00"
            # Failed tasks keep the progress they had when they failed.
            return "0.00" if self.final_status == "CREATE_TASK_FAILED" else format_progress(0.99)
        return format_progress(min(fraction, 0.99))

    def render_args(self) -> tuple[str, str, str]:
        """``(seed text, size, model)`` its pictures are drawn from."""
        seed = self.params.get("prompt") or json.dumps(self.params.get("filesUrl") or [])
        return str(seed), str(self.params.get("size")), "4o"

    def record(self, now: float, result_key: str) -> dict[str, Any] | None:
        """The record-info ``data`` for a query at ``now``; counts the query."""
        self.polls += 1
        if self.null_polls > 0:
            self.null_polls -= 1
            return None
        done = self.is_done(now)
        response: Any = None
        error_code = error_message = None
        if not done:
            status, flag = "GENERATING", 0
        else:
            status, flag = self.final_status, self.final_flag
            if self.succeeds:
                urls: list[str] = []
                if self.empty_url_polls > 0:
                    self.empty_url_polls -= 1
                else:
                    urls = list(self.result_urls)
                response = {result_key: urls}
                if self.script.response_as_string:
                    response = json.dumps(response)
            else:
                error_code, error_message = self.error()
        return {
            "taskId": self.task_id,
            "paramJson": json.dumps(self.params),
            "completeTime": self.create_ms + int(self.duration * 1000) if done else None,
            "response": response,
            "successFlag": flag,
            "status": status,
            "errorCode": error_code,
            "errorMessage": error_message,
            "createTime": self.create_ms,
            "progress": self.progress(now),
        }

    def error(self) -> tuple[int, str]:
        """``(errorCode, errorMessage)`` of a failed task."""
        if self.failure is not None:
            return self.failure
        s = self.script
        return (
            s.error_code if s.error_code is not None else 400,
            s.error_message if s.error_message is not None else CONTENT_POLICY_MSG,
        )

    def snapshot(self, now: float) -> dict[str, Any]:
        """A plain-dict view for tests (does not count as a query)."""
        done = self.is_done(now)
        return {
            "taskId": self.task_id,
            "params": dict(self.params),
            "status": self.final_status if done else "GENERATING",
            "successFlag": self.final_flag if done else 0,
            "progress": self.progress(now),
            "done": done,
            "resultUrls": list(self.result_urls),
            "nVariants": len(self.result_urls),
            "duration": self.duration,
            "createTime": self.create_ms,
            "polls": self.polls,
            "error": None if (self.succeeds or not done) else self.error(),
        }
