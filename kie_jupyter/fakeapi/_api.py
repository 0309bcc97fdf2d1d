"""The endpoints of the mock server: what each API call does to the mock's state.

``MockAPI`` is a mixin of :class:`~kie_jupyter.testing.MockKieServer`, which owns the state and
the lifecycle; here are only the answers, as plain :class:`Answer` values.

Size: one method per endpoint of the 4o and upload APIs, each with its documented quirks.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from . import _files as files
from ._http import Answer
from ._state import (
    DEFAULT_MSGS,
    FAIL_MARKER,
    FILES_PREFIX,
    MESSAGE_KEY_ENDPOINTS,
    ROUTES,
    UPLOAD_ENDPOINTS,
    MockRequest,
    MockTask,
    TaskScript,
)
from .images import SIZES, render_marked_png, render_png, sniff_mime
from .packs import ReplayPack
from .tools import apply_tool, input_url

log = logging.getLogger("kie_jupyter.testing")

#: A result image: ``results/<task id>_<n>.png`` (4o and Kontext ids are 32 hex digits,
#: Market ids ``task_<family>_<millis>``).
_RESULT_RE = re.compile(r"results/([0-9a-f]{32}|task_[A-Za-z0-9.\-]+_\d+)_(\d+)\.png")
#: A recorded image of the replay pack: ``pack/<task id>_<n>.<ext>``.
_PACK_RE = re.compile(r"pack/([0-9a-f]{32}|task_[A-Za-z0-9.\-]+_\d+)_(\d+)\.\w+")
_PACK_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp",
                    "image/gif": ".gif"}
#: What a synthetic picture says on itself while a replay pack is loaded.
SYNTHETIC_LABEL = "synthetic: not in the class pack"
_FALLBACK_MODELS = ("GPT_IMAGE_1", "FLUX_MAX")
_DOWNLOAD_URL_TTL = 20 * 60  # seconds, as the API documents


class MockAPI:
    """The API, upload and file endpoints (a mixin: the state lives in ``MockKieServer``)."""

    api_key: str | None
    duration: float | Callable[[dict], float]
    host: str
    port: int
    result_key: str
    credits: float
    cost_per_image: float
    null_polls: int
    rate_limit: tuple[int, float] | None
    download_url_form: str
    image_long_side: int
    error_http_status: bool
    url: str
    _lock: threading.RLock
    _scripts: deque[TaskScript]
    _tasks: dict[str, Any]
    _uploads: dict[str, tuple[bytes, str]]
    _generate_times: deque[float]
    #: The replay pack whose images answer matching prompts (None: synthetic pictures only).
    pack: ReplayPack | None
    #: ``pack/<task id>_<n>.<ext>`` -> (task id, the pack, the image's name in it).
    _pack_results: dict[str, tuple[str, ReplayPack, str]]
    _tool_made: dict[str, bytes]

    def _envelope(
        self, endpoint: str, code: int, msg: str, data: Any = None, http: int | None = None
    ) -> Answer:
        key = "message" if endpoint in MESSAGE_KEY_ENDPOINTS else "msg"
        payload: dict[str, Any] = {"code": code, key: msg, "data": data}
        if endpoint in UPLOAD_ENDPOINTS:
            payload = {"success": code == 200, **payload}
        if http is None:
            http = code if self.error_http_status and 100 <= code <= 599 else 200
        return Answer(http, json.dumps(payload).encode())

    def _error(
        self, endpoint: str, code: int, msg: str | None = None, http: int | None = None
    ) -> Answer:
        return self._envelope(endpoint, code, msg or DEFAULT_MSGS.get(code, "Error"), http=http)

    def _ok(self, endpoint: str, data: Any, msg: str = "success") -> Answer:
        return self._envelope(endpoint, 200, msg, data)

    def _process(self, request: MockRequest) -> Answer:
        endpoint = request.endpoint
        if endpoint == "unknown":
            return self._error(endpoint, 404, f"No such endpoint: {request.path}", http=404)
        if endpoint == "file":
            if request.method not in ("GET", "HEAD"):
                return self._error(endpoint, 405, http=405)
            return self._serve_file(request)
        if (request.method, request.path) not in ROUTES:
            return self._error(endpoint, 405, http=405)
        if not self._authorized(request.headers.get("Authorization")):
            return self._error(endpoint, 401)
        handler = getattr(self, "_api_" + endpoint.replace("-", "_"))
        try:
            return handler(request)
        except Exception as exc:  # a bug in the mock: say so loudly, answer like a server would
            log.exception("MockKieServer failed on %s %s", request.method, request.path)
            return self._error(endpoint, 500, f"mock server error: {exc!r}")

    def _authorized(self, header: str | None) -> bool:
        scheme, _, key = (header or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return False
        if self.api_key is None:
            return True
        return hmac.compare_digest(key.encode(), self.api_key.encode())

    def _api_generate(self, request: MockRequest) -> Answer:
        body = request.json
        if not isinstance(body, dict):
            return self._error("generate", 400, "Request body must be a JSON object")
        problem = _validate_generate(body)
        if problem:
            return self._error("generate", 422, problem)
        n = int(body.get("nVariants", 1))
        now = time.monotonic()
        with self._lock:
            refused = self._admit("generate", self.cost_per_image * n, now)
            if refused is not None:
                return refused
            task = self._new_task(body, n, now)
            self._tasks[task.task_id] = task
            self.credits -= self.cost_per_image * n
        return self._ok("generate", {"taskId": task.task_id})

    def _admit(self, endpoint: str, cost: float, now: float) -> Answer | None:
        """Under the lock: the refusal of a new task (rate limit, credits), else None — and
        the task counts against the account's rate limit (one limit for every family)."""
        if self.rate_limit is not None:
            limit, window = self.rate_limit
            while self._generate_times and self._generate_times[0] <= now - window:
                self._generate_times.popleft()
            if len(self._generate_times) >= limit:
                # The live API drops (does not queue) these, with a real HTTP 429.
                return self._error(
                    endpoint,
                    429,
                    f"Rate limited: at most {limit} generation requests per {window:g} s",
                    http=429,
                )
        if self.credits < cost:
            return self._error(endpoint, 402, "Insufficient credits")
        self._generate_times.append(now)
        return None

    def _missing_input(self, urls: list[Any]) -> tuple[int, str] | None:
        """The failure of a task whose input is one of this server's files that is gone."""
        for url in urls:
            key = self._local_file_key(url)
            if key is not None and not self._file_exists(key):
                return 451, f"Failed to fetch the image: {url}"
        return None

    def _oversized_upload(self, urls: list[Any], max_bytes: int | None) -> str | None:
        """The 422 message for an input uploaded here that is over the model's limit."""
        if not max_bytes:
            return None
        for url in urls:
            key = self._local_file_key(url)
            with self._lock:
                upload = self._uploads.get(key) if key is not None else None
            if upload is not None and len(upload[0]) > max_bytes:
                return (f"the image {url} is {len(upload[0])} bytes; this model takes at most "
                        f"{max_bytes}")
        return None

    def _task_duration(self, script: TaskScript, body: dict[str, Any]) -> float:
        if script.duration is not None:
            return float(script.duration)
        if callable(self.duration):
            return float(self.duration(body))
        return float(self.duration)

    def _new_task(self, body: dict[str, Any], n: int, now: float) -> MockTask:
        script = self._scripts.popleft() if self._scripts else TaskScript()
        prompt = body.get("prompt") or ""
        if FAIL_MARKER in prompt and script.success_flag == 1 and script.status is None:
            script = dataclasses.replace(script, success_flag=3)
        failure = self._missing_input([*(body.get("filesUrl") or []), body.get("maskUrl")])
        task_id = script.task_id or uuid.uuid4().hex
        duration = self._task_duration(script, body)
        return MockTask(
            task_id=task_id,
            params=body,
            result_urls=(list(script.result_urls) if script.result_urls is not None
                         else self._result_urls(task_id, n, prompt=prompt, model="4o",
                                                size=str(body.get("size") or ""),
                                                edit=bool(body.get("filesUrl")))),
            created=now,
            create_ms=int(time.time() * 1000),
            duration=float(duration),
            script=script,
            null_polls=self.null_polls if script.null_polls is None else script.null_polls,
            empty_url_polls=script.empty_url_polls,
            failure=failure,
        )

    def _result_urls(self, task_id: str, n: int, *, prompt: str, model: str, size: str,
                     edit: bool) -> list[str]:
        """The ``n`` result URLs of a new task: the replay pack's recorded images where its
        prompt, model, size and edit-ness (input images given or not) match one
        (``/files/pack/…``), synthetic ones for the rest (``/files/results/…``). Called under
        the lock."""
        urls = [f"{self.url}{FILES_PREFIX}results/{task_id}_{i}.png" for i in range(n)]
        pack = self.pack
        if pack is None or not prompt:
            return urls
        for i, name in enumerate(pack.match(prompt, model, size, edit=edit)[:n]):
            key = f"pack/{task_id}_{i}{_PACK_EXTENSIONS.get(pack.image(name)[1], '.png')}"
            self._pack_results[key] = (task_id, pack, name)
            urls[i] = f"{self.url}{FILES_PREFIX}{key}"
        return urls

    def _api_record_info(self, request: MockRequest) -> Answer:
        task_id = request.query.get("taskId")
        if not task_id:
            return self._error("record-info", 422, "taskId is required")
        with self._lock:
            task = self._tasks.get(task_id)
            if not isinstance(task, MockTask):  # none, or another family's
                return self._error("record-info", 422, "record is null")
            data = task.record(time.monotonic(), self.result_key)
        return self._ok("record-info", data)

    def _api_download_url(self, request: MockRequest) -> Answer:
        body = request.json if isinstance(request.json, dict) else {}
        for name in ("taskId", "url"):
            if not isinstance(body.get(name), str) or not body[name]:
                return self._error("download-url", 422, f"{name} is required")
        with self._lock:
            task = self._tasks.get(body["taskId"])
            if not isinstance(task, MockTask):
                return self._error("download-url", 422, "record is null")
            if body["url"] not in task.result_urls:
                return self._error("download-url", 422, "url is not a result of this task")
        link = _download_link(body["url"])
        return self._ok(
            "download-url", {"downloadUrl": link} if self.download_url_form == "object" else link
        )

    def _api_common_download_url(self, request: MockRequest) -> Answer:
        body = request.json if isinstance(request.json, dict) else {}
        url = body.get("url")
        if not isinstance(url, str) or not url:
            return self._error("common-download-url", 422, "url is required")
        return self._ok("common-download-url", _download_link(url))

    def _api_credit(self, request: MockRequest) -> Answer:
        with self._lock:
            balance = self.credits
        return self._ok("credit", int(balance) if float(balance).is_integer() else balance)

    # -- uploads and files ---------------------------------------------------------------------

    def _api_file_stream_upload(self, request: MockRequest) -> Answer:
        ctype = request.headers.get("Content-Type") or ""
        try:
            fields = files.parse_multipart(ctype, request.body)
        except ValueError:
            fields = {}

        def text(name: str) -> str | None:
            return fields[name][1].decode("utf-8", "replace") if name in fields else None

        upload = fields.get("file")
        return self._store_upload(
            "file-stream-upload",
            text("uploadPath"),
            text("fileName"),
            upload[1] if upload else None,
            upload[0] if upload else None,
        )

    def _api_file_base64_upload(self, request: MockRequest) -> Answer:
        body = request.json if isinstance(request.json, dict) else {}
        data: bytes | None = None
        if _has_upload_path(body):
            raw = body.get("base64Data")
            if not isinstance(raw, str) or not raw:
                return self._error("file-base64-upload", 400, "base64Data is required")
            try:
                data = files.decode_base64(raw)
            except ValueError as exc:
                return self._error("file-base64-upload", 400, str(exc))
        return self._store_upload(
            "file-base64-upload", body.get("uploadPath"), body.get("fileName"), data, None
        )

    def _api_file_url_upload(self, request: MockRequest) -> Answer:
        body = request.json if isinstance(request.json, dict) else {}
        data: bytes | None = None
        original = None
        if _has_upload_path(body):
            url = body.get("fileUrl")
            if not isinstance(url, str) or not url:
                return self._error("file-url-upload", 400, "fileUrl is required")
            # Only this server's own files: the mock never touches the network.
            key = self._local_file_key(url)
            found = self._file_lookup(key) if key is not None else None
            if found is None:
                return self._error("file-url-upload", 400, f"could not fetch {url}")
            data, original = found[0], urlsplit(url).path
        return self._store_upload(
            "file-url-upload", body.get("uploadPath"), body.get("fileName"), data, original
        )

    def _store_upload(
        self,
        endpoint: str,
        upload_path: object,
        file_name: object,
        data: bytes | None,
        original: str | None,
    ) -> Answer:
        if not isinstance(upload_path, str) or not upload_path.strip():
            return self._error(endpoint, 400, "uploadPath is required")
        path = files.clean_upload_path(upload_path)
        if path is None:
            return self._error(endpoint, 400, f"uploadPath is invalid: {upload_path!r}")
        if not data:
            return self._error(endpoint, 400, "file is required")
        mime = sniff_mime(data)
        name = files.choose_file_name(file_name, original, mime)
        if name is None:
            return self._error(endpoint, 400, f"fileName is invalid: {file_name!r}")
        key = f"uploads/{path}/{name}"
        with self._lock:
            self._uploads[key] = (data, mime)  # the same name overwrites, like the live API
        uploaded = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        return self._ok(
            endpoint,
            {
                "fileName": name,
                "filePath": f"{path}/{name}",
                "downloadUrl": f"{self.url}{FILES_PREFIX}{quote(key)}",
                "fileSize": len(data),
                "mimeType": mime,
                "uploadedAt": uploaded.replace("+00:00", "Z"),
            },
            msg="File uploaded successfully",
        )

    def _serve_file(self, request: MockRequest) -> Answer:
        found = self._file_lookup(unquote(request.path[len(FILES_PREFIX) :]))
        if found is None:
            return self._error("file", 404, "File not found", http=404)
        return Answer(200, found[0], found[1])

    def _local_file_key(self, url: object) -> str | None:
        """The file key of a URL pointing into this server's ``/files/``, else None."""
        if not isinstance(url, str):
            return None
        try:
            split = urlsplit(url)
            port = split.port
        except ValueError:
            return None
        if (
            split.hostname not in (self.host, "127.0.0.1", "localhost")
            or port != self.port
            or not split.path.startswith(FILES_PREFIX)
        ):
            return None
        return unquote(split.path[len(FILES_PREFIX) :])

    def _result_params(self, key: str) -> tuple[str, str, str, int] | None:
        """``(seed text, size, model, variant)`` of a finished result image ``key``, else
        None."""
        match = _RESULT_RE.fullmatch(key)
        if not match:
            return None
        with self._lock:
            task = self._tasks.get(match[1])
            n = int(match[2])
            if task is None or n >= len(task.result_urls) or not task.succeeds:
                return None
            if not task.is_done(time.monotonic()):
                return None
            seed, size, model = task.render_args()
        return seed, size, model, n

    def _tool_result(self, key: str, depth: int) -> bytes | None:
        """A finished tool task's image made from its input (:mod:`.tools`), when the input
        is a file of this server; else None (the usual drawn picture). Kept for the last
        few results (a large upscale takes a while to make); a chain of tools is followed
        :data:`_TOOL_DEPTH` steps at most."""
        match = _RESULT_RE.fullmatch(key)
        with self._lock:
            made = self._tool_made.get(key)
            task = self._tasks.get(match[1]) if match else None
            params = getattr(task, "params", None)
        if made is not None:
            return made
        if not isinstance(params, dict) or depth >= _TOOL_DEPTH:
            return None
        model = str(params.get("model") or "")
        given = params.get("input")
        fields: dict[str, Any] = given if isinstance(given, dict) else {}
        source_key = self._local_file_key(input_url(model, fields))
        found = self._file_lookup(source_key, depth + 1) if source_key else None
        made = apply_tool(model, fields, found[0]) if found else None
        if made is not None:
            with self._lock:
                self._tool_made[key] = made
                while len(self._tool_made) > _TOOL_KEEP:
                    self._tool_made.pop(next(iter(self._tool_made)))
        return made

    def _pack_file(self, key: str) -> tuple[bytes, str] | None:
        """A recorded image of the replay pack, once its task has finished successfully."""
        if not _PACK_RE.fullmatch(key):
            return None
        with self._lock:
            found = self._pack_results.get(key)
            if found is None:
                return None
            task_id, pack, name = found
            task = self._tasks.get(task_id)
            if task is None or not task.succeeds or not task.is_done(time.monotonic()):
                return None
        return pack.image(name)

    def _file_exists(self, key: str) -> bool:
        with self._lock:
            if key in self._uploads:
                return True
        return self._result_params(key) is not None or self._pack_file(key) is not None

    def _file_lookup(self, key: str, depth: int = 0) -> tuple[bytes, str] | None:
        with self._lock:
            if key in self._uploads:
                return self._uploads[key]
        if key.startswith("pack/"):
            return self._pack_file(key)
        params = self._result_params(key)
        if params is None:
            return None
        made = self._tool_result(key, depth)
        if made is not None:
            return made, "image/png"
        seed, size, model, n = params
        if self.pack is not None:  # the class pack is loaded: say this one is made up
            return render_marked_png(seed, size, n, self.image_long_side,
                                     SYNTHETIC_LABEL, model), "image/png"
        return render_png(seed, size, n, self.image_long_side, model), "image/png"


#: How many tools in a chain the demo follows back to a file (an upscale of an upscale…).
_TOOL_DEPTH = 8
#: How many tool results the demo keeps made (each a few MB at most).
_TOOL_KEEP = 8


def _has_upload_path(body: dict[str, Any]) -> bool:
    path = body.get("uploadPath")
    return isinstance(path, str) and bool(path.strip())


def _validate_generate(body: dict[str, Any]) -> str | None:
    """The 422 message for an invalid generate body (naming the field), or None."""
    size = body.get("size")
    if size is None:
        return "size is required"
    if size not in SIZES:
        return f"size must be one of {', '.join(SIZES)} (got {size!r})"
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        return "prompt must be a string"
    files_url = body.get("filesUrl")
    if files_url is not None and (
        not isinstance(files_url, list) or not all(isinstance(u, str) and u for u in files_url)
    ):
        return "filesUrl must be a list of URLs"
    if not (prompt and prompt.strip()) and not files_url:
        return "prompt or filesUrl is required"
    if files_url and len(files_url) > 5:
        return f"filesUrl accepts at most 5 images (got {len(files_url)})"
    if "maskUrl" in body and body["maskUrl"] is not None and not isinstance(body["maskUrl"], str):
        return "maskUrl must be a URL"
    n = body.get("nVariants", 1)
    if isinstance(n, bool) or n not in (1, 2, 4):
        return f"nVariants must be 1, 2 or 4 (got {n!r})"
    model = body.get("fallbackModel")
    if model is not None and model not in _FALLBACK_MODELS:
        return f"fallbackModel must be GPT_IMAGE_1 or FLUX_MAX (got {model!r})"
    return None


def _download_link(url: str) -> str:
    """A direct-download form of ``url`` that expires like the API's (20 minutes)."""
    expires = int(time.time()) + _DOWNLOAD_URL_TTL
    return f"{url}{'&' if '?' in url else '?'}download=1&expires={expires}"
