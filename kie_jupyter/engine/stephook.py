"""Where ``fox[1].upscale()`` finds the front end that runs it.

A task's image lives in the engine; running a follow-up needs the session, its budget and
its confirmation rules, which live above it. The Python API installs its runner here when it
is imported (:func:`set_runner`), so the engine calls up without importing a front end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..api.errors import KieUsageError

__all__ = ["set_runner", "run"]

_runner: Callable[..., Any] | None = None


def set_runner(runner: Callable[..., Any]) -> None:
    """Install the function that runs a follow-up: ``runner(verb, image, **options)``."""
    global _runner
    _runner = runner


def run(verb: str, image: Any, **options: Any) -> Any:
    """Run follow-up ``verb`` on ``image`` with the installed runner (the Python API's)."""
    if _runner is None:
        raise KieUsageError(f"{verb}: the Python API is not loaded: `import kie_jupyter` (or "
                            "`%load_ext kie_jupyter`) first, or call "
                            f"kie_jupyter.{verb.replace('-', '_')}(image)")
    return _runner(verb, image, **options)
