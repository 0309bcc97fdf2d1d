"""The notebook's one way to show a :class:`~kie_jupyter.api.errors.KieError`: a one-line
``UsageError`` with the notebook's hint. Light (IPython and :mod:`kie_jupyter.hints` only):
the magic imports it at ``%load_ext``."""

from __future__ import annotations

from IPython.core.error import UsageError

from ..api.errors import KieError
from ..hints import with_hint

__all__ = ["usage_error"]


def usage_error(exc: KieError, prefix: str = "", task_id: str | None = None) -> UsageError:
    """A KieError as the one-line UsageError the notebook shows, with the notebook's hint."""
    return UsageError(with_hint(f"{prefix}{exc}", getattr(exc, "fix", None), "notebook",
                                task_id))
