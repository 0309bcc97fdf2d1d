"""record-info under faults: the task still ends right, or fails with the API's reason."""

from __future__ import annotations

import pytest

from kie_jupyter import generate
from kie_jupyter.api.models import GenerationRequest, TaskStatus
from kie_jupyter.engine.task import Task

from fault_helpers import FAST


def run(client, prompt="a fox", timeout=20.0, variants=1) -> Task:
    task = Task(GenerationRequest(prompt, variants=variants), client=client, timeout=timeout,
                schedule=FAST)
    return task.start().wait(timeout + 10)


@pytest.mark.parametrize(
    "fault",
    [
        dict(http_status=500, times=6),
        dict(code=500, times=6),
        dict(http_status=503, times=3),
        dict(code=429, retry_after=0.2, times=2),
        dict(code=455, times=2),
        dict(delay=1.5, times=2),
        dict(malformed=True, times=5),
        dict(drop=True, times=5),
        dict(body=b"<html>502 Bad Gateway</html>", http_status=502, times=3),
    ],
)
def test_transient_record_info_faults_are_waited_out(server, client, fault):
    server.add_fault("record-info", **fault)
    task = run(client)
    assert task.status is TaskStatus.SUCCESS, task.error
    assert task.images


def test_null_record_for_a_while(server, client):
    server.script_next_task(null_polls=4)
    assert run(client).status is TaskStatus.SUCCESS


def test_record_is_null_just_after_submit_is_tolerated(server, client):
    server.add_fault("record-info", code=422, msg="record is null", times=3)
    assert run(client).status is TaskStatus.SUCCESS


def test_success_with_no_urls_then_urls(server, client):
    server.script_next_task(empty_url_polls=2)
    task = run(client)
    assert task.status is TaskStatus.SUCCESS and task.images


def test_success_that_never_has_urls_is_reported(server, client):
    server.script_next_task(empty_url_polls=100)
    task = run(client)
    assert task.status is TaskStatus.FAILED
    assert "returned no images" in str(task.error) and task.task_id


@pytest.mark.parametrize(
    ("script", "needle"),
    [
        (dict(success_flag=2, error_code=400), "content policies"),
        (dict(success_flag=3), "content policies"),
        (dict(success_flag=2, status="CREATE_TASK_FAILED", error_code=500,
              error_message="upstream exploded"), "upstream exploded"),
        (dict(success_flag=2, error_code=451, error_message="图片下载失败"), "图片下载失败"),
    ],
)
def test_failed_tasks_carry_the_api_reason(server, client, script, needle):
    server.script_next_task(**script)
    task = run(client)
    assert task.status is TaskStatus.FAILED
    assert needle in str(task.error)
    if script.get("error_code"):
        assert task.error.code == script["error_code"]
    with pytest.raises(Exception, match=task.task_id):
        _ = task.images


def test_endless_poll_is_cut_by_the_local_timeout(server, client):
    server.add_fault("record-info", http_status=500, times=10_000)
    task = run(client, timeout=2.0)  # (10,000 failing polls: only the timeout ends it)
    assert task.status is TaskStatus.TIMED_OUT
    assert task.task_id in str(task.error) and "resume" in str(task.error)


def test_slow_task_times_out_with_the_id_to_resume(server, client):
    server.script_next_task(duration=30)
    task = run(client, timeout=1.0)
    assert task.status is TaskStatus.TIMED_OUT
    # The error is neutral (no front end's command); each front end adds its own hint.
    assert task.task_id in str(task.error) and "can be resumed" in str(task.error)
    assert "%kie4o" not in str(task.error) and task.error.fix == "resume"


def test_unknown_task_id_fails_at_once(server, client):
    from kie_jupyter import resume

    task = resume("no-such-task", client=client, timeout=10)
    assert task.status is TaskStatus.FAILED and "record is null" in str(task.error)


@pytest.mark.real_schedule
def test_poll_rate_per_task_stays_under_three_per_second(server, client):
    server.script_next_task(duration=2.0)
    task = run(client)
    times = [r.time for r in server.requests_to("record-info")]
    assert task.status is TaskStatus.SUCCESS
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.33


def test_generate_api_of_a_failed_task_does_not_raise(server, client):
    server.script_next_task(success_flag=2)
    task = generate("x", client=client, timeout=10)
    assert task.status is TaskStatus.FAILED
