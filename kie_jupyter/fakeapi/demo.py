"""Demo mode's server: the fake KIE server started in this process on 127.0.0.1.

With it, every notebook and the CLI run end to end with no API key (Binder, classes, CI). The
images it serves are synthetic, except for the prompts of a replay pack (``KIE_DEMO_PACK``, or
:meth:`DemoServer.start` with ``pack=``): those get the pack's recorded images.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from .packs import PackError, ReplayPack, load_pack

if TYPE_CHECKING:
    from .server import MockKieServer

__all__ = ["DemoServer", "demo_requested", "env_pack", "DEMO_KEY", "PACK_ENV"]

#: The demo server accepts any key; this one is sent so that no real key goes to it.
DEMO_KEY = "demo-key"
#: The environment variable naming a replay pack for demo mode.
PACK_ENV = "KIE_DEMO_PACK"

log = logging.getLogger("kie_jupyter")


def demo_requested() -> bool:
    """Whether ``KIE_DEMO`` asks for demo mode at load."""
    return os.environ.get("KIE_DEMO", "").strip().lower() in ("1", "true", "yes", "on")


def env_pack() -> ReplayPack | None:
    """The replay pack ``KIE_DEMO_PACK`` names, or None when unset; :class:`PackError` (one
    line, naming the variable) when it names no usable pack."""
    path = os.environ.get(PACK_ENV, "").strip()
    if not path:
        return None
    try:
        return load_pack(path)
    except PackError as exc:
        raise PackError(f"{PACK_ENV}={exc}") from None


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

    @property
    def pack(self) -> ReplayPack | None:
        """The replay pack the running server answers from, if any."""
        return self.server.pack if self.server else None

    def start(self, pack: ReplayPack | None = None) -> str:
        """Start (once); return the base URL.

        ``pack`` (loaded by the caller, who reports a bad file) is served from now on, also
        by a server already running. Otherwise a new server takes ``KIE_DEMO_PACK``; a bad
        one there is a warning, not a failure: demo mode must start (``%load_ext`` with
        ``KIE_DEMO=1``), with synthetic images only.
        """
        if self.server is not None:
            if pack is not None:
                self.server.load_pack(pack)
            return self.server.url
        if pack is None:
            try:
                pack = env_pack()
            except PackError as exc:
                log.warning("kie4o: %s; demo mode serves synthetic images only", exc)
        # Imported here: %load_ext stays fast unless demo mode is used.
        from .server import MockKieServer

        # cost_per_image 0: demo mode never spends its pretend balance.
        self.server = MockKieServer(api_key=None, duration=_duration(), credits=1000.0,
                                    cost_per_image=0.0,
                                    rate_limit=None, pack=pack).start()
        return self.server.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
