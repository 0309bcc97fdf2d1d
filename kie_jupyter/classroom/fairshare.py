"""The class's fair share of the account's rate limit: per-student queues, served round-robin.

KIE allows an account 20 submits per 10 s. The proxy keeps the whole class inside that window
itself (a dropped 429 from KIE would be a lost submit), and shares it out fairly: a free slot
goes to the waiting student served least since the class was last idle (ties in turn,
round-robin), so a student's sweep of twelve waits behind the others' *first* tasks, never the
other way round. A student may take a slot at once only while holding fewer than ``burst`` (one
by default) in the window; beyond that the submit queues, and is granted as soon as no one with
fewer is waiting (an idle class wastes no slot).

A submit that would wait longer than ``max_wait`` (the client's read timeout must not run out
while the proxy holds it) is answered 429 with a short ``Retry-After``, and *keeps its place*:
for ``keep`` seconds the place stays in the student's queue, and a slot that comes to it
meanwhile is held for them. The student's next submit (the client sends again at once) takes
that place back, so a long wait is served in arrival order however often it is resent, and the
most-starved are never sent to the back. Who was served how often, and the slots in KIE's
window, come back after a restart (:meth:`FairShare.restore`, from the ledger).

A slot counts from when its submit was answered, not when it was granted (:meth:`FairShare.
settle`): KIE counts a submit when it arrives, which is some time after the grant (the event
loop, the network) but always before its answer comes back. Counting from the answer keeps the
class inside KIE's window whatever the delays; a slot not answered yet holds the window.

Hand-written rather than a library: the rate limiters on PyPI give first-come-first-served
slots, not round-robin between callers.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

__all__ = ["FairShare", "Grant", "Overloaded"]

#: A grant never settled (a bug, a lost task) stops holding the window after this long.
_STALE = 120.0


class Overloaded(Exception):
    """The submit would wait too long; answer 429 and ask to retry after ``retry_after`` s
    (its place is kept meanwhile)."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"the class is busy; retry in {retry_after} s")


class Grant:
    """One submit's slot: it counts from ``at``; while ``open`` (granted, its answer not come
    yet) it may still land in KIE's window at any moment."""

    __slots__ = ("at", "student_id", "open")

    def __init__(self, at: float, student_id: str) -> None:
        self.at = at
        self.student_id = student_id
        self.open = True


class _Place:
    """One submit's place in its student's queue: waited for (``future``), or kept while the
    student resends (``future`` None, until ``until``), or granted to them while away
    (``held``)."""

    __slots__ = ("future", "until", "held")

    def __init__(self, future: asyncio.Future[Grant] | None, until: float = 0.0) -> None:
        self.future = future
        self.until = until
        self.held: Grant | None = None

    @property
    def waiting(self) -> bool:
        return self.future is not None and not self.future.done()


class FairShare:
    """At most ``rate`` grants per ``per`` seconds, served round-robin between students."""

    def __init__(self, rate: int = 20, per: float = 10.0, *, max_wait: float = 20.0,
                 burst: int = 1, margin: float | None = None,
                 keep: float = 15.0, retry_after: int = 1,
                 on_idle: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate < 1 or per <= 0:
            raise ValueError("rate must be ≥ 1 and per > 0")
        self.rate = rate
        self.per = per
        #: Slots are held a little longer than KIE's window, so network jitter between our
        #: clock and KIE's never puts one submit too many into its window.
        self.margin = margin if margin is not None else 0.02 * per
        self.max_wait = max_wait
        #: Slots a student may take at once while no one waits; one by default, so a
        #: student's second image never goes ahead of a classmate's first that arrives
        #: while the window is filling.
        self.burst = max(1, burst)
        #: How long a place is kept for a student told to resend, and the Retry-After told.
        self.keep = keep
        self.retry_after = retry_after
        #: Called when the class goes idle (the ledger forgets who was served).
        self.on_idle = on_idle
        self._clock = clock
        self._grants: deque[Grant] = deque()
        self._held: dict[str, int] = {}  # slots per student in the window
        self._served: dict[str, int] = {}  # slots per student since no one was waiting
        self._queues: dict[str, deque[_Place]] = {}
        self._kept: dict[str, deque[_Place]] = {}  # slots granted to students resending
        self._ring: deque[str] = deque()
        self._wake: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Submits waiting for a slot now (kept places included)."""
        return sum(len(q) for q in self._queues.values())

    def restore(self, submits: list[tuple[float, float | None]], served: dict[str, int],
                wall_now: float) -> None:
        """After a restart: the submits sent lately (wall-clock ``(sent, answered)``, from
        the ledger) hold KIE's window again — one never answered counts from now, as it may
        have reached KIE at any moment before the stop — and ``served`` says who had turns."""
        now = self._clock()
        for sent, answered in submits:
            at = now - (wall_now - answered) if answered is not None else now
            if sent > wall_now - _STALE and at > now - self.per - self.margin:
                grant = Grant(min(at, now), "")
                grant.open = False
                self._grants.append(grant)
                self._held[""] = self._held.get("", 0) + 1
        self._grants = deque(sorted(self._grants, key=lambda g: g.at))
        self._served.update(served)

    @property
    def served(self) -> dict[str, int]:
        """Turns per student since the class was last idle."""
        return dict(self._served)

    def _prune(self, now: float) -> None:
        gone = now - self.per - self.margin
        if not any(not g.open and g.at <= gone or g.at <= now - _STALE for g in self._grants):
            return
        kept: deque[Grant] = deque()
        for grant in self._grants:
            if grant.at <= now - _STALE or (not grant.open and grant.at <= gone):
                left = self._held[grant.student_id] - 1
                if left:
                    self._held[grant.student_id] = left
                else:
                    del self._held[grant.student_id]
            else:
                kept.append(grant)
        self._grants = kept

    def _grant(self, now: float, student_id: str) -> Grant:
        grant = Grant(now, student_id)
        self._grants.append(grant)
        self._held[student_id] = self._held.get(student_id, 0) + 1
        self._served[student_id] = self._served.get(student_id, 0) + 1
        return grant

    def settle(self, grant: Grant) -> None:
        """The grant's submit was answered (or never sent, or failed) now: it counts from
        here, and leaves the window ``per`` seconds later."""
        if grant.open:
            grant.at = max(grant.at, self._clock())
            grant.open = False
            if self._wake is not None:
                self._wake.set()

    async def acquire(self, student_id: str, *, max_wait: float | None = None) -> Grant:
        """Wait for this student's turn and a free slot; raise :class:`Overloaded` when the
        wait would pass ``max_wait`` (default: the gate's), keeping the place for the
        student's next submit. The caller settles the grant when its submit is answered."""
        now = self._clock()
        self._prune(now)
        kept = self._kept.get(student_id)
        while kept:  # a slot that came while they were resending
            was_kept = kept.popleft()
            if not kept:
                del self._kept[student_id]
            if was_kept.held is not None and was_kept.until > now:
                return was_kept.held
            if was_kept.held is not None:
                self._drop_held(was_kept.held)
        if (not self._ring and len(self._grants) < self.rate
                and self._held.get(student_id, 0) < self.burst):
            # Nobody waiting, room, within the burst: go at once.
            if not self._grants and not self._kept and self._served:
                # Nothing in the window either: the class was idle for a whole window (a
                # quiet class never queues, so the dispatcher never saw it idle).
                self._served.clear()
                if self.on_idle is not None:
                    self.on_idle()
            return self._grant(now, student_id)
        loop = asyncio.get_running_loop()
        if self._dispatcher is None or self._dispatcher.done():
            self._wake = asyncio.Event()
            self._dispatcher = loop.create_task(self._dispatch())
        future: asyncio.Future[Grant] = loop.create_future()
        queue = self._queues.setdefault(student_id, deque())
        place = next((p for p in queue if p.future is None), None)  # a place kept for them
        if place is None:
            place = _Place(future)
            queue.append(place)
        place.future = future
        if student_id not in self._ring:
            self._ring.append(student_id)
        assert self._wake is not None
        self._wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(future),
                                          self.max_wait if max_wait is None else max_wait)
        except (TimeoutError, asyncio.TimeoutError):
            if future.done() and not future.cancelled():
                return future.result()  # granted just as the wait ran out: use the slot
            future.cancel()
            place.future = None  # kept for their next submit
            place.until = self._clock() + self.keep
            raise Overloaded(self.retry_after) from None
        except asyncio.CancelledError:  # the student hung up
            if future.done() and not future.cancelled():
                self.settle(future.result())  # never sent: it counts from now, not open
                raise
            future.cancel()
            self._forget(student_id, place)
            raise

    def _forget(self, student_id: str, place: _Place) -> None:
        queue = self._queues.get(student_id)
        if queue is not None and place in queue:
            queue.remove(place)
            if not queue:
                del self._queues[student_id]
                if student_id in self._ring:
                    self._ring.remove(student_id)

    def _drop_held(self, grant: Grant) -> None:
        """A slot held for a student who never came back: it counts from now, as unsent,
        and their turn is not counted."""
        self.settle(grant)
        left = self._served.get(grant.student_id, 0) - 1
        if left > 0:
            self._served[grant.student_id] = left
        else:
            self._served.pop(grant.student_id, None)

    def _expire_kept(self, now: float) -> float | None:
        """Drop held slots past their time; the earliest time one still held runs out."""
        soonest: float | None = None
        for student_id in list(self._kept):
            kept = self._kept[student_id]
            for place in list(kept):
                if place.until <= now:
                    kept.remove(place)
                    if place.held is not None:
                        self._drop_held(place.held)
                elif soonest is None or place.until < soonest:
                    soonest = place.until
            if not kept:
                del self._kept[student_id]
        return soonest

    async def _dispatch(self) -> None:
        assert self._wake is not None
        while True:
            now = self._clock()
            self._prune(now)
            held_until = self._expire_kept(now)
            if not self._ring:
                if held_until is None:
                    self._served.clear()  # idle: everyone starts level again
                    if self.on_idle is not None:
                        self.on_idle()
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(),
                                           None if held_until is None else held_until - now)
                except (TimeoutError, asyncio.TimeoutError):
                    pass
                continue
            if len(self._grants) >= self.rate:
                # Full: until the first answered slot leaves the window, or (all open) until
                # an answer comes.
                settled = [g.at for g in self._grants if not g.open]
                until = min(settled) + self.per + self.margin if settled else now + _STALE
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), max(until - now, 0.001))
                except (TimeoutError, asyncio.TimeoutError):
                    pass
                continue
            # The waiting student served least; among equals, the first in turn.
            fewest = min(self._served.get(s, 0) for s in self._ring)
            student_id = next(s for s in self._ring if self._served.get(s, 0) == fewest)
            self._ring.remove(student_id)
            queue = self._queues.get(student_id)
            while queue and not queue[0].waiting and (queue[0].future is not None
                                                      or queue[0].until <= now):
                queue.popleft()  # dropped waits, and places kept too long
            if not queue:
                self._queues.pop(student_id, None)
                continue
            place = queue.popleft()
            grant = self._grant(now, student_id)
            if place.future is not None:
                place.future.set_result(grant)
            else:  # they are resending: hold the slot for them
                place.held = grant
                self._kept.setdefault(student_id, deque()).append(place)
            if queue:
                self._ring.append(student_id)  # to the back: everyone else goes first
            else:
                del self._queues[student_id]
            await asyncio.sleep(0)  # let simultaneous arrivals join before the next pick

    def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
