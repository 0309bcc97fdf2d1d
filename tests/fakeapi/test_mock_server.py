"""The mock server's own contract, exercised with plain ``requests`` (not the project's client)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from PIL import Image

from kie_jupyter.fakeapi.images import render_png, sniff_mime
from kie_jupyter.testing import Fault, MockKieServer, MockRequest, TaskScript

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
GENERATE = "/api/v1/gpt4o-image/generate"
RECORD = "/api/v1/gpt4o-image/record-info"
DOWNLOAD = "/api/v1/gpt4o-image/download-url"
CREDIT = "/api/v1/chat/credit"
COMMON_DOWNLOAD = "/api/v1/common/download-url"
STREAM_UPLOAD = "/api/file-stream-upload"
BASE64_UPLOAD = "/api/file-base64-upload"
URL_UPLOAD = "/api/file-url-upload"
TIMEOUT = 5

Factory = Callable[..., MockKieServer]


@pytest.fixture
def make(kie_mock_factory: Factory) -> Factory:
    """Servers with fast tasks and no initial ``data: null`` unless a test asks."""

    def make_server(**kwargs: Any) -> MockKieServer:
        kwargs.setdefault("duration", 0.1)
        kwargs.setdefault("null_polls", 0)
        return kie_mock_factory(**kwargs)

    return make_server


@pytest.fixture
def server(make: Factory) -> MockKieServer:
    return make()


def post(server: MockKieServer, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("headers", AUTH)
    kwargs.setdefault("timeout", TIMEOUT)
    return requests.post(server.url + path, json=body, **kwargs)


def get(server: MockKieServer, path: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("headers", AUTH)
    kwargs.setdefault("timeout", TIMEOUT)
    return requests.get(server.url + path, **kwargs)


def generate(server: MockKieServer, prompt: str = "a red fox", **body: Any) -> str:
    r = post(server, GENERATE, {"prompt": prompt, "size": "1:1", **body})
    envelope = r.json()
    assert r.status_code == 200 and envelope["code"] == 200, envelope
    return envelope["data"]["taskId"]


def record(server: MockKieServer, task_id: str) -> dict[str, Any] | None:
    envelope = get(server, RECORD, params={"taskId": task_id}).json()
    assert envelope["code"] == 200, envelope
    return envelope["data"]


def wait_done(server: MockKieServer, task_id: str, limit: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        data = record(server, task_id)
        if data is not None and data["status"] != "GENERATING":
            return data
        time.sleep(0.03)
    raise AssertionError(f"task {task_id} did not finish")


def png_info(data: bytes) -> tuple[int, int]:
    """(width, height) of an 8-bit RGB PNG, after checking every pixel decodes."""
    with Image.open(io.BytesIO(data)) as im:
        assert (im.format, im.mode) == ("PNG", "RGB")
        im.load()  # raises on a bad CRC or a short IDAT
        return im.size


# -- auth, routing --------------------------------------------------------------------------


def test_auth_missing_or_wrong_key_is_401_with_http_200(server: MockKieServer) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": KEY}):
        r = get(server, CREDIT, headers=headers)
        assert r.status_code == 200
        assert r.json() == {"code": 401, "msg": "You do not have access permissions", "data": None}


def test_demo_mode_accepts_any_non_empty_key(make: Factory) -> None:
    server = make(api_key=None)
    assert get(server, CREDIT, headers={"Authorization": "Bearer anything"}).json()["code"] == 200
    assert get(server, CREDIT, headers={}).json()["code"] == 401
    assert get(server, CREDIT, headers={"Authorization": "Bearer "}).json()["code"] == 401


def test_error_http_status_mode_mirrors_the_code(make: Factory) -> None:
    server = make(error_http_status=True)
    r = get(server, CREDIT, headers={})
    assert r.status_code == 401 and r.json()["code"] == 401
    server.add_fault("credit", code=455)
    r = get(server, CREDIT)
    assert r.status_code == 455 and r.json()["code"] == 455


def test_unknown_path_is_404_envelope(server: MockKieServer) -> None:
    r = get(server, "/api/v1/nope")
    assert r.status_code == 404 and r.json()["code"] == 404
    assert server.requests[-1].endpoint == "unknown"


# -- generate and record-info ---------------------------------------------------------------


def test_generate_then_poll_to_success(make: Factory) -> None:
    server = make(duration=0.4, null_polls=2)
    body = {"prompt": "a lighthouse at dusk", "size": "3:2", "nVariants": 4}
    task_id = post(server, GENERATE, body).json()["data"]["taskId"]
    assert re.fullmatch(r"[0-9a-f]{32}", task_id)
    assert server.credits == pytest.approx(100 - 4 * 1.5)
    assert record(server, task_id) is None
    assert record(server, task_id) is None
    seen: list[float] = []
    while (data := record(server, task_id))["status"] == "GENERATING":
        assert data["successFlag"] == 0 and data["response"] is None
        assert data["completeTime"] is None and re.fullmatch(r"0\.\d\d", data["progress"])
        seen.append(float(data["progress"]))
        time.sleep(0.05)
    assert seen == sorted(seen) and len(set(seen)) > 1 and max(seen) <= 0.99
    assert data["status"] == "SUCCESS" and data["successFlag"] == 1
    assert data["progress"] == "1.00"
    assert json.loads(data["paramJson"]) == body
    assert data["errorCode"] is None and data["errorMessage"] is None
    assert data["completeTime"] >= data["createTime"] + 400 - 1
    urls = data["response"]["resultUrls"]
    assert urls == [f"{server.url}/files/results/{task_id}_{n}.png" for n in range(4)]


@pytest.mark.parametrize(
    ("size", "expected"), [("1:1", (96, 96)), ("3:2", (96, 64)), ("2:3", (64, 96))]
)
def test_results_are_real_pngs_with_the_aspect_ratio(
    make: Factory, size: str, expected: tuple[int, int]
) -> None:
    server = make(image_long_side=96)
    data = wait_done(server, generate(server, size=size, nVariants=2))
    for url in data["response"]["resultUrls"]:
        r = requests.get(url, timeout=TIMEOUT)  # no auth: the file host is like a CDN
        assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"
        assert int(r.headers["Content-Length"]) == len(r.content)
        assert png_info(r.content) == expected


def test_full_size_image_is_realistic() -> None:
    # How fast it renders is a figure of benchmarks/, not an assertion here.
    data = render_png("a realistic size check", "1:1", 0, 512)
    assert png_info(data) == (512, 512)
    assert 50_000 < len(data) < 300_000


def test_images_are_deterministic_per_prompt_size_and_variant(server: MockKieServer) -> None:
    def images(prompt: str) -> list[bytes]:
        data = wait_done(server, generate(server, prompt, nVariants=2))
        return [requests.get(u, timeout=TIMEOUT).content for u in data["response"]["resultUrls"]]

    first, again, other = images("a red fox"), images("a red fox"), images("a blue whale")
    assert first == again
    assert first[0] != first[1]
    assert not set(first) & set(other)


def test_result_files_are_404_until_the_task_succeeds(make: Factory) -> None:
    server = make(duration=5)
    task_id = generate(server)
    assert get(server, f"/files/results/{task_id}_0.png").status_code == 404


def test_result_key_can_be_snake_case(make: Factory) -> None:
    server = make(result_key="result_urls")
    data = wait_done(server, generate(server))
    assert list(data["response"]) == ["result_urls"] and len(data["response"]["result_urls"]) == 1


def test_response_as_json_string(server: MockKieServer) -> None:
    server.script_next_task(response_as_string=True)
    data = wait_done(server, generate(server))
    assert isinstance(data["response"], str)
    assert len(json.loads(data["response"])["resultUrls"]) == 1


@pytest.mark.parametrize(
    ("script", "status", "flag", "code", "message"),
    [
        (TaskScript(success_flag=2), "GENERATE_FAILED", 2, 400, "flagged by OpenAI"),
        (TaskScript(success_flag=3), "GENERATE_FAILED", 3, 400, "flagged by OpenAI"),
        (
            TaskScript(status="CREATE_TASK_FAILED", error_code=500, error_message="boom"),
            "CREATE_TASK_FAILED",
            2,
            500,
            "boom",
        ),
        (
            TaskScript(success_flag=2, error_code=451, error_message="no fetch"),
            "GENERATE_FAILED",
            2,
            451,
            "no fetch",
        ),
    ],
)
def test_scripted_failures(
    server: MockKieServer, script: TaskScript, status: str, flag: int, code: int, message: str
) -> None:
    server.script_next_task(script)
    data = wait_done(server, generate(server))
    assert (data["status"], data["successFlag"], data["errorCode"]) == (status, flag, code)
    assert message in data["errorMessage"]
    assert data["response"] is None and data["progress"] != "1.00"
    assert data["completeTime"] is not None


def test_scripts_queue_one_per_task(server: MockKieServer) -> None:
    server.script_next_task(success_flag=2)
    server.script_next_task(TaskScript(), duration=0.0)
    failed, ok, default = generate(server), generate(server), generate(server)
    assert wait_done(server, failed)["status"] == "GENERATE_FAILED"
    assert record(server, ok)["status"] == "SUCCESS"  # duration 0: done at once
    assert wait_done(server, default)["status"] == "SUCCESS"


def test_empty_url_polls_then_urls(server: MockKieServer) -> None:
    server.script_next_task(empty_url_polls=2)
    task_id = generate(server)
    data = wait_done(server, task_id)
    assert data["status"] == "SUCCESS" and data["response"] == {"resultUrls": []}
    assert record(server, task_id)["response"] == {"resultUrls": []}
    assert len(record(server, task_id)["response"]["resultUrls"]) == 1


def test_script_overrides_null_polls_and_duration(server: MockKieServer) -> None:
    server.script_next_task(null_polls=3, duration=0.0)
    task_id = generate(server)
    assert [record(server, task_id) for _ in range(3)] == [None] * 3
    assert record(server, task_id)["status"] == "SUCCESS"


def test_duration_may_be_a_function_of_the_body(make: Factory) -> None:
    server = make(duration=lambda body: 0.0 if "quick" in body["prompt"] else 30.0)
    assert record(server, generate(server, "quick one"))["status"] == "SUCCESS"
    assert record(server, generate(server, "slow one"))["status"] == "GENERATING"


def test_fail_marker_in_prompt_fails_like_content_policy(server: MockKieServer) -> None:
    data = wait_done(server, generate(server, "a cat [mock:fail]"))
    assert (data["status"], data["successFlag"], data["errorCode"]) == ("GENERATE_FAILED", 3, 400)


def test_missing_local_input_image_fails_with_451(server: MockKieServer) -> None:
    missing = f"{server.url}/files/uploads/x/missing.png"
    data = wait_done(server, generate(server, "edit", filesUrl=[missing]))
    assert data["errorCode"] == 451 and missing in data["errorMessage"]
    # Result images of finished tasks and foreign URLs are fine as inputs.
    url = wait_done(server, generate(server))["response"]["resultUrls"][0]
    data = wait_done(server, generate(server, "", filesUrl=[url, "https://example.com/a.png"]))
    assert data["status"] == "SUCCESS"


def test_unknown_task_is_422_record_is_null(server: MockKieServer) -> None:
    envelope = get(server, RECORD, params={"taskId": "nope"}).json()
    assert envelope == {"code": 422, "msg": "record is null", "data": None}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "x"}, "size"),
        ({"prompt": "x", "size": "16:9"}, "size"),
        ({"size": "1:1"}, "prompt"),
        ({"size": "1:1", "filesUrl": []}, "filesUrl"),
        ({"prompt": "x", "size": "1:1", "nVariants": 3}, "nVariants"),
        ({"prompt": "x", "size": "1:1", "filesUrl": ["http://e.com/a.png"] * 6}, "filesUrl"),
        ({"prompt": "x", "size": "1:1", "fallbackModel": "DALL_E"}, "fallbackModel"),
    ],
)
def test_generate_validation_names_the_field(
    server: MockKieServer, body: dict[str, Any], field: str
) -> None:
    envelope = post(server, GENERATE, body).json()
    assert envelope["code"] == 422 and field in envelope["msg"]
    assert server.tasks == {} and server.credits == 100


def test_insufficient_credits_is_402_and_nothing_is_charged(make: Factory) -> None:
    server = make(credits=2.0)
    envelope = post(server, GENERATE, {"prompt": "x", "size": "1:1", "nVariants": 2}).json()
    assert envelope == {"code": 402, "msg": "Insufficient credits", "data": None}
    generate(server)
    assert get(server, CREDIT).json()["data"] == 0.5
    server.credits = 10  # public and settable
    assert get(server, CREDIT).json() == {"code": 200, "msg": "success", "data": 10}


def test_rate_limit_answers_http_429_and_drops_the_request(make: Factory) -> None:
    server = make(rate_limit=(3, 10.0))
    for _ in range(3):
        generate(server)
    r = post(server, GENERATE, {"prompt": "x", "size": "1:1"})
    assert r.status_code == 429 and r.json()["code"] == 429
    assert len(server.tasks) == 3 and server.credits == pytest.approx(100 - 3 * 1.5)


# -- faults -----------------------------------------------------------------------------------


def test_drop_closes_without_an_answer_and_creates_nothing(server: MockKieServer) -> None:
    server.add_fault("generate", drop=True)
    with pytest.raises(requests.ConnectionError):
        post(server, GENERATE, {"prompt": "x", "size": "1:1"})
    assert server.tasks == {} and server.credits == 100
    assert [r.endpoint for r in server.requests] == ["generate"]  # logged all the same
    generate(server)  # the fault is used up


def test_drop_after_processing_creates_and_charges_the_task(server: MockKieServer) -> None:
    server.add_fault("generate", drop=True, after_processing=True)
    with pytest.raises(requests.ConnectionError):
        post(server, GENERATE, {"prompt": "x", "size": "1:1"})
    assert len(server.tasks) == 1 and server.credits == 98.5


def test_error_after_processing_still_creates_the_task(server: MockKieServer) -> None:
    server.add_fault("generate", code=500)
    assert post(server, GENERATE, {"prompt": "x", "size": "1:1"}).json()["code"] == 500
    assert server.tasks == {}
    server.add_fault("generate", code=500, after_processing=True)
    assert post(server, GENERATE, {"prompt": "x", "size": "1:1"}).json()["code"] == 500
    assert len(server.tasks) == 1


def test_error_fault_times_msg_and_retry_after(server: MockKieServer) -> None:
    server.add_fault("credit", http_status=429, retry_after=1.5, times=2)
    for _ in range(2):
        r = get(server, CREDIT)
        assert r.status_code == 429 and r.headers["Retry-After"] == "1.5"
        assert r.json()["code"] == 429 and r.json()["msg"]
    server.add_fault("credit", code=550, msg="queue full")
    server.add_fault("credit", Fault(code=500), times=1)  # faults queue FIFO
    r = get(server, CREDIT)
    assert r.status_code == 200 and r.json() == {"code": 550, "msg": "queue full", "data": None}
    assert get(server, CREDIT).json()["code"] == 500
    assert get(server, CREDIT).json()["code"] == 200


def test_malformed_and_raw_body_faults(server: MockKieServer) -> None:
    server.add_fault("credit", malformed=True)
    r = get(server, CREDIT)
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    server.add_fault(
        "credit", http_status=502, body=b"<html>Bad Gateway</html>", content_type="text/html"
    )
    r = get(server, CREDIT)
    assert (r.status_code, r.content, r.headers["Content-Type"]) == (
        502,
        b"<html>Bad Gateway</html>",
        "text/html",
    )


def test_delay_makes_a_client_time_out_then_serves_on(server: MockKieServer) -> None:
    server.add_fault("credit", delay=1.0)
    with pytest.raises(requests.Timeout):
        get(server, CREDIT, timeout=0.2)
    assert get(server, CREDIT).json()["code"] == 200
    server.add_fault("credit", delay=0.2)
    start = time.monotonic()
    assert get(server, CREDIT).json()["code"] == 200
    assert time.monotonic() - start >= 0.2


def test_file_faults_truncate_content_type_oversize_chunk_delay(server: MockKieServer) -> None:
    url = wait_done(server, generate(server))["response"]["resultUrls"][0]
    full = requests.get(url, timeout=TIMEOUT).content

    server.add_fault("file", truncate=True)
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        requests.get(url, timeout=TIMEOUT).content  # noqa: B018 - reading the body raises

    server.add_fault("file", content_type="text/html")
    r = requests.get(url, timeout=TIMEOUT)
    assert r.headers["Content-Type"] == "text/html" and r.content == full

    server.add_fault("file", oversize=1000)
    r = requests.get(url, timeout=TIMEOUT)
    assert len(r.content) == len(full) + 1000 == int(r.headers["Content-Length"])
    assert r.content.startswith(full)

    chunks = -(-len(full) // (16 * 1024))
    server.add_fault("file", chunk_delay=0.02)
    start = time.monotonic()
    assert requests.get(url, timeout=TIMEOUT).content == full
    assert time.monotonic() - start >= (chunks - 1) * 0.02


def test_fault_on_upload_endpoint_keeps_success_flag(server: MockKieServer) -> None:
    server.add_fault("file-base64-upload", code=500)
    envelope = post(server, BASE64_UPLOAD, {"base64Data": "AAAA", "uploadPath": "p"}).json()
    assert envelope["success"] is False and envelope["code"] == 500


def test_add_fault_rejects_unknown_endpoints(server: MockKieServer) -> None:
    with pytest.raises(ValueError):
        server.add_fault("generat", code=500)


# -- download URLs and credit ---------------------------------------------------------------


@pytest.mark.parametrize("form", ["string", "object"])
def test_download_url(make: Factory, form: str) -> None:
    server = make(download_url_form=form)
    task_id = generate(server)
    url = wait_done(server, task_id)["response"]["resultUrls"][0]
    envelope = post(server, DOWNLOAD, {"taskId": task_id, "url": url}).json()
    assert envelope["code"] == 200
    link = envelope["data"] if form == "string" else envelope["data"]["downloadUrl"]
    assert re.fullmatch(re.escape(url) + r"\?download=1&expires=\d+", link)
    assert requests.get(link, timeout=TIMEOUT).content == requests.get(url, timeout=TIMEOUT).content


def test_download_url_errors(server: MockKieServer) -> None:
    task_id = generate(server)
    url = wait_done(server, task_id)["response"]["resultUrls"][0]
    assert "url" in post(server, DOWNLOAD, {"taskId": task_id}).json()["msg"]
    assert "taskId" in post(server, DOWNLOAD, {"url": url}).json()["msg"]
    envelope = post(server, DOWNLOAD, {"taskId": "nope", "url": url}).json()
    assert (envelope["code"], envelope["msg"]) == (422, "record is null")
    assert post(server, DOWNLOAD, {"taskId": task_id, "url": url + "x"}).json()["code"] == 422


def test_common_download_url(server: MockKieServer) -> None:
    envelope = post(server, COMMON_DOWNLOAD, {"url": f"{server.url}/files/a.png"}).json()
    assert envelope["code"] == 200 and envelope["data"].startswith(f"{server.url}/files/a.png?")
    assert post(server, COMMON_DOWNLOAD, {}).json()["code"] == 422


# -- uploads ----------------------------------------------------------------------------------


def _check_upload(server: MockKieServer, r: requests.Response, data: bytes) -> dict[str, Any]:
    envelope = r.json()
    assert envelope["success"] is True and envelope["code"] == 200, envelope
    info = envelope["data"]
    assert set(info) == {
        "fileName",
        "filePath",
        "downloadUrl",
        "fileSize",
        "mimeType",
        "uploadedAt",
    }
    assert info["fileSize"] == len(data)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", info["uploadedAt"])
    served = requests.get(info["downloadUrl"], timeout=TIMEOUT)  # no auth needed
    assert served.content == data and served.headers["Content-Type"] == info["mimeType"]
    return info


def test_stream_upload_round_trips_bytes(server: MockKieServer) -> None:
    png = render_png("upload me", "1:1", 0, 32)
    r = post(
        server,
        STREAM_UPLOAD,
        None,
        files={"file": ("pic.png", png, "image/png")},
        data={"uploadPath": "/kie/tests/"},
    )
    info = _check_upload(server, r, png)
    assert info["mimeType"] == "image/png" and info["fileName"].endswith(".png")
    assert info["filePath"] == f"kie/tests/{info['fileName']}"
    assert info["downloadUrl"] == f"{server.url}/files/uploads/{info['filePath']}"
    # Arbitrary binary (CR/LF, NULs, boundary-like bytes) survives multipart parsing.
    blob = bytes(range(256)) * 8 + b"\r\n--\r\n\r\n" + os.urandom(4096)
    r = post(
        server,
        STREAM_UPLOAD,
        None,
        files={"file": ("x.bin", blob)},
        data={"uploadPath": "p", "fileName": "blob.bin"},
    )
    info = _check_upload(server, r, blob)
    assert (info["fileName"], info["mimeType"]) == ("blob.bin", "application/octet-stream")


def test_upload_same_name_overwrites(server: MockKieServer) -> None:
    first, second = render_png("one", "1:1", 0, 16), render_png("two", "1:1", 0, 16)
    for data in (first, second):
        body = {
            "base64Data": base64.b64encode(data).decode(),
            "uploadPath": "p",
            "fileName": "same.png",
        }
        info = _check_upload(server, post(server, BASE64_UPLOAD, body), data)
    assert requests.get(info["downloadUrl"], timeout=TIMEOUT).content == second


def test_base64_upload_raw_and_data_url(server: MockKieServer) -> None:
    png = render_png("b64", "2:3", 0, 24)
    raw = base64.b64encode(png).decode()
    for payload in (raw, f"data:image/png;base64,{raw}"):
        info = _check_upload(
            server, post(server, BASE64_UPLOAD, {"base64Data": payload, "uploadPath": "b"}), png
        )
        assert info["mimeType"] == "image/png" and info["fileName"].endswith(".png")
    bad = post(server, BASE64_UPLOAD, {"base64Data": "not base64!", "uploadPath": "b"}).json()
    assert bad["success"] is False and bad["code"] == 400


def test_url_upload_only_from_this_server(server: MockKieServer) -> None:
    url = wait_done(server, generate(server))["response"]["resultUrls"][0]
    png = requests.get(url, timeout=TIMEOUT).content
    info = _check_upload(server, post(server, URL_UPLOAD, {"fileUrl": url, "uploadPath": "u"}), png)
    assert info["fileName"].endswith(".png")
    envelope = post(
        server, URL_UPLOAD, {"fileUrl": "https://example.com/a.png", "uploadPath": "u"}
    ).json()
    assert envelope["success"] is False and envelope["code"] == 400
    assert "could not fetch" in envelope["msg"]


@pytest.mark.parametrize("path", [STREAM_UPLOAD, BASE64_UPLOAD, URL_UPLOAD])
def test_upload_path_is_required(server: MockKieServer, path: str) -> None:
    if path == STREAM_UPLOAD:
        r = post(server, path, None, files={"file": ("a.png", b"\x89PNG\r\n\x1a\n")})
    else:
        r = post(server, path, {"base64Data": "AAAA", "fileUrl": f"{server.url}/files/x"})
    assert r.json() == {
        "success": False,
        "code": 400,
        "msg": "uploadPath is required",
        "data": None,
    }


def test_uploads_need_the_key(server: MockKieServer) -> None:
    envelope = post(
        server, BASE64_UPLOAD, {"base64Data": "AAAA", "uploadPath": "p"}, headers={}
    ).json()
    assert (envelope["success"], envelope["code"]) == (False, 401)


def _encoded(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (20, 10), (9, 99, 199)).save(out, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize(
    "fmt, mime",
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("GIF", "image/gif"),
     ("BMP", "application/octet-stream")],
)
def test_uploads_are_typed_by_their_bytes(server: MockKieServer, fmt: str, mime: str) -> None:
    data = _encoded(fmt)
    assert sniff_mime(data) == mime
    body = {"base64Data": base64.b64encode(data).decode(), "uploadPath": "t"}
    info = _check_upload(server, post(server, BASE64_UPLOAD, body), data)
    assert info["mimeType"] == mime


@pytest.mark.parametrize("data", [b"", b"not an image", b"\x89PNG\r\n\x1a\n", b"GIF89a"])
def test_sniff_mime_of_non_images(data: bytes) -> None:
    assert sniff_mime(data) == "application/octet-stream"


# -- request log, inspection, lifecycle ------------------------------------------------------


def test_request_log_and_reset(server: MockKieServer) -> None:
    task_id = generate(server)
    record(server, task_id)
    requests.head(f"{server.url}/files/nothing.png", timeout=TIMEOUT)
    first = server.requests[0]
    assert isinstance(first, MockRequest)
    assert (first.method, first.path, first.endpoint) == ("POST", GENERATE, "generate")
    assert first.json == {"prompt": "a red fox", "size": "1:1"}
    assert json.loads(first.body) == first.json
    assert first.headers["authorization"] == first.headers["Authorization"] == f"Bearer {KEY}"
    assert server.requests_to("record-info")[0].query == {"taskId": task_id}
    assert [r.endpoint for r in server.requests] == ["generate", "record-info", "file"]
    assert server.requests[0].time <= server.requests[1].time
    server.add_fault("credit", code=500)
    server.script_next_task(success_flag=2)
    server.reset()
    assert server.requests == [] and task_id in server.tasks and task_id in server.tasks()
    assert get(server, CREDIT).json()["code"] == 200
    assert wait_done(server, generate(server))["status"] == "SUCCESS"


def test_tasks_view_is_a_snapshot(server: MockKieServer) -> None:
    task_id = generate(server, nVariants=2)
    view = server.tasks[task_id]
    assert view["params"]["nVariants"] == 2 and view["nVariants"] == 2
    view["status"] = "hacked"
    assert server.tasks[task_id]["status"] in ("GENERATING", "SUCCESS")


def test_start_stop_are_idempotent_and_context_managed() -> None:
    server = MockKieServer()
    server.stop()
    with server as s:
        assert s is server and s.start() is s and s.url.startswith("http://127.0.0.1:")
        assert get(s, CREDIT).json()["code"] == 200
    server.stop()
    with pytest.raises(requests.ConnectionError):
        get(server, CREDIT, timeout=1)


def test_stop_is_prompt_with_open_keep_alive_and_sleeping_handler() -> None:
    server = MockKieServer().start()
    session = requests.Session()
    session.headers.update(AUTH)
    assert session.get(server.url + CREDIT, timeout=TIMEOUT).json()["code"] == 200
    server.add_fault("credit", delay=30)
    with pytest.raises(requests.Timeout):
        requests.get(server.url + CREDIT, headers=AUTH, timeout=0.2)
    start = time.monotonic()
    server.stop()
    assert time.monotonic() - start < 30 / 2  # not the sleeping handler's 30 s
    with pytest.raises(requests.ConnectionError):
        session.get(server.url + CREDIT, timeout=1)
    session.close()


def test_module_runs_standalone() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kie_jupyter.mock", "--port", "0", "--duration", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        r = requests.get(url + CREDIT, headers={"Authorization": "Bearer any"}, timeout=TIMEOUT)
        assert r.json() == {"code": 200, "msg": "success", "data": 100}
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


# -- the pytest plugin ------------------------------------------------------------------------


@pytest.fixture
def demo_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIE_DEMO", "1")


def test_kie_mock_fixture_sets_the_environment(demo_env: None, kie_mock: MockKieServer) -> None:
    assert os.environ["KIE_API_KEY"] == "test-key"
    assert os.environ["KIE_BASE_URL"] == os.environ["KIE_UPLOAD_URL"] == kie_mock.url
    assert "KIE_DEMO" not in os.environ
    assert kie_mock.duration == 1.0 and kie_mock.api_key == "test-key"
    assert get(kie_mock, CREDIT).json()["code"] == 200


# -- the Market job and Flux Kontext endpoints (more in tests/api/test_market.py) ----------------

MARKET_CREATE = "/api/v1/jobs/createTask"
MARKET_RECORD = "/api/v1/jobs/recordInfo"


def test_market_tasks_are_not_4o_tasks(server: MockKieServer) -> None:
    body = {"model": "nano-banana-2", "input": {"prompt": "a fox", "aspect_ratio": "21:9"}}
    task_id = post(server, MARKET_CREATE, body).json()["data"]["taskId"]
    assert re.fullmatch(r"task_nano-banana-2_\d+", task_id)
    assert get(server, RECORD, params={"taskId": task_id}).json()["msg"] == "record is null"
    four_o = generate(server)
    answer = get(server, MARKET_RECORD, params={"taskId": four_o}).json()
    assert answer == {"code": 422, "message": "recordInfo is null", "data": None}
    assert server.tasks[task_id]["family"] == "market"


def test_market_ids_are_unique_within_a_millisecond(server: MockKieServer) -> None:
    body = {"model": "nano-banana-pro", "input": {"prompt": "a fox"}}
    ids = {post(server, MARKET_CREATE, body).json()["data"]["taskId"] for _ in range(5)}
    assert len(ids) == 5


def test_market_faults_and_the_shared_rate_limit(make: Factory) -> None:
    server = make(rate_limit=(2, 60.0))
    server.add_fault("recordInfo", code=500)
    assert get(server, MARKET_RECORD, params={"taskId": "x"}).json()["message"]
    body = {"model": "nano-banana-pro", "input": {"prompt": "a fox"}}
    generate(server)  # the 4o side counts against the same account limit
    assert post(server, MARKET_CREATE, body).json()["code"] == 200
    refused = post(server, "/api/v1/flux/kontext/generate", {"prompt": "x"})
    assert refused.status_code == 429 and refused.json()["code"] == 429
    assert len(server.tasks) == 2


def test_market_pictures_follow_the_requested_ratio(make: Factory) -> None:
    server = make(duration=0)
    body = {"model": "nano-banana-2", "input": {"prompt": "a fox", "aspect_ratio": "21:9"}}
    task_id = post(server, MARKET_CREATE, body).json()["data"]["taskId"]
    data = get(server, MARKET_RECORD, params={"taskId": task_id}).json()["data"]
    [url] = json.loads(data["resultJson"])["resultUrls"]
    with Image.open(io.BytesIO(requests.get(url, timeout=TIMEOUT).content)) as im:
        assert (im.width, im.height) == (512, 512 * 9 // 21)
