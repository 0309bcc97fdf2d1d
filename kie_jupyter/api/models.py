"""Plain data: the generation request, the task record, the task states. No I/O here."""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from .errors import KieUsageError, MalformedResponseError

__all__ = [
    "Size",
    "FallbackModel",
    "TaskStatus",
    "GenerationRequest",
    "TaskRecord",
    "VARIANTS",
    "MAX_FILES",
    "MAX_IMAGE_BYTES",
    "MAX_INPUT_BYTES",
    "MAX_PROMPT_CHARS",
    "is_http_url",
    "download_link",
    "time_ms",
]

#: Allowed values of ``nVariants``.
VARIANTS = (1, 2, 4)
#: At most this many input images (``filesUrl``).
MAX_FILES = 5
#: The 4o page's limit per input image and mask (25 MiB).
MAX_IMAGE_BYTES = 25 * 1024 * 1024
#: The largest input any registered model's page allows (Nano Banana 2 and Pro: 30 MB); each
#: model's own limit is checked against its page before anything is uploaded.
MAX_INPUT_BYTES = 30 * 1024 * 1024
#: The longest prompt we send. The API documents no limit; OpenAI's image models take
#: 32,000 characters, and a longer prompt is almost always a templating mistake.
MAX_PROMPT_CHARS = 32_000
#: Control characters other than newline, carriage return and tab.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Size(str, enum.Enum):
    """Aspect ratios the API accepts."""

    SQUARE = "1:1"
    LANDSCAPE = "3:2"
    PORTRAIT = "2:3"

    @property
    def ratio(self) -> float:
        """Width divided by height."""
        w, h = self.value.split(":")
        return int(w) / int(h)


class FallbackModel(str, enum.Enum):
    """Backup models for ``enableFallback``."""

    GPT_IMAGE_1 = "GPT_IMAGE_1"
    FLUX_MAX = "FLUX_MAX"


class TaskStatus(str, enum.Enum):
    """Where a task stands, as the user sees it."""

    SUBMITTING = "submitting"
    GENERATING = "generating"
    DOWNLOADING = "downloading"
    SUCCESS = "success"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    STOPPED = "stopped"

    @property
    def finished(self) -> bool:
        """True once the task will change no more locally."""
        return self in _FINISHED


_FINISHED = {TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.STOPPED}


def is_http_url(value: Any) -> TypeGuard[str]:
    """True for an http(s) URL with a host; the scheme is case-insensitive (RFC 3986)."""
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value.strip())
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def download_link(data: Any, endpoint: str) -> str:
    """The URL in a download-url answer's ``data``: the URL itself, or an object holding it
    (``downloadUrl``, ``url`` or ``imageUrl``); anything else is a malformed answer."""
    if isinstance(data, dict):
        data = data.get("downloadUrl") or data.get("url") or data.get("imageUrl")
    if not is_http_url(data):
        raise MalformedResponseError(endpoint, "no http(s) URL in the answer")
    return data


def _choices(values: Any) -> str:
    return ", ".join(str(v) for v in values)


@dataclass(frozen=True)
class GenerationRequest:
    """One generate call: the prompt and every parameter, validated on creation.

    ``files`` and ``mask`` hold the URLs sent to the API (local files are uploaded before a
    request is built).
    """

    prompt: str = ""
    size: str = Size.SQUARE.value
    variants: int = 1
    files: tuple[str, ...] = ()
    mask: str | None = None
    enhance: bool = False
    fallback: bool = False
    fallback_model: str | None = None
    callback_url: str | None = None
    upload_cn: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            raise KieUsageError("prompt: must be text")
        if isinstance(self.size, Size):
            object.__setattr__(self, "size", self.size.value)
        # Tuples, not sets: an unhashable value (a list) must be a usage error, not TypeError.
        if self.size not in tuple(s.value for s in Size):
            raise KieUsageError(
                f"size: {self.size!r} is not allowed; use one of {_choices(s.value for s in Size)}"
            )
        # 2.0 == 2, but the API wants a JSON integer: only real ints (not bools) pass.
        if (
            isinstance(self.variants, bool)
            or not isinstance(self.variants, int)
            or self.variants not in VARIANTS
        ):
            raise KieUsageError(
                f"variants: {self.variants!r} is not allowed; use one of {_choices(VARIANTS)}"
            )
        # One URL given as a plain string is one file, not a tuple of its characters.
        files = (self.files,) if isinstance(self.files, str) else tuple(self.files)
        object.__setattr__(self, "files", files)
        if len(self.files) > MAX_FILES:
            raise KieUsageError(
                f"images: {len(self.files)} given; at most {MAX_FILES} input images are allowed"
            )
        if not self.prompt.strip() and not self.files:
            raise KieUsageError("prompt: empty; write a prompt or give an input image to edit")
        if len(self.prompt) > MAX_PROMPT_CHARS:
            raise KieUsageError(
                f"prompt: {len(self.prompt)} characters; at most {MAX_PROMPT_CHARS} are allowed"
            )
        bad = _CONTROL.search(self.prompt)
        if bad:
            raise KieUsageError(
                f"prompt: control character U+{ord(bad.group()):04X} at position "
                f"{bad.start() + 1}; remove it (newlines and tabs are fine)"
            )
        checks: list[tuple[str, Any]] = [("images", u) for u in self.files]
        checks += [(n, u) for n, u in (("mask", self.mask), ("callback", self.callback_url))
                   if u is not None]
        for name, url in checks:
            if not is_http_url(url):
                raise KieUsageError(f"{name}: {url!r} is not an http(s) URL with a host")
        if self.mask is not None and not self.files:
            raise KieUsageError("mask: needs an input image to edit")
        if self.mask is not None and len(self.files) > 1:
            # The API silently ignores maskUrl with several files: refuse rather than mislead.
            raise KieUsageError(
                f"mask: works with exactly one --image ({len(self.files)} given)"
            )
        if self.fallback_model is not None:
            if isinstance(self.fallback_model, FallbackModel):
                object.__setattr__(self, "fallback_model", self.fallback_model.value)
            if self.fallback_model not in tuple(m.value for m in FallbackModel):
                raise KieUsageError(
                    f"fallback: {self.fallback_model!r} is not a fallback model; use one of "
                    f"{_choices(m.value for m in FallbackModel)}"
                )
            if not self.fallback:
                raise KieUsageError("fallback model given without enabling --fallback")

    def to_body(self) -> dict[str, Any]:
        """The exact JSON body of ``POST /api/v1/gpt4o-image/generate``."""
        body: dict[str, Any] = {"size": self.size, "nVariants": self.variants}
        if self.prompt:
            body["prompt"] = self.prompt
        if self.files:
            body["filesUrl"] = list(self.files)
        if self.mask:
            body["maskUrl"] = self.mask
        if self.enhance:
            body["isEnhance"] = True
        if self.upload_cn:
            body["uploadCn"] = True
        if self.fallback:
            body["enableFallback"] = True
            body["fallbackModel"] = self.fallback_model or FallbackModel.FLUX_MAX.value
        if self.callback_url:
            body["callBackUrl"] = self.callback_url
        return body

    def with_files(self, files: tuple[str, ...], mask: str | None) -> GenerationRequest:
        """A copy with uploaded URLs in place of local inputs."""
        return replace(self, files=files, mask=mask)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for history and sidecars."""
        return {
            "prompt": self.prompt,
            "size": self.size,
            "variants": self.variants,
            "files": list(self.files),
            "mask": self.mask,
            "enhance": self.enhance,
            "fallback": self.fallback,
            "fallback_model": self.fallback_model,
            "callback_url": self.callback_url,
            "upload_cn": self.upload_cn,
        }


def credits_consumed(data: Mapping[str, Any]) -> float | None:
    """What a record says the task consumed: ``creditsConsumed`` (the Market callback as
    docs.kie.ai documents it) or ``consumeCredits`` (older kie.ai pages, which say the
    callback and the query answer are the same); None when neither is a number ≥ 0."""
    for name in ("creditsConsumed", "consumeCredits"):
        value = data.get(name)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and value == value and 0 <= value < float("inf"):
            return float(value)
    return None


def _parse_progress(value: Any) -> float:
    percent = isinstance(value, str) and value.strip().endswith("%")
    try:
        p = float(value.strip().rstrip("%")) if percent else float(value)
    except (TypeError, ValueError):
        return 0.0
    if p != p:  # NaN
        return 0.0
    if percent or (p > 1.0 and p <= 100.0):  # some endpoints report percent ("45", "45%")
        p /= 100.0
    return min(max(p, 0.0), 1.0)


def _parse_urls(response: Any) -> tuple[str, ...]:
    if isinstance(response, str):
        try:
            response = json.loads(response)
        except ValueError:
            return ()
    if not isinstance(response, dict):
        return ()
    # Either key, whichever holds URLs (a server may send both with one empty).
    urls = response.get("resultUrls") or response.get("result_urls")
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, list):
        return ()
    return tuple(u for u in urls if isinstance(u, str) and u)


def int_or_none(value: Any) -> int | None:
    """An int from the API's field; None for null, "" or words (all families use it)."""
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        return None


_WALL_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d)(?::(\d\d)(?:\.(\d+))?)?Z?")


def time_ms(value: Any) -> int | None:
    """A record's time as epoch milliseconds, in either documented form: a number of
    milliseconds (``1698765400000``, maybe as text) or wall-clock text
    (``"2024-01-15 10:30:00"``, the 4o quickstart's form). The text names no time zone; it is
    read as UTC, so durations (complete − create) are right whatever KIE's zone is."""
    number = int_or_none(value)
    if number is not None or not isinstance(value, str):
        return number
    found = _WALL_TIME.fullmatch(value.strip())
    if not found:
        return None
    year, month, day, hour, minute, second, fraction = found.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute),
                          int(second or 0), tzinfo=timezone.utc)
    except ValueError:
        return None
    millis = int((fraction or "0")[:3].ljust(3, "0"))
    return int(moment.timestamp()) * 1000 + millis


@dataclass(frozen=True)
class TaskRecord:
    """One snapshot of a task as record-info reports it, parsed tolerantly."""

    task_id: str
    status: str = "GENERATING"
    success_flag: int = 0
    progress: float = 0.0
    urls: tuple[str, ...] = ()
    error_code: int | None = None
    error_message: str | None = None
    create_time: int | None = None
    complete_time: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    #: Credits KIE says the task consumed (None: not reported; 4o's record documents none).
    credits_consumed: float | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any], task_id: str = "") -> TaskRecord:
        """Parse record-info ``data``: progress as a string, either URL key, string responses."""
        params: Any = data.get("paramJson")
        if isinstance(params, str):
            try:
                params = json.loads(params)
            except ValueError:
                params = {}
        flag = int_or_none(data.get("successFlag"))
        return cls(
            task_id=str(data.get("taskId") or task_id),
            status=str(data.get("status") or "GENERATING"),
            success_flag=0 if flag is None else flag,
            progress=_parse_progress(data.get("progress")),
            urls=_parse_urls(data.get("response")),
            error_code=int_or_none(data.get("errorCode")),
            credits_consumed=credits_consumed(data),
            error_message=data.get("errorMessage") or None,
            create_time=time_ms(data.get("createTime")),
            complete_time=time_ms(data.get("completeTime")),
            params=params if isinstance(params, dict) else {},
        )

    @property
    def state(self) -> str:
        """The API's own word for where the task is (``GENERATING``, ``SUCCESS``…)."""
        return self.status

    @property
    def succeeded(self) -> bool:
        """The task ended with success (URLs may still be missing)."""
        return self.success_flag == 1 or (self.success_flag == 0 and self.status == "SUCCESS")

    @property
    def failed(self) -> bool:
        """The task ended without images: any flag but 0 and 1, or a failed status."""
        if self.success_flag not in (0, 1):
            return True
        return self.status in ("CREATE_TASK_FAILED", "GENERATE_FAILED")

    @property
    def finished(self) -> bool:
        """The server will not change this task any more."""
        return self.succeeded or self.failed

    def failure_reason(self) -> str:
        """The API's own words for a failure, or a plain default."""
        if self.error_message:
            return self.error_message
        if self.success_flag == 3:
            return "refused by the content moderation"
        return f"the task ended with status {self.status}"
