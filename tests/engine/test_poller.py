"""PollSchedule and poll_task with a scripted fetch, a fake clock and a fake sleep."""

from __future__ import annotations

import threading
from collections.abc import Callable
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import pytest

from kie_jupyter.api.errors import (
    AuthenticationError,
    GenerationFailedError,
    KieConnectionError,
    KieTimeoutError,
    MaintenanceError,
    MalformedResponseError,
    QueueFullError,
    RateLimitError,
    ServerError,
    TaskNotFoundError,
    TaskTimeoutError,
    ValidationError,
)
from kie_jupyter.api.models import TaskRecord
from kie_jupyter.api.ratelimit import SlidingWindowLimiter
from kie_jupyter.api.retry import RetryPolicy
from kie_jupyter.engine.poller import PollSchedule, poll_task

if TYPE_CHECKING:
    from conftest import FakeClock

#: These tests measure the real poll schedule, not the suite's fast one.
pytestmark = pytest.mark.real_schedule

URL = "https://tempfile.example/a.png"


def running(progress: float) -> TaskRecord:
    return TaskRecord("t1", status="GENERATING", success_flag=0, progress=progress)


def done(*urls: str) -> TaskRecord:
    return TaskRecord("t1", status="SUCCESS", success_flag=1, progress=1.0, urls=urls)


def failed(flag: int = 2) -> TaskRecord:
    return TaskRecord("t1", status="GENERATE_FAILED", success_flag=flag, error_code=400,
                      error_message="flagged")


class Script:
    """A fake ``record_info``: returns (or raises) scripted items, recording the poll times.

    The last item repeats once the script runs out.
    """

    def __init__(self, clock: FakeClock, items: list[Any]) -> None:
        self.clock = clock
        self.items = list(items)
        self.times: list[float] = []
        self.on_poll: Callable[[int], None] | None = None

    def __call__(self, task_id: str) -> TaskRecord | None:
        assert task_id == "t1"
        self.times.append(self.clock())
        if self.on_poll:
            self.on_poll(len(self.times))
        item = self.items.pop(0) if len(self.items) > 1 else self.items[0]
        if isinstance(item, BaseException):
            raise item
        return item


def run(
    clock: FakeClock, items: list[Any], **kwargs: Any
) -> tuple[list[TaskRecord | None], Script]:
    """Poll ``items`` to the end; return what was yielded and the script."""
    script = Script(clock, items)
    options: dict[str, Any] = {"submitted_at": 0.0, "clock": clock, "sleep": clock.sleep,
                               "budget": None}
    options.update(kwargs)
    return list(poll_task(script, "t1", **options)), script


def assert_rate(times: list[float], per_second: int = 3) -> None:
    """Never more than ``per_second`` polls within any one second (the API's limit)."""
    for i, t in enumerate(times):
        assert len([u for u in times[i:] if u < t + 1.0]) <= per_second, times
    gaps = [b - a for a, b in pairwise(times)]
    assert all(g >= 1 / 3 for g in gaps), gaps


# -- PollSchedule.next_interval ----------------------------------------------------------------


def test_first_interval() -> None:
    assert PollSchedule().next_interval(0.0, 0.0, 0) == 0.4
    assert PollSchedule(first=0.0).next_interval(0.0, 0.0, 0) == 0.34  # never below the floor


@pytest.mark.parametrize("elapsed", [0.0, 0.01, 0.5, 3.0, 30.0, 300.0, 5000.0, -5.0])
@pytest.mark.parametrize("progress", [0.0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.9999, 1.0])
@pytest.mark.parametrize("polls", [0, 1, 2, 5, 50])
def test_interval_between_floor_and_ceiling(elapsed: float, progress: float, polls: int) -> None:
    schedule = PollSchedule()
    wait = schedule.next_interval(elapsed, progress, polls)
    assert schedule.min_interval <= wait <= schedule.max_interval


def test_custom_floor_and_ceiling() -> None:
    schedule = PollSchedule(min_interval=0.5, max_interval=3.0)
    assert schedule.next_interval(100.0, 0.01, 4) == 3.0
    assert schedule.next_interval(100.0, 0.999, 4) == 0.5
    assert schedule.next_interval(1.0, 1.0, 4) == 0.5


def test_dense_near_the_predicted_end_sparse_early() -> None:
    schedule = PollSchedule()
    early = schedule.next_interval(10.0, 0.1, 3)  # 90 s predicted left
    middle = schedule.next_interval(20.0, 0.5, 3)  # 20 s left
    late = schedule.next_interval(30.0, 0.95, 3)  # ~1.6 s left
    assert early == 10.0  # sparse: the ceiling
    assert middle == pytest.approx(10.0)  # half of 20 s
    assert late == pytest.approx(30.0 * 0.05 / 0.95 * 0.5)
    assert schedule.next_interval(30.0, 0.99, 3) == 0.34  # at the floor
    assert early >= middle > late


def test_halves_the_predicted_remaining_time() -> None:
    schedule = PollSchedule(lead=0.5)
    assert schedule.next_interval(8.0, 0.8, 2) == pytest.approx(1.0)  # 2 s left -> 1 s
    assert schedule.next_interval(8.0, 0.8, 2) < PollSchedule(lead=0.9).next_interval(8.0, 0.8, 2)


def test_unknown_progress_slows_down_gently() -> None:
    schedule = PollSchedule()
    waits = [schedule.next_interval(5.0, 0.0, polls) for polls in range(1, 12)]
    assert waits[:3] == pytest.approx([1.0, 1.25, 1.5625])
    assert waits == sorted(waits)
    assert waits[-1] == waits[-2] == pytest.approx(1.25**8)  # the growth stops


def test_finished_progress_polls_at_the_floor() -> None:
    assert PollSchedule().next_interval(50.0, 1.0, 7) == 0.34


# -- poll_task: the schedule ---------------------------------------------------------------------


def test_schedule_for_a_progress_trace(fake_clock: FakeClock) -> None:
    yielded, script = run(
        fake_clock, [None, running(0.25), running(0.5), running(0.8), done(URL)]
    )
    # 0.4 (first) -> +1.0 (no progress yet) -> 1.4*0.75/0.25/2 = 2.1 -> 3.5*0.5/0.5/2 = 1.75
    # -> min(5.25*0.2/0.8, 0.2/(0.3/1.75)) / 2 = 0.58333 (the recent rate predicts sooner)
    assert script.times == pytest.approx([0.4, 1.4, 3.5, 5.25, 5.25 + 0.2 / (0.3 / 1.75) / 2])
    assert yielded[0] is None
    assert [r.progress for r in yielded[1:]] == [0.25, 0.5, 0.8, 1.0]
    assert yielded[-1] == done(URL)


def test_first_poll_waits_first_after_submission(fake_clock: FakeClock) -> None:
    fake_clock.advance(2.0)
    _, script = run(fake_clock, [done(URL)], submitted_at=2.0)
    assert script.times == [2.4]


def test_a_task_resumed_long_after_submission_is_polled_at_once(fake_clock: FakeClock) -> None:
    fake_clock.advance(100.0)
    _, script = run(fake_clock, [done(URL)], submitted_at=10.0)
    assert script.times == [100.0]


def test_submitted_at_defaults_to_now(fake_clock: FakeClock) -> None:
    fake_clock.advance(7.0)
    _, script = run(fake_clock, [done(URL)], submitted_at=None)
    assert script.times == [pytest.approx(7.4)]


def test_ends_on_failure(fake_clock: FakeClock) -> None:
    yielded, script = run(fake_clock, [running(0.3), failed(3), done(URL)])
    assert yielded[-1].failed and yielded[-1].success_flag == 3
    assert len(script.times) == 2  # nothing after the final record


def test_none_records_keep_polling(fake_clock: FakeClock) -> None:
    yielded, script = run(fake_clock, [None, None, None, None, done(URL)])
    assert yielded == [None, None, None, None, done(URL)]
    assert len(script.times) == 5
    gaps = [b - a for a, b in pairwise(script.times)]
    assert gaps == pytest.approx([1.0, 1.25, 1.5625, 1.953125])


# -- poll_task: errors --------------------------------------------------------------------------


TRANSIENT = [
    ServerError(500, "boom", "record-info"),
    ServerError(502, "bad gateway", "record-info"),
    QueueFullError(550, "full", "record-info"),
    RateLimitError(429, "slow down", "record-info"),
    MaintenanceError(455, "maintenance", "record-info"),
    KieConnectionError("lost", "record-info"),
    KieTimeoutError("slow", "record-info"),
    MalformedResponseError("record-info", "junk"),
]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
def test_transient_errors_back_off(fake_clock: FakeClock, error: Exception) -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    yielded, script = run(fake_clock, [running(0.5), error, error, error, done(URL)],
                          retry=policy)
    assert yielded == [running(0.5), done(URL)]  # errors are not yielded
    gaps = [b - a for a, b in pairwise(script.times)]
    # After the first error: backoff 0, 1, 2 (equal jitter), then the schedule again.
    assert 0.5 <= gaps[1] <= 1.0
    assert 1.0 <= gaps[2] <= 2.0
    assert 2.0 <= gaps[3] <= 4.0


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError(401, "bad key", "record-info"),
        ValidationError(422, "taskId is required", "record-info"),
        GenerationFailedError(501, "failed", "record-info"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_final_errors_are_raised(fake_clock: FakeClock, error: Exception) -> None:
    script = Script(fake_clock, [running(0.2), error])
    gen = poll_task(script, "t1", submitted_at=0.0, clock=fake_clock, sleep=fake_clock.sleep,
                    budget=None)
    assert next(gen) == running(0.2)
    with pytest.raises(type(error)):
        next(gen)
    assert len(script.times) == 2


def test_backoff_resets_after_a_success(fake_clock: FakeClock) -> None:
    policy = RetryPolicy(base_delay=4.0, max_delay=64.0)
    err = ServerError(500, "boom", "record-info")
    _, script = run(fake_clock, [err, err, None, err, done(URL)], retry=policy)
    gaps = [b - a for a, b in pairwise(script.times)]
    assert 2.0 <= gaps[0] <= 4.0 and 4.0 <= gaps[1] <= 8.0
    assert 2.0 <= gaps[3] <= 4.0  # back to the first step after the good answer


def test_not_found_within_grace_is_no_record_yet(fake_clock: FakeClock) -> None:
    nf = TaskNotFoundError(422, "record is null", "record-info")
    yielded, script = run(fake_clock, [nf, nf, done(URL)], not_found_grace=5.0)
    assert yielded == [None, None, done(URL)]
    assert script.times[1] < 5.0


def test_not_found_after_grace_is_raised(fake_clock: FakeClock) -> None:
    nf = TaskNotFoundError(422, "record is null", "record-info")
    script = Script(fake_clock, [nf])
    gen = poll_task(script, "t1", submitted_at=0.0, clock=fake_clock, sleep=fake_clock.sleep,
                    budget=None, not_found_grace=3.0)
    seen = []
    with pytest.raises(TaskNotFoundError):
        for item in gen:
            seen.append(item)
    assert seen and all(item is None for item in seen)
    assert script.times[-1] > 3.0
    assert all(t <= 3.0 for t in script.times[:-1])


def test_not_found_without_grace_is_raised_at_once(fake_clock: FakeClock) -> None:
    nf = TaskNotFoundError(422, "record is null", "record-info")
    with pytest.raises(TaskNotFoundError):
        run(fake_clock, [nf])


# -- poll_task: success without URLs -------------------------------------------------------------


def test_empty_url_success_is_repolled_then_yielded(fake_clock: FakeClock) -> None:
    yielded, script = run(fake_clock, [running(0.9), done(), done(), done(URL)])
    assert yielded == [running(0.9), done(), done(), done(URL)]
    assert len(script.times) == 4


def test_empty_url_success_gives_up_after_the_repolls(fake_clock: FakeClock) -> None:
    yielded, script = run(fake_clock, [done()], empty_success_polls=2)
    assert yielded == [done(), done(), done()]
    assert len(script.times) == 3
    assert_rate(script.times)


def test_empty_url_success_without_repolls(fake_clock: FakeClock) -> None:
    yielded, _ = run(fake_clock, [done()], empty_success_polls=0)
    assert yielded == [done()]


# -- poll_task: timeout and stop -------------------------------------------------------------------


def test_local_timeout_raises_with_the_task_id(fake_clock: FakeClock) -> None:
    script = Script(fake_clock, [running(0.0)])
    with pytest.raises(TaskTimeoutError) as info:
        list(poll_task(script, "t1", submitted_at=0.0, timeout=30.0, clock=fake_clock,
                       sleep=fake_clock.sleep, budget=None))
    assert info.value.task_id == "t1"
    assert info.value.timeout == 30.0
    assert "t1" in str(info.value) and "resume" in str(info.value)
    assert fake_clock() == pytest.approx(30.0)  # it waited out the whole timeout, no more
    assert script.times and max(script.times) <= 30.0


def test_timeout_counts_from_submission(fake_clock: FakeClock) -> None:
    fake_clock.advance(25.0)
    script = Script(fake_clock, [running(0.1)])
    with pytest.raises(TaskTimeoutError):
        list(poll_task(script, "t1", submitted_at=0.0, timeout=30.0, clock=fake_clock,
                       sleep=fake_clock.sleep, budget=None))
    assert fake_clock() == pytest.approx(30.0)


def test_stop_before_the_first_poll(fake_clock: FakeClock) -> None:
    stop = threading.Event()
    stop.set()
    yielded, script = run(fake_clock, [done(URL)], stop=stop)
    assert yielded == [] and script.times == []


def test_stop_returns_early(fake_clock: FakeClock) -> None:
    stop = threading.Event()
    script = Script(fake_clock, [running(0.1)])
    script.on_poll = lambda n: stop.set() if n == 2 else None
    yielded = list(poll_task(script, "t1", submitted_at=0.0, stop=stop, clock=fake_clock,
                             sleep=fake_clock.sleep, budget=None))
    assert len(yielded) == 2
    assert len(script.times) == 2


def test_stop_during_the_final_wait_returns_instead_of_timing_out(fake_clock: FakeClock) -> None:
    stop = threading.Event()

    def sleep(seconds: float) -> None:
        fake_clock.sleep(seconds)
        if fake_clock() >= 5.0:
            stop.set()

    script = Script(fake_clock, [running(0.0)])
    assert all(r == running(0.0) for r in poll_task(
        script, "t1", submitted_at=0.0, timeout=6.0, stop=stop, clock=fake_clock, sleep=sleep,
        budget=None))


def test_stop_wakes_the_default_sleep() -> None:
    """Without a fake sleep, the wait is ``stop.wait``: setting stop ends a long wait at once."""
    import time

    stop = threading.Event()
    calls: list[float] = []

    def fetch(task_id: str) -> TaskRecord:
        calls.append(time.monotonic())
        threading.Timer(0.05, stop.set).start()
        return running(0.01)  # predicts a long wait

    begin = time.monotonic()
    assert list(poll_task(fetch, "t1", stop=stop, budget=None,
                          schedule=PollSchedule(first=0.0))) == [running(0.01)]
    # Not the predicted wait (the schedule's ceiling): the stop woke it.
    assert time.monotonic() - begin < PollSchedule().max_interval / 2
    assert len(calls) == 1


# -- poll_task: the API's 3 queries per second --------------------------------------------------


def test_never_more_than_three_polls_per_second(fake_clock: FakeClock) -> None:
    # A task stuck just before its predicted end asks for the shortest possible interval.
    trace = [running(0.5), running(0.99), running(0.9999)] + [running(1.0)] * 50 + [done(URL)]
    _, script = run(fake_clock, trace)
    assert len(script.times) == 54
    assert_rate(script.times)
    gaps = [b - a for a, b in pairwise(script.times)]
    assert min(gaps) == pytest.approx(0.34)  # at the floor, not below


def test_rate_holds_through_fast_errors(fake_clock: FakeClock) -> None:
    err = KieConnectionError("refused", "record-info", refused=True)
    _, script = run(fake_clock, [err] * 30 + [done(URL)],
                    retry=RetryPolicy(base_delay=0.001, max_delay=0.001))
    assert len(script.times) == 31
    assert_rate(script.times)


def test_rate_holds_with_a_schedule_that_asks_for_less(fake_clock: FakeClock) -> None:
    schedule = PollSchedule(min_interval=0.34, first=0.0, unknown=0.0)
    _, script = run(fake_clock, [None] * 20 + [done(URL)], schedule=schedule)
    assert_rate(script.times)


def test_fewer_polls_than_a_fixed_one_second_loop(fake_clock: FakeClock) -> None:
    """A 60 s task reporting linear progress: the adaptive schedule beats polling every 1 s."""

    def fetch(task_id: str) -> TaskRecord:
        now = fake_clock()
        return done(URL) if now >= 60.0 else running(int(now / 60.0 * 100) / 100)

    times: list[float] = []

    def recording(task_id: str) -> TaskRecord:
        times.append(fake_clock())
        return fetch(task_id)

    records = list(poll_task(recording, "t1", submitted_at=0.0, clock=fake_clock,
                             sleep=fake_clock.sleep, budget=None))
    assert records[-1] == done(URL)
    assert len(times) < 60
    assert times[-1] - 60.0 < 0.5  # noticed within half a second of the end
    assert_rate(times)


def test_a_shared_budget_is_taken_per_poll(fake_clock: FakeClock) -> None:
    budget = SlidingWindowLimiter(1, 2.0, clock=fake_clock, sleep=fake_clock.sleep)
    _, script = run(fake_clock, [running(0.99)] * 4 + [done(URL)], budget=budget)
    gaps = [b - a for a, b in pairwise(script.times)]
    assert all(g >= 2.0 for g in gaps), gaps


def test_recent_rate_wins_when_a_task_speeds_up() -> None:
    schedule = PollSchedule()
    average_only = schedule.next_interval(10.0, 0.5, 5)
    sped_up = schedule.next_interval(10.0, 0.5, 5, recent_rate=0.25)  # 2 s left at that pace
    assert average_only == pytest.approx(5.0)
    assert sped_up == pytest.approx(1.0)
    # A slower recent pace never delays the poll past the average prediction.
    assert schedule.next_interval(10.0, 0.5, 5, recent_rate=0.01) == pytest.approx(5.0)
