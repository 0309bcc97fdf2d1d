"""The task object users hold: state, ``wait``, ``stop``, images, ``save``, static display.

A :class:`Task` runs in one background thread: upload local inputs, submit, poll, download
the images (in parallel, the moment success is seen). Listeners are called on every change
from that thread; they must only set state (the panel sets widget traits), never print.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import (
    DownloadError,
    InsufficientCreditsError,
    KieAPIError,
    KieConnectionError,
    KieError,
    MalformedResponseError,
    SubmissionCancelled,
    TaskFailedError,
    TaskTimeoutError,
    redact,
)
from .imageinfo import sniff_image
from .models import GenerationRequest, TaskRecord, TaskStatus
from .poller import PollSchedule, poll_task

if TYPE_CHECKING:
    from .client import KieClient
    from .history import HistoryStore
    from .inputs import InputImage

__all__ = ["Task", "TaskError"]

log = logging.getLogger("kie_jupyter")

Listener = Callable[["Task"], None]


@dataclass(frozen=True)
class TaskError:
    """Why a task did not give images: the API's code (if any) and message."""

    code: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.message} (error {self.code})" if self.code is not None else self.message


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Task:
    """One image generation, from submission to images.

    Made by ``%%kie4o`` and by :func:`kie_jupyter.generate`; the same object either way.

    Attributes: ``task_id``, ``status`` (a :class:`TaskStatus`), ``progress`` (0..1),
    ``urls``, ``images`` (PNG bytes, downloaded once), ``error`` (:class:`TaskError` or
    None), ``params``, ``created``, ``completed``.
    """

    def __init__(
        self,
        request: GenerationRequest | None,
        *,
        client: KieClient,
        inputs: Sequence[InputImage] = (),
        mask: InputImage | None = None,
        task_id: str | None = None,
        timeout: float = 600.0,
        schedule: PollSchedule | None = None,
        save_dir: str | os.PathLike[str] | None = None,
        embed: str = "thumb",
        history: HistoryStore | None = None,
    ) -> None:
        self.request = request
        self.client = client
        self._inputs = tuple(inputs)
        self._mask = mask
        self.task_id: str | None = task_id
        self.timeout = timeout
        self.schedule = schedule or PollSchedule()
        self.save_dir = Path(save_dir).expanduser() if save_dir else None
        self.embed = embed
        #: Where the task is recorded the moment its id is known, and when it ends.
        self.history = history
        self.status = TaskStatus.SUBMITTING if task_id is None else TaskStatus.GENERATING
        self.progress = 0.0
        self.urls: tuple[str, ...] = ()
        self.error: TaskError | None = None
        self.image_errors: dict[int, str] = {}
        #: Why ``--save`` could not write the images (they are still in memory).
        self.save_error: str | None = None
        self.saved_paths: list[str] = []
        self.params: dict[str, Any] = request.to_dict() if request else {}
        self.created = _now()
        self.completed: datetime | None = None
        self.started_monotonic = time.monotonic()
        self.finished_monotonic: float | None = None
        self._images: list[bytes | None] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._listeners: list[Listener] = []
        self._thread: threading.Thread | None = None

    # -- observing ------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(task)`` on every change (from the task's thread)."""
        with self._lock:
            self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener(self)
            except Exception:  # a broken view must never kill the task
                log.exception("task listener failed")

    def _set(self, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, value)
            if self.status.finished and self.completed is None:
                self.completed = _now()
                self.finished_monotonic = time.monotonic()
        self._notify()
        if self.status.finished and not self._done.is_set():
            if self.history is not None and self.task_id:
                try:
                    self.history.record(self, self.client.base_url)
                except OSError as exc:
                    log.warning("could not write the history: %s", exc)
            self._done.set()

    @property
    def prompt(self) -> str:
        return str(self.params.get("prompt", ""))

    @property
    def done(self) -> bool:
        """True once the task has ended locally (success, failure, timeout or stop)."""
        return self._done.is_set()

    @property
    def elapsed(self) -> float:
        """Seconds from start to the end (or to now while it runs)."""
        end = self.finished_monotonic or time.monotonic()
        return end - self.started_monotonic

    # -- running ---------------------------------------------------------------------------

    def start(self) -> Task:
        """Run the task in a background thread; returns at once."""
        with self._lock:
            if self._thread is not None:
                return self
            self._thread = threading.Thread(
                target=self._run, name=f"kie4o-task-{id(self):x}", daemon=True
            )
        self._thread.start()
        return self

    def run(self) -> Task:
        """Run the task in the calling thread, to the end (or wait, if it already runs)."""
        with self._lock:
            claimed = self._thread is not None
            if not claimed:
                # Claim it: a second start/run/wait never submits it again.
                self._thread = threading.current_thread()
        if claimed:
            return self.wait()
        self._run()
        return self

    def wait(self, timeout: float | None = None) -> Task:
        """Block until the task ends (or ``timeout`` seconds pass); return the task."""
        if not self.done:
            self.start()  # does nothing if it already runs
        self._done.wait(timeout)
        return self

    def stop(self) -> None:
        """Stop following the task locally. The server task goes on and can be resumed."""
        self._stop.set()

    def _run(self) -> None:
        try:
            if self.task_id is None:
                self._submit()
                if self.task_id is None:
                    return
            self._follow()
        except KieError as exc:
            if self._stop.is_set():  # stopped (or unloaded) meanwhile: that is the outcome
                self._set(status=TaskStatus.STOPPED)
                return
            code = getattr(exc, "code", None)
            self._set(status=TaskStatus.FAILED, error=TaskError(code, self._explain(exc)))
        except Exception as exc:  # never leave a task hanging in "generating"
            text = redact(f"{type(exc).__name__}: {exc}", self.client.secret_for_redaction())
            log.error("task %s crashed: %s", self.task_id, text)
            self._set(status=TaskStatus.FAILED, error=TaskError(None, f"internal error: {text}"))

    def _explain(self, exc: KieError) -> str:
        """The error in plain words, with what the user needs to act on it."""
        text = str(exc)
        if isinstance(exc, InsufficientCreditsError):
            try:
                text += f" (balance: {self.client.credits():g} credits)"
            except KieError:
                pass
        elif self.task_id is None and getattr(exc, "endpoint", None) == "generate" and (
            (isinstance(exc, (KieConnectionError, MalformedResponseError))
             and not getattr(exc, "refused", False))
            # A gateway's 5xx page (no API envelope): the API may have taken it.
            or (isinstance(exc, KieAPIError) and exc.body is None
                and (exc.http_status or 0) >= 500)
        ):
            text += (" — the request may have reached KIE.AI, so it was not sent again (no "
                     "double charge); check your KIE.AI dashboard before re-running")
        return text

    def _submit(self) -> None:
        assert self.request is not None
        request = self.request
        if self._inputs or self._mask:
            urls = tuple(self._upload(i) for i in self._inputs)
            mask = self._upload(self._mask) if self._mask else request.mask
            request = request.with_files(urls, mask)
            self.request = request
            self.params = request.to_dict()
        if self._stop.is_set():
            self._set(status=TaskStatus.STOPPED)
            return
        self._submitted_at = time.monotonic()
        try:
            task_id = self.client.generate(request, stop=self._stop)
        except SubmissionCancelled:
            self._set(status=TaskStatus.STOPPED)
            return
        self._set(task_id=task_id, status=TaskStatus.GENERATING)
        if self.history is not None:
            self.history.record(self, self.client.base_url)

    def _upload(self, item: InputImage) -> str:
        if item.url:
            return item.url
        assert item.data is not None
        return self.client.upload_stream(item.data, item.name)

    def _follow(self) -> None:
        assert self.task_id is not None
        submitted = getattr(self, "_submitted_at", None)
        record: TaskRecord | None = None
        try:
            for record in poll_task(
                # One attempt per poll: the poller's own backoff and deadline handle errors.
                functools.partial(self.client.record_info, retries=False),
                self.task_id,
                submitted_at=submitted,
                timeout=self.timeout,
                schedule=self.schedule,
                retry=self.client.retry,
                stop=self._stop,
                not_found_grace=30.0 if submitted is not None else 0.0,
            ):
                if record is None:
                    continue
                if not self.params and record.params:
                    self.params = _params_from_api(record.params)
                if not record.finished:
                    self._set(progress=max(self.progress, record.progress))
        except TaskTimeoutError as exc:
            self._set(status=TaskStatus.TIMED_OUT, error=TaskError(None, str(exc)))
            return
        if self._stop.is_set() and (
            record is None or not record.finished or (record.succeeded and not record.urls)
        ):
            self._set(status=TaskStatus.STOPPED)
            return
        assert record is not None
        if record.failed:
            self._set(
                status=TaskStatus.FAILED, progress=record.progress,
                error=TaskError(record.error_code, record.failure_reason()),
            )
            return
        if not record.urls:
            self._set(status=TaskStatus.FAILED, progress=1.0,
                      error=TaskError(None, "the task succeeded but returned no images"))
            return
        self._set(status=TaskStatus.DOWNLOADING, progress=1.0, urls=record.urls)
        self._download_all()

    def _download_all(self) -> None:
        results: list[bytes | None] = [None] * len(self.urls)
        errors: dict[int, str] = {}

        def fetch(n: int) -> None:
            try:
                results[n] = self.client.fetch_image(self.urls[n])
            except DownloadError as exc:
                errors[n] = exc.reason
            except Exception as exc:  # one image's failure never discards the others
                errors[n] = f"{type(exc).__name__}"

        with ThreadPoolExecutor(max_workers=min(4, len(self.urls))) as pool:
            list(pool.map(fetch, range(len(self.urls))))
        with self._lock:
            self._images = results
            self.image_errors = errors
        if self.save_dir is not None and any(results):
            try:
                self.save(self.save_dir)
            except OSError as exc:
                self.save_error = f"could not save to {self.save_dir}: {exc.strerror or exc}"
        if not any(results):
            first = next(iter(errors.values()), "no image could be downloaded")
            self._set(status=TaskStatus.FAILED,
                      error=TaskError(None, f"the images could not be downloaded: {first}"))
        else:
            self._set(status=TaskStatus.SUCCESS)

    # -- results ---------------------------------------------------------------------------

    @property
    def images(self) -> list[bytes]:
        """The PNG bytes of each image (downloaded once, then cached).

        Raises :class:`TaskFailedError` for a failed task and a :class:`KieError` while it
        still runs.
        """
        if self.status in (TaskStatus.FAILED, TaskStatus.TIMED_OUT):
            err = self.error or TaskError(None, "unknown reason")
            raise TaskFailedError(self.task_id, err.code, err.message)
        if not self.done or self.status is TaskStatus.STOPPED:
            raise KieError(
                f"task {self.task_id or '(not submitted)'} has no images yet "
                f"(status: {self.status.value}); call .wait() first"
            )
        return [img for img in self._images if img is not None]

    def numbered_images(self) -> list[tuple[int, bytes]]:
        """(index, bytes) of each downloaded image, keeping the API's numbering."""
        return [(n, img) for n, img in enumerate(self._images) if img is not None]

    def save(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write ``<taskId>_<n>.png`` for each image and a ``<taskId>.json`` sidecar."""
        target = Path(directory).expanduser()
        target.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        numbered = self.numbered_images()
        if not numbered:
            self.images  # noqa: B018 -- raises the reason there is nothing to save
        for n, data in numbered:
            info = sniff_image(data)
            ext = "jpg" if info and info.format == "jpeg" else (info.format if info else "png")
            path = target / f"{self.task_id}_{n}.{ext}"
            _atomic_write(path, data)
            paths.append(path)
        sidecar = {
            "task_id": self.task_id,
            "prompt": self.prompt,
            "params": self.params,
            "urls": list(self.urls),
            "created": self.created.isoformat(),
            "completed": self.completed.isoformat() if self.completed else None,
            "files": [p.name for p in paths],
        }
        _atomic_write(target / f"{self.task_id}.json",
                      json.dumps(sidecar, indent=2, ensure_ascii=False).encode("utf-8"))
        with self._lock:
            for p in paths:
                if str(p) not in self.saved_paths:
                    self.saved_paths.append(str(p))
        return paths

    def download_url(self, n: int = 0) -> str:
        """The API's direct download URL for image ``n`` (valid 20 minutes)."""
        if not self.urls:
            raise KieError(f"task {self.task_id} has no image URLs (status: {self.status.value})")
        if not -len(self.urls) <= n < len(self.urls):
            raise KieError(f"image {n}: this task has {len(self.urls)} image(s)")
        return self.client.download_url(str(self.task_id), self.urls[n])

    # -- display ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        pct = f" {self.progress:.0%}" if self.status is TaskStatus.GENERATING else ""
        return f"<kie4o Task {self.task_id or '(submitting)'} {self.status.value}{pct}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from .static import static_bundle

        return static_bundle(self, self.embed)


def _params_from_api(api: dict[str, Any]) -> dict[str, Any]:
    """Our params dict from the API's ``paramJson`` (for resumed tasks)."""
    return {
        "prompt": api.get("prompt", ""),
        "size": api.get("size", ""),
        "variants": api.get("nVariants", 1),
        "files": api.get("filesUrl") or [],
        "mask": api.get("maskUrl"),
        "enhance": bool(api.get("isEnhance", False)),
        "fallback": bool(api.get("enableFallback", False)),
        "fallback_model": api.get("fallbackModel"),
        "callback_url": api.get("callBackUrl"),
    }


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
