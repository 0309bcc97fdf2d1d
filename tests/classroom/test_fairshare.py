"""Round-robin fair share of the account's rate, and the bad-token guard (fake clocks)."""

from __future__ import annotations

import asyncio

import pytest

from kie_jupyter.classroom.fairshare import FairShare, Overloaded
from kie_jupyter.classroom.guard import BadTokenGuard


def _grant_order(requests: list[str], *, rate: int, per: float, burst: int | None = None,
                 max_wait: float = 30.0) -> list[str]:
    async def go() -> list[str]:
        fair = FairShare(rate, per, max_wait=max_wait, burst=burst)
        order: list[str] = []

        async def one(student: str) -> None:
            await fair.acquire(student)
            order.append(student)

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
            await fair.acquire("A")
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
