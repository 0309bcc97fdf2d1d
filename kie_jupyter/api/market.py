"""KIE's Market job API as a :class:`~kie_jupyter.api.backend.Backend`.

Most of KIE's newer image models (GPT Image 1.5, Nano Banana, Seedream, Qwen, Flux-2…) share
two endpoints: ``POST /api/v1/jobs/createTask`` and ``GET /api/v1/jobs/recordInfo``. Their
quirks, all handled here: ``recordInfo`` says ``message`` where the rest say ``msg`` (the
client accepts both); ``param`` and ``resultJson`` are JSON *strings*; the task's ``state`` is
``waiting`` → ``queuing`` → ``generating`` → ``success`` | ``fail`` with no progress field; an
unknown id is a 404 "Task not found" or a 422 "recordInfo is null".

Which model takes which fields is the registry's business (:mod:`.registry`); this module
only sends a checked :class:`MarketRequest` and reads the records.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .backend import TaskSnapshot
from .client import KieClient
from .errors import (
    KieAPIError,
    KieUsageError,
    MalformedResponseError,
    NotFoundError,
    TaskNotFoundError,
    ValidationError,
)
from .models import credits_consumed, int_or_none, time_ms

__all__ = [
    "MarketBackend",
    "MarketRecord",
    "MarketRequest",
    "QWEN_IMAGE_SIZES",
    "SEEDREAM4_IMAGE_SIZES",
    "CREATE_TASK_PATH",
    "RECORD_INFO_PATH",
]

CREATE_TASK_PATH = "/api/v1/jobs/createTask"
RECORD_INFO_PATH = "/api/v1/jobs/recordInfo"
_FAILED = frozenset({"fail", "failed"})

#: Our aspect ratios as Qwen's ``image_size`` names (Qwen has no ``aspect_ratio`` field).
QWEN_IMAGE_SIZES: Mapping[str, str] = {
    "1:1": "square_hd",
    "4:3": "landscape_4_3",
    "3:4": "portrait_4_3",
    "16:9": "landscape_16_9",
    "9:16": "portrait_16_9",
}
#: Seedream 4.0's ``image_size`` names beyond Qwen's (its page adds 3:2, 2:3 and 21:9).
SEEDREAM4_IMAGE_SIZES: Mapping[str, str] = {
    **QWEN_IMAGE_SIZES, "3:2": "landscape_3_2", "2:3": "portrait_3_2", "21:9": "landscape_21_9"}
_QWEN_RATIOS = ({api: ours for ours, api in SEEDREAM4_IMAGE_SIZES.items()}
                | {"square": "1:1"})

#: The input fields that carry images, per model (list or single URL).
IMAGE_FIELDS = ("input_urls", "image_input", "image_urls", "image_url", "image",
                "reference_image_urls")


@dataclass(frozen=True)
class MarketRequest:
    """One checked ``createTask`` request (built by :func:`.registry.build_request`).

    ``input`` holds the API's fields other than the prompt and the images, already in the
    API's values; ``options`` our option values, for :meth:`to_dict`.
    """

    name: str
    model_id: str
    prompt: str
    input: Mapping[str, Any] = field(default_factory=dict)
    images: tuple[str, ...] = ()
    image_field: str | None = None
    #: False where the model takes one image as a plain string (Qwen's ``image_url``).
    image_list: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)
    callback_url: str | None = None
    #: Market models take no mask.
    mask: str | None = None
    #: False for a tool (upscale, remove background): its page has no prompt field.
    send_prompt: bool = True
    #: What ``--dry-run`` should say of the body (a ``--param`` sent as given…).
    notes: tuple[str, ...] = ()

    def to_body(self) -> dict[str, Any]:
        """The exact JSON body of ``POST /api/v1/jobs/createTask``."""
        fields: dict[str, Any] = {"prompt": self.prompt} if self.send_prompt else {}
        fields.update(self.input)
        if self.image_field and self.images:
            fields[self.image_field] = list(self.images) if self.image_list else self.images[0]
        body: dict[str, Any] = {"model": self.model_id}
        if self.callback_url:
            body["callBackUrl"] = self.callback_url
        body["input"] = fields
        return body

    def with_files(self, files: tuple[str, ...], mask: str | None) -> MarketRequest:
        """A copy with uploaded URLs in place of the pending local inputs."""
        if mask is not None:
            raise KieUsageError(f"mask: {self.name} takes no mask (only 4o does)")
        if len(tuple(files)) != len(self.images):
            raise KieUsageError(
                f"images: {len(tuple(files))} uploaded for {len(self.images)} inputs")
        return replace(self, images=tuple(files))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for history and sidecars (``model`` is our name)."""
        out: dict[str, Any] = {"model": self.name, "api_model": self.model_id,
                               "prompt": self.prompt}
        out.update({k: v for k, v in self.options.items() if v not in (None, {}, ())})
        out["files"] = list(self.images)
        out["mask"] = None
        if self.callback_url:
            out["callback_url"] = self.callback_url
        return out


def json_field(value: Any, name: str, endpoint: str, *, strict: bool) -> Any:
    """A field the API sends as a JSON string, parsed (an object passes as it is).

    Empty is None. Unparseable text raises :class:`MalformedResponseError` when ``strict``
    (the poller retries it), else is None.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        if strict:
            raise MalformedResponseError(endpoint, f"{name} is not JSON") from None
        return None


def submit_job(client: KieClient, path: str, endpoint: str, body: Any, *,
               stop: threading.Event | None, on_wait: Callable[[float], None] | None) -> str:
    """POST a job (rate-limited, never re-sent once it may have arrived); its ``taskId``."""
    data = client.call("POST", path, endpoint, kind="submit", json=body, stop=stop,
                       on_wait=on_wait)
    task_id = data.get("taskId") if isinstance(data, dict) else None
    if not task_id:
        raise MalformedResponseError(endpoint, "no taskId in the answer")
    return str(task_id)


def fetch_record(client: KieClient, path: str, endpoint: str,
                 task_id: str) -> tuple[str, dict[str, Any] | None]:
    """One look at a job (one attempt: the poller retries): the clean id and the record's
    ``data`` (None while the API has none yet)."""
    if not task_id or not str(task_id).strip():
        raise KieUsageError("task id: empty")
    task_id = str(task_id).strip()
    try:
        data = client.call("GET", path, endpoint, params={"taskId": task_id}, retries=False)
    except KieAPIError as exc:
        raise as_task_not_found(exc) from None
    if data is None:
        return task_id, None
    data = json_field(data, "data", endpoint, strict=True)
    if not isinstance(data, dict):
        raise MalformedResponseError(endpoint, "data is not a record")
    return task_id, data


def as_task_not_found(exc: KieAPIError) -> KieAPIError:
    """An unknown-task answer (404, or 422 "… is null") as :class:`TaskNotFoundError` (the
    poller gives a fresh id a grace period); any other error as it is."""
    unknown = isinstance(exc, NotFoundError) or (
        isinstance(exc, ValidationError) and "null" in exc.msg.lower())
    if not unknown or isinstance(exc, TaskNotFoundError):
        return exc
    return TaskNotFoundError(exc.code, exc.msg, exc.endpoint, http_status=exc.http_status,
                             retry_after=exc.retry_after, body=exc.body)


@dataclass(frozen=True)
class MarketRecord:
    """One snapshot of a Market task (``recordInfo``'s ``data``), parsed tolerantly.

    An unknown ``state`` counts as still running (a paid task is never ended by a word we
    do not know); a success whose ``resultJson`` is not JSON is a malformed answer.
    """

    task_id: str
    state: str = "waiting"
    model_id: str = ""
    progress: float = 0.0
    urls: tuple[str, ...] = ()
    params: dict[str, Any] | None = None
    error_code: int | None = None
    fail_code: str = ""
    fail_message: str = ""
    create_time: int | None = None
    complete_time: int | None = None
    #: Credits KIE says the task consumed (``creditsConsumed``; None: not reported).
    credits_consumed: float | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any], task_id: str = "") -> MarketRecord:
        state = str(data.get("state") or "").strip().lower()
        params = json_field(data.get("param"), "param", "recordInfo", strict=False)
        urls: tuple[str, ...] = ()
        if state == "success":
            result = json_field(data.get("resultJson"), "resultJson", "recordInfo",
                                strict=True)
            if result is not None and not isinstance(result, dict):
                raise MalformedResponseError("recordInfo", "resultJson is not an object")
            found = (result or {}).get("resultUrls")
            if isinstance(found, str):
                found = [found]
            if isinstance(found, list):
                urls = tuple(u for u in found if isinstance(u, str) and u)
        fail_code = data.get("failCode")
        progress = data.get("progress")  # documented for sora2 only; 0 elsewhere
        try:
            fraction = float(progress) / 100.0 if progress not in (None, "") else 0.0
        except (TypeError, ValueError):
            fraction = 0.0
        return cls(
            task_id=str(data.get("taskId") or task_id),
            state=state,
            model_id=str(data.get("model") or ""),
            progress=min(max(fraction, 0.0), 1.0) if fraction == fraction else 0.0,
            urls=urls,
            params=params if isinstance(params, dict) else None,
            error_code=int_or_none(fail_code),
            fail_code="" if fail_code is None else str(fail_code),
            fail_message=str(data.get("failMsg") or ""),
            create_time=time_ms(data.get("createTime")),
            complete_time=time_ms(data.get("completeTime")),
            credits_consumed=credits_consumed(data),
        )

    @property
    def succeeded(self) -> bool:
        return self.state == "success"

    @property
    def failed(self) -> bool:
        return self.state in _FAILED

    @property
    def finished(self) -> bool:
        return self.succeeded or self.failed

    def failure_reason(self) -> str:
        """``failMsg``, or the code and state when the API gave no words."""
        if self.fail_message:
            return self.fail_message
        code = f" (failCode {self.fail_code})" if self.fail_code else ""
        return f"the task ended with state {self.state}{code}"


def market_params(params: Mapping[str, Any] | None,
                  names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Our parameters from the API's echo of a createTask body (``param``)."""
    params = params or {}
    given = params.get("input")
    fields: Mapping[str, Any] = given if isinstance(given, dict) else {}
    model_id = str(params.get("model") or "")
    size = fields.get("aspect_ratio")
    if size is None and fields.get("image_size") is not None:
        size = _QWEN_RATIOS.get(str(fields["image_size"]), fields["image_size"])
    files: list[str] = []
    for name in IMAGE_FIELDS:
        value = fields.get(name)
        if isinstance(value, str) and value:
            files.append(value)
        elif isinstance(value, list):
            files.extend(u for u in value if isinstance(u, str))
    out: dict[str, Any] = {
        "model": (names or {}).get(model_id, model_id) or "market",
        "api_model": model_id,
        "prompt": str(fields.get("prompt") or ""),
        "size": size,
    }
    for key in ("resolution", "quality", "output_format"):
        if fields.get(key) is not None:
            out[key] = fields[key]
    out["files"] = files
    out["mask"] = None
    if params.get("callBackUrl"):
        out["callback_url"] = params["callBackUrl"]
    return out


class MarketBackend:
    """``/api/v1/jobs/*`` over a :class:`KieClient` (transport, retries, the rate limit,
    uploads and downloads are the client's).

    ``names`` maps the API's model ids to our model names (the registry passes it), so that
    a resumed task knows which of our models made it.
    """

    family = "market"
    #: No progress field: the engine forecasts the end from earlier tasks' durations.
    reports_progress = False
    #: Where submissions go (shown by dry runs).
    submit_path = CREATE_TASK_PATH

    def __init__(self, client: KieClient, *, names: Mapping[str, str] | None = None) -> None:
        self.client = client
        self.names = dict(names or {})

    def submit(self, request: MarketRequest, *, stop: threading.Event | None = None,
               on_wait: Callable[[float], None] | None = None) -> str:
        return submit_job(self.client, CREATE_TASK_PATH, "createTask", request.to_body(),
                          stop=stop, on_wait=on_wait)

    def poll(self, task_id: str) -> MarketRecord | None:
        task_id, data = fetch_record(self.client, RECORD_INFO_PATH, "recordInfo", task_id)
        return None if data is None else MarketRecord.from_api(data, task_id=task_id)

    def params_of(self, snapshot: TaskSnapshot) -> dict[str, Any]:
        return market_params(snapshot.params, self.names)

    def download_url(self, task_id: str, url: str) -> str:
        return self.client.common_download_url(url)
