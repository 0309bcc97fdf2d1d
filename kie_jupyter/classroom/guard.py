"""Wrong tokens are answered slowly, all together, whoever sends them.

A class behind a hub's proxy shares one client address, and ``X-Forwarded-For`` is written
by the client: so nothing here is kept per address, and nothing ever refuses a *valid* token
(valid tokens never come here). Instead every wrong-token answer, from anyone, takes a turn
in one queue served at ``rate`` per second: guessing is slowed to that rate for everyone
together, and a flood of guesses only fills the queue — when ``max_waiting`` answers are
queued, more are refused at once with 429 (cheaply, holding nothing). The teacher's sign-in
uses its own queue.

Hand-written: a dozen lines of asyncio; the limiter libraries on PyPI are per key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["BadTokenGuard"]


class BadTokenGuard:
    """Paces wrong-token answers: at most ``rate`` a second, at most ``max_waiting`` queued."""

    def __init__(self, *, rate: float = 5.0, max_waiting: int = 64,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or max_waiting < 1:
            raise ValueError("rate must be > 0 and max_waiting ≥ 1")
        self.rate = rate
        self.max_waiting = max_waiting
        self._clock = clock
        self._next = 0.0
        self.waiting = 0

    async def refused(self) -> bool:
        """Wait for this wrong token's turn to be answered: True when it came, False when
        too many wrong tokens are queued already (answer "too many" at once)."""
        if self.waiting >= self.max_waiting:
            return False
        now = self._clock()
        turn = max(now, self._next)
        self._next = turn + 1.0 / self.rate
        self.waiting += 1
        try:
            if turn > now:
                await asyncio.sleep(turn - now)
        finally:
            self.waiting -= 1
        return True
