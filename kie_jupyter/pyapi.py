"""The Python API: ``generate``, ``sweep``, ``resume``, ``models``, ``prices``, ``provenance``.

A front end like the magic and the ``kie4o`` command: it builds the engine's plan
(:mod:`kie_jupyter.engine.plan`) and runs its tasks. In a notebook with the extension loaded
it uses the kernel's session (its key, demo server or joined class, and its history folder);
else a client from the environment (``KIE_API_KEY``; the bundled mock server with ``KIE_DEMO``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from .api.client import KieClient
from .api.errors import KieConfigError, KieUsageError
from .api.prices import active_prices
from .api.registry import MODELS, describe, resume_backend
from .engine import stephook
from .engine.checks import check_save_dir, check_timeout
from .engine.followups import FollowUp, wanted_for
from .engine.plan import Plan, Wanted, interrupt_report, make_plan
from .engine.provenance import read_provenance
from .engine.sweep import Sweep
from .engine.task import Task
from .session import Session, active

__all__ = ["generate", "sweep", "resume", "models", "prices", "provenance", "upscale",
           "remove_bg", "vary", "reframe"]

#: The session of a Python API used with no extension loaded (its demo server, its clients).
_own = Session()

#: A paid call estimated over this many credits needs ``yes=True`` (the magic's default too).
CONFIRM_OVER_CREDITS = 200.0

#: How the Python API's errors name the image options.
_NAMES = {"image": "images", "mask": "mask", "input": "input image"}


def _session() -> Session:
    return active() or _own


def _client(client: KieClient | None) -> KieClient:
    """``client``, else the loaded extension's (so demo mode and a joined class apply), else
    one from the environment, on the bundled mock server when ``KIE_DEMO`` is set."""
    if client is not None:
        if not isinstance(client, KieClient):
            raise KieUsageError(f"client: expected a KieClient, not {type(client).__name__}")
        return client
    session = _session()
    try:
        if session is not _own:
            return session.client()
        from .fakeapi.demo import demo_requested

        if not demo_requested():  # read at each call: unsetting KIE_DEMO means live again
            return session.live_client()
        session.demo.start()
        return session.client()
    except KieConfigError as exc:
        raise KieUsageError(str(exc)) from None


def _keyed(client: KieClient) -> KieClient:
    if not client.has_key:
        raise KieUsageError("no API key: set KIE_API_KEY or pass client=KieClient(api_key=...)")
    return client


def _checked(timeout: float, save: str | os.PathLike[str] | None) -> tuple[float, Any]:
    return (check_timeout(timeout, "timeout"),
            check_save_dir(save, "save") if save is not None else None)


def generate(
    prompt: str = "",
    *,
    model: str | None = None,
    size: str | None = None,
    variants: int = 1,
    images: Sequence[Any] | Any = (),
    mask: Any = None,
    enhance: bool = False,
    fallback: bool | str = False,
    callback_url: str | None = None,
    resolution: str | None = None,
    quality: str | None = None,
    output_format: str | None = None,
    params: dict[str, Any] | None = None,
    seed: int | str | None = None,
    negative: str | None = None,
    wait: bool = True,
    timeout: float = 600.0,
    save: str | os.PathLike[str] | None = None,
    yes: bool = False,
    max_credits: float | None = None,
    confirm_over_credits: float | None = CONFIRM_OVER_CREDITS,
    client: KieClient | None = None,
) -> Task:
    """Generate (or edit) images; return the :class:`Task` (finished when ``wait``).

    ``images`` and ``mask`` take local paths (uploaded first), http(s) URLs, bytes, an
    earlier task, or one of its images (``fox[1]``). ``fallback`` is True or a model name
    (``FLUX_MAX``, ``GPT_IMAGE_1``). ``save`` is a folder for the images and their sidecar.
    ``model`` picks one of KIE's models (``4o`` by default; ``kie_jupyter.models()`` lists
    them with their options): ``size`` is its aspect ratio, ``resolution``, ``quality`` and
    ``output_format`` its own fields, ``params`` documented fields the registry does not name;
    ``seed`` and ``negative`` (a negative prompt) where the model's page documents them.
    Bad input raises :class:`KieUsageError` before anything is sent (nothing is charged); a
    task that fails does not raise: ``task.error`` holds the reason (and ``task.images``
    raises it).

    Cost: ``task.cost`` is what it cost (KIE's figure where reported, else the estimate).
    A paid task estimated over ``confirm_over_credits``, or of unknown price, needs
    ``yes=True``; one over ``max_credits`` or the session's budget (``%config
    Kie4o.budget``) is refused before it is sent.
    """
    timeout, save_dir = _checked(timeout, save)
    if model is not None and not isinstance(model, str):
        raise KieUsageError(f"model: expected a model name, not {type(model).__name__}")
    plan = make_plan(Wanted(
        prompt, model=model, size=size, resolution=resolution, quality=quality, seed=seed,
        negative=negative, variants=variants, images=images, mask=mask, enhance=enhance,
        fallback=bool(fallback), fallback_model=fallback if isinstance(fallback, str) else None,
        callback_url=callback_url, output_format=output_format, params=params,
        fill=lambda text: text, sweep=False, names=_NAMES))
    client = _keyed(_client(client))
    _gate(plan, client, yes=yes, over=1, over_credits=confirm_over_credits,
          max_credits=max_credits)
    (task,) = _tasks(plan, client, timeout, save_dir)
    task.start()
    return _wait(task) if wait else task


def sweep(
    prompt: str,
    *,
    model: str | Sequence[str] | None = None,
    size: str | Sequence[str] | None = None,
    variants: int = 1,
    images: Sequence[Any] | Any = (),
    mask: Any = None,
    enhance: bool = False,
    fallback: bool | str = False,
    resolution: str | Sequence[str] | None = None,
    quality: str | Sequence[str] | None = None,
    seed: int | str | Sequence[int | str] | None = None,
    negative: str | None = None,
    wait: bool = True,
    timeout: float = 600.0,
    save: str | os.PathLike[str] | None = None,
    yes: bool = False,
    confirm_over: int = 8,
    max_credits: float | None = None,
    confirm_over_credits: float | None = CONFIRM_OVER_CREDITS,
    client: KieClient | None = None,
) -> Sweep:
    """Run every combination of a prompt's ``{a|b|c}`` groups and the options given as lists
    (``size=["1:1", "3:2"]``, ``model=["4o", "gpt-image-1.5"]``, ``seed=[1, 2, 3]``) as
    parallel tasks; return
    the :class:`Sweep`. A model that makes one image per task runs ``variants`` tasks (a
    ``variant`` dimension).

    Every combination is checked before anything is sent; a sweep of more than
    ``confirm_over`` tasks, estimated over ``confirm_over_credits`` or holding an unknown
    price needs ``yes=True``; one over ``max_credits`` or the session's budget is refused.
    ``sw.cost`` is the total. The tasks share the account's rate limit
    (those waiting say "Queued"). ``sw["oil"]`` / ``sw["oil", "3:2"]`` pick a task by label.
    """
    plan = make_plan(Wanted(
        prompt, model=model, size=size, resolution=resolution, quality=quality, seed=seed,
        negative=negative, variants=variants, images=images, mask=mask, enhance=enhance,
        fallback=bool(fallback), fallback_model=fallback if isinstance(fallback, str) else None,
        names=_NAMES))
    timeout, save_dir = _checked(timeout, save)
    client = _keyed(_client(client))
    _gate(plan, client, yes=yes, over=confirm_over, over_credits=confirm_over_credits,
          max_credits=max_credits)
    return _started(plan.sweep_of(_tasks(plan, client, timeout, save_dir)), wait)


def _started(result: Sweep, wait: bool) -> Sweep:
    """Start every task of a sweep (and wait for them); on Ctrl-C say where each stands."""
    for task in result.tasks:
        task.start()
    if wait:
        try:
            result.wait()
        except KeyboardInterrupt:
            report = interrupt_report(result.tasks)
            for text in report.lines("kie_jupyter.resume(ID)"):
                print(text, file=sys.stderr)
            raise
    return result


def _gate(plan: Plan, client: KieClient, *, yes: bool, over: int,
          over_credits: float | None, max_credits: float | None) -> None:
    """The checks before paying (:meth:`Session.gate`), in the Python API's words."""
    for name, value in (("max_credits", max_credits), ("confirm_over_credits", over_credits)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not value >= 0):
            raise KieUsageError(f"{name}: expected a number of credits ≥ 0, not {value!r}")
    _session().gate(plan, demo=client.demo, yes=yes, over=over, over_credits=over_credits,
                    max_credits=max_credits, setting="confirm_over",
                    credits_setting="confirm_over_credits", how="pass yes=True",
                    budget="the session's budget (%config Kie4o.budget)",
                    table="kie_jupyter.prices() shows the table")


def _tasks(plan: Plan, client: KieClient, timeout: float, save_dir: Any) -> list[Task]:
    tasks = plan.new_tasks(client, timeout=timeout, save_dir=save_dir,
                           history=_session().history())
    session = _session()
    session.spend.add(tasks, budget=session.budget,
                      setting="the session's budget (%config Kie4o.budget)")
    return tasks


def run_follow_up(verb: str, image: Any, *, model: str | None = None,
                  factor: int | str | None = None, variants: int | None = None,
                  size: str | None = None, prompt: str | None = None, wait: bool = True,
                  timeout: float = 600.0, save: str | os.PathLike[str] | None = None,
                  yes: bool = False, confirm_over: int = 8, max_credits: float | None = None,
                  confirm_over_credits: float | None = CONFIRM_OVER_CREDITS,
                  client: KieClient | None = None) -> Task | Sweep:
    """Run one follow-up on ``image`` as a task (a sweep for ``vary(n)`` on a model that
    makes one image per task), checked and priced like :func:`generate`."""
    timeout, save_dir = _checked(timeout, save)
    if model is not None and not isinstance(model, str):
        raise KieUsageError(f"model: expected a model name, not {type(model).__name__}")
    wanted, note = wanted_for(
        FollowUp(verb, image, model=model, factor=factor, variants=variants, size=size,
                 prompt=prompt),
        names={"image": "image", "factor": "factor", "variants": "n", "size": "size",
               "prompt": "prompt"})
    plan = make_plan(wanted)
    if note:
        print(f"kie4o: {note}", file=sys.stderr)
    client = _keyed(_client(client))
    _gate(plan, client, yes=yes, over=confirm_over, over_credits=confirm_over_credits,
          max_credits=max_credits)
    tasks = _tasks(plan, client, timeout, save_dir)
    if not plan.is_sweep:
        tasks[0].start()
        return _wait(tasks[0]) if wait else tasks[0]
    return _started(plan.sweep_of(tasks), wait)


stephook.set_runner(run_follow_up)  # fox[1].upscale() runs here (the extension sets it too)


def upscale(image: Any, factor: int | str | None = None, *, model: str | None = None,
            **options: Any) -> Task:
    """A larger copy of ``image`` (``fox[1]``, a path…) on a model that upscales
    (``topaz-upscale`` by default: ``factor`` 1, 2, 4 or 8; ``recraft-crisp-upscale``).
    ``options`` are :func:`generate`'s ``wait``, ``timeout``, ``save``, ``yes``,
    ``max_credits``, ``confirm_over_credits`` and ``client`` (and :func:`sweep`'s
    ``confirm_over`` for ``vary``); the new task's parent is the image's task."""
    return _one(run_follow_up("upscale", image, factor=factor, model=model, **options))


def remove_bg(image: Any, *, model: str | None = None, **options: Any) -> Task:
    """``image`` with its background removed (``recraft-remove-background``)."""
    return _one(run_follow_up("remove-bg", image, model=model, **options))


def vary(image: Any, n: int = 1, *, prompt: str | None = None, model: str | None = None,
         **options: Any) -> Task | Sweep:
    """``n`` variations of ``image``: its own prompt (or ``prompt``) with the image as input,
    on its own model where that takes an input image (else 4o; ``model`` to choose). A
    model that makes one image per task runs ``n`` tasks: a :class:`Sweep`."""
    return run_follow_up("vary", image, variants=n, prompt=prompt, model=model, **options)


def reframe(image: Any, size: str, *, model: str | None = None, **options: Any
            ) -> Task | Sweep:
    """``image`` extended to the frame ``size`` (``"16:9"``; ``ideogram-reframe``); several
    sizes (``"16:9,1:1"``) make a :class:`Sweep`."""
    return run_follow_up("reframe", image, size=size, model=model, **options)


def _one(result: Task | Sweep) -> Task:
    """The one task of a step that makes one (upscale and remove-bg take one size)."""
    if isinstance(result, Sweep):
        raise AssertionError("a one-image step made a sweep")
    return result


def resume(task_id: str, *, wait: bool = True, timeout: float = 600.0,
           client: KieClient | None = None) -> Task:
    """Follow an existing task (e.g. from history or KIE's dashboard) to its end."""
    if not isinstance(task_id, str) or not task_id.strip():
        raise KieUsageError("resume: task_id must be a non-empty string")
    timeout = check_timeout(timeout, "timeout")
    client = _client(client)
    history = _session().history()
    task_id = task_id.strip()
    entry = history.get(task_id)
    backend, found = resume_backend(task_id, client, entry.model if entry else None)
    if found:
        print(f"kie4o: {found}", file=sys.stderr)
    task = Task.resumed(task_id, client=client, entry=entry, timeout=timeout, history=history,
                        backend=backend)
    task.start()
    return _wait(task) if wait else task


def models() -> str:
    """KIE's image models this package knows: name, family, options and allowed values,
    and the doc page each was checked against."""
    return "\n".join(describe(spec) for spec in MODELS.values())


def prices() -> str:
    """KIE's prices in credits for each model (``unknown`` where KIE states none), each row
    with the page it was read on and the date; a price file (``KIE_PRICES``,
    ``%config Kie4o.prices``) overrides or extends them."""
    return "\n".join(active_prices().lines())


def provenance(path: str | os.PathLike[str]) -> dict[str, Any]:
    """How a PNG written by this tool was made: ``prompt``, ``parameters``, ``model``,
    ``task_id``, ``parents``, ``created``, ``demo``, ``software`` (empty for other images)."""
    return read_provenance(path)


def _wait(task: Task) -> Task:
    """Wait for a task; on Ctrl-C stop following it and say where it stands."""
    try:
        return task.wait()
    except KeyboardInterrupt:
        task.stop()
        task.wait(5)
        if task.task_id:
            print(f"kie4o: stopped following task {task.task_id}; it goes on at {task.runs_at} — "
                  f"kie_jupyter.resume({task.task_id!r})", file=sys.stderr)
        elif task.stopped_before_sent:
            print("kie4o: stopped before the task was sent; nothing was charged",
                  file=sys.stderr)
        else:  # the request was on its way: it may have created a task
            print("kie4o: stopped while the task was being sent; it may have reached KIE.AI "
                  "— check your KIE.AI dashboard", file=sys.stderr)
        raise
