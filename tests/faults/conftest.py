"""Fault-injection fixtures: a mock server and a client with quick retries and timeouts."""

from __future__ import annotations

import pytest

from kie_jupyter import KieClient
from kie_jupyter.api.ratelimit import SlidingWindowLimiter
from kie_jupyter.api.retry import RetryPolicy
from kie_jupyter.testing import MockKieServer

from fault_helpers import KEY  # isort: skip


@pytest.fixture()
def server():
    with MockKieServer(api_key=KEY, duration=0.5) as srv:
        yield srv


@pytest.fixture()
def client(server):
    with KieClient(
        KEY, base_url=server.url, upload_url=server.url, read_timeout=1.0,
        retry=RetryPolicy(max_retries=3, base_delay=0.02, max_delay=0.1),
        limiter=SlidingWindowLimiter(20, 10.0),
    ) as c:
        yield c
