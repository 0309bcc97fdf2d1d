"""kie-jupyter: KIE.AI's image models as a Jupyter magic with a live panel.

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

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .api.client import KieClient
    from .api.errors import KieError, KieUsageError
    from .api.models import GenerationRequest, TaskStatus
    from .engine.sweep import Sweep
    from .engine.task import Task, TaskError, TaskImage
    from .notebook.painter import paint
    from .pyapi import (
        generate,
        models,
        prices,
        provenance,
        reframe,
        remove_bg,
        resume,
        sweep,
        upscale,
        vary,
    )

# ``%load_ext kie_jupyter`` imports this package first: it must stay light (no requests, no
# Pillow, no engine), so the public names below are imported on first use (PEP 562).
_LAZY = {
    "generate": ".pyapi",
    "sweep": ".pyapi",
    "resume": ".pyapi",
    "models": ".pyapi",
    "prices": ".pyapi",
    "provenance": ".pyapi",
    "paint": ".notebook.painter",
    "upscale": ".pyapi",
    "remove_bg": ".pyapi",
    "vary": ".pyapi",
    "reframe": ".pyapi",
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

__all__ = ["__version__", "generate", "sweep", "resume", "models", "prices", "provenance",
           "upscale", "remove_bg", "vary", "reframe", "paint",
           "KieClient",
           "KieError", "KieUsageError", "GenerationRequest", "TaskStatus", "Sweep", "Task",
           "TaskError", "TaskImage", "load_ipython_extension", "unload_ipython_extension"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    _show_cards_in_ipython()
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def _show_cards_in_ipython() -> None:
    """In a notebook that uses the Python API without ``%load_ext``, tasks still show as
    their cards (registered with the running shell's display formatter)."""
    import sys

    if "IPython" not in sys.modules:
        return
    shell = sys.modules["IPython"].get_ipython()
    if shell is not None:
        from .notebook.cards import register_cards

        register_cards(shell)


_loaded: dict[int, Any] = {}


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext kie_jupyter``: register ``%%kie4o`` and ``%kie4o``."""
    from .engine import stephook
    from .notebook.magics import load, unload

    previous = _loaded.pop(id(ipython), None)
    if previous is not None:  # %reload_ext, or a second %load_ext
        unload(ipython, previous)
    _loaded[id(ipython)] = load(ipython)
    # fox[1].upscale() after `%%kie4o -o fox`: the Python API runs it, on this kernel's
    # session, loaded on first use like every public name here.
    stephook.set_runner(_follow_up)


def _follow_up(verb: str, image: Any, **options: Any) -> Any:
    import importlib

    return importlib.import_module(".pyapi", __name__).run_follow_up(verb, image, **options)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext kie_jupyter``: stop pollers and the demo server, remove the magics."""
    from .notebook.magics import unload

    magics = _loaded.pop(id(ipython), None)
    if magics is not None:
        unload(ipython, magics)
