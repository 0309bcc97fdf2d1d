"""Bad tokens from one address are slowed, then refused for a while.

After ``slow_after`` failures within ``window`` seconds each further failure is answered only
after ``delay`` seconds; after ``lock_after`` the address is refused outright for ``lockout``
seconds, even with a good token. A success does not clear the count (a student guessing others'
tokens also holds a good one). Behind a reverse proxy, run uvicorn with ``--proxy-headers`` and
``--forwarded-allow-ips`` so the address is the student's, not the proxy's.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

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
        self._failures: dict[str, deque[float]] = {}
        self._locked: dict[str, float] = {}

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
        times = self._failures.setdefault(address, deque())
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.lock_after:
            self._locked[address] = now + self.lockout
            times.clear()
            return 0.0
        if len(self._failures) > 10_000:  # keep memory bounded under a spray of addresses
            self._failures = {a: t for a, t in self._failures.items()
                              if t and t[-1] > now - self.window}
            self._locked = {a: until for a, until in self._locked.items() if until > now}
        return self.delay if len(times) >= self.slow_after else 0.0
