"""Follow a task until it ends: an adaptive schedule and a generator of snapshots.

The schedule predicts the end of the task from the progress the API reports and the time
elapsed, polls sparsely early and densely near the predicted end (never more than 3 times a
second per task, the API's limit), and backs off on errors. Clock and sleep are injectable so
the schedule is tested with a fake clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..api.errors import KieAPIError, KieError, TaskNotFoundError, TaskTimeoutError
from ..api.models import TaskRecord
from ..api.ratelimit import SlidingWindowLimiter
from ..api.retry import RetryPolicy, backoff_delay, is_transient

__all__ = ["PollSchedule", "poll_task", "poll_budget"]

#: One budget of record-info queries shared by every task in the process, so that many
#: tasks at once cannot flood the API (each task alone is also held to 3 per second).
poll_budget = SlidingWindowLimiter(max_calls=25, period=1.0)


@dataclass(frozen=True)
class PollSchedule:
    """When to poll next.

    ``min_interval`` is the floor (0.34 s keeps a task under the API's 3 queries a second);
    ``max_interval`` the ceiling; ``first`` the wait before the first query; ``unknown``
    the interval while no progress has been reported yet; ``lead`` the share of the predicted
    remaining time to wait (0.5 halves the remaining time at each poll).
    """

    min_interval: float = 0.34
    max_interval: float = 10.0
    first: float = 0.4
    unknown: float = 1.0
    lead: float = 0.5

    def next_interval(self, elapsed: float, progress: float, polls: int,
                      recent_rate: float | None = None) -> float:
        """Seconds until the next poll, given time since submission and reported progress.

        The end is predicted from the average rate since submission and, when known, from
        ``recent_rate`` (progress per second between the last two different readings); the
        nearer prediction wins, so a task that speeds up is not polled too late.
        """
        if polls == 0:
            return max(self.first, self.min_interval)
        if progress <= 0.0:
            # No estimate yet: poll gently, a little slower each time.
            wait = self.unknown * (1.25 ** min(polls - 1, 8))
        elif progress >= 1.0:
            wait = self.min_interval
        else:
            remaining = elapsed * (1.0 - progress) / progress
            if recent_rate and recent_rate > 0:
                remaining = min(remaining, (1.0 - progress) / recent_rate)
            wait = remaining * self.lead
        return min(max(wait, self.min_interval), self.max_interval)


def poll_task(
    fetch: Callable[[str], TaskRecord | None],
    task_id: str,
    *,
    submitted_at: float | None = None,
    timeout: float = 600.0,
    schedule: PollSchedule | None = None,
    retry: RetryPolicy | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] | None = None,
    not_found_grace: float = 0.0,
    empty_success_polls: int = 2,
    budget: SlidingWindowLimiter | None = poll_budget,
) -> Iterator[TaskRecord | None]:
    """Yield snapshots of ``task_id`` until it has finished on the server.

    ``fetch`` is :meth:`KieClient.record_info`. Yields ``None`` while the API has no record
    yet. The last item is a finished record (success with URLs, or failed). A success with
    no URLs is re-polled ``empty_success_polls`` times and then yielded as it is. Transient
    errors are waited out with backoff; ``not_found_grace`` seconds after submission an
    unknown id is treated like "no record yet". Raises :class:`TaskTimeoutError` when
    ``timeout`` runs out; returns early when ``stop`` is set.
    """
    schedule = schedule or PollSchedule()
    retry = retry or RetryPolicy()
    stop = stop or threading.Event()
    wait = sleep or stop.wait
    start = clock() if submitted_at is None else submitted_at
    deadline = start + timeout
    polls = errors = empty_success = 0
    progress = 0.0
    recent_rate: float | None = None
    last_error: str | None = None  # the latest transient error, for the timeout message
    retry_after: float | None = None
    changed_at: tuple[float, float] | None = None  # (time, progress) of the last change
    # Counting from submission makes ``schedule.first`` the wait before the first query
    # (a resumed task, submitted long ago, is still queried at once).
    last_poll = start
    while True:
        now = clock()
        interval = (
            backoff_delay(errors - 1, retry, retry_after) if errors
            else schedule.next_interval(now - start, progress, polls, recent_rate)
        )
        # Never query the same task faster than the API allows.
        due = max(last_poll + interval, last_poll + schedule.min_interval)
        if due > deadline:
            wait(max(deadline - now, 0.0))
            if stop.is_set():
                return
            raise TaskTimeoutError(task_id, timeout, last_error)
        if due > now:
            wait(due - now)
        if stop.is_set():
            return
        if budget is not None:
            budget.acquire()
        last_poll = clock()
        polls += 1
        try:
            record = fetch(task_id)
        except TaskNotFoundError:
            if clock() - start > not_found_grace:
                raise
            record = None
        except KieError as exc:
            if not is_transient(exc, "read"):
                raise
            errors, last_error = errors + 1, str(exc)
            retry_after = exc.retry_after if isinstance(exc, KieAPIError) else None
            continue
        errors, last_error = 0, None
        if record is None:
            yield None
            continue
        if record.progress != progress:
            if changed_at is not None and record.progress > changed_at[1]:
                span = last_poll - changed_at[0]
                if span > 0:
                    recent_rate = (record.progress - changed_at[1]) / span
            changed_at = (last_poll, record.progress)
        progress = record.progress
        if record.succeeded and not record.urls and empty_success < empty_success_polls:
            empty_success += 1
            yield record
            continue
        yield record
        if record.finished:
            return
