"""Edge cases of a task's life: double runs, stops at awkward moments, broken answers."""

from __future__ import annotations

import threading
import time

import pytest

from kie_jupyter import KieClient, generate
from kie_jupyter.api.errors import KieConfigError
from kie_jupyter.api.models import GenerationRequest, TaskStatus
from kie_jupyter.api.ratelimit import SlidingWindowLimiter
from kie_jupyter.engine.history import HistoryStore
from kie_jupyter.engine.task import Task
from kie_jupyter.fakeapi.images import render_png

from fault_helpers import FAST, KEY


def task_for(client, prompt="a fox", **kw) -> Task:
    return Task(GenerationRequest(prompt), client=client, timeout=20, schedule=FAST, **kw)


def test_run_after_start_never_submits_twice(server, client):
    task = task_for(client).start()
    task.run()
    task.wait(20)
    threading.Thread(target=task.run).start()
    time.sleep(0.2)
    assert task.status is TaskStatus.SUCCESS
    assert len(server.requests_to("generate")) == 1


def test_truncated_record_info_is_retried(server, client):
    server.add_fault("record-info", truncate=True, times=2)
    task = task_for(client).start().wait(30)
    assert task.status is TaskStatus.SUCCESS, task.error


def test_truncated_generate_answer_warns_instead_of_resending(server, client):
    server.add_fault("generate", truncate=True, after_processing=True)
    task = task_for(client).start().wait(30)
    assert task.status is TaskStatus.FAILED
    assert "may have reached KIE.AI" in str(task.error)
    assert len(server.requests_to("generate")) == 1


def test_a_stalled_download_does_not_discard_the_other_images(server, client):
    client.timeout = (client.timeout[0], 0.3)
    client.retry = type(client.retry)(max_retries=0)
    server.add_fault("file", chunk_delay=1.0, match="_1.png")
    task = Task(GenerationRequest("two", variants=2), client=client, timeout=20,
                schedule=FAST).start().wait(30)
    assert task.status is TaskStatus.SUCCESS
    assert len(task.images) == 1 and list(task.image_errors) == [1]


def test_stop_while_waiting_for_a_submission_slot_sends_nothing(server):
    limiter = SlidingWindowLimiter(1, 30.0)
    client = KieClient(KEY, base_url=server.url, upload_url=server.url, limiter=limiter)
    first = task_for(client).start()
    second = task_for(client).start()
    time.sleep(0.3)
    second.stop()
    second.wait(5)
    assert second.status is TaskStatus.STOPPED and second.task_id is None
    first.wait(20)
    assert len(server.requests_to("generate")) == 1


def test_stop_during_empty_success_repolls_is_a_stop(server, client):
    server.script_next_task(empty_url_polls=50, duration=0.1)
    task = task_for(client).start()
    deadline = time.monotonic() + 10
    while not server.requests_to("record-info")[2:] and time.monotonic() < deadline:
        time.sleep(0.05)
    task.stop()
    task.wait(5)
    assert task.status is TaskStatus.STOPPED


def test_timeout_message_names_the_last_error(server, client):
    server.add_fault("record-info", code=500, msg="taskId format invalid", times=1000)
    task = Task(GenerationRequest("x"), client=client, timeout=1.5, schedule=FAST)
    task.start().wait(20)
    assert task.status is TaskStatus.TIMED_OUT
    assert "taskId format invalid" in str(task.error) and "resume" in str(task.error)


def test_poller_honours_retry_after(server, client):
    server.add_fault("record-info", code=429, retry_after=1.0, times=1)
    task = task_for(client).start().wait(20)
    times = [r.time for r in server.requests_to("record-info")]
    assert task.status is TaskStatus.SUCCESS
    assert times[1] - times[0] >= 0.95


def test_gateway_error_on_generate_warns_about_a_possible_task(server, client):
    server.add_fault("generate", http_status=502, body=b"<html>502 Bad Gateway</html>",
                     after_processing=True)
    task = task_for(client).start().wait(20)
    assert "may have reached KIE.AI" in str(task.error)
    assert len(server.requests_to("generate")) == 1


@pytest.mark.parametrize("bad", ["sk-abc\ndef", "sk-abc def", "sk-ключ"])
def test_keys_that_cannot_be_sent_are_refused_without_echo(bad):
    with pytest.raises(KieConfigError) as info:
        KieClient(bad, base_url="https://api.example")
    assert bad not in str(info.value) and "abc" not in str(info.value)


def test_gif_inputs_are_refused_before_sending(server, client, tmp_path):
    from PIL import Image

    from kie_jupyter import KieUsageError

    gif = tmp_path / "a.gif"
    Image.new("RGB", (16, 16)).save(gif, format="GIF")
    with pytest.raises(KieUsageError, match="GIF"):
        generate("x", images=[gif], client=client)
    assert not server.requests


def test_python_api_records_history(server, client, tmp_path, monkeypatch):
    monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "h"))
    task = generate("remember me", client=client)
    entry = HistoryStore(tmp_path / "h").get(task.task_id)
    assert entry is not None and entry.status == "success" and entry.prompt == "remember me"


def test_resume_keeps_the_first_creation_time_and_saved_files(server, client, tmp_path):
    store = HistoryStore(tmp_path)
    first = task_for(client, history=store, save_dir=tmp_path / "img").start().wait(20)
    resumed = Task(None, client=client, task_id=first.task_id, schedule=FAST,
                   history=store).start().wait(20)
    assert resumed.status is TaskStatus.SUCCESS
    entry = store.get(first.task_id)
    assert entry.created == first.created.isoformat()
    assert entry.saved_paths == first.saved_paths and entry.saved_paths


def test_render_png_is_an_accepted_input():
    from kie_jupyter.api.imagedata import check_image_bytes

    check_image_bytes(render_png("x"), "x")
