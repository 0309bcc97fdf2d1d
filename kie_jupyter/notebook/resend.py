"""Cards finished from a background thread, sent again by the next cell.

Front ends that route output by the running cell (nbclient, and those that drop output sent
from background threads) may miss a card a task's or a sweep's own thread put in place while
no cell ran; a ``pre_run_cell`` hook sends each such card again from the new cell's thread.
No ipywidgets here: the sweep grid, which is plain HTML, uses it too.
"""

from __future__ import annotations

import threading
from typing import Any

from IPython.display import DisplayHandle

__all__ = ["remember_card", "resend_cards"]

#: Cards sent from a task's thread while no cell ran may have been dropped by front ends that
#: route output by the running cell (nbclient): they are sent again when the next cell starts.
_pending: list[tuple[DisplayHandle, dict[str, Any]]] = []
_pending_lock = threading.Lock()


def remember_card(handle: DisplayHandle, bundle: dict[str, Any]) -> None:
    """Keep a card sent from a background thread, for :func:`resend_cards`."""
    with _pending_lock:
        _pending.append((handle, bundle))


def resend_cards(*_args: Any) -> None:
    """Send again the cards finished from a task's thread (a ``pre_run_cell`` hook).

    This runs in the new cell's thread, with that cell's parent header, so a front end that
    only applies output of the running cell (nbclient, and front ends that drop output sent
    from background threads) applies it too; others just draw the same card again.
    """
    with _pending_lock:
        pending = list(_pending)
        _pending.clear()
    for handle, bundle in pending:
        handle.update(bundle, raw=True)
