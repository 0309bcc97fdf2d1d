"""Downloads and uploads under faults: a clear per-image error, nothing generated on failure."""

from __future__ import annotations

import time

import pytest

from kie_jupyter import generate
from kie_jupyter.api.models import GenerationRequest, TaskStatus
from kie_jupyter.engine.task import Task
from kie_jupyter.fakeapi.images import render_png
from kie_jupyter.notebook.cards import static_bundle
from kie_jupyter.testing import MockKieServer

from fault_helpers import FAST, KEY


def run(client, variants=2) -> Task:
    task = Task(GenerationRequest("a fox", variants=variants), client=client, timeout=20,
                schedule=FAST)
    return task.start().wait(30)


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        (dict(http_status=404, times=1, match="_1.png"), "HTTP 404"),
        (dict(truncate=True, times=10, match="_1.png"), "could not download"),
        (dict(content_type="text/html", body=b"<html>login</html>", match="_1.png"),
         "not an image"),
        (dict(oversize=2_000_000, times=10, match="_1.png"), "larger than"),
        (dict(http_status=500, times=10, match="_1.png"), "HTTP 500"),
    ],
)
def test_one_bad_image_leaves_the_others(server, client, fault, needle):
    client.max_download_bytes = 1_000_000
    server.add_fault("file", **fault)
    task = run(client)
    assert task.status is TaskStatus.SUCCESS
    assert len(task.images) == 1 and len(task.image_errors) == 1
    (reason,) = task.image_errors.values()
    assert needle in f"could not download: {reason}"
    html = static_bundle(task)["text/html"]
    assert html.count("data:image/") == 1 and "image " in html


def test_slow_body_is_cut_off(server, client):
    client.download_timeout = 0.5
    client.retry = type(client.retry)(max_retries=1, base_delay=0.01, max_delay=0.01)
    server.add_fault("file", chunk_delay=1.0, times=10)  # the whole body would take ~14 s
    task = run(client, variants=1)  # the whole body would have come, had it not been cut
    assert task.status is TaskStatus.FAILED
    assert "too slow" in str(task.error) or "could not be downloaded" in str(task.error)


def test_all_downloads_failing_is_a_failure_with_the_reason(server, client):
    server.add_fault("file", http_status=404, times=10)
    task = run(client)
    assert task.status is TaskStatus.FAILED
    assert "could not be downloaded" in str(task.error) and "404" in str(task.error)
    assert task.urls  # the URLs are kept: the images can still be fetched later


def test_result_on_another_host_gets_no_key(client, server):
    with MockKieServer(api_key=None) as cdn:
        # Put a real image on the "CDN" (uploads there need a key; the CDN accepts any).
        import requests

        up = requests.post(f"{cdn.url}/api/file-base64-upload",
                           json={"base64Data": __import__("base64").b64encode(
                               render_png("cdn")).decode(), "uploadPath": "r",
                                 "fileName": "a.png"},
                           headers={"Authorization": "Bearer other"}, timeout=5).json()
        url = up["data"]["downloadUrl"]
        server.script_next_task(result_urls=[url])
        task = run(client, variants=1)
        assert task.status is TaskStatus.SUCCESS
        fetched = cdn.requests_to("file")
        assert fetched and all("Authorization" not in r.headers for r in fetched)
        assert all(KEY not in str(r.headers) for r in cdn.requests)


@pytest.mark.parametrize("bad", ["javascript:alert(1)", "file:///etc/passwd", "ftp://x/a.png"])
def test_result_urls_must_be_http(server, client, bad):
    server.script_next_task(result_urls=[bad])
    task = run(client, variants=1)
    assert task.status is TaskStatus.FAILED
    assert "not an http(s) URL" in str(task.error)
    assert bad not in static_bundle(task)["text/html"].split("href=")[-1]


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        (dict(code=400, msg="uploadPath is required"), "uploadPath is required"),
        (dict(code=401), "401"),
        (dict(http_status=500, times=10), "500"),
    ],
)
def test_upload_failure_generates_nothing(server, client, tmp_path, fault, needle):
    path = tmp_path / "in.png"
    path.write_bytes(render_png("in"))
    server.add_fault("file-stream-upload", **fault)
    task = generate("edit it", images=[path], yes=True, client=client, timeout=10)
    assert task.status is TaskStatus.FAILED
    assert needle in str(task.error)
    assert not server.requests_to("generate")


def test_other_tasks_slow_downloads_do_not_hold_a_task_s_images(server, client, monkeypatch):
    # The shared download threads (two here) are all busy with two tasks' stalled images: a
    # third task still gets its images, on its own thread, before those finish.
    from kie_jupyter.engine import runner

    monkeypatch.setattr(runner, "_downloads", runner._SharedPool(2, "test-download", idle=0.5))
    client.timeout = (client.timeout[0], 10.0)  # the stalled images wait, not time out
    server.add_fault("file", delay=4.0, times=4)
    slow = [Task(GenerationRequest(f"slow {n}", variants=2), client=client, timeout=30,
                 schedule=FAST).start() for n in range(2)]
    deadline = time.monotonic() + 10
    while len(server.requests_to("file")) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(server.requests_to("file")) == 4  # all four stalled: both threads busy
    fast = run(client, variants=2)
    assert fast.status is TaskStatus.SUCCESS and len(fast.images) == 2
    assert not any(task.done for task in slow)  # it did not wait for them
    for task in slow:
        assert task.wait(30).status is TaskStatus.SUCCESS
