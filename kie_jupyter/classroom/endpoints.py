"""What the proxy forwards: exactly the endpoints the extension uses, and nothing else.

Each entry says how a request is treated: a *submit* starts (and charges) a task, so it is
counted against the student's quota and the class's rate; a *record* read is only for the
student's own tasks, and its answer settles the task in the ledger (failed → images given back;
done → its URLs kept for the teacher page); a *download* names a task or a result URL; an
*upload* goes to KIE's File Upload API. ``credit`` is not forwarded: the proxy answers it with
the student's remaining images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..api.kontext import KontextRecord
from ..api.market import MarketRecord
from ..api.models import TaskRecord

__all__ = ["Endpoint", "ENDPOINTS", "UPLOAD_PATHS", "CREDIT_PATH", "images_asked", "prompt_of"]

#: KIE's balance endpoint; answered by the proxy itself.
CREDIT_PATH = "/api/v1/chat/credit"
#: The File Upload API's endpoints, served under ``/upload`` on the proxy.
UPLOAD_PATHS = frozenset({"/api/file-stream-upload", "/api/file-base64-upload",
                          "/api/file-url-upload"})


@dataclass(frozen=True)
class Endpoint:
    """One forwarded endpoint of the main API."""

    method: str
    kind: str  # "submit" | "record" | "download"
    #: For records: the family's parser of ``data`` (has ``succeeded``, ``failed``, ``urls``).
    record: Callable[[Mapping[str, Any], str], Any] | None = None
    #: For downloads: whether the body names a task (``taskId``) that must be the student's.
    owns_task: bool = False


ENDPOINTS: dict[str, Endpoint] = {
    "/api/v1/gpt4o-image/generate": Endpoint("POST", "submit"),
    "/api/v1/jobs/createTask": Endpoint("POST", "submit"),
    "/api/v1/flux/kontext/generate": Endpoint("POST", "submit"),
    "/api/v1/gpt4o-image/record-info": Endpoint("GET", "record", TaskRecord.from_api),
    "/api/v1/jobs/recordInfo": Endpoint("GET", "record", MarketRecord.from_api),
    "/api/v1/flux/kontext/record-info": Endpoint("GET", "record", KontextRecord.from_api),
    "/api/v1/gpt4o-image/download-url": Endpoint("POST", "download", owns_task=True),
    "/api/v1/common/download-url": Endpoint("POST", "download"),
}

_MAX_IMAGES_PER_TASK = 10


def images_asked(path: str, body: Mapping[str, Any]) -> int:
    """How many images a submit asks for: 4o's ``nVariants`` (default 1), else 1.

    Market models that make more than asked are charged the difference when they finish
    (:meth:`.ledger.Ledger.task_succeeded`). Raises ValueError for a count that is not one.
    """
    if path != "/api/v1/gpt4o-image/generate":
        return 1
    value = body.get("nVariants", 1)
    if isinstance(value, bool) or not isinstance(value, int) \
            or not 1 <= value <= _MAX_IMAGES_PER_TASK:
        raise ValueError(f"nVariants: {value!r} is not a number of images")
    return value


def prompt_of(body: Mapping[str, Any]) -> str:
    """The prompt of a submit body (Market models keep it under ``input``)."""
    prompt = body.get("prompt")
    if prompt is None and isinstance(body.get("input"), Mapping):
        prompt = body["input"].get("prompt")
    return prompt if isinstance(prompt, str) else ""
