"""The state a kernel holds for every front end: one :class:`Session`.

The key typed with ``%kie4o login``, the endpoint settings (a joined class changes them), the
clients made for them, the demo server and the tasks still running live here, not in the
magic: the magic, its subcommands and the Python API (``kie_jupyter.generate``) share one
session, so a ``generate()`` in a notebook in demo mode or in a class goes where its cells go.

:func:`active` is the session of the loaded extension (set by ``%load_ext``, cleared by
``%unload_ext``); with none loaded, the Python API makes its own from the environment.
Light at import: the demo server and the history are imported on first use.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .api.client import KieClient

if TYPE_CHECKING:
    from .engine.history import HistoryStore
    from .engine.plan import Plan, PlanCost
    from .engine.spend import SessionSpend
    from .engine.task import Task
    from .fakeapi.demo import DemoServer

__all__ = ["Session", "active", "activate", "deactivate"]

#: The environment variables a live client reads: set after a load, they still count.
_ENV = ("KIE_API_KEY", "KIE_BASE_URL", "KIE_UPLOAD_URL")


class Session:
    """A kernel's key, endpoint, clients, demo server and running tasks.

    ``base_url``, ``upload_url`` and ``output_dir`` are the settings (``%config Kie4o``,
    or a joined class); None means the environment's or the default. ``api_key`` is the key
    from ``%kie4o login`` (memory only). A client is made once per distinct setting.
    """

    def __init__(self, *, base_url: str | None = None, upload_url: str | None = None,
                 output_dir: str | None = None) -> None:
        self.base_url = base_url
        self.upload_url = upload_url
        self.output_dir = output_dir
        self.api_key: str | None = None
        self.clients: dict[tuple[Any, ...], KieClient] = {}
        self._demo: DemoServer | None = None
        # Held weakly: a running task is held by its thread; one that ended belongs to the
        # notebook's names alone, and goes (with its images) when the user deletes them.
        self._live: weakref.WeakSet[Task] = weakref.WeakSet()
        self._lock = threading.Lock()
        #: Credits this session may spend (``%config Kie4o.budget``); None: no budget.
        self.budget: float | None = None
        self._spend: SessionSpend | None = None

    # -- demo mode ---------------------------------------------------------------------------

    @property
    def demo(self) -> DemoServer:
        """The demo server (idle until ``%kie4o demo`` or ``KIE_DEMO`` starts it)."""
        if self._demo is None:
            from .fakeapi.demo import DemoServer

            self._demo = DemoServer()
        return self._demo

    @demo.setter
    def demo(self, server: DemoServer) -> None:
        self._demo = server

    @property
    def demo_running(self) -> bool:
        return self._demo is not None and self._demo.running

    # -- clients and history -----------------------------------------------------------------

    def client(self) -> KieClient:
        """A client for the current settings: the demo server's while it runs, else the live
        endpoint's (settings, ``%kie4o login``'s key, environment). Raises
        :class:`~kie_jupyter.api.errors.KieConfigError` for settings that cannot work."""
        if not self.demo_running:
            return self.live_client()
        from .fakeapi.demo import DEMO_KEY

        url = self.demo.url
        return self._client(("demo", url), lambda: KieClient(DEMO_KEY, base_url=url,
                                                             upload_url=url, demo=True))

    def live_client(self) -> KieClient:
        """The live endpoint's client (settings, ``%kie4o login``'s key, environment), even
        while the demo server runs."""
        env = tuple(os.environ.get(v) for v in _ENV)
        api_key, base_url, upload_url = self.api_key, self.base_url, self.upload_url
        return self._client(("live", base_url, upload_url, api_key, env),
                            lambda: KieClient(api_key, base_url=base_url, upload_url=upload_url))

    def _client(self, key: tuple[Any, ...], make: Callable[[], KieClient]) -> KieClient:
        with self._lock:
            if key not in self.clients:
                self.clients[key] = make()
            return self.clients[key]

    def take_demo_clients(self) -> dict[tuple[Any, ...], KieClient]:
        """Take out the demo server's clients (demo mode is ending or moving)."""
        with self._lock:
            return {k: self.clients.pop(k) for k in list(self.clients) if k[0] == "demo"}

    def history(self) -> HistoryStore:
        """The history store of ``output_dir`` (else ``$KIE_OUTPUT_DIR`` or the default)."""
        from .engine.history import HistoryStore, default_output_dir

        return HistoryStore(self.output_dir or default_output_dir())

    # -- spending ----------------------------------------------------------------------------

    @property
    def spend(self) -> SessionSpend:
        """What the tasks sent from this session cost (estimates until KIE reports)."""
        with self._lock:
            if self._spend is None:
                from .engine.spend import SessionSpend

                self._spend = SessionSpend()
            return self._spend

    def budget_left(self) -> float | None:
        """Credits left of :attr:`budget` (None: no budget)."""
        if self.budget is None:
            return None
        return self.budget - self.spend.spent

    def gate(self, plan: Plan, *, demo: bool, yes: bool, over: int, over_credits: float | None,
             max_credits: float | None, setting: str, credits_setting: str, how: str,
             budget: str, table: str = "`%kie4o prices` shows the table") -> PlanCost:
        """Every check a plan passes before it is paid for: the confirmation (tasks, credits,
        unknown prices; ``yes`` lifts it), then ``max_credits`` and this session's budget
        (``yes`` does not). One :class:`KieUsageError` with the figures; returns the estimate."""
        cost = plan.estimate(demo=demo)
        plan.confirm(over, yes, setting=setting, how=how, cost=cost, over_credits=over_credits,
                     credits_setting=credits_setting, table=table)
        cost.hold_to(max_credits=max_credits, left=self.budget_left(), budget=budget)
        return cost

    # -- tasks -------------------------------------------------------------------------------

    def track(self, *tasks: Task) -> None:
        """Remember tasks started here (stopped when the session closes)."""
        self._live.update(tasks)

    def forget(self, task: Task) -> None:
        self._live.discard(task)

    @property
    def tasks(self) -> list[Task]:
        """The tasks started here that have not ended."""
        return [t for t in list(self._live) if not t.done]

    def close(self, stop_tasks: Callable[[list[Task], list[KieClient]], None]) -> None:
        """Stop every running task (with ``stop_tasks``), close the clients, stop the demo
        server."""
        tasks, clients = self.tasks, list(self.clients.values())
        if tasks:
            stop_tasks(tasks, clients)
        else:
            for client in clients:
                client.close()
        self._live.clear()
        self.clients.clear()
        if self._demo is not None:
            self._demo.stop()


_active: Session | None = None


def active() -> Session | None:
    """The loaded extension's session, if ``%load_ext kie_jupyter`` ran (else None)."""
    return _active


def activate(session: Session) -> None:
    """Make ``session`` the one the Python API uses (``%load_ext``)."""
    global _active
    _active = session


def deactivate(session: Session) -> None:
    """``%unload_ext``: the Python API no longer uses ``session``."""
    global _active
    if _active is session:
        _active = None
