"""Run the class proxy on uvicorn: its socket, its logging, and a background thread (tests,
benchmarks, notebooks).

``kie4o class serve`` runs uvicorn in the foreground (:func:`run_in_foreground`: with
:func:`log_config` and, as a hub's service, :func:`exit_with_parent`); :class:`ProxyThread` is
the same server, bound to a free port on 127.0.0.1 and stoppable, for code that needs a proxy
beside other work.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

import uvicorn

from .app import build_app
from .forward import ClassProxy

__all__ = ["ProxyThread", "listen_socket", "log_config", "exit_with_parent", "run_in_foreground"]

log = logging.getLogger("kie_jupyter.classroom")

#: Every line of the service's log: when, how bad, from where.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config with timestamps, and the proxy's own logger
    (``kie_jupyter.classroom``: tasks forwarded, KIE unreachable, …) on stderr at ``level``
    (``info``, ``warning``, …); access lines stay on stdout, as uvicorn has them."""
    access = '%(client_addr)s - "%(request_line)s" %(status_code)s'
    return {
        "version": 1,
        "disable_existing_loggers": False,  # the proxy's logger exists already
        "formatters": {
            "plain": {"format": LOG_FORMAT},
            "access": {"()": "uvicorn.logging.AccessFormatter", "use_colors": False,
                       "fmt": LOG_FORMAT.replace("%(message)s", access)},
        },
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "plain",
                       "stream": "ext://sys.stderr"},
            "access": {"class": "logging.StreamHandler", "formatter": "access",
                       "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            log.name: {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
        },
    }


def exit_with_parent(server: uvicorn.Server, *, every: float = 1.0) -> threading.Event:
    """Stop ``server`` cleanly once this process's parent is gone (its parent id changes):
    a hub's service must not outlive a killed hub, or it holds the port the hub's next
    service needs. Set the returned event to stop watching."""
    parent = os.getppid()
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(every):
            if os.getppid() != parent:
                log.warning("the parent process (%d, the hub) is gone: stopping the class "
                            "proxy", parent)
                server.should_exit = True
                return

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
    return stop


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


def run_in_foreground(app: Any, sock: socket.socket, *, log_level: str,
                      forwarded_allow_ips: str | None = None,
                      with_parent: bool = False) -> bool:
    """Serve ``app`` on ``sock`` until Ctrl-C, SIGTERM or (``with_parent``) the parent's end:
    True when it ran and stopped cleanly, False when the app could not start (uvicorn logged
    why). ``forwarded_allow_ips``: trust X-Forwarded-* from these addresses."""
    server = uvicorn.Server(uvicorn.Config(app, log_config=log_config(log_level),
                                           log_level=log_level,
                                           proxy_headers=forwarded_allow_ips is not None,
                                           forwarded_allow_ips=forwarded_allow_ips,
                                           # A hub stops its service with SIGINT, and kills
                                           # it 10 s later: finish in-flight work before.
                                           timeout_graceful_shutdown=5))
    watching = exit_with_parent(server) if with_parent else None
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down cleanly
        pass
    except SystemExit:  # uvicorn's way to say the app's start failed
        return False
    finally:
        if watching is not None:
            watching.set()
    return True


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
