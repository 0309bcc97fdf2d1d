"""The engine drives a task through the Backend protocol alone (a scripted family here)."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

import kie_jupyter
from kie_jupyter import KieClient, Task, TaskStatus
from kie_jupyter.api.fouro import FourOBackend
from kie_jupyter.engine.poller import PollSchedule


@dataclass
class Snap:
    state: str
    progress: float = 0.0
    urls: tuple[str, ...] = ()
    params: dict[str, Any] | None = None
    error_code: int | None = None
    reason: str = ""

    @property
    def finished(self) -> bool:
        return self.state in ("success", "fail")

    @property
    def succeeded(self) -> bool:
        return self.state == "success"

    @property
    def failed(self) -> bool:
        return self.state == "fail"

    def failure_reason(self) -> str:
        return self.reason


@dataclass
class ScriptedBackend:
    """A family with no progress field, answering polls from a script."""

    script: list[Snap | None]
    family: str = "scripted"
    reports_progress: bool = True
    sent: list[Any] = field(default_factory=list)
    polls: int = 0

    def submit(self, request: Any, *, stop: threading.Event | None = None,
               on_wait: Any = None) -> str:
        self.sent.append(request)
        return "job_scripted_1"

    def poll(self, task_id: str) -> Snap | None:
        assert task_id == "job_scripted_1"
        self.polls += 1
        return self.script[min(self.polls - 1, len(self.script) - 1)]

    def params_of(self, snapshot: Any) -> dict[str, Any]:
        return {"prompt": snapshot.params["input"]["prompt"], "size": "16:9"}

    def download_url(self, task_id: str, url: str) -> str:
        return url + "?direct"


class Req:
    """A request of the scripted family: all the engine asks of it is its parameters."""

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": "x"}


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 9), "teal").save(out, format="PNG")
    return out.getvalue()


def _client(monkeypatch) -> KieClient:
    client = KieClient("sk-seam-test-key", base_url="http://127.0.0.1:9",
                       upload_url="http://127.0.0.1:9")

    def no_4o(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("the engine called the 4o client past its backend")

    monkeypatch.setattr(client, "generate", no_4o)
    monkeypatch.setattr(client, "record_info", no_4o)
    # The 4o endpoints (api/fouro.py) go through call, as every family's do.
    monkeypatch.setattr(client, "call", no_4o)
    monkeypatch.setattr(client, "fetch_image", lambda url: _png())
    return client


def test_a_new_family_needs_only_a_backend(monkeypatch, tmp_path):
    echo = {"model": "scripted/t2i", "input": {"prompt": "a teal box"}}
    backend = ScriptedBackend([
        None,                                   # no record yet
        Snap("waiting", params=echo),           # no progress field
        Snap("generating", params=echo),
        Snap("success", urls=("https://img.example/a.png",), params=echo),
    ])
    task = Task.resumed("job_scripted_1", client=_client(monkeypatch), backend=backend,
                        schedule=PollSchedule(min_interval=0.01), timeout=10)
    task.wait(10)
    assert task.status is TaskStatus.SUCCESS, task.error
    assert task.images == [_png()]
    assert task.params == {"prompt": "a teal box", "size": "16:9"}  # learnt from the echo
    assert task.download_url(0) == "https://img.example/a.png?direct"
    saved = task[0].save(tmp_path / "a.png")
    assert kie_jupyter.provenance(saved)["task_id"] == "job_scripted_1"


def test_a_failed_job_keeps_the_family_s_reason(monkeypatch):
    backend = ScriptedBackend([Snap("fail", error_code=501, reason="the model refused")])
    task = Task(Req(), client=_client(monkeypatch), backend=backend,
                schedule=PollSchedule(min_interval=0.01), timeout=10)
    task.wait(10)
    assert backend.sent and task.task_id == "job_scripted_1"
    assert task.status is TaskStatus.FAILED
    assert task.error is not None and task.error.code == 501
    assert "the model refused" in task.error.message


def test_the_4o_api_is_the_default_backend():
    client = KieClient("sk-seam-test-key", base_url="http://127.0.0.1:9")
    task = Task(None, client=client, task_id="abc")
    assert isinstance(task.backend, FourOBackend) and task.backend.family == "4o"
