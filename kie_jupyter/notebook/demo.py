"""Demo mode: the bundled mock server, running inside the kernel on 127.0.0.1.

With it, every notebook runs end to end with no API key (Binder, classes, CI). The images it
serves are synthetic, except for the recorded prompts of a class's replay pack
(``KIE_DEMO_PACK`` or ``%kie4o demo --pack FILE``), which get the pack's real images.

Demo mode survives ``%reload_ext``: IPython unloads the extension, re-imports the package and
loads it again, all within one cell. Unloading therefore *parks* the running server with its
clients and unfinished tasks (:func:`park`); the load that follows takes them over
(:func:`unpark`), and if none does by the end of the cell (a plain ``%unload_ext``) they are
stopped then.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..fakeapi.demo import DEMO_KEY, DemoServer, demo_requested
from .cards import image_source

if TYPE_CHECKING:
    from ..api.client import KieClient
    from ..engine.task import Task
    from ..fakeapi.packs import ReplayPack

__all__ = ["DemoServer", "DemoHandover", "demo_requested", "park", "unpark", "stop_tasks",
           "DEMO_KEY", "BANNER", "banner", "image_source"]

BANNER = (
    "kie4o demo mode: a local mock of the KIE.AI API at {url} — the images are synthetic, "
    "nothing is sent to KIE.AI and no credits are spent. `%kie4o demo off` to leave."
)
PACK_BANNER = (
    "kie4o demo mode: a local mock of the KIE.AI API at {url}, with the class pack {name} "
    "({tasks} recorded prompt(s), `%kie4o pack show` lists them): those prompts show the "
    "images recorded from the class pack; any other prompt gets a synthetic picture, labelled "
    "so on the image. Nothing is sent to KIE.AI and no credits are spent. "
    "`%kie4o demo off` to leave."
)


def banner(url: str, pack: ReplayPack | None = None) -> str:
    """The line ``%kie4o demo`` prints: where the mock runs, and what its images are."""
    if pack is None:
        return BANNER.format(url=url)
    return PACK_BANNER.format(url=url, name=pack.name, tasks=len(pack.tasks))


def stop_tasks(tasks: Iterable[Task], clients: Iterable[KieClient]) -> None:
    """Stop tasks, close clients, and give the tasks' threads one short, shared deadline."""
    tasks = list(tasks)
    for task in tasks:
        task.stop()
    for client in clients:
        client.close()  # ends retry waits; a request in flight ends at its timeout
    deadline = time.monotonic() + 5.0  # one deadline for all: unloading must not hang
    for task in tasks:
        task.join(timeout=max(deadline - time.monotonic(), 0.0))


@dataclass
class DemoHandover:
    """A running demo server with its clients and unfinished tasks, passed between loads."""

    server: DemoServer
    clients: dict[tuple[Any, ...], KieClient] = field(default_factory=dict)
    tasks: list[Task] = field(default_factory=list)

    def stop(self) -> None:
        stop_tasks(self.tasks, self.clients.values())
        self.server.stop()


#: The handover of an unloaded extension, per shell, until the cell that unloaded it ends.
_parked: dict[int, tuple[DemoHandover, Callable[..., None]]] = {}


def park(shell: Any, handover: DemoHandover) -> None:
    """Keep ``handover`` for a load later in this cell; stop it when the cell ends unclaimed."""
    events = getattr(shell, "events", None)
    if events is None:  # no cells to wait for: nothing can claim it
        handover.stop()
        return

    def stop_unclaimed(*_: Any) -> None:
        events.unregister("post_run_cell", stop_unclaimed)
        parked = _parked.pop(id(shell), None)
        if parked is not None:
            parked[0].stop()

    earlier = _parked.pop(id(shell), None)
    if earlier is not None:  # never two at once
        events.unregister("post_run_cell", earlier[1])
        earlier[0].stop()
    _parked[id(shell)] = (handover, stop_unclaimed)
    events.register("post_run_cell", stop_unclaimed)


def unpark(shell: Any) -> DemoHandover | None:
    """Take the handover parked for ``shell`` in this cell, if any."""
    parked = _parked.pop(id(shell), None)
    if parked is None:
        return None
    handover, callback = parked
    shell.events.unregister("post_run_cell", callback)
    return handover
