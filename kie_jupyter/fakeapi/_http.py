"""HTTP plumbing of the mock server: the threaded server, the handler, and byte-level faults."""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from ._state import Fault, MockRequest


class Dispatcher(Protocol):
    """The server behind the HTTP layer (``MockKieServer``; declared here, no import cycle)."""

    def _record(self, method: str, path: str, headers: Any, body: bytes) -> MockRequest: ...
    def _take_fault(self, endpoint: str, path: str) -> Fault | None: ...
    def _respond(self, request: MockRequest, fault: Fault | None) -> Answer | None:
        """The answer to ``request``; None drops the connection."""
        ...

log = logging.getLogger("kie_jupyter.testing")

_CHUNK = 16 * 1024


@dataclass
class Answer:
    """An HTTP answer before it is sent."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class MockHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows its mock and can close its open connections."""

    daemon_threads = True  # a handler stuck in a delay or a keep-alive read never blocks exit
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops the SYNs of a burst of new connections (a class
    # proxy's, a 30-thread benchmark's), which then wait a 1 s retransmit.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], mock: Dispatcher) -> None:
        self.mock = mock
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, sock: socket.socket, open_: bool) -> None:
        with self._conn_lock:
            (self._connections.add if open_ else self._connections.discard)(sock)

    def close_connections(self) -> None:
        """Shut down every open connection, waking handlers blocked on keep-alive reads."""
        with self._conn_lock:
            socks = list(self._connections)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (timeouts, dropped connections) are part of the job: stay quiet.
        log.debug("MockKieServer: connection from %s ended with an error", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries Content-Length
    server_version = "MockKie/1.0"
    # An answer's head and body are two writes; with Nagle on, a keep-alive client's delayed
    # ACK holds the body 40 ms (KIE's servers answer at once).
    disable_nagle_algorithm = True
    server: MockHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and notebooks don't want a line per request

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.track(self.connection, False)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _serve(self) -> None:
        mock = self.server.mock
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length > 0 else b""
        request = mock._record(self.command, self.path, self.headers, body)
        fault = mock._take_fault(request.endpoint, request.path)
        answer = mock._respond(request, fault)
        try:
            if answer is None:
                self._drop()
            else:
                self._send(answer, fault)
        except OSError:  # the client went away (e.g. its timeout fired during a delay)
            self.close_connection = True

    def _drop(self) -> None:
        """Close the connection without a single byte of answer."""
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, answer: Answer, fault: Fault | None) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        body = answer.body
        if fault is not None and fault.truncate:
            body = body[: len(body) // 2]
        if fault is not None and fault.chunk_delay > 0:
            for start in range(0, len(body), _CHUNK):
                if start:
                    time.sleep(fault.chunk_delay)
                self.wfile.write(body[start : start + _CHUNK])
        else:
            self.wfile.write(body)
        if fault is not None and fault.truncate:
            # Fewer bytes than Content-Length promised, then hang up.
            self.wfile.flush()
            self._drop()
