"""A sliding-window limiter: at most N submissions per window, shared across threads."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["SlidingWindowLimiter", "submit_limiter"]


class SlidingWindowLimiter:
    """Block callers so that at most ``max_calls`` happen in any ``period`` seconds.

    The API allows 20 generate requests per 10 s per account and *drops* the excess, so we
    wait locally instead of being refused.
    """

    def __init__(
        self,
        max_calls: int = 20,
        period: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.max_calls = max_calls
        self.period = period
        self._clock = clock
        self._sleep = sleep
        self._calls: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a slot; return how long the caller must wait before using it."""
        with self._lock:
            now = self._clock()
            while self._calls and self._calls[0] <= now - self.period:
                self._calls.popleft()
            if len(self._calls) < self.max_calls:
                start = now
            else:
                # The slot frees when the call max_calls back leaves the window.
                start = max(now, self._calls[-self.max_calls] + self.period)
            self._calls.append(start)
            return start - now

    def acquire(self, on_wait: Callable[[float], None] | None = None) -> float:
        """Wait for a slot; return the seconds waited (``on_wait`` as in :meth:`acquire_unless`)."""
        wait = self.reserve()
        if wait > 0:
            _tell(on_wait, wait)
            try:
                self._sleep(wait)
            finally:
                _tell(on_wait, 0.0)
        return wait

    def acquire_unless(self, cancel: threading.Event | None,
                       on_wait: Callable[[float], None] | None = None) -> bool:
        """Wait for a slot unless ``cancel`` is set meanwhile (then return False).

        When the caller must wait, ``on_wait(seconds)`` is called before the wait and
        ``on_wait(0.0)`` after it (sent or cancelled), so a task can show it is queued.
        """
        if cancel is None:
            self.acquire(on_wait)
            return True
        wait = self.reserve()
        # A cancelled wait keeps its slot: at worst a later caller waits a little longer.
        if wait <= 0:
            return True
        _tell(on_wait, wait)
        try:
            return not cancel.wait(wait)
        finally:
            _tell(on_wait, 0.0)


def _tell(on_wait: Callable[[float], None] | None, seconds: float) -> None:
    # A broken observer must never lose the slot or the request.
    if on_wait is None:
        return
    try:
        on_wait(seconds)
    except Exception:
        logging.getLogger("kie_jupyter").exception("rate-limit observer failed")


#: The process-wide limiter every client shares by default (the limit is per account).
#: Its window is half a second longer than the API's, so that requests that leave on time
#: but arrive with different network delays still fit the server's own 10 s window.
submit_limiter = SlidingWindowLimiter(20, 10.5)
