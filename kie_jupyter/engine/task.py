"""The task object users hold: state, ``wait``, ``stop``, images, ``save``, static display.

A :class:`Task` runs in one background thread: upload local inputs, submit, poll, download
the images (in parallel, the moment success is seen). Listeners are called on every change
from that thread; they must only set state (the panel sets widget traits), never print.

Once a task has an id it was paid for: from then on nothing local (a history or output
folder that cannot be written) may end it; such problems are one warning and the task goes on.

Size: the public object users hold — state, events, results and saving — with its
docstrings; the driving lives in :mod:`.runner`, history and --save in :mod:`.subscribers`.
"""

from __future__ import annotations

import logging
import operator
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from ..api.backend import TaskSnapshot
from ..api.errors import (
    KieError,
    KieUsageError,
    TaskFailedError,
)
from ..api.fouro import FourOBackend
from ..api.models import GenerationRequest, TaskStatus
from ..api.prices import Cost
from .files import atomic_write, write_images, write_sidecar
from .inputs import InputImage
from .poller import PollSchedule
from .provenance import embed_provenance, provenance_fields
from .runner import RunPlan, TaskRunner, on_image_thread
from .spend import estimate_params, task_cost
from .state import TaskError
from .subscribers import HistoryRecorder, SaveOnDownload, ThumbnailKeeper
from .taskimage import ImageIndexError, TaskImage

if TYPE_CHECKING:
    from ..api.backend import Backend
    from ..api.client import KieClient
    from .history import HistoryEntry, HistoryStore

__all__ = ["Task", "TaskError", "TaskImage"]

log = logging.getLogger("kie_jupyter")

Listener = Callable[["Task"], None]


def recently_created(iso: str, within: float = 600.0) -> bool:
    """Whether a task created at ``iso`` (history's time) is at most ``within`` s old: the
    API may not know such a task for a moment yet."""
    try:
        created = datetime.fromisoformat(iso)
    except ValueError:
        return False
    if created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    return (_now() - created).total_seconds() <= within


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Task:
    """One image generation, from submission to images.

    Made by ``%%kie4o`` and by :func:`kie_jupyter.generate`; the same object either way.

    Attributes: ``task_id``, ``status`` (a :class:`TaskStatus`), ``progress`` (0..1),
    ``urls``, ``images`` (PNG bytes, downloaded once), ``error`` (:class:`TaskError` or
    None), ``params``, ``created``, ``completed``, ``demo``, ``queued_until``, ``cost``.
    ``task[i]`` is one image (a :class:`TaskImage`), 0-based, negative from the end.
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
        backend: Backend | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.request = request
        self.client = client
        #: Tags recorded with the task in history (e.g. the batch line it came from).
        self.labels: dict[str, str] = dict(labels or {})
        #: The API family the task runs on (the 4o Image API unless told otherwise).
        self.backend: Backend = backend or FourOBackend(client)
        self._inputs = tuple(inputs)
        self._mask = mask
        self.task_id: str | None = task_id
        self.timeout = timeout
        self.schedule = schedule or PollSchedule()
        self.save_dir = Path(save_dir).expanduser().absolute() if save_dir else None
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
        #: While the submission waits behind the client's rate limiter: the
        #: ``time.monotonic()`` instant it will be sent (listeners hear when it is set and
        #: cleared); None otherwise.
        self.queued_until: float | None = None
        #: The credits KIE reported the task consumed (None: not reported).
        self.reported_credits: float | None = None
        #: What the server said to the user when the task was sent (a class's budget
        #: warning), if anything.
        self.notice: str | None = None
        self._estimate: tuple[dict[str, Any], Cost] | None = None
        self._images: list[bytes | None] = []
        #: Stopped while a submission's fate was unknown (it may have created a task).
        self._send_uncertain = False
        #: A resumed task made a moment ago may not be visible at KIE yet (see RunPlan).
        self._not_found_grace = 0.0
        #: Parents known from history (a resumed task has no inputs to ask).
        self._known_parents: tuple[str, ...] = ()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._listeners: list[Listener] = []
        self._thread: threading.Thread | None = None
        #: Small copies kept for the gallery (absolute paths), once the task succeeded.
        self.thumb_paths: list[str] = []
        if history is not None:
            # Thumbnails first: history's record of the end lists them.
            keeper = ThumbnailKeeper(history.thumbs_dir())

            def keep_thumbnails(task: Task) -> None:  # decoded on the one image thread
                if task.status is TaskStatus.SUCCESS:
                    on_image_thread(keeper, task)

            self.subscribe(keep_thumbnails)
            self.subscribe(HistoryRecorder(history, client.base_url))
        if self.save_dir is not None:
            self.subscribe(SaveOnDownload(self.save_dir))

    @classmethod
    def resumed(cls, task_id: str, *, client: KieClient, entry: HistoryEntry | None = None,
                snapshot: TaskSnapshot | None = None, **options: Any) -> Task:
        """A task that follows an existing id to its end (after a restart, from history or
        KIE's dashboard) — the one resume path of the magic, the Python API and the CLI.

        What history knows (``entry``: prompt, params, creation time, saved files) is shown at
        once; else the API's echo of the request in ``snapshot``; else it is learnt while
        polling. ``options`` are the constructor's (timeout, schedule, save_dir, history…).
        """
        task = cls(None, client=client, task_id=task_id, **options)
        if entry is not None:
            task.params = dict(entry.params) or {"prompt": entry.prompt}
            task.saved_paths = list(entry.saved_paths)
            task._known_parents = tuple(entry.parents)
            if (entry.created and recently_created(entry.created)
                    and entry.base_url in (None, client.base_url)):
                task._not_found_grace = 30.0
            task.thumb_paths = list(entry.thumbs)
            recorded = Cost.from_dict(entry.cost)
            if recorded is not None and recorded.basis == "reported":
                task.reported_credits = recorded.value
            if entry.created:
                task.created = datetime.fromisoformat(entry.created)
        elif snapshot is not None and snapshot.params:
            task.params = task.backend.params_of(snapshot)
        return task

    # -- observing ------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(task)`` on every change (from the task's thread)."""
        with self._lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        """Stop calling ``listener`` (a view that was closed); unknown listeners are ignored."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener(self)
            except Exception:  # a broken view must never kill the task
                log.exception("task listener failed")

    def _set(self, **changes: Any) -> None:
        """Apply changes reported by the runner, then tell every listener (history and
        ``--save`` among them) — in the runner's thread, in order."""
        with self._lock:
            if "images" in changes:
                # The generation is complete once its images are in: stamp the end time
                # before --save writes the sidecar that shows it.
                self._images = list(changes.pop("images"))
                self._mark_completed()
            if "send_uncertain" in changes:
                self._send_uncertain = bool(changes.pop("send_uncertain"))
            if changes.keys() == {"queued_until"} and changes["queued_until"] == self.queued_until:
                return
            for name, value in changes.items():
                setattr(self, name, value)
            if self.status.finished:
                self._mark_completed()
        self._notify()
        if self.status.finished and not self._done.is_set():
            self._done.set()

    def _mark_completed(self) -> None:
        """Stamp the end time once (before ``--save`` writes the sidecar, which shows it)."""
        with self._lock:
            if self.completed is None:
                self.completed = _now()
                self.finished_monotonic = time.monotonic()

    @property
    def prompt(self) -> str:
        return str(self.params.get("prompt", ""))

    @property
    def demo(self) -> bool:
        """True when the task ran on the demo server (synthetic images, nothing charged)."""
        return bool(getattr(self.client, "demo", False))

    @property
    def runs_at(self) -> str:
        """Where the task runs once sent: ``"KIE.AI"`` or, in demo mode, the demo server."""
        return "the demo server" if self.demo else "KIE.AI"

    @property
    def model(self) -> str:
        """Our name of the model that made (or makes) the images."""
        return str(self.params.get("model") or self.backend.family)

    @property
    def parents(self) -> list[str]:
        """Ids of the tasks whose images are this task's inputs (in order, once each)."""
        found = [i.parent for i in (*self._inputs, *([self._mask] if self._mask else []))
                 if i.parent]
        found += list(self._known_parents)
        return list(dict.fromkeys(found))

    def provenance(self) -> dict[str, str]:
        """The text chunks written into each PNG of this task (see :mod:`.provenance`)."""
        return provenance_fields(prompt=self.prompt, params=self.params, model=self.model,
                                 task_id=self.task_id, parents=self.parents,
                                 created=self.created.isoformat(), demo=self.demo)

    @property
    def estimated_cost(self) -> Cost:
        """The price table's estimate for this task's parameters (see :attr:`cost`)."""
        with self._lock:
            params = self.params
            if self._estimate is None or self._estimate[0] is not params:
                self._estimate = (params, estimate_params({"model": self.model, **params},
                                                          demo=self.demo))
            return self._estimate[1]

    @property
    def cost(self) -> Cost:
        """What the task costs in KIE credits: ``value`` (None: unknown), ``unit``,
        ``basis`` (``"reported"`` by KIE, else ``"estimate"``), ``demo`` (not charged) and
        ``source``. Shown as ``≈ 6 credits`` while it is an estimate."""
        return task_cost(self)

    @property
    def inputs(self) -> tuple[InputImage, ...]:
        """The input images it was sent (an edit's sources), as given."""
        return self._inputs

    @property
    def mask_input(self) -> InputImage | None:
        """The mask it was sent, as given (None without one)."""
        return self._mask

    @property
    def never_created(self) -> bool:
        """True when KIE made no task for this one: it ended before its request was taken
        (stopped first, or refused), so nothing was charged."""
        return (self.task_id is None and self.status.finished
                and not self._send_uncertain)

    @property
    def stopped_before_sent(self) -> bool:
        """True when the task was stopped before its request left: nothing was charged."""
        return (self.status is TaskStatus.STOPPED and self.task_id is None
                and not self._send_uncertain)

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

    def join(self, timeout: float | None = None) -> None:
        """Wait for the task's own thread to end (after :meth:`stop`), at most ``timeout`` s."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and thread.is_alive():
            thread.join(timeout)

    def stop(self) -> None:
        """Stop following the task locally. A task already sent goes on at KIE.AI and can be
        resumed; one still waiting to be sent is not sent at all (nothing is charged)."""
        self._stop.set()

    def _run(self) -> None:
        plan = RunPlan(request=self.request, task_id=self.task_id, inputs=self._inputs,
                       mask=self._mask, timeout=self.timeout, schedule=self.schedule,
                       has_params=bool(self.params), not_found_grace=self._not_found_grace)
        TaskRunner(plan, backend=self.backend, client=self.client, stop=self._stop,
                   emit=self._set).run()

    # -- results ---------------------------------------------------------------------------

    @property
    def images(self) -> list[bytes]:
        """The PNG bytes of each image (downloaded once, then cached).

        Raises :class:`TaskFailedError` for a failed task and a :class:`KieError` while it
        still runs or when it was stopped.
        """
        return [img for img in self._ready_images() if img is not None]

    def _ready_images(self) -> list[bytes | None]:
        """The images by the API's numbering (None where one failed), or raise why none."""
        if self.status in (TaskStatus.FAILED, TaskStatus.TIMED_OUT):
            err = self.error or TaskError(None, "unknown reason")
            failed = TaskFailedError(self.task_id, err.code, err.message)
            failed.fix = err.fix
            raise failed
        if self.stopped_before_sent:
            raise KieError("the task was stopped before it was sent; nothing was charged")
        if self.status is TaskStatus.STOPPED and self.task_id is None:
            raise KieError("the task was stopped while it was being sent; the request may "
                           f"have reached {self.runs_at}"
                           + (" — check your KIE.AI dashboard" if not self.demo else ""))
        if self.status is TaskStatus.STOPPED:
            stopped = KieError(f"task {self.task_id} was stopped before its images arrived; "
                               f"it goes on at {self.runs_at} and can be resumed")
            stopped.fix = "resume"
            raise stopped
        if not self.done:
            raise KieError(
                f"task {self.task_id or '(not sent yet)'} is still running "
                f"(status: {self.status.value}); call .wait() first"
            )
        return list(self._images)

    @overload
    def __getitem__(self, index: int) -> TaskImage: ...
    @overload
    def __getitem__(self, index: slice) -> list[TaskImage]: ...
    def __getitem__(self, index: int | slice) -> TaskImage | list[TaskImage]:
        """``task[i]``: image ``i`` (0-based, negative from the end) as a :class:`TaskImage`.

        Out of range raises an :class:`IndexError` (a :class:`KieUsageError` too), so
        ``for image in task`` and ``list(task)`` work. No ``__len__``: a task with no images
        must still be truthy.
        """
        images = self._ready_images()  # raises why there are none (failed, stopped, running)
        count = len(images)
        if isinstance(index, slice):
            return [self[n] for n in range(*index.indices(count)) if images[n] is not None]
        if isinstance(index, bool):
            raise KieUsageError(f"task[{index!r}]: the index must be an int, not bool")
        try:
            n = operator.index(index)
        except TypeError:
            raise KieUsageError(
                f"task[{index!r}]: the index must be an int, not {type(index).__name__}"
            ) from None
        if not -count <= n < count:
            raise ImageIndexError(
                f"task[{n}]: task {self.task_id} has {count} image(s); use 0 to {count - 1} "
                "(or -1 for the last)" if count else
                f"task[{n}]: task {self.task_id} has no images"
            )
        n %= count
        data = images[n]
        if data is None:
            reason = self.image_errors.get(n, "it could not be downloaded")
            raise KieError(f"task[{n}]: image {n} of task {self.task_id} is missing: {reason}")
        return TaskImage(self, n, data, self.urls[n] if n < len(self.urls) else None)

    def as_input_images(self, option: str) -> list[InputImage]:
        """All this task's images as inputs to another task (by their URLs)."""
        if not self.urls:
            raise KieUsageError(
                f"{option}: task {self.task_id or '(not submitted)'} has no images "
                f"(status: {self.status.value})"
            )
        images = self._images
        return [InputImage(label=u, url=u, source=f"task {self.task_id}[{n}]",
                           data=images[n] if n < len(images) else None, parent=self.task_id)
                for n, u in enumerate(self.urls)]

    def numbered_images(self) -> list[tuple[int, bytes]]:
        """(index, bytes) of each downloaded image, keeping the API's numbering."""
        return [(n, img) for n, img in enumerate(self._images) if img is not None]

    def save(self, directory: str | os.PathLike[str], index: int | None = None) -> list[Path]:
        """Write ``<taskId>_<n>.png`` for each image (or only image ``index``) and a
        ``<taskId>.json`` sidecar (prompt, params, URLs, times, inputs); return the paths."""
        if index is None:
            numbered = self.numbered_images()
            if not numbered:
                self.images  # noqa: B018 -- raises the reason there is nothing to save
        else:
            image = self[index]
            numbered = [(image.index, image.data)]
        target = Path(directory).expanduser().absolute()
        paths = write_images(target, self.task_id, numbered, self.provenance())
        self._note_saved(paths)
        # The sidecar lists every file of this task in the folder, also earlier single saves.
        files = [Path(p).name for p in self.saved_paths if Path(p).parent == target]
        write_sidecar(target, self.task_id, self._sidecar(files))
        return paths

    def save_image(self, index: int, path: str | os.PathLike[str]) -> Path:
        """Write image ``index`` as the file ``path`` (no sidecar); return it, absolute."""
        image = self[index]
        target = Path(path).expanduser().absolute()
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, embed_provenance(image.data, self.provenance()))
        self._note_saved([target])
        return target

    def _sidecar(self, files: list[str]) -> dict[str, Any]:
        """What ``<taskId>.json`` holds: enough to know later how each image was made."""
        sidecar: dict[str, Any] = {
            "task_id": self.task_id,
            "prompt": self.prompt,
            "params": self.params,
            "urls": list(self.urls),
            "created": self.created.isoformat(),
            "completed": self.completed.isoformat() if self.completed else None,
            "demo": self.demo,
            "model": self.model,
            "cost": self.cost.to_dict(),
            "parents": self.parents,
            "files": files,
        }
        # Uploaded inputs get temporary URLs: keep where each came from (path, URL, task).
        sent = list(self.params.get("files") or [])
        if self._inputs:
            sidecar["inputs"] = [
                {"source": item.source, "url": sent[n] if n < len(sent) else item.url}
                for n, item in enumerate(self._inputs)
            ]
        elif sent:  # a resumed task: only the URLs are known
            sidecar["inputs"] = [{"source": None, "url": url} for url in sent]
        mask_url = self.params.get("mask")
        if self._mask is not None:
            sidecar["mask"] = {"source": self._mask.source, "url": mask_url or self._mask.url}
        elif mask_url:
            sidecar["mask"] = {"source": None, "url": mask_url}
        return sidecar

    def _note_saved(self, paths: Sequence[Path]) -> None:
        """Remember written files (absolute); history learns of files saved after the end."""
        with self._lock:
            for p in paths:
                if str(p) not in self.saved_paths:
                    self.saved_paths.append(str(p))
        self._notify()  # history learns of files saved after the end

    def download_url(self, n: int = 0) -> str:
        """The API's direct download URL for image ``n`` (valid 20 minutes)."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise KieUsageError(f"download_url: n must be an int, not {type(n).__name__}")
        if not self.urls:
            raise KieError(f"task {self.task_id} has no image URLs (status: {self.status.value})")
        if not -len(self.urls) <= n < len(self.urls):
            raise KieError(f"image {n}: this task has {len(self.urls)} image(s)")
        return self.backend.download_url(str(self.task_id), self.urls[n])

    # -- display ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        pct = f" {self.progress:.0%}" if self.status is TaskStatus.GENERATING else ""
        return f"<kie4o Task {self.task_id or '(submitting)'} {self.status.value}{pct}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        # A notebook shows the card: ``%load_ext`` registers it with IPython's formatter.
        return {"text/plain": repr(self)}
