"""pytest plugin (``pytest11`` entry point): ``kie_mock`` and ``kie_mock_factory`` fixtures.

def test_generate(kie_mock):
    kie_mock.add_fault("record-info", code=500)
    ...  # KIE_API_KEY, KIE_BASE_URL and KIE_UPLOAD_URL point at the mock
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..fakeapi.server import MockKieServer

# The plugin loads in every pytest run of an environment that has kie-jupyter installed, so
# the server module is imported only when a fixture is used.


@pytest.fixture
def kie_mock_factory() -> Iterator[Callable[..., MockKieServer]]:
    """Make started ``MockKieServer``s with any arguments; all are stopped at teardown."""
    from ..fakeapi.server import MockKieServer

    servers: list[MockKieServer] = []

    def make(*args: Any, **kwargs: Any) -> MockKieServer:
        server = MockKieServer(*args, **kwargs).start()
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def kie_mock(
    kie_mock_factory: Callable[..., MockKieServer], monkeypatch: pytest.MonkeyPatch
) -> MockKieServer:
    """A started mock (key ``test-key``, 1 s tasks) with the ``KIE_*`` environment set to it."""
    server = kie_mock_factory(api_key="test-key", duration=1.0)
    monkeypatch.setenv("KIE_API_KEY", "test-key")
    monkeypatch.setenv("KIE_BASE_URL", server.url)
    monkeypatch.setenv("KIE_UPLOAD_URL", server.url)
    monkeypatch.delenv("KIE_DEMO", raising=False)
    return server
