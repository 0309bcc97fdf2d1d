"""Run the class proxy on uvicorn in a background thread (tests, benchmarks, notebooks).

``kie4o class serve`` runs uvicorn in the foreground; this is the same server, bound to a free
port on 127.0.0.1 and stoppable, for code that needs a proxy beside other work.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from .app import build_app
from .forward import ClassProxy

__all__ = ["ProxyThread", "listen_socket"]


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for uvicorn, with Nagle's algorithm off.

    asyncio turns Nagle off only for sockets made with ``proto=IPPROTO_TCP``; uvicorn's own
    (``proto=0``) keep it on, and a keep-alive client's delayed ACK then holds every answer
    40 ms. Accepted sockets inherit the option from this one.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


class ProxyThread:
    """``with ProxyThread(proxy) as running: running.url`` — uvicorn in a thread."""

    def __init__(self, proxy: ClassProxy, *, prefix: str = "", host: str = "127.0.0.1",
                 port: int = 0, log_config: dict[str, Any] | None = None) -> None:
        self.proxy = proxy
        self.prefix = prefix
        self._socket = listen_socket(host, port)
        self.port = self._socket.getsockname()[1]
        self.url = f"http://{host}:{self.port}" + ("/" + prefix.strip("/") if prefix else "")
        config = uvicorn.Config(build_app(proxy, prefix=prefix), log_config=log_config,
                                log_level="info", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def start(self) -> ProxyThread:
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]},
                                        name=f"ClassProxy:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the class proxy did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> ProxyThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
