"""Run the mock KIE server standalone: ``python -m kie_jupyter.mock --port 8000``.

Prints the server's URL as the first line of stdout, then serves until Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .fakeapi.server import MockKieServer

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, serve until interrupted, return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m kie_jupyter.mock",
        description="A local mock of KIE.AI's 4o Image API and File Upload API.",
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: 0, any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    parser.add_argument(
        "--duration", type=float, default=2.0, help="seconds a task takes (default: 2)"
    )
    parser.add_argument(
        "--api-key", default=None, help="the only accepted key (default: accept any non-empty key)"
    )
    parser.add_argument("--credits", type=float, default=100.0, help="starting balance")
    args = parser.parse_args(argv)

    server = MockKieServer(
        api_key=args.api_key,
        duration=args.duration,
        host=args.host,
        port=args.port,
        credits=args.credits,
    )
    stopped = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    # SIGTERM (e.g. a test or a process manager) stops as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, on_signal)
    with server:
        print(server.url, flush=True)
        key = "any non-empty key" if args.api_key is None else "the key given with --api-key"
        print(
            f"Mock KIE API at {server.url} (accepts {key}); Ctrl-C to stop.",
            file=sys.stderr,
            flush=True,
        )
        try:
            while not stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
