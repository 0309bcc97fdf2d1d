"""Demo mode's server: the fake KIE server started in this process on 127.0.0.1.

With it, every notebook and the CLI run end to end with no API key (Binder, classes, CI). The
images it serves are synthetic.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import MockKieServer

__all__ = ["DemoServer", "demo_requested", "DEMO_KEY"]

#: The demo server accepts any key; this one is sent so that no real key goes to it.
DEMO_KEY = "demo-key"


def demo_requested() -> bool:
    """Whether ``KIE_DEMO`` asks for demo mode at load."""
    return os.environ.get("KIE_DEMO", "").strip().lower() in ("1", "true", "yes", "on")


def _duration() -> float:
    try:
        return max(float(os.environ.get("KIE_DEMO_DURATION", "3")), 0.0)
    except ValueError:
        return 3.0


class DemoServer:
    """Start and stop the in-process fake server."""

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
            # Imported here: %load_ext stays fast unless demo mode is used.
            from .server import MockKieServer

            self.server = MockKieServer(api_key=None, duration=_duration(), credits=1000.0,
                                        rate_limit=None).start()
        return self.server.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
