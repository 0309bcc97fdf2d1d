"""Follow a task until it ends: an adaptive schedule and a generator of snapshots.

The schedule predicts the end of the task from the progress the API reports and the time
elapsed, polls sparsely early and densely near the predicted end (never more than 3 times a
second per task, the API's limit), and backs off on errors. Clock and sleep are injectable so
the schedule is tested with a fake clock.

A family with no progress field (KIE's Market jobs, Flux Kontext) gives nothing to predict
from, so the schedule uses how long the same model's earlier tasks took (:class:`DurationBook`,
fed by the runner): sparse polls until the shortest of them, then polls that close in as the
longest approaches, spaced for a mean delay of ``target_delay``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..api.backend import TaskSnapshot
from ..api.errors import KieAPIError, KieError, TaskNotFoundError, TaskTimeoutError
from ..api.ratelimit import SlidingWindowLimiter
from ..api.retry import RetryPolicy, backoff_delay, is_transient

__all__ = ["PollSchedule", "DurationBook", "durations", "poll_task", "poll_budget"]

#: One budget of record-info queries shared by every task in the process, so that many
#: tasks at once cannot flood the API (each task alone is also held to 3 per second).
poll_budget = SlidingWindowLimiter(max_calls=25, period=1.0)


@dataclass(frozen=True)
class PollSchedule:
    """When to poll next.

    ``min_interval`` is the floor (0.34 s keeps a task under the API's 3 queries a second);
    ``max_interval`` the ceiling; ``first`` the wait before the first query; ``unknown``
    the interval while no progress has been reported yet; ``lead`` the share of the predicted
    remaining time to wait (0.5 halves the remaining time at each poll); ``target_delay``
    the mean seconds between a task's end and its detection that the schedule aims at when
    it has only earlier durations to go by (see :meth:`interval_from_durations`).
    """

    min_interval: float = 0.34
    max_interval: float = 10.0
    first: float = 0.4
    unknown: float = 1.0
    lead: float = 0.5
    target_delay: float = 0.66

    def next_interval(self, elapsed: float, progress: float, polls: int,
                      recent_rate: float | None = None,
                      span: tuple[float, float] | None = None) -> float:
        """Seconds until the next poll, given time since submission and reported progress.

        The end is predicted from the average rate since submission and, when known, from
        ``recent_rate`` (progress per second between the last two different readings); the
        nearer prediction wins, so a task that speeds up is not polled too late. With no
        progress reported, ``span`` (the range of earlier tasks' durations, seconds) stands in.
        """
        if polls == 0:
            return max(self.first, self.min_interval)
        if progress <= 0.0 and span is not None:
            wait = self.interval_from_durations(elapsed, span)
        elif progress <= 0.0:
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

    def interval_from_durations(self, elapsed: float, span: tuple[float, float]) -> float:
        """The wait when earlier tasks took between ``span[0]`` and ``span[1]`` seconds.

        Before the shortest: two or three polls (a third of the way, or tripling the time so
        far), landing on it: a task that fails early is still seen well before it. Between
        the two, the end is taken as equally likely anywhere: the chance that it comes in the
        next moment grows as the longest approaches (1 / (hi - t)), and the wait that best
        trades delay for polls is proportional to the square root of its inverse,
        ``s * sqrt(hi - t)``, with ``s`` set so that the mean delay over the span is
        ``target_delay`` (it is ``s * sqrt(W) / 3`` for a span W wide). Past the longest:
        polls drawn out slowly, at most 2 s apart.
        """
        lo, hi = span
        if elapsed < lo:
            return min(lo - elapsed, max(self.unknown, 2.0 * elapsed, lo / 3.0))
        if elapsed < hi:
            scale = 3.0 * self.target_delay / math.sqrt(max(hi - lo, 1e-3))
            return scale * math.sqrt(hi - elapsed)
        return min(self.min_interval + 0.25 * (elapsed - hi), 2.0)


class DurationBook:
    """How long each model's finished tasks took (seconds, submission to success), the
    latest ``keep`` per model: the only forecast there is for a family with no progress.

    Process-wide (:data:`durations`), thread-safe; a model needs ``min_samples`` before its
    :meth:`span` is used.
    """

    def __init__(self, keep: int = 50, min_samples: int = 3) -> None:
        self.keep = keep
        self.min_samples = min_samples
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def add(self, model: str, seconds: float) -> None:
        if not (seconds > 0 and math.isfinite(seconds)):
            return
        with self._lock:
            self._seen.setdefault(model, deque(maxlen=self.keep)).append(float(seconds))

    def span(self, model: str) -> tuple[float, float] | None:
        """``(lo, hi)``: the shortest and longest seen, widened by 5 % of their range (a
        few samples understate it); None with fewer than ``min_samples``."""
        with self._lock:
            seen = tuple(self._seen.get(model, ()))
        if len(seen) < self.min_samples:
            return None
        lo, hi = min(seen), max(seen)
        margin = 0.05 * (hi - lo)
        return max(lo - margin, 0.0), hi + margin

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


#: Durations of finished tasks in this process, per model (fed by the task runner).
durations = DurationBook()


def poll_task(
    fetch: Callable[[str], TaskSnapshot | None],
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
    span: tuple[float, float] | None = None,
) -> Iterator[TaskSnapshot | None]:
    """Yield snapshots of ``task_id`` until it has finished on the server.

    ``fetch`` is a backend's :meth:`~kie_jupyter.api.backend.Backend.poll`. Yields ``None``
    while the API has no record yet. The last item is a finished record (success with URLs,
    or failed). A success with no URLs is re-polled ``empty_success_polls`` times and then
    yielded as it is. Transient errors are waited out with backoff; ``not_found_grace``
    seconds after submission an unknown id is treated like "no record yet". Raises
    :class:`TaskTimeoutError` when ``timeout`` runs out; returns early when ``stop`` is set.
    ``span`` is the range of earlier durations of the same model, for a family with no
    progress (see :meth:`PollSchedule.interval_from_durations`).
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
            else schedule.next_interval(now - start, progress, polls, recent_rate, span)
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
                since = last_poll - changed_at[0]
                if since > 0:
                    recent_rate = (record.progress - changed_at[1]) / since
            changed_at = (last_poll, record.progress)
        progress = record.progress
        if record.succeeded and not record.urls and empty_success < empty_success_polls:
            empty_success += 1
            yield record
            continue
        yield record
        if record.finished:
            return
