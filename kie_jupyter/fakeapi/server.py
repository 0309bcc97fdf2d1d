"""``MockKieServer``: a local, threaded stand-in for KIE's 4o Image API, Market job API, Flux
Kontext API and File Upload API.

It speaks the 4o API as ``KIE_4O_API.md`` describes it, quirks included (errors with HTTP 200,
``data: null`` right after submit, progress as a string, either result-URL key), and the
Market and Kontext APIs as ``KIE_MARKET_API.md`` does (see :mod:`._market`); serves real PNGs
at the requested aspect ratio, and lets tests script faults per endpoint and outcomes per
task. Stdlib and Pillow only.

    with MockKieServer(duration=0.5) as kie:
        kie.add_fault("record-info", code=500, times=2)
        ...  # point a client at kie.url with the key "test-key"
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ._api import MockAPI
from ._http import Answer, MockHTTPServer
from ._market import MarketAPI
from ._state import (
    DEFAULT_MSGS,
    ENDPOINTS,
    FILES_PREFIX,
    ROUTES,
    Fault,
    Headers,
    MockRequest,
    TaskScript,
)
from .packs import ReplayPack, load_pack

__all__ = ["Fault", "MockKieServer", "MockRequest", "TaskScript"]

_PATHS = {path: name for (_, path), name in ROUTES.items()}


class _TaskView(dict[str, Any]):
    """A snapshot of the tasks; calling it returns itself, so ``tasks()`` works too."""

    def __call__(self) -> _TaskView:
        return self


class MockKieServer(MockAPI, MarketAPI):
    """A local KIE 4o Image API (plus the upload API and a file host) on ``127.0.0.1``.

    ``api_key=None`` accepts any non-empty Bearer key (demo mode). ``duration`` is how long a
    task runs, in seconds, or a function of the generate body. Everything is served under
    :attr:`url`; :attr:`requests` logs every request in arrival order; :attr:`credits` is the
    balance, charged ``cost_per_image`` per variant (``report_credits=True``: Market records
    say so in ``creditsConsumed``, as KIE's Market callback does). See :class:`Fault` and
    :class:`TaskScript` for scripted misbehaviour.
    """

    def __init__(
        self,
        api_key: str | None = "test-key",
        duration: float | Callable[[dict], float] = 2.0,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        result_key: str = "resultUrls",
        credits: float = 100.0,
        cost_per_image: float = 1.5,
        null_polls: int = 1,
        rate_limit: tuple[int, float] | None = (20, 10.0),
        download_url_form: str = "string",
        image_long_side: int = 512,
        error_http_status: bool = False,
        seed: int = 0,
        pack: ReplayPack | str | os.PathLike[str] | None = None,
        report_credits: bool = False,
    ) -> None:
        if result_key not in ("resultUrls", "result_urls"):
            raise ValueError("result_key must be 'resultUrls' or 'result_urls'")
        if download_url_form not in ("string", "object"):
            raise ValueError("download_url_form must be 'string' or 'object'")
        self.api_key = api_key
        self.duration = duration
        self.host = host
        self.port = port
        self.result_key = result_key
        self.credits = credits
        self.cost_per_image = cost_per_image
        #: Market records of finished tasks carry ``creditsConsumed`` (the charge; 0 on fail).
        self.report_credits = report_credits
        self.null_polls = null_polls
        self.rate_limit = rate_limit
        self.download_url_form = download_url_form
        self.image_long_side = image_long_side
        self.error_http_status = error_http_status
        self.url = ""
        self.requests: list[MockRequest] = []
        # One lock for all shared state; never held while sleeping, rendering or sending.
        self._lock = threading.RLock()
        self._faults: dict[str, deque[Fault]] = {}
        self._random_faults: dict[str, tuple[float, Fault]] = {}
        self._rng = random.Random(seed)
        self._scripts: deque[TaskScript] = deque()
        # 4o tasks (MockTask), Market and Kontext tasks (MarketTask, KontextTask).
        self._tasks: dict[str, Any] = {}
        self._last_job_ms = 0
        self._uploads: dict[str, tuple[bytes, str]] = {}
        self._generate_times: deque[float] = deque()
        self.pack: ReplayPack | None = None
        self._pack_results: dict[str, tuple[str, ReplayPack, str]] = {}
        #: Tool results made from their input image (fakeapi.tools), the last few.
        self._tool_made: dict[str, bytes] = {}
        if pack is not None:
            self.load_pack(pack)
        self._httpd: MockHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> MockKieServer:
        """Bind and serve in a background thread; a no-op if already running."""
        with self._lock:
            if self._httpd is not None:
                return self
            httpd = MockHTTPServer((self.host, self.port), self)
            self.port = httpd.server_address[1]
            self.url = f"http://{self.host}:{self.port}"
            self._httpd = httpd
            # A short poll interval keeps stop() prompt.
            self._thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"MockKieServer:{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and open connections; a no-op if not running."""
        with self._lock:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()  # idle keep-alive connections would otherwise linger
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> MockKieServer:  # noqa: PYI034 - Self needs 3.11
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.url or "not started"
        return f"<MockKieServer {state} tasks={len(self._tasks)} credits={self.credits:g}>"

    # -- scripting and inspection --------------------------------------------------------------

    def add_fault(self, endpoint: str, fault: Fault | None = None, /, **kwargs: Any) -> None:
        """Queue a fault for ``endpoint``; ``kwargs`` build a :class:`Fault` (or amend one)."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {sorted(ENDPOINTS)}")
        fault = dataclasses.replace(fault, **kwargs) if fault else Fault(**kwargs)
        if fault.times < 1:
            raise ValueError("Fault.times must be at least 1")
        with self._lock:
            self._faults.setdefault(endpoint, deque()).append(fault)

    def load_pack(self, pack: ReplayPack | str | os.PathLike[str] | None) -> ReplayPack | None:
        """Answer prompts recorded in a replay pack with its images from now on (a path is
        read first: :class:`~kie_jupyter.fakeapi.packs.PackError` if it is not a pack);
        ``None`` goes back to synthetic pictures only. Tasks made before keep their images.
        """
        loaded = pack if isinstance(pack, ReplayPack) or pack is None else load_pack(pack)
        with self._lock:
            self.pack = loaded
        return loaded

    def script_next_task(self, script: TaskScript | None = None, /, **kwargs: Any) -> None:
        """The next created task follows ``script`` (scripts queue up, one per task)."""
        script = dataclasses.replace(script, **kwargs) if script else TaskScript(**kwargs)
        with self._lock:
            self._scripts.append(script)

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        """A snapshot of every task's state, by task id (reading it counts as no query)."""
        now = time.monotonic()
        with self._lock:
            return _TaskView({tid: t.snapshot(now) for tid, t in self._tasks.items()})

    def requests_to(self, endpoint: str) -> list[MockRequest]:
        """The logged requests to ``endpoint``, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.endpoint == endpoint]

    def reset(self) -> None:
        """Forget queued faults and scripts and clear the request log (tasks stay)."""
        with self._lock:
            self._faults.clear()
            self._random_faults.clear()
            self._scripts.clear()
            self.requests.clear()

    # -- called by the HTTP handler ------------------------------------------------------------

    def _record(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> MockRequest:
        split = urlsplit(target)
        path = split.path
        if path.startswith(FILES_PREFIX):
            endpoint = "file"
        else:
            endpoint = _PATHS.get(path, "unknown")
        payload = None
        ctype = headers.get("Content-Type") or ""
        if body and not ctype.startswith("multipart/"):
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        request = MockRequest(
            method, path, endpoint, query, Headers(headers.items()), payload, body, time.monotonic()
        )
        with self._lock:
            self.requests.append(request)
        return request

    def add_random_fault(self, endpoint: str, probability: float, fault: Fault | None = None,
                         /, **kwargs: Any) -> None:
        """Make ``endpoint`` misbehave at random with ``probability`` (seeded: reproducible).

        Used by soak tests; queued faults (:meth:`add_fault`) take precedence.
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        fault = dataclasses.replace(fault, **kwargs) if fault else Fault(**kwargs)
        with self._lock:
            self._random_faults[endpoint] = (probability, fault)

    def _take_fault(self, endpoint: str, path: str = "") -> Fault | None:
        with self._lock:
            queue = self._faults.get(endpoint) or deque()
            # The first queued fault that applies to this path (``match``) is used.
            fault = next((f for f in queue if f.match is None or f.match in path), None)
            if fault is None:
                chance = self._random_faults.get(endpoint)
                if chance is not None and self._rng.random() < chance[0]:
                    return dataclasses.replace(chance[1])
                return None
            fault.times -= 1
            if fault.times <= 0:
                queue.remove(fault)
            return fault

    def _respond(self, request: MockRequest, fault: Fault | None) -> Answer | None:
        """The answer to ``request`` under ``fault``; None means: drop the connection."""
        if fault is None:
            return self._process(request)
        real = self._process(request) if fault.after_processing else None
        if fault.delay > 0:
            time.sleep(fault.delay)
        if fault.drop:
            return None
        if fault.body is not None:
            answer = Answer(fault.http_status, fault.body)
        elif fault.malformed:
            # Looks like JSON, is not: a proxy cut the body or a gateway answered for the API.
            answer = Answer(fault.http_status, b'{"code": 200, "msg": "success", "data": {"ta')
        elif fault.is_error:
            code = fault.code if fault.code is not None else fault.http_status
            http = fault.http_status
            if http == 200 and self.error_http_status and code != 200:
                http = code  # follow the server's error mode unless the status is explicit
            answer = self._envelope(
                request.endpoint, code, fault.msg or DEFAULT_MSGS.get(code, "Error"), http=http
            )
        else:
            answer = real if real is not None else self._process(request)
        if fault.content_type is not None:
            answer.content_type = fault.content_type
        if fault.retry_after is not None:
            answer.headers["Retry-After"] = f"{fault.retry_after:g}"
        if fault.oversize > 0:
            answer.body += b"\0" * fault.oversize
        return answer
