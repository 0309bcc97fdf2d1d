"""A family with no progress field: the schedule forecasts from earlier tasks' durations."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from itertools import pairwise

import pytest

from kie_jupyter.api.client import KieClient
from kie_jupyter.api.market import MarketRecord
from kie_jupyter.api.ratelimit import SlidingWindowLimiter
from kie_jupyter.api.registry import backend_for, build_request
from kie_jupyter.engine.poller import DurationBook, PollSchedule, durations, poll_task
from kie_jupyter.engine.task import Task
from kie_jupyter.testing import MockKieServer

KEY = "sk-DURATIONS-0123456789"
#: These tests measure the real poll schedule, not the suite's fast one.
pytestmark = pytest.mark.real_schedule


@pytest.fixture(autouse=True)
def _fresh_book() -> Iterator[None]:
    durations.clear()
    yield
    durations.clear()


def test_a_book_needs_a_few_samples_and_widens_their_range():
    book = DurationBook(min_samples=3)
    book.add("m", 40.0)
    book.add("m", 60.0)
    assert book.span("m") is None
    book.add("m", 50.0)
    book.add("m", float("nan"))  # ignored, as are zero and negative times
    book.add("m", 0.0)
    lo, hi = book.span("m")
    assert lo == pytest.approx(39.0) and hi == pytest.approx(61.0)
    assert book.span("other") is None


def test_a_book_keeps_the_latest():
    book = DurationBook(keep=3, min_samples=1)
    for seconds in (100.0, 10.0, 11.0, 12.0):
        book.add("m", seconds)
    assert book.span("m")[1] < 13.0


def test_before_the_shortest_few_polls_landing_on_it():
    s = PollSchedule()
    t, times = 0.4, [0.4]
    while t < 30.0:
        t += s.interval_from_durations(t, (30.0, 120.0))
        times.append(t)
    assert times[-1] == pytest.approx(30.0)
    assert len(times) <= 4


def test_within_the_span_polls_close_in_as_the_longest_nears():
    s = PollSchedule()
    waits = [s.interval_from_durations(t, (30.0, 120.0)) for t in (30, 60, 90, 110, 119)]
    assert all(a > b for a, b in pairwise(waits))
    # Spaced for the target mean delay: s * sqrt(W) / 3 over a span W wide.
    scale = 3 * s.target_delay / math.sqrt(90.0)
    assert waits[0] == pytest.approx(scale * math.sqrt(90.0))


def test_past_the_longest_polls_drawn_out_to_two_seconds():
    s = PollSchedule()
    assert s.interval_from_durations(121.0, (30.0, 120.0)) < 1.0
    assert s.interval_from_durations(500.0, (30.0, 120.0)) == 2.0


def test_progress_wins_over_durations():
    s = PollSchedule()
    with_span = s.next_interval(40.0, 0.5, 5, span=(30.0, 120.0))
    assert with_span == s.next_interval(40.0, 0.5, 5)


def _market_poll(duration: float, span: tuple[float, float] | None, fake_clock) -> int:
    polls = 0

    def fetch(task_id: str) -> MarketRecord | None:
        nonlocal polls
        polls += 1
        state = "success" if fake_clock() >= duration else "generating"
        return MarketRecord.from_api({"state": state, "resultJson": '{"resultUrls": '
                                      '["https://x.example/a.png"]}'}, task_id)

    for _ in poll_task(fetch, "t", submitted_at=0.0, timeout=3600, clock=fake_clock,
                       sleep=fake_clock.sleep, budget=None, span=span):
        pass
    return polls


def test_a_learnt_span_finds_the_end_sooner(fake_clock):
    """The same 75 s task: seen well under a second after its end with a span, seconds
    after it without one (fake clock: no real time passes)."""
    polls = _market_poll(75.0, (30.0, 120.0), fake_clock)
    late = fake_clock() - 75.0
    assert 0 <= late < 1.0 and polls < 75 / 2

    clock = type(fake_clock)()  # a second one, from zero
    _market_poll(75.0, None, clock)
    assert clock() - 75.0 > late


def test_the_runner_learns_a_market_model_and_not_4o(tmp_path):
    with MockKieServer(api_key=KEY, duration=0.2, rate_limit=None) as server:
        client = KieClient(KEY, base_url=server.url, upload_url=server.url,
                           limiter=SlidingWindowLimiter(max_calls=1000, period=1.0))
        for name in ("nano-banana-2", "4o"):
            tasks = [Task(build_request(name, prompt=f"p{k}"), client=client,
                          backend=backend_for(name, client), timeout=30, history=None)
                     for k in range(3)]
            for t in tasks:
                t.start()
            for t in tasks:
                assert t.wait(30).status.value == "success", t.error
    lo, hi = durations.span("market:nano-banana-2")
    assert 0.1 < lo <= hi < 5.0
    assert durations.span("4o:4o") is None and durations.span("fouro:4o") is None


def test_progress_that_comes_and_goes_with_a_span_still_ends_the_task(fake_clock):
    """Review finding: the progress rate's own local named ``span`` overwrote the durations'
    range, and a record without progress after two with it failed a paid task."""
    answers = iter([("generating", 0.2), ("generating", 0.4), ("generating", None)])

    def fetch(task_id: str) -> MarketRecord | None:
        state, progress = next(answers, ("success", None))
        data = {"state": state, "resultJson": '{"resultUrls": ["https://x.example/a.png"]}'}
        record = MarketRecord.from_api(data, task_id)
        if progress is not None:
            record = dataclasses.replace(record, progress=progress)
        return record

    seen = list(poll_task(fetch, "t", submitted_at=0.0, timeout=3600, clock=fake_clock,
                          sleep=fake_clock.sleep, budget=None, span=(30.0, 120.0)))
    assert seen and seen[-1].succeeded


def test_releasing_memory_never_fails_a_task(monkeypatch):
    """Review finding: on Windows ``ctypes.CDLL(None)`` raises TypeError."""
    import ctypes

    from kie_jupyter.engine import runner

    def no_libc(*args, **kwargs):
        raise TypeError("expected str, bytes or os.PathLike object, not NoneType")

    monkeypatch.setattr(runner, "_trim", False)
    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    runner.release_memory()
    runner.release_memory()
    assert runner._trim is None
