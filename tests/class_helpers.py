"""Shared fixtures and helpers: the class proxy on uvicorn, in front of the fake KIE server
(which accepts only the teacher's key)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from kie_jupyter.classroom.fairshare import FairShare
from kie_jupyter.classroom.forward import ClassProxy
from kie_jupyter.classroom.ledger import Ledger
from kie_jupyter.classroom.serve import ProxyThread
from kie_jupyter.testing import MockKieServer

#: The teacher's KIE key: the fake server accepts only it, and no student may ever see it.
TEACHER_KEY = "kie-TEACHER-key-7f3a9c2e5b1d4f60"


@pytest.fixture()
def kie() -> Iterator[MockKieServer]:
    with MockKieServer(api_key=TEACHER_KEY, duration=0.3) as server:
        yield server


@pytest.fixture()
def ledger(tmp_path) -> Iterator[Ledger]:
    book = Ledger(tmp_path / "class.db")
    yield book
    book.close()


@pytest.fixture()
def make_proxy(kie, ledger) -> Iterator[Callable[..., ProxyThread]]:
    running: list[ProxyThread] = []

    def make(*, book: Ledger | None = None, **kwargs: Any) -> ProxyThread:
        prefix = kwargs.pop("prefix", "")
        kwargs.setdefault("fair", FairShare(20, 10.0))
        proxy = ClassProxy(ledger=book or ledger, api_key=TEACHER_KEY, upstream=kie.url,
                           upload_upstream=kie.url, **kwargs)
        thread = ProxyThread(proxy, prefix=prefix).start()
        running.append(thread)
        return thread

    yield make
    for thread in running:
        thread.stop()


@pytest.fixture()
def proxy(make_proxy) -> ProxyThread:
    return make_proxy()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def submit(url: str, token: str, prompt: str = "a fox", **body: Any) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/gpt4o-image/generate", headers=bearer(token),
                      json={"prompt": prompt, "size": "1:1", **body}, timeout=30)


def record(url: str, token: str, task_id: str) -> httpx.Response:
    return httpx.get(f"{url}/api/v1/gpt4o-image/record-info", params={"taskId": task_id},
                     headers=bearer(token), timeout=30)


def wait_done(url: str, token: str, task_id: str, timeout: float = 15.0) -> dict[str, Any]:
    """Poll record-info through the proxy until the task ends; the last record."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = record(url, token, task_id).json().get("data") or {}
        if data.get("successFlag") in (1, 2, 3):
            return data
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} did not finish")


#: The stand-in hub's tokens: a student's server token, and a service's token.
HUB_TOKENS = {"hub-token-ada": {"kind": "user", "name": "ada"},
              "hub-token-svc": {"kind": "service", "name": "grader"}}


@pytest.fixture()
def hub():
    """A stand-in for JupyterHub's REST API: ``GET /hub/api/user`` with ``token`` auth."""
    calls: list[str] = []

    class Hub(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            calls.append(self.path)
            model = HUB_TOKENS.get(token) if scheme == "token" else None
            if self.path != "/hub/api/user" or model is None:
                self.send_response(403)
                self.end_headers()
                self.wfile.write(b'{"status": 403, "message": "Forbidden"}')
                return
            body = json.dumps({**model, "groups": [], "admin": False}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.calls = calls
    server.api_url = f"http://127.0.0.1:{server.server_address[1]}/hub/api"
    yield server
    server.shutdown()
    server.server_close()
