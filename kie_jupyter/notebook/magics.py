"""The ``Kie4o`` magics: ``%%kie4o`` (a prompt to images) and ``%kie4o`` (subcommands).

Thin: options are parsed by :mod:`.options`, requests made by :mod:`.client`, tasks run by
:mod:`.task`, shown by :mod:`.panel` (widgets) or :mod:`.static` (saved notebooks, terminals).

Light at import: ``%load_ext`` imports this module, so the engine, the option parser, the
subcommands, the demo server, requests and Pillow are imported on first use, in the methods
that need them (``benchmarks/bench_load.py`` holds it to 1.2x ``import ipywidgets``).

Size: over 400 lines for the cell magic's three displays (panel, sweep grid, text), each
with its Ctrl-C handling; the sweep display is the next to move out.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from traitlets import Enum, Float, Int, Unicode

from .. import optiontable
from ..api.client import KieClient
from ..api.errors import KieConfigError, KieError
from ..api.models import Size, TaskStatus
from ..hints import with_hint
from .cards import EMBED_CHOICES, SweepCard, name_task, status_text
from .resend import remember_card, resend_cards

if TYPE_CHECKING:
    from ..engine.history import HistoryStore
    from ..engine.sweep import Sweep
    from ..engine.task import Task
    from . import options
    from .demo import DemoHandover, DemoServer

__all__ = ["Kie4o"]


def _declare(func: Callable[..., Any]) -> Callable[..., Any]:
    """Every ``%%kie4o`` option of the shared table on the magic (``%%kie4o?`` is the help).

    Here, not in :mod:`.options`: that module imports the engine (and Pillow) for its checks,
    which ``%load_ext`` must not wait for.
    """
    for option in reversed(tuple(optiontable.options_for("notebook"))):
        func = argument(*option.flags, **option.kwargs("notebook"))(func)
    return magic_arguments()(func)


def _demo_module() -> Any:
    """:mod:`.demo` (the fake server's package comes with it: imported only when needed)."""
    from . import demo

    return demo


def _demo_imported() -> Any:
    """:mod:`.demo` if something imported it already, else None (then nothing is parked)."""
    return sys.modules.get(f"{__package__}.demo")


def _keep_empty_body(lines: list[str]) -> list[str]:
    """:func:`.options.keep_empty_body`, with :mod:`.options` imported on the first
    ``%%kie4o`` cell (this transformer sees every cell)."""
    if lines and lines[0].startswith("%%kie4o"):
        from .options import keep_empty_body

        return keep_empty_body(lines)
    return lines


def _usage(exc: KieError, prefix: str = "", task_id: str | None = None) -> UsageError:
    """A KieError as the one-line UsageError the notebook shows, with the notebook's hint."""
    return UsageError(with_hint(f"{prefix}{exc}", getattr(exc, "fix", None), "notebook", task_id))


@magics_class
class Kie4o(Magics):
    """KIE.AI 4o Image generation in notebooks. Settings: ``%config Kie4o``."""

    base_url = Unicode(None, allow_none=True,
                       help="API base URL (default: $KIE_BASE_URL or https://api.kie.ai)"
                       ).tag(config=True)
    upload_url = Unicode(None, allow_none=True,
                         help="File Upload API base URL (default: $KIE_UPLOAD_URL or "
                              "https://kieai.redpandaai.co)").tag(config=True)
    poll_interval = Float(0.34, min=0.34,
                          help="shortest time between two polls of a task, in seconds (the "
                               "poller adapts between this and 10 s)").tag(config=True)
    timeout = Float(600.0, min=1.0, help="local give-up time in seconds").tag(config=True)
    output_dir = Unicode(None, allow_none=True,
                         help="history and saved images (default: $KIE_OUTPUT_DIR or "
                              "~/.kie_jupyter)").tag(config=True)
    default_size = Enum([s.value for s in Size], "1:1",
                        help="size when -s is not given").tag(config=True)
    embed = Enum(list(EMBED_CHOICES), "thumb",
                 help="what a saved notebook keeps of the images: thumb, full or none"
                 ).tag(config=True)
    frontend = Enum(["auto", "widget", "text"], "auto",
                    help="auto: widgets in a kernel, text in a terminal").tag(config=True)
    model = Unicode("4o", help="the model when --model is not given (`%kie4o models`)"
                    ).tag(config=True)
    confirm_over = Int(8, min=1, help="a sweep of more tasks than this needs --yes"
                       ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._api_key: str | None = None  # from %kie4o login: memory only
        self._demo: DemoServer | None = None  # made on first use (see _demo_module)
        self._prepare: Callable[[], None] | None = None  # the root's wiring, run once
        # Held weakly: a running task is held by its thread; one that ended belongs to the
        # notebook's names alone, and goes (with its images) when the user deletes them.
        self._live: weakref.WeakSet[Task] = weakref.WeakSet()
        self._clients: dict[tuple[Any, ...], KieClient] = {}
        self._lock = threading.Lock()

    @property
    def _tasks(self) -> list[Task]:
        """The tasks started here that have not ended (stopped at unload)."""
        return [t for t in list(self._live) if not t.done]

    @property
    def demo(self) -> DemoServer:
        """The demo server (idle until ``%kie4o demo`` or ``KIE_DEMO`` starts it)."""
        if self._demo is None:
            self._demo = _demo_module().DemoServer()
        return self._demo

    @demo.setter
    def demo(self, server: DemoServer) -> None:
        self._demo = server

    def _demo_running(self) -> bool:
        return self._demo is not None and self._demo.running

    def _ready(self) -> None:
        """Before the first cell or subcommand: the root's wiring (task cards), once."""
        prepare, self._prepare = self._prepare, None
        if prepare is not None:
            prepare()

    # -- settings ----------------------------------------------------------------------------

    def client(self) -> KieClient:
        """A client for the current settings (demo server, trait, environment, default)."""
        if self._demo_running():
            url = self.demo.url
            key: tuple[Any, ...] = ("demo", url)
            make = lambda: KieClient(_demo_module().DEMO_KEY, base_url=url,  # noqa: E731
                                     upload_url=url, demo=True)
        else:
            # The environment is part of the key: a KIE_API_KEY set after %load_ext counts.
            env = tuple(os.environ.get(v) for v in ("KIE_API_KEY", "KIE_BASE_URL",
                                                    "KIE_UPLOAD_URL"))
            key = ("live", self.base_url, self.upload_url, self._api_key, env)
            make = lambda: KieClient(self._api_key, base_url=self.base_url,  # noqa: E731
                                     upload_url=self.upload_url)
        with self._lock:
            if key not in self._clients:
                try:
                    self._clients[key] = make()
                except KieConfigError as exc:
                    raise _usage(exc) from None
            return self._clients[key]

    def history(self) -> HistoryStore:
        from ..engine.history import HistoryStore, default_output_dir

        return HistoryStore(self.output_dir or default_output_dir())

    def _widgets(self) -> bool:
        if self.frontend != "auto":
            return self.frontend == "widget"
        return getattr(self.shell, "kernel", None) is not None

    def load_message(self, continued: bool = False) -> str:
        """The one line printed at load: endpoint and whether a key was found."""
        if self._demo_running():
            pack = self.demo.pack
            images = ("synthetic images" if pack is None else
                      f"class pack {pack.name}: its {len(pack.tasks)} recorded prompt(s) show "
                      "recorded images, others synthetic")
            if continued:
                # A reload never switches a kernel from demo to live without a word.
                return (f"kie4o: demo mode continues on {self.demo.url} ({images}, no credits "
                        "spent); `%kie4o demo off` to use the live endpoint")
            return f"kie4o: demo mode on {self.demo.url} ({images}, no key needed)"
        try:
            client = self.client()
        except UsageError as exc:
            return f"kie4o: {exc}"
        found = "API key found" if client.has_key else (
            "no API key (set KIE_API_KEY, `%kie4o login`, or `%kie4o demo`)")
        return f"kie4o: endpoint {client.base_url}; {found}. `%%kie4o?` for help."

    def shutdown(self) -> None:
        """Stop every poller and the demo server (``%unload_ext``)."""
        tasks = self._tasks
        if tasks:
            _demo_module().stop_tasks(tasks, self._clients.values())
        else:
            for client in self._clients.values():
                client.close()
        self._live.clear()
        self._clients.clear()
        if self._demo is not None:
            self._demo.stop()
        if "kie_jupyter.engine.runner" in sys.modules:  # (else no task ever ran)
            from ..engine.runner import end_shared_threads

            end_shared_threads()  # the image and download threads: none is left behind

    def _take_demo(self) -> DemoHandover | None:
        """Detach the running demo server, its clients and unfinished tasks (for a reload)."""
        if not self._demo_running():
            return None
        demo = _demo_module()
        clients = {k: self._clients.pop(k) for k in list(self._clients) if k[0] == "demo"}
        mine = set(map(id, clients.values()))
        tasks = [t for t in self._tasks if id(t.client) in mine]
        for task in tasks:
            self._live.discard(task)
        state = demo.DemoHandover(self.demo, clients, tasks)
        self.demo = demo.DemoServer()  # an idle one: shutting this instance down keeps the server
        return state

    def _adopt_demo(self, state: DemoHandover) -> None:
        self.demo = state.server
        self._clients.update(state.clients)
        self._live.update(state.tasks)

    # -- the magic -------------------------------------------------------------------------

    @no_var_expand
    @_declare
    @line_cell_magic
    def kie4o(self, line: str, cell: str | None = None) -> None:
        """Generate or edit images with KIE.AI's 4o Image API.

        Cell magic, the prompt is the cell body (``{name}`` is filled from the notebook)::

            %%kie4o -s 3:2 -n 2 -o fox
            A red fox in a snowy forest at dawn, watercolor

        The option line is split like a shell line (``--save "my dir"``) and ``$name`` or
        ``{expression}`` on it are filled from the notebook (``-i $fox[1]``).

        Line magic: ``%kie4o login`` · ``%kie4o demo [on|off]`` · ``%kie4o status ID`` ·
        ``%kie4o resume ID`` · ``%kie4o history [N] [--search TEXT]`` · ``%kie4o credits`` ·
        ``%kie4o config``.
        """
        self._ready()
        if cell is None:
            return self._line(line)
        return self._cell(line, cell)

    def _cell(self, line: str, cell: str) -> None:
        from ..api.registry import backend_for
        from ..engine.checks import check_save_dir, check_timeout
        from ..engine.poller import PollSchedule
        from ..engine.sweep import Sweep
        from ..engine.task import Task
        from . import options

        opts = options.parse_cell(self.kie4o, line, cell, self.shell.user_ns,
                                  default_size=self.default_size, default_model=self.model)
        client = self.client()
        if opts.dry_run:
            display(self._dry_run(opts, client))
            return None
        if opts.is_sweep and len(opts.runs) > self.confirm_over and not opts.yes:
            raise UsageError(
                f"this sweep makes {len(opts.runs)} tasks ({opts.image_count} images), more "
                f"than %config Kie4o.confirm_over = {self.confirm_over}: add --yes to the "
                "option line to send them (nothing was sent)")
        if not client.has_key:
            raise UsageError(
                "no API key: set the KIE_API_KEY environment variable, run `%kie4o login`, "
                "or `%kie4o demo` to try with the local mock server"
            )
        try:
            # Checked before paying: a task must not be lost to a setting that cannot work.
            timeout = opts.timeout or check_timeout(self.timeout, "Kie4o.timeout")
            save_dir = check_save_dir(opts.save, "--save") if opts.save is not None else None
        except KieError as exc:
            raise _usage(exc) from None
        tasks = [
            Task(run.request, client=client, backend=backend_for(run.model, client),
                 inputs=opts.images, mask=opts.mask, timeout=timeout,
                 schedule=PollSchedule(min_interval=self.poll_interval), save_dir=save_dir,
                 embed=self.embed, history=self.history(),
                 labels={"sweep": " / ".join(run.labels)} if run.labels else None)
            for run in opts.runs
        ]
        if not opts.is_sweep:
            self._run_task(tasks[0], out=opts.out, wait=not opts.no_wait)
            return None
        sweep = Sweep(opts.axes, [(run.labels, task)
                                  for run, task in zip(opts.runs, tasks, strict=True)],
                      embed=self.embed)
        self._run_sweep(sweep, out=opts.out, wait=not opts.no_wait)
        return None

    def _run_sweep(self, sweep: Sweep, *, out: str | None, wait: bool) -> None:
        """Start every task of a sweep and show one grid, live, then as its static card.

        The grid is static HTML updated in place (the same display): it needs no widget, so
        it shows the same in every front end and a saved notebook keeps the final grid. A
        blocking cell updates it from its own thread; a ``--no-wait`` sweep from a thread of
        its own. Ctrl-C stops every task and ends the cell in error.
        """
        self._live.update(sweep.tasks)
        self.shell.user_ns["_kie4o"] = sweep
        if out:
            self.shell.user_ns[out] = sweep
        view = SweepCard(sweep, self.embed, out or "_kie4o")
        self._resend_cards_hook()
        text = not self._widgets()
        main = threading.current_thread()
        shown: list[Any] = []  # the display handle, once shown

        def show() -> None:
            if shown and shown[0] is not None:
                shown[0].update(view)

        def follow() -> None:
            seen = None
            while not sweep.done:
                counts = sweep.counts()
                state = (counts["done"], tuple(t.status for t in sweep.tasks),
                         tuple(round(t.progress, 2) for t in sweep.tasks))
                if state != seen:
                    seen = state
                    show()
                    if text:
                        print(f"kie4o: {counts['done']} of {counts['total']} done", flush=True)
                for task in sweep.tasks:
                    if not task.done:
                        task.wait(0.4)
                        break
            show()
            if shown and shown[0] is not None and threading.current_thread() is not main:
                # Sent from a thread: front ends that route output by the running cell may
                # drop it, so the next cell sends the final grid again.
                remember_card(shown[0], view._repr_mimebundle_())

        try:
            for task in sweep.tasks:
                task.start()  # in parallel: the client's limiter keeps the account's rate
            shown.append(display(view, display_id=True))
            if not wait:
                threading.Thread(target=follow, name="kie4o-sweep", daemon=True).start()
                return
            follow()
        except KeyboardInterrupt:
            running = [t for t in sweep.tasks if not t.done]
            sweep.stop()
            sweep.wait(5)
            show()
            sent = [t.task_id for t in running
                    if t.task_id and t.status is TaskStatus.STOPPED]
            doubtful = [t for t in running if not t.task_id and not t.stopped_before_sent]
            if doubtful:
                print(f"kie4o: {len(doubtful)} task(s) of the sweep were being sent when "
                      "stopped: they may have reached KIE.AI — check your KIE.AI dashboard")
            if sent:
                print(f"kie4o: stopped following {len(sent)} task(s) of the sweep; they go on "
                      f"at KIE.AI — `%kie4o resume ID` for each: {', '.join(sent)}")
            raise UsageError("kie4o: interrupted (Ctrl-C); this cell ends in error so that "
                             "Run All stops here") from None

    def _run_task(self, task: Task, *, out: str | None, wait: bool) -> None:
        """Start and show a task; when waiting, a Ctrl-C ends the cell in error."""
        self._live.add(task)
        self.shell.user_ns["_kie4o"] = task
        if out:
            self.shell.user_ns[out] = task
        name_task(task, out or "_kie4o")  # the card shows fox[0] (or _kie4o[0])
        if self._widgets():
            interrupted = self._run_with_panel(task, wait)
        else:
            interrupted = self._run_as_text(task, wait)
        if interrupted:
            # A cell that ends in error stops Run All before the next (paid) cell; a
            # UsageError is shown as one line, with no traceback.
            raise UsageError("kie4o: interrupted (Ctrl-C); this cell ends in error so that "
                             "Run All stops here")

    def _run_with_panel(self, task: Task, wait: bool) -> bool:
        """The live panel while the task runs, then its card in the same display.

        A blocking cell updates the panel from its own thread as well (front ends that drop
        updates sent from background threads still show progress) and puts the card in place
        itself; a ``--no-wait`` task's own thread does it when the task ends.
        """
        from .panel import TaskPanel  # ipywidgets is imported only when a panel is shown

        task.start()  # first: the request leaves before the panel is built (submit latency)
        panel = TaskPanel(task, background=not wait, embed=task.embed)
        self._resend_cards_hook()
        panel.show()
        # Listen only once shown (the card needs the display); a task that ended meanwhile
        # is seen by the check below.
        panel.follow()
        panel.update()
        if not wait:
            if task.status.finished:
                panel.finish()
            return False
        interrupted = self._wait(task, panel.update)
        if not task.status.finished:
            # Interrupted and not yet ended: its own thread puts the card in place later.
            panel.background = True
        if task.status.finished:
            panel.finish()
        return interrupted

    def _resend_cards_hook(self) -> None:
        """Register, once per shell, the hook that resends cards finished between cells."""
        events = getattr(self.shell, "events", None)
        if events is not None and resend_cards not in events.callbacks["pre_run_cell"]:
            events.register("pre_run_cell", resend_cards)

    def _run_as_text(self, task: Task, wait: bool) -> bool:
        task.start()
        if not wait:
            print("kie4o: running in the background; `_kie4o.wait()` to block, "
                  "`_kie4o.status` to check")
            return False
        printed = [""]

        def progress_line() -> None:
            text = f"kie4o: {status_text(task, front_end='notebook')}"
            if text != printed[0]:
                print(text, flush=True)
                printed[0] = text

        interrupted = self._wait(task, progress_line, every=0.5)
        if not interrupted:
            progress_line()
        if task.status is TaskStatus.SUCCESS:
            display(task)
        return interrupted

    def _wait(self, task: Task, tick: Callable[[], None] | None = None,
              every: float = 0.2) -> bool:
        """Block until the task ends, calling ``tick`` between waits; Ctrl-C stops it.

        Return True when interrupted (the id and how to resume are printed by then).
        """
        try:
            while not task.done:
                if tick is not None:
                    tick()
                task.wait(every)
        except KeyboardInterrupt:
            self._interrupted(task)
            return True
        return False

    @staticmethod
    def _interrupted(task: Task) -> None:
        """Stop a task on Ctrl-C and say where it stands: resumable, or never sent."""
        task.stop()
        task.wait(5)
        where = "the demo server" if getattr(task, "demo", False) else "KIE.AI"
        if task.task_id and (task.status is TaskStatus.STOPPED or not task.done):
            print(f"kie4o: stopped following task {task.task_id}; it goes on at {where} — "
                  f"`%kie4o resume {task.task_id}`")
        elif getattr(task, "stopped_before_sent", task.status is TaskStatus.STOPPED
                     and not task.task_id):
            print("kie4o: stopped before the request was sent; nothing was charged")
        elif task.done:  # it ended on its own meanwhile
            print(f"kie4o: {status_text(task, front_end='notebook')}")
        else:
            print(f"kie4o: stopped; the request was on its way to {where} — if it arrived, "
                  "its id will appear in `%kie4o history`")

    def _dry_run(self, opts: options.CellOptions, client: KieClient) -> Any:
        """Every request the cell would send (uploads named, key masked); nothing is sent."""
        from ..api.registry import backend_for
        from ..engine.inputs import PENDING_UPLOAD

        local = [i.label for i in opts.images if i.url is None]
        blocks = []
        for run in opts.runs:
            body = run.request.to_body()
            path = getattr(backend_for(run.model, client), "submit_path",
                           "/api/v1/gpt4o-image/generate")
            text = json.dumps(body, indent=2, ensure_ascii=False)
            names = iter(local)
            # Only local files are uploads; a URL is sent as it is (and shown as such).
            while f'"{PENDING_UPLOAD}"' in text:
                label = next(names, None) or (opts.mask.label if opts.mask else "file")
                text = text.replace(f'"{PENDING_UPLOAD}"',
                                    json.dumps(f"<upload of {label}>"), 1)
            where = f"# {' / '.join(run.labels)}\n" if run.labels else ""
            blocks.append(f"{where}POST {client.base_url}{path}\n"
                          f"Authorization: Bearer {client.masked_key()}\n"
                          f"Content-Type: application/json\n\n{text}")
        count = f"{len(blocks)} requests" if len(blocks) > 1 else "1 request"
        return _Text("\n\n".join(blocks) + f"\n\n(dry run: {count}, nothing was sent)")

    # -- line magic ------------------------------------------------------------------------

    def _line(self, line: str) -> Any:
        # Each subcommand has its own parser (with -h) and handler in .subcommands.
        from . import subcommands

        return subcommands.run(self, line)


class _Text:
    """Plain text that shows as preformatted HTML too (for dry runs)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        import html

        return {"text/plain": self.text, "text/html": f"<pre>{html.escape(self.text)}</pre>"}


def load(shell: Any, previous: Kie4o | None = None, *,
         prepare: Callable[[], None] | None = None) -> Kie4o:
    """Register the magics on ``shell`` (called by ``%load_ext`` and ``%reload_ext``).

    ``previous``, an instance still loaded, is unloaded first. Demo mode survives a reload:
    the running demo server, its clients and its unfinished tasks go to the new instance
    (whether the old one was unloaded here or by ``%reload_ext`` just before), and the load
    line says so; live tasks of the old instance are stopped, as by ``%unload_ext``. A class
    joined with ``%kie4o class`` stays joined (in memory only), and the load says so.
    ``prepare`` (the package root's wiring) runs before the first cell or subcommand.
    """
    if previous is not None:
        unload(shell, previous)
    demo = _demo_imported()  # nothing can be parked unless demo mode was loaded
    state = demo.unpark(shell) if demo is not None else None
    magics = Kie4o(shell=shell)
    magics._prepare = prepare
    shell.register_magics(magics)
    # %%kie: the same magic under a model-neutral name (`%%kie --model nano-banana-pro`).
    shell.register_magic_function(magics.kie4o, "line_cell", "kie")
    if magics not in shell.configurables:
        shell.configurables.append(magics)
    transformers = getattr(shell, "input_transformers_cleanup", None)
    if transformers is not None and _keep_empty_body not in transformers:
        transformers.append(_keep_empty_body)
    classjoin = sys.modules.get(f"{__package__}.classjoin")  # imported by a join, if any
    in_class = classjoin.unpark(shell, magics) if classjoin is not None else None
    if state is not None:
        magics._adopt_demo(state)
    elif (in_class is None and os.environ.get("KIE_DEMO")
          and _demo_module().demo_requested()):
        magics.demo.start()
    print(magics.load_message(continued=state is not None))
    if in_class is not None:
        print(f"kie4o: still in the class at {in_class} — `%kie4o class off` to leave.")
    return magics


def unload(shell: Any, magics: Kie4o) -> None:
    """Undo :func:`load`: stop pollers, remove the magics.

    The demo server and its unfinished tasks are stopped when the current cell ends, unless a
    load in the same cell (``%reload_ext``) takes them over.
    """
    state = magics._take_demo()
    classjoin = sys.modules.get(f"{__package__}.classjoin")
    if classjoin is not None:
        classjoin.park(shell, magics)  # a class joined stays joined for the next load
    magics.shutdown()
    for kind in ("line", "cell"):
        for name in ("kie4o", "kie"):
            shell.magics_manager.magics[kind].pop(name, None)
    if magics in shell.configurables:
        shell.configurables.remove(magics)
    shell.magics_manager.registry.pop("Kie4o", None)
    transformers = getattr(shell, "input_transformers_cleanup", None)
    if transformers is not None and _keep_empty_body in transformers:
        transformers.remove(_keep_empty_body)
    if state is not None:
        _demo_module().park(shell, state)
