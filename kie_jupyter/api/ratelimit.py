"""A sliding-window limiter: at most N submissions per window, shared across threads.

The server counts a request when it *arrives*; we only know when we sent it and when its
answer came back. A submission sent with :meth:`SlidingWindowLimiter.acquire_open` keeps its
slot open until :meth:`~SlidingWindowLimiter.settle` marks when its answer came (by then it
had surely arrived), and the slot ``max_calls`` later waits for that moment plus the window:
so no ``max_calls + 1`` requests ever arrive within one window, whatever the network delays,
and a batch still goes at the full rate (a fixed safety margin would slow every window).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["SlidingWindowLimiter", "Slot", "submit_limiter"]


class Slot:
    """One call's place in the window. ``state``: ``pending`` (taken, not sent yet: ``at`` is
    only an estimate), ``open`` (sent, its answer not come: it may arrive any time), ``done``
    (counts from ``at``: when it was sent, or once settled, when its answer came) or
    ``cancelled`` (never sent: it does not count)."""

    __slots__ = ("at", "state", "before")

    def __init__(self, at: float, before: Slot | None, state: str = "pending") -> None:
        self.at = at
        self.state = state
        #: The slot ``max_calls`` earlier, which this one must follow by the window.
        self.before = before

    @property
    def open(self) -> bool:
        return self.state == "open"


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
        self._calls: collections.deque[Slot] = collections.deque()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a slot that counts from when it may be used; return how long the caller must
        wait before using it."""
        wait, slot = self._reserve()
        with self._lock:
            slot.state = "done"
        return wait

    def _reserve(self) -> tuple[float, Slot]:
        with self._lock:
            now = self._clock()
            if any(call.state == "cancelled" for call in self._calls):  # never sent
                self._calls = collections.deque(
                    call for call in self._calls if call.state != "cancelled")
            while (self._calls and self._calls[0].state == "done"
                   and self._calls[0].at <= now - self.period):
                self._calls.popleft()
            before = (self._calls[-self.max_calls] if len(self._calls) >= self.max_calls
                      else None)
            # The slot frees when the call max_calls back leaves the window.
            start = now if before is None else max(now, before.at + self.period)
            slot = Slot(start, before)
            self._calls.append(slot)
            return start - now, slot

    def acquire_open(self, cancel: threading.Event | None,
                     on_wait: Callable[[float], None] | None = None) -> Slot | None:
        """Wait for a slot unless ``cancel`` is set meanwhile, and hold it open: return it,
        to be :meth:`settle`-d when the call's answer comes, or None when ``cancel`` was set.

        When the caller must wait, ``on_wait(seconds)`` is called before the wait and
        ``on_wait(0.0)`` after it (sent or cancelled), so a task can show it is queued.

        Before returning, the call ``max_calls`` back must have been answered a window ago;
        while it has not (its answer is late), this waits on, in short steps.
        """
        wait, slot = self._reserve()
        told = False
        opened = False
        try:
            try:
                while True:
                    if wait > 0:
                        if not told:
                            _tell(on_wait, wait)
                            told = True
                        # Waiting on a slot not sent yet (its time is an estimate): in steps
                        # of at most a second, as it may be cancelled and this one go sooner.
                        pending = slot.before is not None and slot.before.state == "pending"
                        step = min(wait, 1.0) if pending else wait
                        if cancel is None:
                            self._sleep(step)
                        elif cancel.wait(step):
                            break  # not opened: cancelled below
                    with self._lock:
                        now = self._clock()
                        before = slot.before
                        while before is not None and before.state == "cancelled":
                            before = before.before  # never sent: the one before it counts
                        if before is None or (before.state == "done"
                                              and before.at + self.period <= now):
                            slot.at, slot.state, slot.before = now, "open", None
                            opened = True
                            break
                        if before.state == "open":  # sent, not answered: it may arrive any time
                            wait = 0.05
                        elif before.state == "pending":  # not sent yet: ``at`` is an estimate
                            wait = max(before.at + self.period - now, 0.05)
                        else:
                            wait = before.at + self.period - now
            finally:
                if told:
                    _tell(on_wait, 0.0)
        except BaseException:
            with self._lock:
                if opened:  # interrupted after opening: it may have been sent
                    slot.at, slot.state = max(slot.at, self._clock()), "done"
                else:
                    slot.state = "cancelled"
            raise
        if not opened:
            with self._lock:
                slot.state = "cancelled"
            return None
        return slot

    def settle(self, slot: Slot) -> None:
        """The call of ``slot`` was answered (or failed) now: it counts from here."""
        with self._lock:
            slot.at = max(slot.at, self._clock())
            slot.state = "done"

    def acquire(self, on_wait: Callable[[float], None] | None = None) -> float:
        """Wait for a slot; return the seconds waited (``on_wait`` as in :meth:`acquire_open`)."""
        wait = self.reserve()
        if wait > 0:
            _tell(on_wait, wait)
            try:
                self._sleep(wait)
            finally:
                _tell(on_wait, 0.0)
        return wait


def _tell(on_wait: Callable[[float], None] | None, seconds: float) -> None:
    # A broken observer must never lose the slot or the request.
    if on_wait is None:
        return
    try:
        on_wait(seconds)
    except Exception:
        logging.getLogger("kie_jupyter").exception("rate-limit observer failed")


#: The process-wide limiter every client shares by default (the limit is per account). The
#: client settles each submission's slot when its answer comes (see the module docstring),
#: so network delays need no margin; 50 ms more than the API's window covers clock rounding.
submit_limiter = SlidingWindowLimiter(20, 10.05)
