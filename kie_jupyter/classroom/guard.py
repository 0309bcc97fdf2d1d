"""Bad tokens from one address are slowed, then refused for a while.

After ``slow_after`` failures within ``window`` seconds each further failure is answered only
after ``delay`` seconds; after ``lock_after`` the address is refused outright for ``lockout``
seconds, even with a good token. A success does not clear the count (a student guessing others'
tokens also holds a good one). Behind a reverse proxy, run uvicorn with ``--proxy-headers`` and
``--forwarded-allow-ips`` so the address is the student's, not the proxy's.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

__all__ = ["BadTokenGuard"]


class BadTokenGuard:
    """Counts failed sign-ins per client address."""

    def __init__(self, *, slow_after: int = 5, lock_after: int = 10, window: float = 60.0,
                 delay: float = 1.0, lockout: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.slow_after = slow_after
        self.lock_after = lock_after
        self.window = window
        self.delay = delay
        self.lockout = lockout
        self._clock = clock
        # Oldest first (by last failure): beyond ``_MAX_ADDRESSES`` the oldest is forgotten,
        # so a spray from many addresses keeps both small and each failure O(1).
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked: OrderedDict[str, float] = OrderedDict()
        self._hub_asked: OrderedDict[str, float] = OrderedDict()

    def locked_for(self, address: str) -> float:
        """Seconds the address is still locked out (0 when it is not)."""
        until = self._locked.get(address)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._locked[address]
            return 0.0
        return left

    def failed(self, address: str) -> float:
        """Note a failure; return how long to wait before answering (0 = at once)."""
        now = self._clock()
        times = self._failures.pop(address, None) or deque()
        self._failures[address] = times  # now the newest
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        _trim(self._failures)
        if len(times) >= self.lock_after:
            self._locked.pop(address, None)
            self._locked[address] = now + self.lockout
            _trim(self._locked)
            times.clear()
            return 0.0
        return self.delay if len(times) >= self.slow_after else 0.0

    def may_ask_hub(self, address: str) -> bool:
        """Whether a hub login not seen before may be checked with the hub for this address
        now: always, unless the address is locked out — then once per ``delay`` (at least a
        second), so a locked address cannot turn its guesses into a flood of hub calls."""
        if not self.locked_for(address):
            return True
        now = self._clock()
        last = self._hub_asked.get(address)
        if last is not None and now - last < max(self.delay, 1.0):
            return False
        self._hub_asked.pop(address, None)
        self._hub_asked[address] = now
        _trim(self._hub_asked)
        return True


#: Addresses remembered at most (each map); the oldest are forgotten first.
_MAX_ADDRESSES = 10_000


def _trim(book: OrderedDict[str, Any]) -> None:
    while len(book) > _MAX_ADDRESSES:
        book.popitem(last=False)
