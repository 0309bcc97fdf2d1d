"""What the proxy forwards: exactly the endpoints the extension uses, and nothing else.

Each entry says how a request is treated: a *submit* starts (and charges) a task, so it is
counted against the student's quota and the class's rate; a *record* read is only for the
student's own tasks, and its answer settles the task in the ledger (failed → images given back;
done → its URLs kept for the teacher page); a *download* names a task or a result URL; an
*upload* goes to KIE's File Upload API. ``credit`` is not forwarded: the proxy answers it with
the student's remaining images (or credits, see :mod:`.admit`). What a submit costs in credits
is :mod:`.costs`'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..api.backend import TaskSnapshot
from ..api.fouro import DOWNLOAD_URL_PATH, GENERATE_PATH, RECORD_INFO_PATH
from ..api.kontext import KONTEXT_GENERATE_PATH, KONTEXT_RECORD_PATH, KontextRecord
from ..api.market import CREATE_TASK_PATH, MarketRecord
from ..api.market import RECORD_INFO_PATH as MARKET_RECORD_PATH
from ..api.models import VARIANTS, TaskRecord
from ..api.registry import MODELS

__all__ = ["Endpoint", "ENDPOINTS", "UPLOAD_PATHS", "CREDIT_PATH", "canonical_body",
           "images_asked", "prompt_of", "RECORD_OF_SUBMIT", "no_case_twins"]

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
    record: Callable[[Mapping[str, Any], str], TaskSnapshot] | None = None
    #: For downloads: whether the body names a task (``taskId``) that must be the student's.
    owns_task: bool = False


ENDPOINTS: dict[str, Endpoint] = {
    GENERATE_PATH: Endpoint("POST", "submit"),
    CREATE_TASK_PATH: Endpoint("POST", "submit"),
    KONTEXT_GENERATE_PATH: Endpoint("POST", "submit"),
    RECORD_INFO_PATH: Endpoint("GET", "record", TaskRecord.from_api),
    MARKET_RECORD_PATH: Endpoint("GET", "record", MarketRecord.from_api),
    KONTEXT_RECORD_PATH: Endpoint("GET", "record", KontextRecord.from_api),
    DOWNLOAD_URL_PATH: Endpoint("POST", "download", owns_task=True),
    "/api/v1/common/download-url": Endpoint("POST", "download"),
}

#: The record endpoint that reads a task made by each submit endpoint.
RECORD_OF_SUBMIT = {
    GENERATE_PATH: RECORD_INFO_PATH,
    CREATE_TASK_PATH: MARKET_RECORD_PATH,
    KONTEXT_GENERATE_PATH: KONTEXT_RECORD_PATH,
}

#: The API model ids a class may use, per submit endpoint: the image models the extension
#: offers (``kie_jupyter.models()``), nothing else on the account (no video, no music).
_ALLOWED_MODELS = {
    CREATE_TASK_PATH: frozenset(m for s in MODELS.values() if s.family == "market"
                                for m in s.model_ids),
    KONTEXT_GENERATE_PATH: frozenset(m for s in MODELS.values() if s.family == "kontext"
                                     for m in s.model_ids),
}
#: Input fields by which some Market models make several images in one task: a class task
#: makes one (the extension runs one task per image for these models).
_COUNT_FIELDS = frozenset({"n", "num_images", "numImages", "max_images", "maxImages",
                           "batch_size", "batchSize", "number_of_images", "numberOfImages"})


_COUNTED = frozenset(f.lower() for f in _COUNT_FIELDS)


def no_case_twins(body: Mapping[str, Any], fields: tuple[str, ...]) -> None:
    """Refuse a key that differs from one of ``fields`` only in case (ValueError)."""
    for key in body:
        for field in fields:
            if isinstance(key, str) and key != field and key.lower() == field.lower():
                raise ValueError(f"{key!r}: did you mean {field!r}? (field names are "
                                 "case-sensitive)")


def canonical_body(body: Mapping[str, Any]) -> bytes:
    """The checked submit as sent to KIE: re-written from what was checked, so a field given
    twice (``{"nVariants": 1, "nVariants": 4}``) reaches KIE once, with the value counted."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def images_asked(path: str, body: Mapping[str, Any]) -> int:
    """How many images a submit asks for, checked: 4o's ``nVariants`` (1, 2 or 4; default 1);
    one for a Market or Kontext task of an image model the extension offers.

    Raises ValueError (the proxy answers 400, nothing reserved or sent) for anything else: a
    model that is not one of those, or a Market input asking for several images.
    """
    # A parser that reads field names without regard to case (Go's encoding/json does) would
    # take "NVARIANTS" or "Model" for the field checked here: such names are refused.
    no_case_twins(body, ("nVariants", "model", "input"))
    if path == GENERATE_PATH:
        value = body.get("nVariants", 1)
        if not isinstance(value, int) or isinstance(value, bool) or value not in VARIANTS:
            raise ValueError(f"nVariants: {value!r} is not one of "
                             f"{', '.join(map(str, VARIANTS))}")
        return value
    model = body.get("model")
    allowed = _ALLOWED_MODELS[path]
    if not isinstance(model, str) or model not in allowed:
        raise ValueError(f"model {model!r} is not one of this class's image models "
                         f"({', '.join(sorted(allowed))})")
    given = body.get("input")
    if path == CREATE_TASK_PATH:
        if not isinstance(given, Mapping):
            raise ValueError("a Market task needs an input object")
        counted = sorted(k for k in given if isinstance(k, str) and k.lower() in _COUNTED)
        if counted:
            raise ValueError(f"input.{counted[0]}: a class task makes one image; ask for "
                             "more with -n (one task each)")
    return 1


def prompt_of(body: Mapping[str, Any]) -> str:
    """The prompt of a submit body (Market models keep it under ``input``)."""
    prompt = body.get("prompt")
    if prompt is None and isinstance(body.get("input"), Mapping):
        prompt = body["input"].get("prompt")
    return prompt if isinstance(prompt, str) else ""
