"""generate under faults: sent exactly as often as is safe, with a clear outcome."""

from __future__ import annotations

import pytest

from kie_jupyter import KieClient, generate
from kie_jupyter.api.models import TaskStatus
from kie_jupyter.api.ratelimit import SlidingWindowLimiter
from kie_jupyter.api.retry import RetryPolicy

from fault_helpers import KEY


def sends(server) -> int:
    return len(server.requests_to("generate"))


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        (dict(http_status=500), "error 500"),
        (dict(code=500, msg="internal boom"), "internal boom"),
        (dict(code=455), "maintenance"),
        (dict(code=550), "queue is full"),
        (dict(http_status=502), "502"),
        (dict(drop=True, after_processing=True), "may have reached KIE.AI"),
        (dict(delay=2.0, after_processing=True), "did not answer"),
        (dict(malformed=True), "may have reached KIE.AI"),
    ],
)
def test_generate_is_sent_exactly_once(server, client, fault, needle):
    server.add_fault("generate", **fault)
    task = generate("a fox", client=client, timeout=10)
    assert task.status is TaskStatus.FAILED
    assert needle.lower() in str(task.error).lower()
    assert sends(server) == 1
    assert task.task_id is None
    assert KEY not in str(task.error)


@pytest.mark.parametrize("retry_after", [None, 0.3])
def test_generate_retries_on_429(server, client, retry_after):
    server.add_fault("generate", http_status=429, retry_after=retry_after, times=2)
    task = generate("a fox", client=client, timeout=10)
    assert task.status is TaskStatus.SUCCESS and task.images
    assert sends(server) == 3
    if retry_after:
        times = [r.time for r in server.requests_to("generate")]
        assert times[1] - times[0] >= retry_after * 0.9


def test_generate_429_gives_up_after_the_bound(server, client):
    server.add_fault("generate", code=429, times=10)
    task = generate("a fox", client=client, timeout=10)
    assert task.status is TaskStatus.FAILED and "429" in str(task.error)
    assert sends(server) == client.retry.max_retries + 1


def test_generate_retries_a_refused_connection(server):
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = KieClient(KEY, base_url=f"http://127.0.0.1:{port}", upload_url=server.url,
                       retry=RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.02),
                       limiter=SlidingWindowLimiter(20, 10.0))
    attempts = []
    client._sleep = lambda s: attempts.append(s)
    task = generate("a fox", client=client, timeout=5)
    assert task.status is TaskStatus.FAILED and "could not connect" in str(task.error)
    assert len(attempts) == 2  # retried: the request surely never arrived


def test_dropped_generate_created_one_task_only(server, client):
    server.add_fault("generate", drop=True, after_processing=True)
    generate("a fox", client=client, timeout=10)
    assert len(server.tasks) == 1  # the server took it once; we did not send it again


def test_insufficient_credits_shows_the_balance(server, client):
    server.credits = 1
    task = generate("a fox", client=client, timeout=10)
    assert task.status is TaskStatus.FAILED
    assert "402" in str(task.error) and "balance: 1 credits" in str(task.error)


def test_unauthorised_says_how_to_fix(server):
    client = KieClient("sk-wrong-000000000000", base_url=server.url, upload_url=server.url)
    task = generate("a fox", client=client, timeout=10)
    assert "401" in str(task.error) and "KIE_API_KEY" in str(task.error)
    assert "sk-wrong-000000000000" not in str(task.error)
