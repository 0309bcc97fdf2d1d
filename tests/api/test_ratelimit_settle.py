"""A submission's slot counts from when its answer came (it had surely arrived by then)."""

from __future__ import annotations

import threading

import pytest

from kie_jupyter.api.ratelimit import SlidingWindowLimiter


def test_the_next_window_counts_from_the_answers(fake_clock):
    limiter = SlidingWindowLimiter(2, 10.0, clock=fake_clock, sleep=fake_clock.sleep)
    first, second = limiter.acquire_open(None), limiter.acquire_open(None)
    assert fake_clock() == 0
    fake_clock.advance(0.3)  # the answers take 0.3 s
    limiter.settle(first)
    limiter.settle(second)
    third = limiter.acquire_open(None)
    assert fake_clock() == pytest.approx(10.3)  # not 10.0: the first may have arrived at 0.3
    limiter.settle(third)


def test_an_unanswered_call_holds_the_slot_a_window_later_until_it_is_answered(fake_clock):
    limiter = SlidingWindowLimiter(1, 10.0, clock=fake_clock)
    first = limiter.acquire_open(None)
    sleeps = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        fake_clock.advance(seconds)
        if fake_clock() >= 12.0 and first.open:
            limiter.settle(first)  # answered at last, at 12 s

    limiter._sleep = sleep
    second = limiter.acquire_open(None)
    assert second is not None and fake_clock() == pytest.approx(22.0, abs=0.06)
    assert sleeps[0] == pytest.approx(10.0)


def test_a_cancelled_wait_sends_nothing_and_says_so():
    limiter = SlidingWindowLimiter(1, 60.0)
    limiter.settle(limiter.acquire_open(None))
    cancel = threading.Event()
    cancel.set()
    heard = []
    assert limiter.acquire_open(cancel, on_wait=heard.append) is None
    assert heard[0] > 0 and heard[-1] == 0.0


def test_reserve_and_acquire_keep_their_meaning(fake_clock):
    limiter = SlidingWindowLimiter(2, 10.0, clock=fake_clock, sleep=fake_clock.sleep)
    assert [limiter.reserve() for _ in range(4)] == [0, 0, 10, 10]
