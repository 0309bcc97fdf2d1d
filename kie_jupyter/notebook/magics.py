"""The ``Kie4o`` magics: ``%%kie4o`` (a prompt to images) and ``%kie4o`` (subcommands).

Thin: a cell is parsed by :mod:`.options` into the engine's plan
(:mod:`kie_jupyter.engine.plan`: every request checked, the sweep expanded), whose tasks
(:mod:`kie_jupyter.engine.task`) are shown live by :mod:`.panel` (widgets), as a sweep grid
or as text, then as their static card (:mod:`.cards`). Subcommands live in
:mod:`.subcommands`; the kernel's key, clients, demo server and running tasks in its
:class:`~kie_jupyter.session.Session`, shared with the Python API.

Light at import: ``%load_ext`` imports this module, so the engine, the option parser, the
subcommands, the demo server, requests and Pillow are imported on first use, in the methods
that need them (``benchmarks/bench_load.py`` holds it to 1.2x ``import ipywidgets``), or by
:mod:`.warmup` while the kernel is idle after the loading cell (the first cell's latency).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from traitlets import Enum, Float, Int, TraitError, Unicode, observe, validate

from .. import optiontable
from ..api.client import KieClient
from ..api.errors import KieConfigError, KieError
from ..api.models import Size, TaskStatus
from ..session import Session, activate, deactivate
from .cards import EMBED_CHOICES, SweepCard, name_task, register_cards, status_text
from .errors import usage_error
from .resend import remember_card, resend_cards
from .warmup import HTTP, Warmup, import_all

if TYPE_CHECKING:
    from ..engine.history import HistoryStore
    from ..engine.sweep import Sweep
    from ..engine.task import Task
    from .demo import DemoHandover, DemoServer
    from .options import CellOptions

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


def _use_prices(path: str | None) -> None:
    """Make the price file at ``path`` the one in use (None: the package's table alone)."""
    from ..api.prices import use_prices

    try:
        use_prices(path)
    except KieError as exc:
        raise TraitError(str(exc)) from None


#: The settings the session reads (the endpoint, and where history goes).
_SESSION_SETTINGS = ("base_url", "upload_url", "output_dir")


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
    confirm_over_credits = Float(200.0, allow_none=True, min=0.0,
                                 help="a paid plan estimated over this many credits needs "
                                      "--yes (None: no limit); an unknown price always does"
                                 ).tag(config=True)
    budget = Float(None, allow_none=True, min=0.0,
                   help="credits this kernel session may spend (None: no budget); a plan "
                        "over what is left is refused before anything is sent"
                   ).tag(config=True)
    prices = Unicode(None, allow_none=True,
                     help="a price file (JSON or TOML, the format of the package's "
                          "prices.json) that overrides or extends KIE's prices; "
                          "`%kie4o prices` shows the table in use").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        #: The kernel's key, endpoint, clients, demo server and running tasks, shared with
        #: the subcommands and the Python API; the settings below are kept in step with it.
        #: Made first: the shell's config (``%config Kie4o.output_dir`` before a reload, a
        #: profile's ``c.Kie4o``) sets the traits, and notifies, during ``__init__``.
        self.session = Session()
        #: Whether default_size was set to a new value here (see _size_was_chosen).
        self._default_size_chosen = False
        self._loading = True  # a bad price file in the config warns instead of failing
        super().__init__(shell=shell, **kwargs)
        self._loading = False
        for name in _SESSION_SETTINGS:
            setattr(self.session, name, getattr(self, name))
        self.session.budget = self.budget
        #: Imports what the first cell needs once %load_ext's cell has ended (see load).
        self.warmup = Warmup(shell, self._widgets)

    @observe("default_size")
    def _size_chosen(self, change: Any) -> None:
        self._default_size_chosen = True

    def _size_was_chosen(self) -> bool:
        """Whether the user chose default_size (then every model that takes that ratio gets
        it): set in the config (``%config Kie4o.default_size``, a profile's ``c.Kie4o`` —
        even to the value it already had) or assigned since."""
        try:
            configured = "default_size" in self.config.get("Kie4o", {})
        except (AttributeError, TypeError):
            configured = False
        return configured or self._default_size_chosen

    @observe(*_SESSION_SETTINGS, "budget")
    def _settings_changed(self, change: Any) -> None:
        setattr(self.session, change["name"], change["new"])

    @validate("prices")
    def _valid_prices(self, proposal: Any) -> Any:
        """A price file is read when set: a bad one is refused in one line, changing nothing
        (one from the config at load is a warning: the extension loads on KIE's table)."""
        try:
            _use_prices(proposal["value"])
        except TraitError as exc:
            if not getattr(self, "_loading", False):
                raise
            print(f"kie4o: {exc}; using KIE's prices from the package", file=sys.stderr)
            return None
        return proposal["value"]

    @property
    def _user_ns(self) -> dict[str, Any]:
        """The notebook's names (the shell is always set once loaded)."""
        assert self.shell is not None
        return self.shell.user_ns

    @property
    def demo(self) -> DemoServer:
        """The demo server (idle until ``%kie4o demo`` or ``KIE_DEMO`` starts it)."""
        return self.session.demo

    def _demo_running(self) -> bool:
        return self.session.demo_running

    # -- settings ----------------------------------------------------------------------------

    def client(self) -> KieClient:
        """A client for the current settings (demo server, trait, environment, default)."""
        try:
            return self.session.client()
        except KieConfigError as exc:
            raise usage_error(exc) from None

    def history(self) -> HistoryStore:
        return self.session.history()

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
        self.session.close(lambda tasks, clients: _demo_module().stop_tasks(tasks, clients))
        if "kie_jupyter.engine.runner" in sys.modules:  # (else no task ever ran)
            from ..engine.runner import end_shared_threads

            end_shared_threads()  # the image and download threads: none is left behind

    def _take_demo(self) -> DemoHandover | None:
        """Detach the running demo server, its clients and unfinished tasks (for a reload)."""
        if not self._demo_running():
            return None
        demo = _demo_module()
        clients = self.session.take_demo_clients()
        mine = set(map(id, clients.values()))
        tasks = [t for t in self.session.tasks if id(t.client) in mine]
        for task in tasks:
            self.session.forget(task)
        state = demo.DemoHandover(self.demo, clients, tasks)
        self.session.demo = demo.DemoServer()  # an idle one: closing this keeps the server
        return state

    def _adopt_demo(self, state: DemoHandover) -> None:
        self.session.demo = state.server
        self.session.clients.update(state.clients)
        self.session.track(*state.tasks)

    # -- the magic -------------------------------------------------------------------------

    @no_var_expand
    @_declare
    @line_cell_magic
    def kie4o(self, line: str, cell: str | None = None) -> None:
        """Generate or edit images with KIE.AI's image models (4o by default; ``--model``).

        Cell magic, the prompt is the cell body (``{name}`` is filled from the notebook)::

            %%kie4o -s 3:2 -n 2 -o fox
            A red fox in a snowy forest at dawn, watercolor

        Sweeps: ``{a|b}`` in the prompt and comma lists in ``--model``, ``-s``,
        ``--resolution`` and ``--quality`` run every combination as one grid
        (``%%kie4o --model 4o,seedream-4.5 -s 1:1,3:2`` / ``a {red|blue} fox``);
        ``--dry-run`` shows each request and its estimated cost, ``--yes`` confirms a big or
        unknown-priced one, ``--max-credits N`` caps it.

        The option line is split like a shell line (``--save "my dir"``) and ``$name`` or
        ``{expression}`` on it are filled from the notebook (``-i $fox[1]``).

        Line magic (``%kie4o -h`` lists them, each takes ``-h``): login · demo · status ·
        resume · history · credits · config · gallery · star · unstar · compare · rerun ·
        info · export · models · pack · class · prices · spend · mask · upscale ·
        remove-bg · vary · reframe.
        """
        if cell is None:
            return self._line(line)
        return self._cell(line, cell)

    def _cell(self, line: str, cell: str) -> None:
        from . import options

        _painted_masks("forget")  # a mask looked at by an earlier, refused cell stays live
        opts = options.parse_cell(self.kie4o, line, cell, self._user_ns,
                                  default_size=self.default_size, default_model=self.model,
                                  default_size_everywhere=self._size_was_chosen())
        self.run_options(opts, f"%%kie4o {line.strip()}\n{cell.rstrip()}".replace(" \n", "\n"))

    def run_options(self, opts: CellOptions, source: str) -> None:
        """Check, pay for and run a parsed cell's (or a follow-up verb's) plan: the dry run,
        the confirmation and budget, the key, then its task (panel) or sweep (grid).
        ``source`` is the cell as written (a sweep's card keeps it)."""
        from ..engine.checks import check_save_dir, check_timeout
        from ..engine.poller import PollSchedule

        plan = opts.plan
        if plan.own_size:
            one = len(plan.own_size) == 1
            print(f"kie4o: {', '.join(plan.own_size)} take{'s' if one else ''} no "
                  f"{self.default_size} (%config Kie4o.default_size): "
                  f"{'its' if one else 'their'} own default size is used")
        client = self.client()
        try:
            if opts.dry_run:
                _painted_masks("forget")  # a dry run leaves the painter live
                display(_Text(plan.dry_run(client)))
                return None
            self.session.gate(
                plan, demo=client.demo, yes=opts.yes, over=self.confirm_over,
                over_credits=self.confirm_over_credits, max_credits=opts.max_credits,
                setting="%config Kie4o.confirm_over",
                credits_setting="%config Kie4o.confirm_over_credits",
                how="add --yes to the option line", budget="%config Kie4o.budget")
        except KieError as exc:
            raise UsageError(str(exc)) from None
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
            raise usage_error(exc) from None
        _painted_masks("finish")  # the edit is sent: its painters give way to their pictures
        # The default schedule unless %config Kie4o.poll_interval asks for another floor.
        schedule = (PollSchedule(min_interval=self.poll_interval)
                    if self.poll_interval != Kie4o.poll_interval.default_value else None)
        tasks = plan.new_tasks(client, timeout=timeout, save_dir=save_dir,
                               history=self.history(), schedule=schedule, embed=self.embed)
        try:  # the budget checked and held in one step (another cell may be paying too)
            self.session.spend.add(tasks, budget=self.session.budget,
                                   setting="%config Kie4o.budget")
        except KieError as exc:
            raise UsageError(str(exc)) from None
        if not plan.is_sweep:
            self._run_task(tasks[0], out=opts.out, wait=not opts.no_wait)
            return None
        sweep = plan.sweep_of(tasks, self.embed)
        sweep.source = source
        self._run_sweep(sweep, out=opts.out, wait=not opts.no_wait)
        return None

    def _run_sweep(self, sweep: Sweep, *, out: str | None, wait: bool) -> None:
        """Start every task of a sweep and show one grid, live, then as its static card.

        The grid is static HTML updated in place (the same display): it needs no widget, so
        it shows the same in every front end and a saved notebook keeps the final grid. A
        blocking cell updates it from its own thread; a ``--no-wait`` sweep from a thread of
        its own. Ctrl-C stops every task and ends the cell in error.
        """
        self.session.track(*sweep.tasks)
        self._user_ns["_kie4o"] = sweep
        if out:
            self._user_ns[out] = sweep
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
            from ..engine.plan import interrupt_report

            report = interrupt_report(sweep.tasks)
            show()
            for said in report.lines("`%kie4o resume ID`"):
                print(said)
            raise UsageError("kie4o: interrupted (Ctrl-C); this cell ends in error so that "
                             "Run All stops here") from None

    def _run_task(self, task: Task, *, out: str | None, wait: bool) -> None:
        """Start and show a task; when waiting, a Ctrl-C ends the cell in error."""
        self.session.track(task)
        self._user_ns["_kie4o"] = task
        if out:
            self._user_ns[out] = task
        name_task(task, out or "_kie4o")  # the card shows fox[0] (or _kie4o[0])
        # Before the task's thread sends: on a cold first cell requests is imported here,
        # so that thread never imports it while this one imports ipywidgets (a module half
        # made by one thread can be handed to the other).
        import_all(HTTP)
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
        task.start()  # first: the request leaves before the panel is built (submit latency)
        from .panel import TaskPanel  # ipywidgets is imported only when a panel is shown

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
        if task.task_id and (task.status is TaskStatus.STOPPED or not task.done):
            print(f"kie4o: stopped following task {task.task_id}; it goes on at {task.runs_at} — "
                  f"`%kie4o resume {task.task_id}`")
        elif getattr(task, "stopped_before_sent", task.status is TaskStatus.STOPPED
                     and not task.task_id):
            print("kie4o: stopped before the request was sent; nothing was charged")
        elif task.done:  # it ended on its own meanwhile
            print(f"kie4o: {status_text(task, front_end='notebook')}")
        else:
            print(f"kie4o: stopped; the request was on its way to {task.runs_at} — if it arrived, "
                  "its id will appear in `%kie4o history`")

    # -- line magic ------------------------------------------------------------------------

    def _line(self, line: str) -> Any:
        # Each subcommand has its own parser (with -h) and handler in .subcommands.
        from . import subcommands

        return subcommands.run(self, line)


def _painted_masks(what: str) -> None:
    """Finish (``finish``) or let go (``forget``) the painted masks the plan used, if the
    painter was ever loaded (it imports anywidget: not for every cell)."""
    painter = sys.modules.get("kie_jupyter.notebook.painter")
    if painter is not None:
        (painter.finish_used if what == "finish" else painter.forget_used)()


class _Text:
    """Plain text that shows as preformatted HTML too (for dry runs)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        import html

        return {"text/plain": self.text, "text/html": f"<pre>{html.escape(self.text)}</pre>"}


def load(shell: Any, previous: Kie4o | None = None) -> Kie4o:
    """Register the magics on ``shell`` (called by ``%load_ext`` and ``%reload_ext``).

    ``previous``, an instance still loaded, is unloaded first. Demo mode survives a reload:
    the running demo server, its clients and its unfinished tasks go to the new instance
    (whether the old one was unloaded here or by ``%reload_ext`` just before), and the load
    line says so; live tasks of the old instance are stopped, as by ``%unload_ext``. A class
    joined with ``%kie4o class`` stays joined (in memory only), and the load says so. Tasks
    and sweeps show as their cards wherever the shell displays them; the Python API uses
    this load's session.
    """
    if previous is not None:
        unload(shell, previous)
    demo = _demo_imported()  # nothing can be parked unless demo mode was loaded
    state = demo.unpark(shell) if demo is not None else None
    magics = Kie4o(shell=shell)
    register_cards(shell)
    activate(magics.session)
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
    magics.warmup.arm()  # last: the first %%kie4o cell finds the engine and requests imported
    return magics


def unload(shell: Any, magics: Kie4o) -> None:
    """Undo :func:`load`: stop pollers, remove the magics.

    The demo server and its unfinished tasks are stopped when the current cell ends, unless a
    load in the same cell (``%reload_ext``) takes them over.
    """
    magics.warmup.stop()
    state = magics._take_demo()
    classjoin = sys.modules.get(f"{__package__}.classjoin")
    if classjoin is not None:
        classjoin.park(shell, magics)  # a class joined stays joined for the next load
    magics.shutdown()
    deactivate(magics.session)
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
