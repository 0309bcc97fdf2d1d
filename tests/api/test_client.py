"""KieClient against the mock server: every endpoint, every error code, every retry rule."""

from __future__ import annotations

import base64
import gzip
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from kie_jupyter._version import __version__
from kie_jupyter.api import fouro
from kie_jupyter.api.client import DEFAULT_BASE_URL, DEFAULT_UPLOAD_URL, KieClient
from kie_jupyter.api.errors import (
    AuthenticationError,
    BadRequestError,
    DownloadError,
    FeatureDisabledError,
    GenerationFailedError,
    InputImageError,
    InsufficientCreditsError,
    KieAPIError,
    KieConfigError,
    KieConnectionError,
    KieTimeoutError,
    KieUsageError,
    MaintenanceError,
    MalformedResponseError,
    NotFoundError,
    QueueFullError,
    RateLimitError,
    ServerError,
    TaskNotFoundError,
    ValidationError,
)
from kie_jupyter.api.imagedata import sniff_image
from kie_jupyter.api.models import GenerationRequest, TaskRecord
from kie_jupyter.api.ratelimit import SlidingWindowLimiter
from kie_jupyter.api.retry import RetryPolicy
from kie_jupyter.fakeapi.images import render_png
from kie_jupyter.testing import Fault, MockKieServer

if TYPE_CHECKING:
    from conftest import FakeClock

SECRET = "sk-SECRET-abc123456789"
FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.04, max_retry_after=30.0)
NO_RETRY = RetryPolicy(max_retries=0, base_delay=0.01, max_delay=0.04)
PNG = render_png("a test input", "1:1", 0, 48)


# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_kie_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own KIE_* settings must not leak into these tests."""
    for name in ("KIE_API_KEY", "KIE_BASE_URL", "KIE_UPLOAD_URL", "KIE_DEMO"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def kie(kie_mock_factory: Callable[..., MockKieServer]) -> MockKieServer:
    """A mock that wants the distinctive key, with fast tasks and no server-side rate limit."""
    return kie_mock_factory(api_key=SECRET, duration=0.05, rate_limit=None)


@pytest.fixture
def make_client(
    kie: MockKieServer, sleeps: list[float]
) -> Iterator[Callable[..., KieClient]]:
    """Clients pointed at ``kie`` that record their retry sleeps in ``sleeps``."""
    clients: list[KieClient] = []

    def make(**kwargs: Any) -> KieClient:
        options: dict[str, Any] = {
            "api_key": SECRET,
            "base_url": kie.url,
            "upload_url": kie.url,
            "retry": FAST,
            "limiter": SlidingWindowLimiter(1000, 10.0),
            "sleep": sleeps.append,
            "read_timeout": 5.0,
        }
        options.update(kwargs)
        client = KieClient(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., KieClient]) -> KieClient:
    return make_client()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def finished(client: KieClient, task_id: str, limit: float = 3.0) -> TaskRecord:
    """Poll (really) until the mock's short task has finished."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        record = client.record_info(task_id)
        if record is not None and record.finished and (record.urls or record.failed):
            return record
        time.sleep(0.02)
    raise AssertionError(f"task {task_id} did not finish within {limit} s")


def assert_backoff(sleeps: list[float], policy: RetryPolicy = FAST) -> None:
    """Each recorded sleep lies in the equal-jitter band of its attempt."""
    for attempt, delay in enumerate(sleeps):
        ceiling = min(policy.max_delay, policy.base_delay * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling, (attempt, delay)


def assert_no_secret(err: BaseException) -> None:
    assert SECRET not in str(err)
    assert SECRET not in repr(err)
    assert all(SECRET not in str(a) for a in err.args)
    assert SECRET not in str(getattr(err, "msg", ""))


# -- the 4o Image API endpoints --------------------------------------------------------------


def test_generate_sends_the_exact_body_and_headers(client: KieClient, kie: MockKieServer) -> None:
    request = GenerationRequest(
        "a red fox in the snow",
        size="3:2",
        variants=2,
        files=("https://example.com/in.png",),
        mask="https://example.com/mask.png",
        enhance=True,
        upload_cn=True,
        fallback=True,
        fallback_model="GPT_IMAGE_1",
        callback_url="https://example.com/hook",
    )
    task_id = client.generate(request)

    (sent,) = kie.requests_to("generate")
    assert sent.method == "POST"
    assert sent.path == "/api/v1/gpt4o-image/generate"
    assert sent.json == {
        "prompt": "a red fox in the snow",
        "size": "3:2",
        "nVariants": 2,
        "filesUrl": ["https://example.com/in.png"],
        "maskUrl": "https://example.com/mask.png",
        "isEnhance": True,
        "uploadCn": True,
        "enableFallback": True,
        "fallbackModel": "GPT_IMAGE_1",
        "callBackUrl": "https://example.com/hook",
    }
    assert sent.headers["Authorization"] == f"Bearer {SECRET}"
    assert sent.headers["User-Agent"] == f"kie-jupyter/{__version__}"
    assert sent.headers["Content-Type"] == "application/json"
    assert list(kie.tasks) == [task_id]
    assert kie.credits == pytest.approx(100 - 2 * 1.5)


def test_generate_minimal_body(client: KieClient, kie: MockKieServer) -> None:
    client.generate(GenerationRequest("just a cat"))
    assert kie.requests_to("generate")[0].json == {
        "prompt": "just a cat", "size": "1:1", "nVariants": 1,
    }


def test_record_info_null_right_after_submit_then_success(
    client: KieClient, kie: MockKieServer
) -> None:
    task_id = client.generate(GenerationRequest("a lighthouse", size="2:3"))
    assert client.record_info(task_id) is None  # data: null just after submit

    record = finished(client, task_id)
    assert record.task_id == task_id
    assert record.status == "SUCCESS"
    assert record.success_flag == 1
    assert record.succeeded and not record.failed
    assert record.progress == 1.0
    assert record.urls == tuple(kie.tasks[task_id]["resultUrls"])
    assert len(record.urls) == 1
    assert record.params == {"prompt": "a lighthouse", "size": "2:3", "nVariants": 1}
    assert record.create_time is not None and record.complete_time is not None
    sent = kie.requests_to("record-info")[0]
    assert sent.method == "GET"
    assert sent.query == {"taskId": task_id}


@pytest.mark.parametrize("as_string", [False, True], ids=["object", "json-string"])
def test_record_info_result_urls_key_and_string_response(
    kie_mock_factory: Callable[..., MockKieServer], as_string: bool
) -> None:
    kie = kie_mock_factory(api_key=SECRET, duration=0.02, result_key="result_urls", null_polls=0)
    kie.script_next_task(response_as_string=as_string)
    with KieClient(SECRET, base_url=kie.url, upload_url=kie.url) as client:
        task_id = client.generate(GenerationRequest("two birds", variants=2))
        record = finished(client, task_id)
    assert record.urls == tuple(kie.tasks[task_id]["resultUrls"])
    assert len(record.urls) == 2


def test_record_info_failed_task(client: KieClient, kie: MockKieServer) -> None:
    kie.script_next_task(success_flag=3)
    task_id = client.generate(GenerationRequest("something refused"))
    record = finished(client, task_id)
    assert record.failed and not record.succeeded
    assert record.success_flag == 3
    assert record.urls == ()
    assert record.error_code == 400
    assert "content policies" in (record.error_message or "")


@pytest.mark.parametrize("http_status", [False, True], ids=["http-200", "http-422"])
def test_record_info_unknown_task_is_not_found(
    kie_mock_factory: Callable[..., MockKieServer], http_status: bool
) -> None:
    kie = kie_mock_factory(api_key=SECRET, error_http_status=http_status)
    with KieClient(SECRET, base_url=kie.url, upload_url=kie.url, retry=FAST,
                   sleep=lambda s: None) as client:
        with pytest.raises(TaskNotFoundError) as info:
            client.record_info("no-such-task")
    err = info.value
    assert isinstance(err, NotFoundError)
    assert err.code == 422
    assert err.msg == "record is null"
    assert err.endpoint == "record-info"
    assert err.http_status == (422 if http_status else 200)
    assert "check the task id" in str(err)
    assert len(kie.requests_to("record-info")) == 1  # not retried
    assert_no_secret(err)


def test_record_info_plain_404_is_task_not_found(client: KieClient, kie: MockKieServer) -> None:
    kie.add_fault("record-info", http_status=404, code=404)
    with pytest.raises(TaskNotFoundError) as info:
        client.record_info("gone")
    assert info.value.code == 404


@pytest.mark.parametrize("task_id", ["", "   "])
def test_record_info_empty_id_is_a_usage_error(
    client: KieClient, kie: MockKieServer, task_id: str
) -> None:
    with pytest.raises(KieUsageError, match="task id"):
        client.record_info(task_id)
    assert kie.requests == []


@pytest.mark.parametrize("form", ["string", "object"])
def test_download_url_both_forms(
    kie_mock_factory: Callable[..., MockKieServer], form: str
) -> None:
    kie = kie_mock_factory(api_key=SECRET, duration=0.02, download_url_form=form)
    with KieClient(SECRET, base_url=kie.url, upload_url=kie.url) as client:
        task_id = client.generate(GenerationRequest("a boat"))
        url = finished(client, task_id).urls[0]
        link = fouro.download_url(client, task_id, url)
    assert link.startswith(url + "?download=1&expires=")
    (sent,) = kie.requests_to("download-url")
    assert sent.method == "POST"
    assert sent.json == {"taskId": task_id, "url": url}


def test_download_url_of_a_foreign_url_is_a_validation_error(
    client: KieClient, kie: MockKieServer
) -> None:
    task_id = client.generate(GenerationRequest("a boat"))
    with pytest.raises(ValidationError) as info:
        fouro.download_url(client, task_id, "https://elsewhere.example/x.png")
    assert info.value.endpoint == "download-url"


def test_common_download_url(client: KieClient, kie: MockKieServer) -> None:
    link = client.common_download_url("https://tempfile.example/a.png")
    assert link.startswith("https://tempfile.example/a.png?download=1&expires=")
    (sent,) = kie.requests_to("common-download-url")
    assert sent.json == {"url": "https://tempfile.example/a.png"}


def test_common_download_url_without_a_url_in_the_answer(
    client: KieClient, kie: MockKieServer
) -> None:
    kie.add_fault("common-download-url", body=b'{"code":200,"msg":"success","data":"ftp://x"}')
    with pytest.raises(MalformedResponseError, match="common-download-url"):
        client.common_download_url("https://tempfile.example/a.png")


def test_credit(client: KieClient, kie: MockKieServer) -> None:
    assert client.credits() == 100.0
    client.generate(GenerationRequest("a", variants=4))
    assert client.credits() == pytest.approx(94.0)
    sent = kie.requests_to("credit")[0]
    assert (sent.method, sent.path) == ("GET", "/api/v1/chat/credit")


def test_credit_as_an_object_and_as_garbage(client: KieClient, kie: MockKieServer) -> None:
    kie.add_fault("credit", body=b'{"code":200,"msg":"success","data":{"balance":"7.5"}}')
    assert client.credits() == 7.5
    kie.add_fault("credit", body=b'{"code":200,"msg":"success","data":"lots"}')
    with pytest.raises(MalformedResponseError, match="credit"):
        client.credits()


def test_generate_without_a_task_id_is_malformed(client: KieClient, kie: MockKieServer) -> None:
    kie.add_fault("generate", body=b'{"code":200,"msg":"success","data":null}')
    with pytest.raises(MalformedResponseError, match="no taskId"):
        client.generate(GenerationRequest("x"))
    assert len(kie.requests_to("generate")) == 1


# -- the File Upload API ---------------------------------------------------------------------


@pytest.fixture
def split(
    kie_mock_factory: Callable[..., MockKieServer], sleeps: list[float]
) -> Iterator[tuple[KieClient, MockKieServer, MockKieServer]]:
    """A client whose API and upload services are two different servers."""
    api = kie_mock_factory(api_key=SECRET, duration=0.05)
    upload = kie_mock_factory(api_key=SECRET)
    client = KieClient(SECRET, base_url=api.url, upload_url=upload.url, retry=FAST,
                       sleep=sleeps.append)
    yield client, api, upload
    client.close()


def test_stream_upload_of_a_real_file(split: Any, tmp_path: Any) -> None:
    client, api, upload = split
    path = tmp_path / "my photo.png"
    path.write_bytes(PNG)

    url = client.upload_file(path)

    assert api.requests == []  # uploads go to the upload host only
    (sent,) = upload.requests_to("file-stream-upload")
    assert sent.method == "POST" and sent.path == "/api/file-stream-upload"
    assert sent.headers["Authorization"] == f"Bearer {SECRET}"
    assert sent.headers["Content-Type"].startswith("multipart/form-data")
    assert b'name="uploadPath"' in sent.body and b"kie-jupyter" in sent.body
    assert b'name="file"' in sent.body and PNG in sent.body
    assert url.startswith(f"{upload.url}/files/uploads/kie-jupyter/my_photo-")
    assert url.endswith(".png")
    assert client.fetch_image(url) == PNG


def test_stream_upload_names_are_unique(split: Any) -> None:
    client, _, _ = split
    first = client.upload_stream(PNG, "same.png")
    second = client.upload_stream(PNG, "same.png")
    assert first != second  # reusing a fileName would overwrite the first upload


def test_base64_upload(split: Any) -> None:
    client, api, upload = split
    url = client.upload_bytes(PNG, "small.png")
    assert api.requests == []
    (sent,) = upload.requests_to("file-base64-upload")
    body = sent.json
    assert body["uploadPath"] == "kie-jupyter"
    assert body["fileName"].startswith("small-") and body["fileName"].endswith(".png")
    prefix = "data:image/png;base64,"
    assert body["base64Data"].startswith(prefix)
    assert base64.b64decode(body["base64Data"][len(prefix):]) == PNG
    assert client.fetch_image(url) == PNG


def test_url_upload(split: Any) -> None:
    client, _, upload = split
    source = client.upload_bytes(PNG)
    url = client.upload_from_url(source, file_name="copy.png")
    (sent,) = upload.requests_to("file-url-upload")
    assert sent.json == {"fileUrl": source, "uploadPath": "kie-jupyter", "fileName": "copy.png"}
    assert url.endswith("/kie-jupyter/copy.png")
    assert client.fetch_image(url) == PNG


def test_upload_answer_with_file_url_instead_of_download_url(
    client: KieClient, kie: MockKieServer
) -> None:
    kie.add_fault(
        "file-base64-upload",
        body=b'{"success":true,"code":200,"msg":"ok","data":{"fileUrl":"https://cdn.example/a.png"}}',
    )
    assert client.upload_bytes(PNG) == "https://cdn.example/a.png"


def test_upload_error_envelope(client: KieClient, kie: MockKieServer) -> None:
    kie.add_fault("file-stream-upload", code=400, msg="uploadPath is required")
    with pytest.raises(BadRequestError) as info:
        client.upload_stream(PNG)
    assert info.value.endpoint == "file-stream-upload"
    assert info.value.msg == "uploadPath is required"


def test_upload_success_false_is_an_error(
    make_client: Callable[..., KieClient], kie: MockKieServer
) -> None:
    kie.add_fault(
        "file-base64-upload", body=b'{"success":false,"code":200,"msg":"disk full","data":null}'
    )
    with pytest.raises(ServerError, match="disk full") as info:
        make_client(retry=NO_RETRY).upload_bytes(PNG)
    assert info.value.endpoint == "file-base64-upload"


@pytest.mark.parametrize(
    "what, make_path, match",
    [
        ("missing", lambda p: p / "nope.png", "no such file"),
        ("directory", lambda p: p, "directory"),
        ("not an image", lambda p: _write(p / "notes.png", b"hello, world"), "not an image"),
        ("empty", lambda p: _write(p / "empty.png", b""), "empty"),
        ("too big", lambda p: _write(p / "big.png", PNG + b"\0" * (30 * 1024 * 1024)), "30 MiB"),
    ],
)
def test_upload_refuses_bad_files_before_any_request(
    client: KieClient, kie: MockKieServer, tmp_path: Any, what: str, make_path: Any, match: str
) -> None:
    with pytest.raises(KieUsageError, match=match):
        client.upload_file(make_path(tmp_path))
    assert kie.requests == []


def _write(path: Any, data: bytes) -> Any:
    path.write_bytes(data)
    return path


def test_upload_bytes_refuses_non_images(client: KieClient, kie: MockKieServer) -> None:
    with pytest.raises(KieUsageError, match="not an image"):
        client.upload_bytes(b"GIF8 almost")
    assert kie.requests == []


# -- every error code ------------------------------------------------------------------------

CODES = [
    (400, BadRequestError, "check the prompt"),
    (401, AuthenticationError, "KIE_API_KEY"),
    (402, InsufficientCreditsError, "top up"),
    (404, NotFoundError, "check the task id"),
    (422, ValidationError, "check the options"),
    (429, RateLimitError, "wait and retry"),
    (451, InputImageError, "public and reachable"),
    (455, MaintenanceError, "maintenance"),
    (500, ServerError, "retry later"),
    (501, GenerationFailedError, "try again"),
    (502, ServerError, "retry later"),
    (505, FeatureDisabledError, "disabled"),
    (550, QueueFullError, "queue is full"),
]


@pytest.mark.parametrize("transport", ["body-code", "http-status"])
@pytest.mark.parametrize("endpoint", ["credit", "generate"])
@pytest.mark.parametrize("code, cls, fix", CODES, ids=[str(c[0]) for c in CODES])
def test_error_codes_map_to_classes(
    make_client: Callable[..., KieClient],
    kie: MockKieServer,
    sleeps: list[float],
    code: int,
    cls: type[KieAPIError],
    fix: str,
    endpoint: str,
    transport: str,
) -> None:
    client = make_client(retry=NO_RETRY)
    msg = f"server says {code}"
    http = 200 if transport == "body-code" else code
    kie.add_fault(endpoint, http_status=http, code=code, msg=msg)
    call = client.credits if endpoint == "credit" else (
        lambda: client.generate(GenerationRequest("x")))

    with pytest.raises(KieAPIError) as info:
        call()

    err = info.value
    assert type(err) is cls
    assert err.code == code
    assert err.msg == msg
    assert err.endpoint == endpoint
    assert err.http_status == http
    assert msg in str(err) and endpoint in str(err)
    assert fix in str(err)
    assert_no_secret(err)
    assert len(kie.requests_to(endpoint)) == 1
    assert sleeps == []


@pytest.mark.parametrize("status", [401, 429, 500, 503])
def test_http_error_without_an_envelope(
    make_client: Callable[..., KieClient], status: int
) -> None:
    """A gateway's HTML error page still maps by HTTP status (served by a plain server)."""
    with _plain_server([(status, "text/html", b"<html>Bad Gateway</html>", {})]) as url:
        client = make_client(base_url=url, retry=NO_RETRY)
        with pytest.raises(KieAPIError) as info:
            client.credits()
    assert info.value.code == status
    assert info.value.http_status == status
    assert info.value.endpoint == "credit"


def test_malformed_json_is_malformed_response(
    make_client: Callable[..., KieClient], kie: MockKieServer
) -> None:
    client = make_client(retry=NO_RETRY)
    kie.add_fault("credit", malformed=True)
    with pytest.raises(MalformedResponseError) as info:
        client.credits()
    assert info.value.endpoint == "credit"
    assert "not a JSON envelope" in str(info.value)


def test_wrong_key_is_an_authentication_error_without_the_key(
    make_client: Callable[..., KieClient], kie: MockKieServer
) -> None:
    client = make_client(api_key="sk-WRONG-key-0000000000")
    with pytest.raises(AuthenticationError) as info:
        client.credits()
    assert "sk-WRONG-key-0000000000" not in str(info.value)
    assert "KIE_API_KEY" in str(info.value)
    assert len(kie.requests_to("credit")) == 1


def test_no_key_is_a_config_error_before_any_request(kie: MockKieServer) -> None:
    client = KieClient(base_url=kie.url, upload_url=kie.url)
    assert not client.has_key
    assert client.masked_key() == "(none)"
    with pytest.raises(KieConfigError, match="KIE_API_KEY"):
        client.credits()
    with pytest.raises(KieConfigError):
        client.generate(GenerationRequest("x"))
    assert kie.requests == []


# -- the key stays secret ----------------------------------------------------------------------


def test_key_never_in_repr_or_masked_key(client: KieClient) -> None:
    assert SECRET not in repr(client)
    assert SECRET not in str(client)
    assert "key=set" in repr(client)
    assert client.masked_key() == "sk-…6789"


def test_key_echoed_by_the_server_is_scrubbed(
    make_client: Callable[..., KieClient], kie: MockKieServer
) -> None:
    client = make_client(retry=NO_RETRY)
    kie.add_fault("credit", code=401, msg=f"Invalid API key: {SECRET}")
    with pytest.raises(AuthenticationError) as info:
        client.credits()
    assert_no_secret(info.value)
    assert "Invalid API key: ***" in str(info.value)

    kie.add_fault("credit", body=f"<html>Bearer {SECRET} refused</html>".encode(),
                  content_type="text/html")
    with pytest.raises(MalformedResponseError) as info2:
        client.credits()
    assert_no_secret(info2.value)


def test_key_never_in_log_lines(
    client: KieClient, kie: MockKieServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    kie.add_fault("credit", code=500, msg=f"backend choked on {SECRET}")
    kie.add_fault("credit", drop=True)
    assert client.credits() == 100.0
    assert "retrying credit" in caplog.text
    assert SECRET not in caplog.text


def test_key_not_in_connection_errors(make_client: Callable[..., KieClient]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    client = make_client(base_url=url, upload_url=url, retry=NO_RETRY)
    with pytest.raises(KieConnectionError) as info:
        client.credits()
    assert_no_secret(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


# -- retries of reads ------------------------------------------------------------------------

TRANSIENT = {
    "body-500": {"code": 500},
    "http-500": {"http_status": 500, "code": 500},
    "http-503": {"http_status": 503, "code": 503},
    "body-429": {"code": 429},
    "http-429": {"http_status": 429, "code": 429},
    "body-455": {"code": 455},
    "body-550": {"code": 550},
    "dropped": {"drop": True},
    "malformed-json": {"malformed": True},
    "timeout": {"delay": 1.0},
}


@pytest.mark.parametrize("fault", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_reads_retry_transient_faults(
    make_client: Callable[..., KieClient],
    kie: MockKieServer,
    sleeps: list[float],
    fault: dict[str, Any],
) -> None:
    client = make_client(read_timeout=0.3)
    kie.add_fault("credit", Fault(**fault, times=2))
    assert client.credits() == 100.0
    assert len(kie.requests_to("credit")) == 3
    assert len(sleeps) == 2
    assert_backoff(sleeps)


@pytest.mark.parametrize("fault", [{"code": 500}, {"drop": True}], ids=["500", "dropped"])
def test_record_info_retries_too(
    client: KieClient, kie: MockKieServer, sleeps: list[float], fault: dict[str, Any]
) -> None:
    task_id = client.generate(GenerationRequest("x"))
    kie.add_fault("record-info", Fault(**fault, times=3))
    assert client.record_info(task_id) is None
    assert len(kie.requests_to("record-info")) == 4
    assert len(sleeps) == 3


def test_read_retries_are_bounded(
    client: KieClient, kie: MockKieServer, sleeps: list[float]
) -> None:
    kie.add_fault("credit", code=500, times=50)
    with pytest.raises(ServerError):
        client.credits()
    assert len(kie.requests_to("credit")) == FAST.max_retries + 1
    assert len(sleeps) == FAST.max_retries
    assert_backoff(sleeps)


@pytest.mark.parametrize("fault", [{"http_status": 429, "code": 429}, {"code": 503}])
def test_reads_honour_retry_after(
    client: KieClient, kie: MockKieServer, sleeps: list[float], fault: dict[str, Any]
) -> None:
    kie.add_fault("credit", Fault(**fault, retry_after=7))
    assert client.credits() == 100.0
    assert sleeps == [7.0]


def test_a_retry_after_beyond_the_policy_is_raised_not_waited(
    client: KieClient, kie: MockKieServer, sleeps: list[float]
) -> None:
    kie.add_fault("credit", http_status=429, code=429, retry_after=3600)
    with pytest.raises(RateLimitError) as info:
        client.credits()
    assert info.value.retry_after == 3600
    assert sleeps == []
    assert len(kie.requests_to("credit")) == 1


@pytest.mark.parametrize("code", [400, 401, 402, 404, 422, 451, 501, 505])
def test_reads_do_not_retry_final_errors(
    client: KieClient, kie: MockKieServer, sleeps: list[float], code: int
) -> None:
    kie.add_fault("credit", code=code)
    with pytest.raises(KieAPIError):
        client.credits()
    assert len(kie.requests_to("credit")) == 1
    assert sleeps == []


def test_reads_retry_a_refused_connection_up_to_the_bound(
    make_client: Callable[..., KieClient], sleeps: list[float]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    client = make_client(base_url=url, upload_url=url)
    with pytest.raises(KieConnectionError) as info:
        client.credits()
    assert info.value.refused
    assert info.value.endpoint == "credit"
    assert len(sleeps) == FAST.max_retries


# -- generate: never twice once the server may have it ---------------------------------------

NOT_TWICE = {
    "http-500": ({"http_status": 500, "code": 500}, ServerError),
    "body-500": ({"code": 500}, ServerError),
    "body-455": ({"code": 455}, MaintenanceError),
    "body-550": ({"code": 550}, QueueFullError),
    "dropped-after-processing": ({"drop": True, "after_processing": True}, KieConnectionError),
    "dropped": ({"drop": True}, KieConnectionError),
    "timeout": ({"delay": 1.0}, KieTimeoutError),
    "malformed-json": ({"malformed": True}, MalformedResponseError),
    "500-after-processing": ({"code": 500, "after_processing": True}, ServerError),
}


@pytest.mark.parametrize("fault, error", NOT_TWICE.values(), ids=NOT_TWICE.keys())
def test_generate_is_sent_exactly_once(
    make_client: Callable[..., KieClient],
    kie: MockKieServer,
    sleeps: list[float],
    fault: dict[str, Any],
    error: type[Exception],
) -> None:
    client = make_client(read_timeout=0.3)
    kie.add_fault("generate", Fault(**fault))
    with pytest.raises(error) as info:
        client.generate(GenerationRequest("only once"))
    assert len(kie.requests_to("generate")) == 1
    assert sleeps == []
    if isinstance(info.value, KieConnectionError):
        assert not info.value.refused


def test_generate_dropped_after_processing_charged_once(
    client: KieClient, kie: MockKieServer
) -> None:
    kie.add_fault("generate", drop=True, after_processing=True)
    with pytest.raises(KieConnectionError):
        client.generate(GenerationRequest("the server has it"))
    assert len(kie.tasks) == 1  # the task exists on the server ...
    assert kie.credits == pytest.approx(100 - 1.5)  # ... and was charged exactly once


@pytest.mark.parametrize(
    "fault, expected_sleeps",
    [
        ({"http_status": 429, "code": 429, "retry_after": 3}, [3.0]),
        ({"code": 429, "retry_after": 1.5}, [1.5]),
        ({"http_status": 429, "code": 429}, None),
        ({"code": 429}, None),
    ],
    ids=["http-429-retry-after", "body-429-retry-after", "http-429", "body-429"],
)
def test_generate_is_retried_on_429(
    client: KieClient,
    kie: MockKieServer,
    sleeps: list[float],
    fault: dict[str, Any],
    expected_sleeps: list[float] | None,
) -> None:
    kie.add_fault("generate", Fault(**fault))
    task_id = client.generate(GenerationRequest("after a 429"))
    assert list(kie.tasks) == [task_id]
    assert len(kie.requests_to("generate")) == 2
    if expected_sleeps is None:
        assert len(sleeps) == 1
        assert_backoff(sleeps)
    else:
        assert sleeps == expected_sleeps


def test_generate_429_retries_are_bounded(
    client: KieClient, kie: MockKieServer, sleeps: list[float]
) -> None:
    kie.add_fault("generate", code=429, times=50)
    with pytest.raises(RateLimitError):
        client.generate(GenerationRequest("x"))
    assert len(kie.requests_to("generate")) == FAST.max_retries + 1
    assert len(sleeps) == FAST.max_retries
    assert kie.tasks == {}


def test_a_class_proxy_keeping_the_place_is_resent_beyond_the_retry_count(
    client: KieClient, kie: MockKieServer, sleeps: list[float]
) -> None:
    # A busy class proxy says "your place is kept, send again in 1 s" once per ~25 s of
    # queue: a long queue is not a failing server, so the resends are not counted as retries.
    kept = (b'{"code": 429, "msg": "the class is busy: your place in the queue is kept", '
            b'"data": null, "classProxy": true, "placeKept": true}')
    kie.add_fault("generate", http_status=429, body=kept, retry_after=1,
                  times=FAST.max_retries + 3)
    task_id = client.generate(GenerationRequest("a long queue"))
    assert list(kie.tasks) == [task_id]
    assert len(kie.requests_to("generate")) == FAST.max_retries + 4
    assert sleeps == [1.0] * (FAST.max_retries + 3)


def test_a_hub_user_names_themselves_to_a_class_proxy_only(
    kie: MockKieServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTERHUB_USER", "ada lovelace")
    client = KieClient(SECRET, base_url=kie.url, upload_url=kie.url, retry=FAST)
    client.generate(GenerationRequest("x"))
    assert kie.requests_to("generate")[-1].headers["x-kie-hub-user"] == "ada%20lovelace"
    assert "X-Kie-Hub-User" not in KieClient(SECRET)._headers(DEFAULT_BASE_URL + "/api/v1/x")


def test_generate_over_the_servers_rate_limit_starts_no_extra_task(
    kie_mock_factory: Callable[..., MockKieServer], sleeps: list[float]
) -> None:
    kie = kie_mock_factory(api_key=SECRET, rate_limit=(2, 60.0))
    client = KieClient(SECRET, base_url=kie.url, upload_url=kie.url, retry=FAST,
                       limiter=SlidingWindowLimiter(100, 10.0), sleep=sleeps.append)
    client.generate(GenerationRequest("one"))
    client.generate(GenerationRequest("two"))
    with pytest.raises(RateLimitError) as info:
        client.generate(GenerationRequest("three"))
    assert info.value.http_status == 429
    assert len(kie.tasks) == 2
    assert kie.credits == pytest.approx(100 - 2 * 1.5)
    assert len(kie.requests_to("generate")) == 2 + FAST.max_retries + 1


def test_generate_is_retried_on_a_refused_connection(
    make_client: Callable[..., KieClient], sleeps: list[float]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    client = make_client(base_url=url, upload_url=url)
    with pytest.raises(KieConnectionError) as info:
        client.generate(GenerationRequest("x"))
    assert info.value.refused
    assert info.value.endpoint == "generate"
    assert "could not connect" in str(info.value)
    assert len(sleeps) == FAST.max_retries
    assert_backoff(sleeps)


def test_generate_refused_then_reachable_submits_once(
    kie_mock_factory: Callable[..., MockKieServer], sleeps: list[float]
) -> None:
    """The server comes up while the client backs off: one task, no duplicate."""
    port = closed_port()
    started: list[MockKieServer] = []

    def sleep_then_start(delay: float) -> None:
        sleeps.append(delay)
        if not started:
            started.append(kie_mock_factory(api_key=SECRET, port=port))

    client = KieClient(SECRET, base_url=f"http://127.0.0.1:{port}",
                       upload_url=f"http://127.0.0.1:{port}", retry=FAST,
                       limiter=SlidingWindowLimiter(100, 10.0), sleep=sleep_then_start)
    task_id = client.generate(GenerationRequest("x"))
    assert len(sleeps) == 1
    assert list(started[0].tasks) == [task_id]
    assert len(started[0].requests_to("generate")) == 1


# -- the submission limiter ------------------------------------------------------------------


def test_submit_limiter_holds_n_per_window(
    make_client: Callable[..., KieClient], kie: MockKieServer, fake_clock: FakeClock
) -> None:
    limiter = SlidingWindowLimiter(3, 10.0, clock=fake_clock, sleep=fake_clock.sleep)
    client = make_client(limiter=limiter)
    times = []
    for n in range(8):
        client.generate(GenerationRequest(f"n{n}"))
        times.append(fake_clock())
    assert len(kie.requests_to("generate")) == 8
    assert times == [0, 0, 0, 10, 10, 10, 20, 20]
    for t in times:
        assert sum(1 for u in times if t <= u < t + 10) <= 3
    assert fake_clock.sleeps == [10, 10]


def test_default_limiter_keeps_the_api_limit() -> None:
    from kie_jupyter.api.ratelimit import submit_limiter

    default = KieClient(SECRET, base_url="https://api.example")
    assert default.limiter is submit_limiter
    # The API's limit is 20 per 10 s: the shared limiter may be stricter, never looser.
    assert submit_limiter.max_calls <= 20 and submit_limiter.period >= 10.0


def test_reads_do_not_use_the_submit_limiter(
    make_client: Callable[..., KieClient], kie: MockKieServer, fake_clock: FakeClock
) -> None:
    limiter = SlidingWindowLimiter(1, 10.0, clock=fake_clock, sleep=fake_clock.sleep)
    client = make_client(limiter=limiter)
    for _ in range(5):
        client.credits()
    assert fake_clock.sleeps == []


def test_a_generate_retry_takes_a_new_slot(
    make_client: Callable[..., KieClient], kie: MockKieServer, fake_clock: FakeClock
) -> None:
    limiter = SlidingWindowLimiter(1, 10.0, clock=fake_clock, sleep=fake_clock.sleep)
    client = make_client(limiter=limiter)
    kie.add_fault("generate", code=429, retry_after=0)
    client.generate(GenerationRequest("x"))
    assert len(kie.requests_to("generate")) == 2
    assert fake_clock.sleeps == [10.0]  # the retry waited for the window like any submit


# -- configuration ---------------------------------------------------------------------------


def test_config_defaults() -> None:
    client = KieClient()
    assert client.base_url == DEFAULT_BASE_URL == "https://api.kie.ai"
    assert client.upload_url == DEFAULT_UPLOAD_URL == "https://kieai.redpandaai.co"
    assert client.user_agent == f"kie-jupyter/{__version__}"
    assert client.timeout == (5.0, 30.0)
    assert not client.has_key


def test_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIE_API_KEY", "  env-key-1234567890  ")
    monkeypatch.setenv("KIE_BASE_URL", "https://env-api.example/")
    monkeypatch.setenv("KIE_UPLOAD_URL", "https://env-upload.example")
    client = KieClient()
    assert client.has_key and client.masked_key() == "env…7890"
    assert client.base_url == "https://env-api.example"
    assert client.upload_url == "https://env-upload.example"


def test_arguments_beat_the_environment(
    monkeypatch: pytest.MonkeyPatch, kie_mock_factory: Callable[..., MockKieServer]
) -> None:
    kie = kie_mock_factory(api_key=None)  # accepts any key: we look at which one arrives
    monkeypatch.setenv("KIE_API_KEY", "env-key-1234567890")
    monkeypatch.setenv("KIE_BASE_URL", "https://env-api.example")
    monkeypatch.setenv("KIE_UPLOAD_URL", "https://env-upload.example")

    with KieClient(SECRET, base_url=kie.url, upload_url=kie.url + "/") as client:
        assert client.base_url == client.upload_url == kie.url
        client.credits()
    with KieClient(base_url=kie.url, upload_url=kie.url) as from_env:
        from_env.credits()
    first, second = kie.requests_to("credit")
    assert first.headers["Authorization"] == f"Bearer {SECRET}"
    assert second.headers["Authorization"] == "Bearer env-key-1234567890"


def test_user_agent_default_and_override(
    kie: MockKieServer, make_client: Callable[..., KieClient]
) -> None:
    make_client().credits()
    make_client(user_agent="my-notebook/2.0").credits()
    first, second = kie.requests_to("credit")
    assert first.headers["User-Agent"] == f"kie-jupyter/{__version__}"
    assert second.headers["User-Agent"] == "my-notebook/2.0"


@pytest.mark.parametrize(
    "url",
    [
        "http://api.kie.ai",
        "http://10.0.0.1:8080",
        "http://192.168.1.5",
        "http://127.0.0.1.evil.example",
        "http://localhost.evil.example",
        "ftp://api.kie.ai",
        "api.kie.ai",
        "https://",
    ],
)
@pytest.mark.parametrize("which", ["base_url", "upload_url", "KIE_BASE_URL", "KIE_UPLOAD_URL"])
def test_unsafe_urls_are_refused(monkeypatch: pytest.MonkeyPatch, url: str, which: str) -> None:
    if which.startswith("KIE_"):
        monkeypatch.setenv(which, url)
        kwargs = {}
    else:
        kwargs = {which: url}
    with pytest.raises(KieConfigError) as info:
        KieClient(SECRET, **kwargs)
    assert_no_secret(info.value)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000", "http://127.1.2.3",
     "https://api.kie.ai", "https://kieai.erweima.ai"],
)
def test_loopback_http_and_any_https_are_allowed(url: str) -> None:
    client = KieClient(SECRET, base_url=url, upload_url=url)
    assert client.base_url == url


def test_plain_http_refusal_names_the_fix() -> None:
    with pytest.raises(KieConfigError, match="use https"):
        KieClient(SECRET, base_url="http://api.kie.ai")


# -- result images ---------------------------------------------------------------------------


@pytest.fixture
def result_url(client: KieClient, kie: MockKieServer) -> str:
    """The URL of a finished result image on the mock (the request log is cleared)."""
    task_id = client.generate(GenerationRequest("a result image"))
    url = finished(client, task_id).urls[0]
    kie.reset()
    return url


def test_fetch_image(client: KieClient, kie: MockKieServer, result_url: str) -> None:
    data = client.fetch_image(result_url)
    info = sniff_image(data)
    assert info is not None and info.format == "png"
    (sent,) = kie.requests_to("file")
    assert sent.method == "GET"
    assert sent.headers["User-Agent"] == f"kie-jupyter/{__version__}"


def test_fetch_image_never_sends_the_key(
    client: KieClient, kie: MockKieServer, result_url: str,
    kie_mock_factory: Callable[..., MockKieServer],
) -> None:
    # Even on the API's own host (the mock serves files there too) ...
    client.fetch_image(result_url)
    (sent,) = kie.requests_to("file")
    assert "Authorization" not in sent.headers
    # ... and certainly on another host (a CDN).
    cdn = kie_mock_factory(api_key=SECRET)
    other = KieClient(SECRET, upload_url=cdn.url, base_url=kie.url)
    url = other.upload_bytes(PNG)
    assert cdn.requests_to("file-base64-upload")[0].headers["Authorization"] == f"Bearer {SECRET}"
    client.fetch_image(url)
    (fetched,) = cdn.requests_to("file")
    assert "Authorization" not in fetched.headers
    assert all(SECRET not in v for v in fetched.headers.values())


def test_fetch_image_size_cap(
    make_client: Callable[..., KieClient], kie: MockKieServer, result_url: str,
    sleeps: list[float],
) -> None:
    client = make_client(max_download_bytes=1000)
    with pytest.raises(DownloadError, match="larger than 1000 bytes") as info:
        client.fetch_image(result_url)
    assert info.value.url == result_url
    assert len(kie.requests_to("file")) == 1  # not retried
    assert sleeps == []


def test_fetch_image_size_cap_counts_what_arrives(
    make_client: Callable[..., KieClient], sleeps: list[float]
) -> None:
    """No Content-Length (chunked): the cap applies while streaming."""
    big = PNG + b"\0" * 5000
    with _plain_server([(200, "image/png", big, {"chunked": True})]) as url:
        client = make_client(max_download_bytes=len(PNG) + 100)
        with pytest.raises(DownloadError, match="larger than"):
            client.fetch_image(url + "/big.png")
        fine = make_client(max_download_bytes=len(big))
    with _plain_server([(200, "image/png", big, {"chunked": True})]) as url:
        assert fine.fetch_image(url + "/big.png") == big


def test_fetch_image_oversize_body_refused(
    make_client: Callable[..., KieClient], kie: MockKieServer, result_url: str,
) -> None:
    size = len(make_client().fetch_image(result_url))
    kie.add_fault("file", oversize=500)
    client = make_client(max_download_bytes=size + 100)
    with pytest.raises(DownloadError, match="larger than"):
        client.fetch_image(result_url)


def test_fetch_image_refuses_non_images(
    client: KieClient, kie: MockKieServer, result_url: str, sleeps: list[float]
) -> None:
    kie.add_fault("file", body=b"<html>login page</html>", content_type="text/html")
    with pytest.raises(DownloadError, match=r"not an image \(text/html\)"):
        client.fetch_image(result_url)
    assert len(kie.requests_to("file")) == 1
    assert sleeps == []


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/a.png", "", "javascript:alert(1)",
            "//example.com/a.png"],
)
def test_fetch_image_refuses_non_http_urls(
    client: KieClient, kie: MockKieServer, url: str
) -> None:
    with pytest.raises(DownloadError, match="not an http"):
        client.fetch_image(url)
    assert kie.requests == []


def test_fetch_image_refuses_a_non_string(client: KieClient) -> None:
    with pytest.raises(DownloadError):
        client.fetch_image(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fault",
    [{"truncate": True}, {"http_status": 503}, {"http_status": 500}, {"http_status": 429},
     {"drop": True}, {"delay": 1.0}],
    ids=["truncated", "503", "500", "429", "dropped", "timeout"],
)
def test_fetch_image_retries_transient_faults(
    make_client: Callable[..., KieClient], kie: MockKieServer, result_url: str,
    sleeps: list[float], fault: dict[str, Any],
) -> None:
    client = make_client(read_timeout=0.3)
    expected = client.fetch_image(result_url)
    kie.reset()
    kie.add_fault("file", Fault(**fault, times=2))
    assert client.fetch_image(result_url) == expected
    assert len(kie.requests_to("file")) == 3
    assert len(sleeps) == 2
    assert_backoff(sleeps)


def test_fetch_image_gives_up_after_the_bound(
    client: KieClient, kie: MockKieServer, result_url: str, sleeps: list[float]
) -> None:
    kie.add_fault("file", truncate=True, times=50)
    with pytest.raises(DownloadError) as info:
        client.fetch_image(result_url)
    assert len(kie.requests_to("file")) == FAST.max_retries + 1
    assert len(sleeps) == FAST.max_retries
    assert info.value.url == result_url


def test_fetch_image_404_is_final(
    client: KieClient, kie: MockKieServer, sleeps: list[float]
) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        client.fetch_image(f"{kie.url}/files/results/nothing_0.png")
    assert sleeps == []


def test_fetch_image_gzip_encoded(make_client: Callable[..., KieClient]) -> None:
    """Content-Length counts the compressed bytes: a gzip image is not 'truncated'."""
    packed = gzip.compress(PNG)
    headers = {"Content-Encoding": "gzip"}
    with _plain_server([(200, "image/png", packed, headers)]) as url:
        client = make_client()
        assert client.fetch_image(url + "/a.png") == PNG


# -- a tiny scripted HTTP server, for what the mock cannot send -------------------------------


class _plain_server:
    """Serve scripted answers ``(status, content type, body, headers)`` on 127.0.0.1.

    A ``"chunked": True`` header entry sends the body chunked, without Content-Length.
    """

    def __init__(self, answers: list[tuple[int, str, bytes, dict[str, Any]]]) -> None:
        answers = list(answers)
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with lock:
                    status, ctype, body, headers = answers[0] if len(answers) == 1 else (
                        answers.pop(0))
                extra = dict(headers)
                chunked = extra.pop("chunked", False)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                for name, value in extra.items():
                    self.send_header(name, value)
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for start in range(0, len(body), 1000):
                        piece = body[start:start + 1000]
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            do_POST = do_GET

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
