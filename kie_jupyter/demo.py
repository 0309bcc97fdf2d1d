"""Demo mode: the bundled mock server, running inside the kernel on 127.0.0.1.

With it, every notebook runs end to end with no API key (Binder, classes, CI). The images it
serves are synthetic.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .testing.mock_server import MockKieServer

__all__ = ["DemoServer", "demo_requested", "DEMO_KEY", "BANNER"]

#: The demo server accepts any key; this one is sent so that no real key goes to it.
DEMO_KEY = "demo-key"
BANNER = (
    "kie4o demo mode: a local mock of the KIE.AI API at {url} — the images are synthetic, "
    "nothing is sent to KIE.AI and no credits are spent. `%kie4o demo off` to leave."
)


def demo_requested() -> bool:
    """Whether ``KIE_DEMO`` asks for demo mode at load."""
    return os.environ.get("KIE_DEMO", "").strip().lower() in ("1", "true", "yes", "on")


def _duration() -> float:
    try:
        return max(float(os.environ.get("KIE_DEMO_DURATION", "3")), 0.0)
    except ValueError:
        return 3.0


class DemoServer:
    """Start and stop the in-kernel mock server."""

    def __init__(self) -> None:
        self.server: MockKieServer | None = None

    @property
    def running(self) -> bool:
        return self.server is not None

    @property
    def url(self) -> str | None:
        return self.server.url if self.server else None

    def start(self) -> str:
        """Start (once); return the base URL."""
        if self.server is None:
            from .testing.mock_server import MockKieServer

            self.server = MockKieServer(api_key=None, duration=_duration(), credits=1000.0,
                                        rate_limit=None).start()
        return self.server.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
