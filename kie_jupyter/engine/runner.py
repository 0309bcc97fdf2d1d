"""What drives a task: upload its inputs, submit it, poll it, download its images.

The runner holds no state a user sees: it reports every change through ``emit`` (the task
applies it and tells its listeners) and knows the task only through what it was given, so
the task module imports it and not the other way round.

Once a request may have reached the server it is never sent again (no double charge): the
client retries a submission only when the server surely did not take it, and a submission
that failed in doubt says so.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..api.backend import SUBMIT_ENDPOINTS
from ..api.errors import (
    DownloadError,
    InsufficientCreditsError,
    KieAPIError,
    KieConnectionError,
    KieError,
    MalformedResponseError,
    SubmissionCancelled,
    TaskTimeoutError,
    redact,
)
from ..api.models import TaskStatus
from .poller import PollSchedule, durations, poll_task
from .state import TaskError

if TYPE_CHECKING:
    from ..api.backend import Backend, Request, TaskSnapshot
    from ..api.client import KieClient
    from .inputs import InputImage

__all__ = ["RunPlan", "TaskRunner", "end_shared_threads", "on_image_thread", "release_memory"]

log = logging.getLogger("kie_jupyter")

Emit = Callable[..., None]
T = TypeVar("T")
#: One job for the shared threads: its future, the function and its arguments.
_Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class _SharedPool:
    """Threads shared by every task: made on first use, kept while work keeps coming (so the
    same threads, and their allocator arenas, serve task after task: a new thread may take
    another arena, and what the last one freed stays behind), ended after ``idle`` seconds
    without work or by :meth:`close` (``%unload_ext``)."""

    def __init__(self, workers: int, name: str, idle: float = 10.0) -> None:
        self.workers = workers
        self.name = name
        self.idle = idle
        # None asks an idle thread to leave (see close).
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._threads = 0
        self._made = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((future, fn, args))
        with self._lock:
            if self._threads < self.workers:
                self._made += 1
                thread = threading.Thread(target=self._work, name=f"{self.name}_{self._made}",
                                          daemon=True)
                # Counted only once it runs: a thread that cannot start (a thread limit,
                # interpreter shutdown) must not leave the queue waiting for it forever.
                thread.start()
                self._threads += 1
        return future

    def close(self) -> None:
        """End the idle threads now (work already queued is done first)."""
        with self._lock:
            threads = self._threads
        for _ in range(threads):
            self._queue.put(None)

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.idle)
            except queue.Empty:
                item = None
            if item is None:  # idle, or closed: leave, unless work waits for no one else
                with self._lock:
                    if self._queue.empty() or self._threads > 1:
                        self._threads -= 1
                        return
                continue
            future, fn, args = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # the caller gets it from the future
                    future.set_exception(exc)
            del item, future, fn, args


#: Decoding a result image for its thumbnails takes a few MB for a moment. Done in each
#: task's own thread, glibc would keep those MB in each thread's arena (up to 8 per core), and
#: a kernel that ran a hundred tasks would hold 2.5 times their images
#: (benchmarks/bench_memory.py); done on this one thread, memory stays at the images.
_image_thread = _SharedPool(1, "kie4o-images")
#: Downloads of every task share these threads (no thread is made per task to fetch its
#: images). Their buffers are small (a body is joined once, at its size), so they may end
#: soon when idle; the image thread stays (its few MB are reused in place, task after task).
_downloads = _SharedPool(8, "kie4o-download", idle=0.5)
_on_image_thread = threading.local()


def end_shared_threads() -> None:
    """End the image and download threads once idle (``%unload_ext``: no thread is left)."""
    _image_thread.close()
    _downloads.close()


_trim: Callable[[int], int] | None | bool = False  # False: not looked up yet


def release_memory() -> None:
    """Return to the system the memory the allocator holds free (glibc's ``malloc_trim``;
    elsewhere nothing): what a task's polls, download and thumbnails freed."""
    global _trim
    if _trim is False:
        try:
            import ctypes

            _trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
        except Exception:  # not glibc: Windows raises TypeError, others OSError
            _trim = None
    if callable(_trim):
        try:
            _trim(0)
        except Exception:  # an optimisation only: never fail a task over it
            _trim = None


def on_image_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the one thread that decodes images; wait for its result."""
    if getattr(_on_image_thread, "active", False):
        return fn(*args)

    def work() -> T:
        _on_image_thread.active = True
        return fn(*args)

    return _image_thread.submit(work).result()


@dataclass(frozen=True)
class RunPlan:
    """What one run needs to know of its task."""

    request: Request | None
    task_id: str | None
    inputs: Sequence[InputImage]
    mask: InputImage | None
    timeout: float
    schedule: PollSchedule
    #: Whether the task already knows its parameters (else they are learnt while polling).
    has_params: bool
    #: Seconds an unknown id is polled again before it counts as unknown (a task created a
    #: moment ago may not be visible yet, as the API documents).
    not_found_grace: float = 0.0


class TaskRunner:
    """Runs one task to its end in the calling thread, reporting through ``emit``."""

    def __init__(self, plan: RunPlan, *, backend: Backend, client: KieClient,
                 stop: threading.Event, emit: Emit) -> None:
        self.plan = plan
        self.backend = backend
        self.client = client
        self.stop = stop
        self.emit = emit
        self.task_id = plan.task_id
        self.progress = 0.0
        self.submitted_at: float | None = None

    def run(self) -> None:
        """Submit (unless the task has an id) and follow the task; never raises."""
        try:
            self._run()
        finally:
            release_memory()  # once the task has ended and its listeners ran

    def _run(self) -> None:
        try:
            if self.task_id is None:
                self._submit()
                if self.task_id is None:
                    return
            self._follow()
        except KieError as exc:
            if self.stop.is_set():  # stopped (or unloaded) meanwhile: that is the outcome
                # ...but if the request may have reached KIE.AI, never claim nothing was sent.
                self.emit(status=TaskStatus.STOPPED, queued_until=None,
                          send_uncertain=self._maybe_sent(exc))
                return
            code = getattr(exc, "code", None)
            self.emit(status=TaskStatus.FAILED, queued_until=None,
                      send_uncertain=self._maybe_sent(exc),
                      error=TaskError(code, self._explain(exc), getattr(exc, "fix", None)))
        except Exception as exc:  # never leave a task hanging in "generating"
            text = redact(f"{type(exc).__name__}: {exc}", self.client.secret_for_redaction())
            log.error("task %s crashed: %s", self.task_id, text)
            self.emit(status=TaskStatus.FAILED, queued_until=None,
                      error=TaskError(None, f"internal error: {text}"))

    # -- errors ------------------------------------------------------------------------------

    def _explain(self, exc: KieError) -> str:
        """The error in plain words, with what the user needs to act on it."""
        text = str(exc)
        if isinstance(exc, InsufficientCreditsError):
            balance = self._balance()
            if balance is not None:
                text += f" (balance: {balance:g} credits)"
        elif self._maybe_sent(exc):
            text += (" — the request may have reached KIE.AI, so it was not sent again (no "
                     "double charge); check your KIE.AI dashboard before re-running")
        return text

    def _balance(self) -> float | None:
        """The balance to show with a 402 (a request of its own, made here, on purpose)."""
        try:
            return self.client.credits()
        except KieError:
            return None

    def _maybe_sent(self, exc: KieError) -> bool:
        """True when a failed submission may still have created (and charged) a task."""
        return self.task_id is None and getattr(exc, "endpoint", None) in SUBMIT_ENDPOINTS and (
            (isinstance(exc, (KieConnectionError, MalformedResponseError))
             and not getattr(exc, "refused", False))
            # A gateway's 5xx page (no API envelope): the API may have taken it.
            or (isinstance(exc, KieAPIError) and exc.body is None
                and (exc.http_status or 0) >= 500)
        )

    # -- submit ------------------------------------------------------------------------------

    def _submit(self) -> None:
        request = self.plan.request
        if request is None:
            raise KieError("nothing to submit: the task has neither a request nor an id")
        if self.plan.inputs or self.plan.mask:
            urls = tuple(self._upload(i) for i in self.plan.inputs)
            mask = self._upload(self.plan.mask) if self.plan.mask else request.mask
            request = request.with_files(urls, mask)
            self.emit(request=request, params=request.to_dict())
        if self.stop.is_set():
            self.emit(status=TaskStatus.STOPPED)
            return
        self.submitted_at = time.monotonic()
        try:
            task_id = self.backend.submit(request, stop=self.stop, on_wait=self._queued)
        except SubmissionCancelled:
            self.emit(status=TaskStatus.STOPPED, queued_until=None)
            return
        self.task_id = task_id
        # Paid for from here on: the task's history subscriber records it at once.
        notice = self.client.notice()
        self.emit(task_id=task_id, status=TaskStatus.GENERATING, queued_until=None,
                  **({"notice": notice} if notice else {}))

    def _queued(self, seconds: float) -> None:
        """The client's rate limiter holds the submission ``seconds`` more (0: no more)."""
        self.emit(queued_until=time.monotonic() + seconds if seconds > 0 else None)

    def _upload(self, item: InputImage) -> str:
        if item.url:
            return item.url
        if item.data is None:
            raise KieError(f"input {item.label} has neither a URL nor bytes")
        return self.client.upload_stream(item.data, item.name)

    # -- follow ------------------------------------------------------------------------------

    def _duration_key(self) -> str | None:
        """The model whose earlier durations forecast this task's end: only for a family
        with no progress field, and only for a task sent here (a resumed one's start is
        unknown)."""
        if self.backend.reports_progress or self.submitted_at is None:
            return None
        name = getattr(self.plan.request, "name", None)
        return f"{getattr(self.backend, 'family', '?')}:{name}" if name else None

    def _learn_duration(self, key: str | None, record: TaskSnapshot) -> None:
        """Note how long a successful task took (the server's own times when it gives them,
        else submission to the success seen here)."""
        if key is None or self.submitted_at is None:
            return
        created = getattr(record, "create_time", None)
        completed = getattr(record, "complete_time", None)
        if isinstance(created, int) and isinstance(completed, int) and completed > created:
            seconds = (completed - created) / 1000.0
        else:
            seconds = time.monotonic() - self.submitted_at
        durations.add(key, seconds)

    def _follow(self) -> None:
        task_id = str(self.task_id)
        record: TaskSnapshot | None = None
        learnt_params = self.plan.has_params
        duration_key = self._duration_key()
        try:
            for record in poll_task(
                self.backend.poll,
                task_id,
                submitted_at=self.submitted_at,
                timeout=self.plan.timeout,
                schedule=self.plan.schedule,
                retry=self.client.retry,
                stop=self.stop,
                not_found_grace=(30.0 if self.submitted_at is not None
                                 else self.plan.not_found_grace),
                span=durations.span(duration_key) if duration_key else None,
            ):
                if record is None:
                    continue
                if not learnt_params and record.params:
                    learnt_params = True
                    self.emit(params=self.backend.params_of(record))
                if not record.finished and record.progress > self.progress:
                    self.progress = record.progress
                    self.emit(progress=self.progress)
                if record.succeeded and record.urls:
                    self._learn_duration(duration_key, record)
        except TaskTimeoutError as exc:
            self.emit(status=TaskStatus.TIMED_OUT, error=TaskError(None, str(exc), exc.fix))
            return
        if self.stop.is_set() and (
            record is None or not record.finished or (record.succeeded and not record.urls)
        ):
            self.emit(status=TaskStatus.STOPPED)
            return
        if record is None:  # the poller ends with a record unless stopped or timed out
            raise KieError(f"task {task_id}: polling ended without an answer")
        consumed = getattr(record, "credits_consumed", None)
        if record.finished and consumed is not None:
            self.emit(reported_credits=consumed)
        if record.failed:
            self.emit(status=TaskStatus.FAILED, progress=record.progress,
                      error=TaskError(record.error_code, record.failure_reason(),
                                      source="kie"))
            return
        if not record.urls:
            self.emit(status=TaskStatus.FAILED, progress=1.0,
                      error=TaskError(None, "the task succeeded but returned no images",
                                      source="kie"))
            return
        self.emit(status=TaskStatus.DOWNLOADING, progress=1.0, urls=record.urls)
        self._download_all(record.urls)

    def _download_all(self, urls: Sequence[str]) -> None:
        """Fetch every image in parallel; one image's failure never discards the others."""
        results: list[bytes | None] = [None] * len(urls)
        errors: dict[int, str] = {}

        def fetch(n: int) -> None:
            try:
                results[n] = self.client.fetch_image(urls[n])
            except DownloadError as exc:
                errors[n] = exc.reason
            except Exception as exc:
                errors[n] = f"{type(exc).__name__}"

        left = collections.deque(range(len(urls)))

        def fetch_left() -> None:
            while True:
                try:
                    n = left.popleft()
                except IndexError:
                    return
                fetch(n)

        # The shared threads help, and this task's own thread fetches too: when they are all
        # busy with other tasks' slow downloads, this task's images still come (one at a time).
        helpers = [_downloads.submit(fetch_left) for _ in range(len(urls) - 1)]
        fetch_left()
        for helper in helpers:
            if not helper.cancel():  # started: it is fetching one of ours, or about to return
                helper.result()
        # Listeners (e.g. --save) act on the images before the task is announced done.
        self.emit(images=results, image_errors=errors)
        if not any(results):
            first = next(iter(errors.values()), "no image could be downloaded")
            self.emit(status=TaskStatus.FAILED,
                      error=TaskError(None, f"the images could not be downloaded: {first}"))
        else:
            self.emit(status=TaskStatus.SUCCESS)
