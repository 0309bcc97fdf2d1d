"""Round-robin fair share of the account's rate, and the bad-token guard (fake clocks)."""

from __future__ import annotations

import asyncio

import pytest

from kie_jupyter.classroom.fairshare import FairShare, Grant, Overloaded
from kie_jupyter.classroom.guard import BadTokenGuard


def _grant_order(requests: list[str], *, rate: int, per: float, burst: int | None = None,
                 max_wait: float = 30.0) -> list[str]:
    async def go() -> list[str]:
        fair = FairShare(rate, per, max_wait=max_wait, burst=burst)
        order: list[str] = []

        async def one(student: str) -> None:
            grant = await fair.acquire(student)
            order.append(student)
            fair.settle(grant)  # answered at once

        await asyncio.gather(*(one(s) for s in requests))
        fair.close()
        return order

    return asyncio.run(go())


def test_a_sweep_does_not_starve_the_others():
    # Student A sends a sweep of twelve first; B, C and D one task each just after.
    order = _grant_order(["A"] * 12 + ["B", "C", "D"], rate=4, per=0.05, burst=1)
    assert len(order) == 15
    # Each of B, C, D is served before A's third task.
    third_a = [i for i, s in enumerate(order) if s == "A"][2]
    assert all(order.index(s) < third_a for s in "BCD"), order


def test_thirty_students_first_tasks_come_before_anyone_s_third():
    students = [f"s{i:02d}" for i in range(30)]
    # Worst arrival order: each student's four submits arrive together.
    order = _grant_order([s for s in students for _ in range(4)], rate=20, per=0.05)
    assert sorted(order) == sorted(s for s in students for _ in range(4))
    firsts = [order.index(s) for s in students]
    thirds = [[i for i, x in enumerate(order) if x == s][2] for s in students]
    assert max(firsts) < min(thirds), order


def test_an_idle_class_wastes_no_slot():
    # One student alone gets the whole window, not only the burst.
    async def go() -> int:
        fair = FairShare(10, 60.0, burst=1, max_wait=0.5)
        for _ in range(10):
            fair.settle(await fair.acquire("A"))
        try:
            await fair.acquire("A")
        except Overloaded as exc:
            return exc.retry_after
        finally:
            fair.close()
        return -1

    assert asyncio.run(go()) >= 1  # the eleventh in the window waits, then is told to retry


def test_rate_is_checked():
    with pytest.raises(ValueError):
        FairShare(0, 10.0)


def test_bad_tokens_are_slowed_then_locked_out():
    now = [0.0]
    guard = BadTokenGuard(slow_after=3, lock_after=5, window=60, delay=1.0, lockout=300,
                          clock=lambda: now[0])
    assert [guard.failed("1.2.3.4") for _ in range(4)] == [0.0, 0.0, 1.0, 1.0]
    assert guard.locked_for("1.2.3.4") == 0
    guard.failed("1.2.3.4")  # the fifth
    assert guard.locked_for("1.2.3.4") == 300
    assert guard.locked_for("5.6.7.8") == 0  # others are not affected
    now[0] = 301
    assert guard.locked_for("1.2.3.4") == 0
    assert guard.failed("1.2.3.4") == 0.0  # a fresh start after the lock-out


def test_a_spray_of_addresses_keeps_the_guard_small():
    now = [0.0]
    guard = BadTokenGuard(slow_after=3, lock_after=5, window=60, delay=1.0, lockout=300,
                          clock=lambda: now[0])
    for n in range(30_000):
        now[0] = n * 0.01  # 300 s of one failure from each of 30,000 addresses
        guard.failed(f"10.0.{n // 256}.{n % 256}")
        guard.failed(f"10.1.{n // 256}.{n % 256}")
    assert len(guard._failures) <= 10_000  # the oldest forgotten first
    for _ in range(5):  # one address keeps failing through it all: it is locked
        guard.failed("1.2.3.4")
    assert guard.locked_for("1.2.3.4") == 300


def test_a_slot_holds_the_window_until_its_answer_comes():
    # KIE counts a submit when it arrives, some time after its grant: the slot counts from
    # the answer, and one not answered yet holds the window however long it takes.
    async def go() -> tuple[bool, bool, bool]:
        fair = FairShare(2, 0.5, burst=1, max_wait=5)
        first, second = await fair.acquire("A"), await fair.acquire("B")
        third = asyncio.ensure_future(fair.acquire("C"))
        await asyncio.sleep(1.2)  # over two windows
        held = not third.done()
        fair.settle(first)
        await asyncio.sleep(0.05)
        not_yet = not third.done()  # the window counts from the answer
        granted = isinstance(await asyncio.wait_for(third, 2), Grant)
        fair.settle(second)
        fair.close()
        return held, not_yet, granted

    assert asyncio.run(go()) == (True, True, True)


def test_a_grant_whose_student_hung_up_does_not_hold_the_window():
    async def go() -> tuple[bool, bool]:
        fair = FairShare(1, 0.05, burst=1, max_wait=5)
        first = await fair.acquire("A")
        waiting = asyncio.ensure_future(fair.acquire("B"))
        grant = fair._grant

        def granted_as_b_hangs_up(now: float, student_id: str) -> Grant:
            if student_id == "B":
                waiting.cancel()  # B's slot is granted just as B hangs up
            return grant(now, student_id)

        fair._grant = granted_as_b_hangs_up  # type: ignore[method-assign]
        await asyncio.sleep(0.01)
        fair.settle(first)
        try:
            await waiting
        except asyncio.CancelledError:
            pass
        settled = not any(g.open for g in fair._grants)
        after = await asyncio.wait_for(fair.acquire("C"), 2)  # not held for ever
        fair.close()
        return settled, isinstance(after, Grant)

    assert asyncio.run(go()) == (True, True)
