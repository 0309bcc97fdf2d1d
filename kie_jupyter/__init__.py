"""kie-jupyter: KIE.AI's 4o Image API as a Jupyter magic with a live panel.

In a notebook::

    %load_ext kie_jupyter
    %%kie4o -s 3:2
    A lighthouse in a storm, oil painting

From Python::

    import kie_jupyter
    task = kie_jupyter.generate("A lighthouse in a storm", size="3:2")
    task.save("out/")
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .api.client import KieClient
    from .api.errors import KieError, KieUsageError
    from .api.models import GenerationRequest, TaskStatus
    from .engine.sweep import Sweep
    from .engine.task import Task, TaskError, TaskImage

# ``%load_ext kie_jupyter`` imports this package first: it must stay light (no requests, no
# Pillow, no engine), so the public names below are imported on first use (PEP 562).
_LAZY = {
    "KieClient": ".api.client",
    "KieError": ".api.errors",
    "KieUsageError": ".api.errors",
    "GenerationRequest": ".api.models",
    "TaskStatus": ".api.models",
    "Sweep": ".engine.sweep",
    "Task": ".engine.task",
    "TaskError": ".engine.task",
    "TaskImage": ".engine.task",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    if module.startswith(".engine"):
        _wire()
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


_wired = False


def _wire() -> None:
    """The composition root: a task shows itself as the notebook's static card wherever it
    is displayed (the engine below knows no front end). Done on first use of the engine, not
    at import, so that ``%load_ext`` stays fast."""
    global _wired
    if _wired:
        return
    from .engine.sweep import Sweep
    from .engine.task import Task
    from .notebook.cards import static_bundle, sweep_bundle

    Task.renderer = static_bundle
    Sweep.renderer = sweep_bundle
    _wired = True


__all__ = [
    "__version__",
    "generate",
    "resume",
    "sweep",
    "Sweep",
    "models",
    "provenance",
    "KieClient",
    "Task",
    "TaskError",
    "TaskImage",
    "TaskStatus",
    "GenerationRequest",
    "KieError",
    "KieUsageError",
    "load_ipython_extension",
    "unload_ipython_extension",
]

_loaded: dict[int, Any] = {}


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext kie_jupyter``: register ``%%kie4o`` and ``%kie4o``."""
    from .notebook.magics import load, unload

    previous = _loaded.pop(id(ipython), None)
    if previous is not None:  # %reload_ext, or a second %load_ext
        unload(ipython, previous)
    _loaded[id(ipython)] = load(ipython, prepare=_wire)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext kie_jupyter``: stop pollers and the demo server, remove the magics."""
    from .notebook.magics import unload

    magics = _loaded.pop(id(ipython), None)
    if magics is not None:
        unload(ipython, magics)


_demo: Any = None


def _default_client() -> KieClient:
    """The client the magics use when the extension is loaded (so demo mode applies);
    else one from the environment, on the bundled mock server when ``KIE_DEMO`` is set."""
    global _demo
    from .api.client import KieClient
    from .api.errors import KieUsageError

    for magics in _loaded.values():
        from IPython.core.error import UsageError

        try:
            return magics.client()
        except UsageError as exc:
            raise KieUsageError(str(exc)) from None
    from .fakeapi.demo import DEMO_KEY, DemoServer, demo_requested

    if demo_requested():
        if _demo is None:
            _demo = DemoServer()
        url = _demo.start()
        return KieClient(DEMO_KEY, base_url=url, upload_url=url, demo=True)
    return KieClient()


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
    wait: bool = True,
    timeout: float = 600.0,
    save: str | os.PathLike[str] | None = None,
    client: KieClient | None = None,
) -> Task:
    """Generate (or edit) images; return the :class:`Task` (finished when ``wait``).

    ``images`` and ``mask`` take local paths (uploaded first), http(s) URLs, bytes, an
    earlier task, or one of its images (``fox[1]``). ``fallback`` is True or a model name
    (``FLUX_MAX``, ``GPT_IMAGE_1``). ``save`` is a folder for the images and their sidecar.
    ``model`` picks one of KIE's models (``4o`` by default; ``kie_jupyter.models()`` lists
    them with their options): ``size`` is its aspect ratio, ``resolution``, ``quality`` and
    ``output_format`` its own fields, ``params`` documented fields the registry does not name.
    Bad input raises :class:`KieUsageError` before anything is sent (nothing is charged); a
    task that fails does not raise: ``task.error`` holds the reason (and ``task.images``
    raises it).
    """
    task = _new_task(prompt, model=model, size=size, variants=variants, images=images,
                     mask=mask, enhance=enhance, fallback=fallback, callback_url=callback_url,
                     resolution=resolution, quality=quality, output_format=output_format,
                     params=params, timeout=timeout, save=save, client=client)
    task.start()
    return _wait(task) if wait else task


def _new_task(prompt: str, *, model: str | None = None, size: str | None, variants: int,
              images: Any, mask: Any, enhance: bool, fallback: bool | str,
              callback_url: str | None, timeout: float,
              save: str | os.PathLike[str] | None, client: KieClient | None,
              resolution: str | None = None, quality: str | None = None,
              output_format: str | None = None, params: dict[str, Any] | None = None,
              labels: dict[str, str] | None = None) -> Task:
    """A checked, not yet started task (every argument checked before anything is sent)."""
    from .api.client import KieClient
    from .api.errors import KieUsageError
    from .api.registry import backend_for, model_spec
    from .engine.checks import check_save_dir, check_timeout
    from .engine.inputs import resolve_images, resolve_mask
    from .engine.requests import request_for
    from .engine.task import Task

    _wire()

    # Every argument is checked before anything is sent: a mistake here must cost nothing.
    timeout = check_timeout(timeout, "timeout")
    save_dir = check_save_dir(save, "save") if save is not None else None
    if client is not None and not isinstance(client, KieClient):
        raise KieUsageError(f"client: expected a KieClient, not {type(client).__name__}")
    if model is not None and not isinstance(model, str):
        raise KieUsageError(f"model: expected a model name, not {type(model).__name__}")
    name = (model or "4o").strip()
    spec = model_spec(name)  # an unknown name is one line listing the models
    if spec.family == "4o":
        inputs = resolve_images(_as_list(images), "images")
        mask_input = resolve_mask(mask, inputs, "mask", "input image")
    else:
        inputs = resolve_images(_as_list(images), "images", max_images=spec.max_images)
        mask_input = mask  # refused by request_for: only 4o takes a mask
        if variants != 1 and spec.variants != "native":
            raise KieUsageError(
                f"variants: {name} makes one image per task; kie_jupyter.sweep(..., "
                f"variants={variants}) runs {variants} tasks")
    request = request_for(
        name, prompt, inputs, mask_input, size=size, variants=variants, enhance=enhance,
        fallback=bool(fallback), fallback_model=fallback if isinstance(fallback, str) else None,
        callback_url=callback_url, resolution=resolution, quality=quality,
        output_format=output_format, params=params)
    client = client or _default_client()
    if not client.has_key:
        raise KieUsageError(
            "no API key: set KIE_API_KEY or pass client=KieClient(api_key=...)"
        )
    return Task(request, client=client, backend=backend_for(name, client), inputs=inputs,
                mask=mask_input if spec.family == "4o" else None, timeout=timeout,
                save_dir=save_dir, history=_history(), labels=labels)


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
    wait: bool = True,
    timeout: float = 600.0,
    save: str | os.PathLike[str] | None = None,
    yes: bool = False,
    confirm_over: int = 8,
    client: KieClient | None = None,
) -> Sweep:
    """Run every combination of a prompt's ``{a|b|c}`` groups and the options given as lists
    (``size=["1:1", "3:2"]``, ``model=["4o", "gpt-image-1.5"]``) as parallel tasks; return
    the :class:`Sweep`. A model that makes one image per task runs ``variants`` tasks (a
    ``variant`` dimension).

    Every combination is checked before anything is sent; a sweep of more than
    ``confirm_over`` tasks needs ``yes=True``. The tasks share the account's rate limit
    (those waiting say "Queued"). ``sw["oil"]`` / ``sw["oil", "3:2"]`` pick a task by label.
    """
    from .api.errors import KieUsageError
    from .api.models import TaskStatus
    from .engine.sweep import Sweep, expand

    if not isinstance(prompt, str):
        raise KieUsageError(f"prompt: expected text, not {type(prompt).__name__}")
    from .api.registry import model_spec
    from .engine.sweep import Axis

    sweepable = {k: v for k, v in (("model", model), ("size", size),
                                   ("resolution", resolution), ("quality", quality))
                 if v is not None}
    images = _as_list(images)  # once: a generator must serve every task
    axes, combos = expand(prompt, sweepable)
    models = {c.options.get("model") or "4o" for c in combos}
    per_task = variants
    if variants > 1 and any(model_spec(m).variants != "native" for m in models):
        # One task per variant: another dimension, so every cell is one task's image.
        per_task = 1
        extra = Axis("variant", tuple(str(n) for n in range(1, variants + 1)))
        axes, combos = expand(prompt, {**sweepable, "variant": list(extra.values)})
    count = len(combos)
    if count > confirm_over and not yes:
        raise KieUsageError(
            f"this sweep makes {count} tasks ({count * per_task} images), more than "
            f"{confirm_over}: pass yes=True to confirm"
        )
    # {{ and }} are literal braces (as in the magic): the API gets single ones.
    tasks = [
        _new_task(c.prompt.replace("{{", "{").replace("}}", "}"),
                  model=c.options.get("model"), size=c.options.get("size"),
                  variants=per_task, images=images, mask=mask, enhance=enhance,
                  fallback=fallback, callback_url=None, resolution=c.options.get("resolution"),
                  quality=c.options.get("quality"), timeout=timeout, save=save, client=client,
                  labels={"sweep": " / ".join(c.labels)} if c.labels else None)
        for c in combos
    ]
    result = Sweep(axes, [(c.labels, t) for c, t in zip(combos, tasks, strict=True)])
    for task in tasks:
        task.start()
    if wait:
        try:
            result.wait()
        except KeyboardInterrupt:
            running = [t for t in result.tasks if not t.done]
            result.stop()
            result.wait(5)
            sent = [t.task_id for t in running
                    if t.task_id and t.status is TaskStatus.STOPPED]
            if sent:
                print(f"kie4o: stopped following {len(sent)} task(s) of the sweep; they go on "
                      f"at KIE.AI — kie_jupyter.resume(ID) for each: {', '.join(sent)}",
                      file=sys.stderr)
            raise
    return result


def _as_list(images: Any) -> list[Any]:
    """``images`` as a list of sources: one source alone, or the items of a collection."""
    if images is None:
        return []
    if isinstance(images, (list, tuple, set, frozenset)):
        return list(images)
    if isinstance(images, Iterator):  # a generator of paths
        return list(images)
    return [images]  # one path, URL, bytes, task or task image; anything else is refused


def resume(task_id: str, *, wait: bool = True, timeout: float = 600.0,
           client: KieClient | None = None) -> Task:
    """Follow an existing task (e.g. from history or KIE's dashboard) to its end."""
    from .api.client import KieClient
    from .api.errors import KieUsageError
    from .engine.checks import check_timeout
    from .engine.task import Task

    _wire()
    if not isinstance(task_id, str) or not task_id.strip():
        raise KieUsageError("resume: task_id must be a non-empty string")
    timeout = check_timeout(timeout, "timeout")
    if client is not None and not isinstance(client, KieClient):
        raise KieUsageError(f"client: expected a KieClient, not {type(client).__name__}")
    from .api.registry import backend_for_task_id

    history = _history()
    task_id = task_id.strip()
    entry = history.get(task_id)
    client = client or _default_client()
    backend = backend_for_task_id(task_id, client, model=entry.model if entry else None)
    task = Task.resumed(task_id, client=client, entry=entry, timeout=timeout, history=history,
                        backend=backend)
    task.start()
    return _wait(task) if wait else task


def models() -> Any:
    """KIE's image models this package knows: name, family, options and allowed values,
    and the doc page each was checked against."""
    from .api.registry import MODELS, describe

    return "\n".join(describe(spec) for spec in MODELS.values())


def provenance(path: str | os.PathLike[str]) -> dict[str, Any]:
    """How a PNG written by this tool was made: ``prompt``, ``parameters``, ``model``,
    ``task_id``, ``parents``, ``created``, ``demo``, ``software`` (empty for other images)."""
    from .engine.provenance import read_provenance

    return read_provenance(path)


def _history() -> Any:
    """The history store the loaded extension uses (its output_dir), else the default one."""
    from .engine.history import HistoryStore

    for magics in _loaded.values():
        return magics.history()
    return HistoryStore()


def _wait(task: Task) -> Task:
    """Wait for a task; on Ctrl-C stop following it and say where it stands."""
    try:
        return task.wait()
    except KeyboardInterrupt:
        task.stop()
        task.wait(5)
        if task.task_id:
            print(f"kie4o: stopped following task {task.task_id}; it goes on at KIE.AI — "
                  f"kie_jupyter.resume({task.task_id!r})", file=sys.stderr)
        elif task.stopped_before_sent:
            print("kie4o: stopped before the task was sent; nothing was charged",
                  file=sys.stderr)
        else:  # the request was on its way: it may have created a task
            print("kie4o: stopped while the task was being sent; it may have reached KIE.AI "
                  "— check your KIE.AI dashboard", file=sys.stderr)
        raise
