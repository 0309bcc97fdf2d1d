"""The Market and Flux Kontext backends against the fake server, through the engine."""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from kie_jupyter.api.client import KieClient
from kie_jupyter.api.errors import (
    KieAPIError,
    KieError,
    MalformedResponseError,
    SubmissionCancelled,
    TaskNotFoundError,
    ValidationError,
)
from kie_jupyter.api.kontext import KontextBackend, KontextRecord
from kie_jupyter.api.market import MarketBackend, MarketRecord
from kie_jupyter.api.models import TaskStatus
from kie_jupyter.api.ratelimit import SlidingWindowLimiter
from kie_jupyter.api.registry import MARKET_NAMES, backend_for_task_id, build_request
from kie_jupyter.api.retry import RetryPolicy
from kie_jupyter.engine.inputs import PENDING_UPLOAD, resolve_images
from kie_jupyter.engine.poller import PollSchedule
from kie_jupyter.engine.task import Task
from kie_jupyter.fakeapi.images import render_png
from kie_jupyter.testing import Fault, MockKieServer

KEY = "sk-market-test-key-1234"
AUTH = {"Authorization": f"Bearer {KEY}"}
FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.04)
QUICK = PollSchedule(min_interval=0.02, first=0.02, unknown=0.05, max_interval=0.1)
CREATE = "/api/v1/jobs/createTask"
RECORD = "/api/v1/jobs/recordInfo"
KONTEXT = "/api/v1/flux/kontext/generate"
KONTEXT_RECORD = "/api/v1/flux/kontext/record-info"


@pytest.fixture(autouse=True)
def _no_kie_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KIE_API_KEY", "KIE_BASE_URL", "KIE_UPLOAD_URL", "KIE_DEMO"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def kie(kie_mock_factory: Callable[..., MockKieServer]) -> MockKieServer:
    return kie_mock_factory(api_key=KEY, duration=0.3, null_polls=0, rate_limit=None)


@pytest.fixture
def client(kie: MockKieServer) -> Iterator[KieClient]:
    client = KieClient(KEY, base_url=kie.url, upload_url=kie.url, retry=FAST,
                       limiter=SlidingWindowLimiter(1000, 10.0), read_timeout=5.0)
    yield client
    client.close()


class Recording(MarketBackend):
    """The Market backend, noting each state it saw."""

    def __init__(self, client: KieClient) -> None:
        super().__init__(client, names=MARKET_NAMES)
        self.states: list[str] = []

    def poll(self, task_id: str) -> MarketRecord | None:
        record = super().poll(task_id)
        if record is not None and (not self.states or self.states[-1] != record.state):
            self.states.append(record.state)
        return record


def run(request: Any, client: KieClient, backend: Any, **options: Any) -> Task:
    options.setdefault("timeout", 10.0)
    task = Task(request, client=client, backend=backend, schedule=QUICK, **options)
    return task.wait(15)


def ratio_of(png: bytes) -> float:
    with Image.open(io.BytesIO(png)) as im:
        return im.width / im.height


# -- through the engine ------------------------------------------------------------------------


def test_a_market_task_goes_through_its_states_to_success(
        kie_mock_factory: Callable[..., MockKieServer]) -> None:
    kie = kie_mock_factory(api_key=KEY, duration=1.0, null_polls=0, rate_limit=None)
    client = KieClient(KEY, base_url=kie.url, upload_url=kie.url, retry=FAST,
                       limiter=SlidingWindowLimiter(1000, 10.0))
    backend = Recording(client)
    task = run(build_request("seedream-4.5", prompt="a red fox", size="16:9"), client, backend)
    assert task.status is TaskStatus.SUCCESS, task.error
    assert backend.states == ["waiting", "queuing", "generating", "success"]
    assert task.task_id is not None and re.fullmatch(r"task_seedream_\d+", task.task_id)
    assert task.model == "seedream-4.5"
    assert task.params["size"] == "16:9" and task.params["api_model"] == (
        "seedream/4.5-text-to-image")
    assert len(task.images) == 1 and ratio_of(task.images[0]) == pytest.approx(16 / 9, 0.01)
    [create] = kie.requests_to("createTask")
    assert create.json == {"model": "seedream/4.5-text-to-image",
                           "input": {"prompt": "a red fox", "aspect_ratio": "16:9",
                                     "quality": "basic"}}
    client.close()


def test_a_market_task_fails_with_its_fail_code_and_message(
        client: KieClient, kie: MockKieServer) -> None:
    backend = Recording(client)
    task = run(build_request("nano-banana-pro", prompt="a fox [mock:fail]"), client, backend)
    assert task.status is TaskStatus.FAILED
    assert backend.states[-1] == "fail"
    assert task.error is not None and task.error.code == 400
    assert "flagged" in task.error.message
    with pytest.raises(KieError, match="flagged"):
        task.images  # noqa: B018


def test_a_scripted_failure_keeps_the_api_s_words(client: KieClient, kie: MockKieServer) -> None:
    kie.script_next_task(success_flag=3, error_code=501, error_message="upstream timed out")
    task = run(build_request("gpt-image-1.5", prompt="x"), client, MarketBackend(client))
    assert task.status is TaskStatus.FAILED
    assert task.error is not None and (task.error.code, task.error.message) == (
        501, "upstream timed out")


def test_a_local_file_is_uploaded_before_the_task_is_created(
        client: KieClient, kie: MockKieServer, tmp_path: Path) -> None:
    path = tmp_path / "cat.png"
    path.write_bytes(render_png("a cat", "1:1", 0, 64))
    inputs = resolve_images([str(path)])
    request = build_request("seedream-4.5", prompt="make it blue",
                            images=[i.url or PENDING_UPLOAD for i in inputs])
    task = run(request, client, MarketBackend(client, names=MARKET_NAMES), inputs=inputs)
    assert task.status is TaskStatus.SUCCESS, task.error
    endpoints = [r.endpoint for r in kie.requests if r.endpoint != "recordInfo"]
    assert endpoints[:2] == ["file-stream-upload", "createTask"]
    [create] = kie.requests_to("createTask")
    [url] = create.json["input"]["image_urls"]
    assert url.startswith(f"{kie.url}/files/uploads/") and url != PENDING_UPLOAD
    assert create.json["model"] == "seedream/4.5-edit"
    assert task.params["files"] == [url]


def test_a_missing_input_image_fails_the_task(client: KieClient, kie: MockKieServer) -> None:
    request = build_request("gpt-image-1.5", prompt="x",
                            images=[f"{kie.url}/files/uploads/kie-jupyter/gone.png"])
    task = run(request, client, MarketBackend(client))
    assert task.status is TaskStatus.FAILED and task.error is not None
    assert task.error.code == 451


def test_a_kontext_task_runs_and_fails_like_the_others(
        client: KieClient, kie: MockKieServer) -> None:
    task = run(build_request("flux-kontext-max", prompt="a lighthouse", size="9:16"),
               client, KontextBackend(client))
    assert task.status is TaskStatus.SUCCESS, task.error
    assert ratio_of(task.images[0]) == pytest.approx(9 / 16, 0.01)
    assert task.model == "flux-kontext-max" and task.params["size"] == "9:16"
    failed = run(build_request("flux-kontext-pro", prompt="[mock:fail]"), client,
                 KontextBackend(client))
    assert failed.status is TaskStatus.FAILED and failed.error is not None
    assert failed.error.code == 400


def test_a_market_task_is_resumed_by_its_id(client: KieClient, kie: MockKieServer) -> None:
    task_id = MarketBackend(client).submit(
        build_request("qwen-image", prompt="a bowl of ramen", size="4:3"))
    backend = backend_for_task_id(task_id, client)
    task = Task.resumed(task_id, client=client, backend=backend, schedule=QUICK,
                        timeout=10).wait(15)
    assert task.status is TaskStatus.SUCCESS, task.error
    assert task.params["model"] == "qwen-image"
    assert task.params["prompt"] == "a bowl of ramen" and task.params["size"] == "4:3"
    assert ratio_of(task.images[0]) == pytest.approx(4 / 3, 0.01)


# -- faults --------------------------------------------------------------------------------------


def _record_body(state: str, result: str = "", **data: Any) -> bytes:
    return json.dumps({"code": 200, "message": "success", "data": {
        "state": state, "param": "{}", "resultJson": result, "failCode": "", "failMsg": "",
        **data}}).encode()


def test_malformed_result_json_is_retried(client: KieClient, kie: MockKieServer) -> None:
    kie.add_fault("recordInfo", body=_record_body("success", "{not json"), times=2)
    task = run(build_request("gpt-image-1.5", prompt="x"), client, MarketBackend(client))
    assert task.status is TaskStatus.SUCCESS, task.error
    assert len(kie.requests_to("recordInfo")) >= 3


def test_malformed_result_json_that_persists_times_out_resumably(
        client: KieClient, kie: MockKieServer) -> None:
    kie.add_fault("recordInfo", body=_record_body("success", "{not json"), times=1000)
    task = run(build_request("gpt-image-1.5", prompt="x"), client, MarketBackend(client),
               timeout=1.0)
    assert task.status is TaskStatus.TIMED_OUT
    assert task.error is not None and "resultJson is not JSON" in task.error.message
    assert task.error.fix == "resume"


def test_an_unknown_state_is_still_running(client: KieClient, kie: MockKieServer) -> None:
    kie.add_fault("recordInfo", body=_record_body("rendering"), times=3)
    backend = Recording(client)
    task = run(build_request("nano-banana-2", prompt="x"), client, backend)
    assert task.status is TaskStatus.SUCCESS, task.error
    assert backend.states[0] == "rendering" and backend.states[-1] == "success"
    record = MarketRecord.from_api({"state": "rendering"}, "t")
    assert not record.finished and record.progress == 0 and record.state == "rendering"


def test_server_errors_on_record_info_are_retried(client: KieClient, kie: MockKieServer) -> None:
    kie.add_fault("recordInfo", code=500, http_status=500, times=2)
    task = run(build_request("gpt-image-1.5", prompt="x"), client, MarketBackend(client))
    assert task.status is TaskStatus.SUCCESS, task.error
    assert len(kie.requests_to("recordInfo")) >= 3


@pytest.mark.parametrize("fault", [{"http_status": 429, "code": 429}, {"code": 429},
                                   {"http_status": 429, "code": 429, "retry_after": 0.05}])
def test_429_on_create_task_is_retried_and_creates_one_task(
        client: KieClient, kie: MockKieServer, fault: dict[str, Any]) -> None:
    kie.add_fault("createTask", **fault)
    task = run(build_request("seedream-4.5", prompt="x"), client, MarketBackend(client))
    assert task.status is TaskStatus.SUCCESS, task.error
    assert len(kie.requests_to("createTask")) == 2
    assert list(kie.tasks) == [task.task_id]


def test_create_task_is_never_resent_once_it_may_have_arrived(
        client: KieClient, kie: MockKieServer) -> None:
    kie.add_fault("createTask", code=500, http_status=500, after_processing=True)
    with pytest.raises(KieAPIError):
        MarketBackend(client).submit(build_request("seedream-4.5", prompt="x"))
    assert len(kie.requests_to("createTask")) == 1
    assert len(kie.tasks) == 1  # charged on the server: the client must not send it again


def test_submissions_wait_for_the_shared_limiter_and_can_be_cancelled(kie: MockKieServer) -> None:
    limiter = SlidingWindowLimiter(1, 60.0)
    client = KieClient(KEY, base_url=kie.url, upload_url=kie.url, retry=FAST, limiter=limiter)
    MarketBackend(client).submit(build_request("gpt-image-1.5", prompt="one"))
    stop = threading.Event()
    stop.set()
    with pytest.raises(SubmissionCancelled):
        KontextBackend(client).submit(build_request("flux-kontext-pro", prompt="two"),
                                      stop=stop)
    assert len(kie.requests_to("createTask")) == 1 and not kie.requests_to("kontext-generate")
    client.close()


def test_unknown_ids_are_task_not_found_and_message_is_read(
        client: KieClient, kie: MockKieServer) -> None:
    with pytest.raises(TaskNotFoundError) as info:
        MarketBackend(client).poll("task_gpt-image_1")
    assert info.value.msg == "recordInfo is null"  # read from ``message``
    with pytest.raises(TaskNotFoundError):
        KontextBackend(client).poll("0" * 32)
    with pytest.raises(ValidationError, match="input.aspect_ratio must be one of"):
        client.call("POST", CREATE, "createTask", kind="submit", json={
            "model": "gpt-image/1.5-text-to-image",
            "input": {"prompt": "x", "aspect_ratio": "16:9", "quality": "medium"}})


def test_records_parse_tolerantly() -> None:
    record = MarketRecord.from_api({
        "taskId": "task_x_1", "state": "success", "param": "{broken",
        "resultJson": {"resultUrls": "https://a.example/1.png"}, "failCode": None})
    assert record.succeeded and record.urls == ("https://a.example/1.png",)
    assert record.params is None and record.error_code is None
    with pytest.raises(MalformedResponseError):
        MarketRecord.from_api({"state": "success", "resultJson": "[1, 2]"})
    failed = MarketRecord.from_api({"state": "fail", "failCode": "E_NSFW", "failMsg": ""})
    assert failed.failed and failed.error_code is None
    assert failed.failure_reason() == "the task ended with state fail (failCode E_NSFW)"
    flagged = KontextRecord.from_api({"successFlag": 3, "errorCode": 400})
    assert flagged.failed and flagged.state == "generate failed"
    assert "flagged" in flagged.failure_reason()


# -- the fake server against KIE's documented examples ----------------------------------------


def test_create_task_and_record_info_match_the_documented_examples(kie: MockKieServer) -> None:
    doc_body = {"model": "gpt-image/1.5-text-to-image",
                "callBackUrl": "https://your-domain.com/api/callback",
                "input": {"prompt": "a lighthouse", "aspect_ratio": "1:1", "quality": "medium"}}
    answer = requests.post(kie.url + CREATE, json=doc_body, headers=AUTH, timeout=5).json()
    assert set(answer) == {"code", "msg", "data"}
    assert (answer["code"], answer["msg"]) == (200, "success")
    task_id = answer["data"]["taskId"]
    assert re.fullmatch(r"task_gpt-image_\d{13}", task_id)
    envelope = requests.get(kie.url + RECORD, params={"taskId": task_id}, headers=AUTH,
                            timeout=5).json()
    assert set(envelope) == {"code", "message", "data"}  # ``message``, not ``msg``
    data = envelope["data"]
    documented = {"taskId", "model", "state", "param", "resultJson", "failCode", "failMsg",
                  "completeTime", "createTime", "updateTime"}
    assert documented <= set(data)
    assert data["state"] in ("waiting", "queuing", "generating")
    assert isinstance(data["param"], str) and json.loads(data["param"]) == doc_body
    assert data["model"] == "gpt-image/1.5-text-to-image"
    kie.script_next_task(duration=0)
    done_id = requests.post(kie.url + CREATE, json=doc_body, headers=AUTH,
                            timeout=5).json()["data"]["taskId"]
    done = requests.get(kie.url + RECORD, params={"taskId": done_id}, headers=AUTH,
                        timeout=5).json()["data"]
    assert done["state"] == "success" and (done["failCode"], done["failMsg"]) == ("", "")
    assert isinstance(done["resultJson"], str)
    [url] = json.loads(done["resultJson"])["resultUrls"]
    assert isinstance(done["completeTime"], int) and isinstance(done["createTime"], int)
    image = requests.get(url, timeout=5)
    assert image.status_code == 200 and ratio_of(image.content) == 1.0


def test_a_failed_job_reports_fail_code_and_message(kie: MockKieServer) -> None:
    kie.script_next_task(duration=0)
    body = {"model": "nano-banana-pro", "input": {"prompt": "[mock:fail] a cat"}}
    task_id = requests.post(kie.url + CREATE, json=body, headers=AUTH,
                            timeout=5).json()["data"]["taskId"]
    data = requests.get(kie.url + RECORD, params={"taskId": task_id}, headers=AUTH,
                        timeout=5).json()["data"]
    assert data["state"] == "fail" and data["resultJson"] == ""
    assert data["failCode"] == "400" and data["failMsg"]


def test_record_info_errors_match_the_documented_examples(kie: MockKieServer) -> None:
    missing = requests.get(kie.url + RECORD, headers=AUTH, timeout=5).json()
    assert (missing["code"], missing["message"]) == (400, "taskId parameter is required")
    unknown = requests.get(kie.url + RECORD, params={"taskId": "task_x_1"}, headers=AUTH,
                           timeout=5).json()
    assert unknown == {"code": 422, "message": "recordInfo is null", "data": None}


@pytest.mark.parametrize(("body", "field"), [
    ({"model": "gpt-image/1.5-text-to-image",
      "input": {"prompt": "x", "aspect_ratio": "16:9", "quality": "medium"}}, "aspect_ratio"),
    ({"model": "seedream/4.5-text-to-image", "input": {"prompt": "x", "aspect_ratio": "1:1"}},
     "quality"),
    ({"model": "seedream/4.5-edit", "input": {"prompt": "x", "aspect_ratio": "1:1",
                                              "quality": "basic", "image_urls": []}},
     "image_urls"),
    ({"model": "nano-banana-pro", "input": {"prompt": "x" * 10001}}, "prompt"),
    ({"model": "nano-banana-pro", "input": {"prompt": "x", "image_input": ["u"] * 9}},
     "image_input"),
    ({"model": "qwen/image-edit", "input": {"prompt": "x", "image_url": ["https://a.b/c"]}},
     "image_url"),
    ({"model": "grok-imagine/upscale", "input": {"task_id": "x"}}, "model"),
])
def test_the_fake_server_refuses_bad_inputs_naming_the_field(
        kie: MockKieServer, body: dict[str, Any], field: str) -> None:
    answer = requests.post(kie.url + CREATE, json=body, headers=AUTH, timeout=5).json()
    assert answer["code"] == 422 and field in answer["msg"], answer
    assert kie.tasks == {}


def test_kontext_matches_the_documented_example(kie: MockKieServer) -> None:
    doc_body = {"prompt": "A serene mountain landscape at sunset with a lake reflecting the "
                          "orange sky", "enableTranslation": True, "aspectRatio": "16:9",
                "outputFormat": "jpeg", "promptUpsampling": False, "model": "flux-kontext-pro"}
    kie.script_next_task(duration=0)
    answer = requests.post(kie.url + KONTEXT, json=doc_body, headers=AUTH, timeout=5).json()
    assert (answer["code"], answer["msg"]) == (200, "success")
    envelope = requests.get(kie.url + KONTEXT_RECORD, params={"taskId": answer["data"]["taskId"]},
                            headers=AUTH, timeout=5).json()
    assert set(envelope) == {"code", "msg", "data"}
    data = envelope["data"]
    assert set(data) == {"taskId", "paramJson", "completeTime", "createTime", "response",
                         "successFlag", "errorCode", "errorMessage"}
    assert data["successFlag"] == 1 and json.loads(data["paramJson"]) == doc_body
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", data["createTime"])
    image = requests.get(data["response"]["resultImageUrl"], timeout=5)
    assert ratio_of(image.content) == pytest.approx(16 / 9, 0.01)
    bad = requests.post(kie.url + KONTEXT, json={**doc_body, "aspectRatio": "2:3"},
                        headers=AUTH, timeout=5).json()
    assert bad["code"] == 422 and "aspectRatio" in bad["msg"]
