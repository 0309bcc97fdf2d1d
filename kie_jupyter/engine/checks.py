"""Checks of local settings that must pass before anything is sent (and paid for).

One place for each rule, used by the magic, :func:`kie_jupyter.generate` and the CLI alike, so
the three give the same one-line :class:`KieUsageError` naming the option.
"""

from __future__ import annotations

import math
import os
import tempfile
from numbers import Real
from pathlib import Path
from typing import Any

from ..api.errors import KieUsageError

__all__ = ["check_timeout", "check_save_dir"]


def check_timeout(value: Any, option: str = "timeout") -> float:
    """A positive, finite number of seconds, else a one-line error naming ``option``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise KieUsageError(
            f"{option}: {value!r} is not a number of seconds (give e.g. 600)"
        )
    seconds = float(value)
    if math.isnan(seconds) or seconds <= 0 or math.isinf(seconds):
        raise KieUsageError(f"{option}: {value!r} must be a positive number of seconds")
    return seconds


def check_save_dir(path: str | os.PathLike[str], option: str = "--save") -> Path:
    """Make sure ``path`` is (or can become) a writable folder; return it absolute.

    The folder is created (as ``--save`` would when the images arrive) and a probe file is
    written and removed, so a path under a file, a read-only place or a full disk is refused
    before the task is paid for rather than after.
    """
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if text is None:
        raise KieUsageError(f"{option}: expected a folder path, not {type(path).__name__}")
    if not text.strip():
        raise KieUsageError(f"{option}: empty folder path")
    target = Path(text).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise KieUsageError(f"{option}: {text!r} is a file, not a folder")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise KieUsageError(f"{option}: {text!r} is under {str(parent)!r}, a file")
            break
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target, prefix=".kie4o-probe-"):
            pass
    except OSError as exc:
        raise KieUsageError(
            f"{option}: cannot write to {text!r} ({exc.strerror or type(exc).__name__})"
        ) from None
    return target
