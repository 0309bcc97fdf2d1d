"""Flux Kontext as a :class:`~kie_jupyter.api.backend.Backend` (its own two endpoints).

``POST /api/v1/flux/kontext/generate`` takes a flat body (``prompt``, ``model``
``flux-kontext-pro`` | ``flux-kontext-max``, ``aspectRatio``, ``outputFormat``, one
``inputImage`` to edit…) [doc: flux-kontext-api/generate-or-edit-image];
``GET /api/v1/flux/kontext/record-info`` answers ``successFlag`` 0 generating, 1 success,
2 create failed, 3 generate failed, with ``response.resultImageUrl`` and ``paramJson`` as a
JSON string [doc: flux-kontext-api/get-image-details]. No progress field.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .backend import TaskSnapshot
from .client import KieClient
from .errors import KieUsageError
from .market import fetch_record, json_field, submit_job
from .models import credits_consumed, int_or_none

__all__ = ["KontextBackend", "KontextRecord", "KontextRequest", "KONTEXT_STATES",
           "KONTEXT_GENERATE_PATH", "KONTEXT_RECORD_PATH"]

KONTEXT_GENERATE_PATH = "/api/v1/flux/kontext/generate"
KONTEXT_RECORD_PATH = "/api/v1/flux/kontext/record-info"
#: ``successFlag`` → the state's name, as a front end shows it.
KONTEXT_STATES: Mapping[int, str] = {
    0: "generating", 1: "success", 2: "create failed", 3: "generate failed"}


@dataclass(frozen=True)
class KontextRequest:
    """One checked Flux Kontext request (built by :func:`.registry.build_request`).

    ``fields`` holds the body's other fields (``aspectRatio``, ``outputFormat``, passthrough
    ``--param`` fields) in the API's values; ``options`` our option values, for :meth:`to_dict`.
    """

    name: str
    model_id: str
    prompt: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    images: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    callback_url: str | None = None
    #: Flux Kontext takes no mask.
    mask: str | None = None

    def to_body(self) -> dict[str, Any]:
        """The exact JSON body of ``POST /api/v1/flux/kontext/generate``."""
        body: dict[str, Any] = {"prompt": self.prompt, "model": self.model_id, **self.fields}
        if self.images:
            body["inputImage"] = self.images[0]
        if self.callback_url:
            body["callBackUrl"] = self.callback_url
        return body

    def with_files(self, files: tuple[str, ...], mask: str | None) -> KontextRequest:
        """A copy with the uploaded URL in place of the pending local input."""
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


@dataclass(frozen=True)
class KontextRecord:
    """One snapshot of a Flux Kontext task (``record-info``'s ``data``)."""

    task_id: str
    success_flag: int = 0
    progress: float = 0.0
    urls: tuple[str, ...] = ()
    params: dict[str, Any] | None = None
    error_code: int | None = None
    error_message: str = ""
    create_time: str | None = None
    complete_time: str | None = None
    #: Credits KIE says the task consumed (None: not reported; the page documents none).
    credits_consumed: float | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any], task_id: str = "") -> KontextRecord:
        params = json_field(data.get("paramJson"), "paramJson", "kontext-record-info",
                            strict=False)
        response = json_field(data.get("response"), "response", "kontext-record-info",
                              strict=True)
        urls: tuple[str, ...] = ()
        if isinstance(response, dict):
            url = response.get("resultImageUrl")
            if isinstance(url, str) and url:
                urls = (url,)
        flag = int_or_none(data.get("successFlag"))
        return cls(
            task_id=str(data.get("taskId") or task_id),
            success_flag=0 if flag is None else flag,
            urls=urls,
            params=params if isinstance(params, dict) else None,
            error_code=int_or_none(data.get("errorCode")),
            error_message=str(data.get("errorMessage") or ""),
            create_time=None if data.get("createTime") is None else str(data["createTime"]),
            complete_time=(None if data.get("completeTime") is None
                           else str(data["completeTime"])),
            credits_consumed=credits_consumed(data),
        )

    @property
    def state(self) -> str:
        """The flag's name (``generating``, ``success``, ``create failed``…)."""
        return KONTEXT_STATES.get(self.success_flag, f"successFlag {self.success_flag}")

    @property
    def succeeded(self) -> bool:
        return self.success_flag == 1

    @property
    def failed(self) -> bool:
        return self.success_flag not in (0, 1)

    @property
    def finished(self) -> bool:
        return self.succeeded or self.failed

    def failure_reason(self) -> str:
        if self.error_message:
            return self.error_message
        if self.error_code == 400:
            return "the prompt was flagged by the content moderation"
        return f"the task ended with state {self.state}"


def kontext_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Our parameters from the API's echo of a generate body (``paramJson``)."""
    params = params or {}
    model_id = str(params.get("model") or "flux-kontext-pro")
    image = params.get("inputImage")
    out: dict[str, Any] = {
        "model": model_id,  # our names are the API's here
        "api_model": model_id,
        "prompt": str(params.get("prompt") or ""),
        "size": params.get("aspectRatio"),
    }
    if params.get("outputFormat") is not None:
        out["output_format"] = params["outputFormat"]
    out["files"] = [image] if isinstance(image, str) and image else []
    out["mask"] = None
    if params.get("callBackUrl"):
        out["callback_url"] = params["callBackUrl"]
    return out


class KontextBackend:
    """``/api/v1/flux/kontext/*`` over a :class:`KieClient`."""

    family = "kontext"
    #: No progress field: the engine forecasts the end from earlier tasks' durations.
    reports_progress = False
    #: Where submissions go (shown by dry runs).
    submit_path = KONTEXT_GENERATE_PATH

    def __init__(self, client: KieClient) -> None:
        self.client = client

    def submit(self, request: KontextRequest, *, stop: threading.Event | None = None,
               on_wait: Callable[[float], None] | None = None) -> str:
        return submit_job(self.client, KONTEXT_GENERATE_PATH, "kontext-generate",
                          request.to_body(), stop=stop, on_wait=on_wait)

    def poll(self, task_id: str) -> KontextRecord | None:
        task_id, data = fetch_record(self.client, KONTEXT_RECORD_PATH, "kontext-record-info",
                                     task_id)
        return None if data is None else KontextRecord.from_api(data, task_id=task_id)

    def params_of(self, snapshot: TaskSnapshot) -> dict[str, Any]:
        return kontext_params(snapshot.params)

    def download_url(self, task_id: str, url: str) -> str:
        return self.client.common_download_url(url)
