"""The Market job and Flux Kontext endpoints of the fake server, with their quirks.

Market (``/api/v1/jobs/createTask``, ``/api/v1/jobs/recordInfo``): ``recordInfo`` answers
with ``message`` where everything else says ``msg``; ``param`` and ``resultJson`` are JSON
strings; a task's ``state`` goes ``waiting`` → ``queuing`` → ``generating`` over its duration,
then ``success`` or ``fail`` (with ``failCode``/``failMsg``); no progress field; ids look like
``task_<family>_<millis>``; an unknown id is a 422 "recordInfo is null".

Flux Kontext (``/api/v1/flux/kontext/generate``, ``…/record-info``): ``successFlag`` 0 → 1
(or 2/3 on failure), ``response.resultImageUrl``, ``paramJson`` a JSON string, ISO times.

A prompt with ``[mock:fail]`` fails, as on the 4o side; ``script_next_task`` scripts the rest.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ._http import Answer
from ._models import MARKET_MODELS, QWEN_SIZES, validate_kontext, validate_market
from ._state import FAIL_MARKER, TaskScript
from .images import RATIOS

__all__ = ["MarketAPI", "MarketTask", "KontextTask"]

FLAGGED_MSG = "Your prompt was flagged by the content moderation"
_FINAL_FAILED = ("fail", "GENERATE_FAILED", "CREATE_TASK_FAILED")


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Job:
    """What Market and Kontext tasks share: a duration, a script, a few poll counters."""

    task_id: str
    params: dict[str, Any]
    result_urls: list[str]
    created: float  # time.monotonic()
    create_ms: int
    duration: float
    script: TaskScript
    null_polls: int
    empty_url_polls: int = 0
    polls: int = 0
    failure: tuple[int, str] | None = field(default=None)  # an input image that was missing
    #: Credits reported as ``creditsConsumed`` once finished (None: not reported).
    reported_credits: float | None = None

    @property
    def succeeds(self) -> bool:
        s = self.script
        return (self.failure is None and s.success_flag == 1
                and (s.status is None or s.status not in _FINAL_FAILED))

    def is_done(self, now: float) -> bool:
        return now - self.created >= self.duration

    def error(self) -> tuple[int, str]:
        if self.failure is not None:
            return self.failure
        s = self.script
        return (s.error_code if s.error_code is not None else 400,
                s.error_message if s.error_message is not None else FLAGGED_MSG)

    def _urls_now(self) -> list[str]:
        if self.empty_url_polls > 0:
            self.empty_url_polls -= 1
            return []
        return list(self.result_urls)


@dataclass
class MarketTask(_Job):
    """One Market job; its state is a function of time plus a few poll counters."""

    def state(self, now: float) -> str:
        if self.is_done(now):
            return "success" if self.succeeds else "fail"
        fraction = (now - self.created) / self.duration if self.duration > 0 else 1.0
        return "waiting" if fraction < 0.1 else "queuing" if fraction < 0.25 else "generating"

    def render_args(self) -> tuple[str, str, str]:
        """``(seed text, ratio, API model id)`` its pictures are drawn from."""
        fields = self.params.get("input") or {}
        model = MARKET_MODELS.get(str(self.params.get("model")))
        ratio = fields.get("aspect_ratio")
        if ratio is None and fields.get("image_size") in QWEN_SIZES:
            ratio = QWEN_SIZES[fields["image_size"]]
        if ratio not in RATIOS:
            ratio = model.default_ratio if model else "1:1"
        image_field = model.image_field if model else None
        seed = fields.get("prompt") or json.dumps(fields.get(image_field) if image_field else "")
        return str(seed), str(ratio), str(self.params.get("model") or "")

    def record(self, now: float) -> dict[str, Any] | None:
        """``recordInfo``'s ``data`` at ``now`` (None: "recordInfo is null"); counts it."""
        self.polls += 1
        if self.null_polls > 0:
            self.null_polls -= 1
            return None
        state = self.state(now)
        done = state in ("success", "fail")
        # Empty strings unless it failed, as KIE's page documents (not null).
        fail_code = fail_msg = ""
        result = ""
        if state == "success":
            result = json.dumps({"resultUrls": self._urls_now()})
        elif state == "fail":
            code, message = self.error()
            fail_code, fail_msg = str(code), message
        now_ms = int(time.time() * 1000)
        return {
            "taskId": self.task_id,
            "model": self.params.get("model"),
            "state": state,
            "param": json.dumps(self.params),
            "resultJson": result,
            "failCode": fail_code,
            "failMsg": fail_msg,
            "costTime": int(self.duration * 1000) if done else None,
            "completeTime": self.create_ms + int(self.duration * 1000) if done else None,
            "createTime": self.create_ms,
            "updateTime": now_ms,
            # The Market callback's field (docs.kie.ai: "Number of credits consumed by the
            # task"); older kie.ai pages say the query answer carries the same content.
            **({"creditsConsumed": self.reported_credits if state == "success" else 0}
               if done and self.reported_credits is not None else {}),
        }

    def snapshot(self, now: float) -> dict[str, Any]:
        """A plain-dict view for tests (does not count as a query)."""
        state = self.state(now)
        return {
            "taskId": self.task_id,
            "family": "market",
            "model": self.params.get("model"),
            "params": dict(self.params),
            "state": state,
            "done": state in ("success", "fail"),
            "resultUrls": list(self.result_urls),
            "duration": self.duration,
            "createTime": self.create_ms,
            "polls": self.polls,
            "error": None if state != "fail" else self.error(),
        }


@dataclass
class KontextTask(_Job):
    """One Flux Kontext task."""

    def flag(self, now: float) -> int:
        if not self.is_done(now):
            return 0
        if self.succeeds:
            return 1
        return self.script.success_flag if self.script.success_flag in (2, 3) else 3

    def render_args(self) -> tuple[str, str, str]:
        ratio = self.params.get("aspectRatio")
        if ratio not in RATIOS:
            ratio = "1:1" if self.params.get("inputImage") else "16:9"  # the API's default
        return (str(self.params.get("prompt") or ""), str(ratio),
                str(self.params.get("model") or "flux-kontext-pro"))

    def record(self, now: float) -> dict[str, Any] | None:
        self.polls += 1
        if self.null_polls > 0:
            self.null_polls -= 1
            return None
        flag = self.flag(now)
        response = None
        code: int | None = None
        message = ""
        if flag == 1:
            urls = self._urls_now()
            url = urls[0] if urls else None
            response = {"originImageUrl": url, "resultImageUrl": url}
        elif flag in (2, 3):
            code, message = self.error()
        done = flag != 0
        return {
            "taskId": self.task_id,
            "paramJson": json.dumps(self.params),
            "completeTime": _iso(self.create_ms + int(self.duration * 1000)) if done else None,
            "createTime": _iso(self.create_ms),
            "response": response,
            "successFlag": flag,
            "errorCode": code,
            "errorMessage": message,
        }

    def snapshot(self, now: float) -> dict[str, Any]:
        flag = self.flag(now)
        return {
            "taskId": self.task_id,
            "family": "kontext",
            "model": self.params.get("model") or "flux-kontext-pro",
            "params": dict(self.params),
            "successFlag": flag,
            "done": flag != 0,
            "resultUrls": list(self.result_urls),
            "duration": self.duration,
            "createTime": self.create_ms,
            "polls": self.polls,
            "error": self.error() if flag in (2, 3) else None,
        }


class MarketAPI:
    """The Market and Flux Kontext endpoints (a mixin of ``MockKieServer``)."""

    url: str
    null_polls: int
    _lock: threading.RLock
    _scripts: deque[TaskScript]
    _tasks: dict[str, Any]
    _last_job_ms: int

    credits: float
    cost_per_image: float
    report_credits: bool

    if TYPE_CHECKING:  # provided by MockAPI (the 4o side): envelopes, admission, inputs
        def _error(self, endpoint: str, code: int, msg: str | None = None,
                   http: int | None = None) -> Answer: ...
        def _ok(self, endpoint: str, data: Any, msg: str = "success") -> Answer: ...
        def _admit(self, endpoint: str, cost: float, now: float) -> Answer | None: ...
        def _missing_input(self, urls: list[Any]) -> tuple[int, str] | None: ...
        def _oversized_upload(self, urls: list[Any], max_bytes: int | None) -> str | None: ...
        def _task_duration(self, script: TaskScript, body: dict[str, Any]) -> float: ...
        def _result_urls(self, task_id: str, n: int, *, prompt: str, model: str, size: str,
                         edit: bool) -> list[str]: ...

    def _next_script(self, prompt: str) -> TaskScript:
        script = self._scripts.popleft() if self._scripts else TaskScript()
        if FAIL_MARKER in prompt and script.success_flag == 1 and script.status is None:
            script = dataclasses.replace(script, success_flag=3)
        return script

    def _api_createTask(self, request: Any) -> Answer:  # noqa: N802 - the API's name
        body = request.json
        problem = validate_market(body)
        if problem:
            return self._error("createTask", 422, problem)
        fields = body["input"]
        model = MARKET_MODELS[body["model"]]
        images = fields.get(model.image_field) if model.image_field else None
        images = [images] if isinstance(images, str) else list(images or [])
        oversized = self._oversized_upload(images, model.max_bytes)
        if oversized:
            return self._error("createTask", 422, oversized)
        now = time.monotonic()
        with self._lock:
            refused = self._admit("createTask", self.cost_per_image, now)
            if refused is not None:
                return refused
            script = self._next_script(str(fields.get("prompt") or ""))
            now_ms = int(time.time() * 1000)
            # Ids are task_<family>_<millis>; two in one millisecond still differ.
            self._last_job_ms = max(now_ms, self._last_job_ms + 1)
            family = str(body["model"]).split("/")[0]
            task_id = script.task_id or f"task_{family}_{self._last_job_ms}"
            ratio = fields.get("aspect_ratio") or fields.get("image_size") or ""
            task = MarketTask(
                task_id=task_id, params=body,
                result_urls=(list(script.result_urls) if script.result_urls is not None
                             else self._result_urls(task_id, 1,
                                                    prompt=str(fields.get("prompt") or ""),
                                                    model=str(body["model"]),
                                                    size=str(ratio), edit=bool(images))),
                created=now, create_ms=now_ms, duration=self._task_duration(script, body),
                script=script,
                null_polls=self.null_polls if script.null_polls is None else script.null_polls,
                empty_url_polls=script.empty_url_polls, failure=self._missing_input(images),
                reported_credits=self.cost_per_image if self.report_credits else None)
            self._tasks[task_id] = task
            self.credits -= self.cost_per_image
        return self._ok("createTask", {"taskId": task_id})

    def _api_recordInfo(self, request: Any) -> Answer:  # noqa: N802 - the API's name
        task_id = request.query.get("taskId")
        if not task_id:
            return self._error("recordInfo", 400, "taskId parameter is required")
        with self._lock:
            task = self._tasks.get(task_id)
            if not isinstance(task, MarketTask):
                return self._error("recordInfo", 422, "recordInfo is null")
            data = task.record(time.monotonic())
        if data is None:
            return self._error("recordInfo", 422, "recordInfo is null")
        return self._ok("recordInfo", data)

    def _api_kontext_generate(self, request: Any) -> Answer:
        body = request.json
        problem = validate_kontext(body)
        if problem:
            return self._error("kontext-generate", *problem)
        now = time.monotonic()
        with self._lock:
            refused = self._admit("kontext-generate", self.cost_per_image, now)
            if refused is not None:
                return refused
            script = self._next_script(str(body.get("prompt") or ""))
            task_id = uuid.uuid4().hex
            task = KontextTask(
                task_id=task_id, params=body,
                result_urls=(list(script.result_urls) if script.result_urls is not None
                             else self._result_urls(
                                 task_id, 1, prompt=str(body.get("prompt") or ""),
                                 model=str(body.get("model") or "flux-kontext-pro"),
                                 size=str(body.get("aspectRatio") or ""),
                                 edit=bool(body.get("inputImage")))),
                created=now, create_ms=int(time.time() * 1000),
                duration=self._task_duration(script, body), script=script,
                null_polls=self.null_polls if script.null_polls is None else script.null_polls,
                empty_url_polls=script.empty_url_polls,
                failure=self._missing_input([body.get("inputImage")]))
            self._tasks[task_id] = task
            self.credits -= self.cost_per_image
        return self._ok("kontext-generate", {"taskId": task_id})

    def _api_kontext_record_info(self, request: Any) -> Answer:
        task_id = request.query.get("taskId")
        if not task_id:
            return self._error("kontext-record-info", 422, "taskId is required")
        with self._lock:
            task = self._tasks.get(task_id)
            if not isinstance(task, KontextTask):
                return self._error("kontext-record-info", 422, "record is null")
            data = task.record(time.monotonic())
        return self._ok("kontext-record-info", data)
