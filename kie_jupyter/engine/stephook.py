"""Where ``fox[1].upscale()`` finds the front end that runs it.

A task's image lives in the engine; running a follow-up needs the session, its budget and
its confirmation rules, which live above it. The Python API installs its runner here when it
is imported (:func:`set_runner`), so the engine calls up without importing a front end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["set_runner", "run"]

_runner: Callable[..., Any] | None = None


def set_runner(runner: Callable[..., Any]) -> None:
    """Install the function that runs a follow-up: ``runner(verb, image, **options)``."""
    global _runner
    _runner = runner


def run(verb: str, image: Any, **options: Any) -> Any:
    """Run follow-up ``verb`` on ``image`` with the installed runner (the Python API's)."""
    if _runner is None:
        # The runner is the Python API's: importing it by name installs it (the package's
        # public functions are loaded the same way, on first use).
        from importlib import import_module

        import_module("kie_jupyter.pyapi")
    if _runner is None:
        raise RuntimeError("kie_jupyter.pyapi did not install its follow-up runner")
    return _runner(verb, image, **options)
