"""The ``Kie4o`` magics: ``%%kie4o`` (a prompt to images) and ``%kie4o`` (subcommands).

Thin: options are parsed by :mod:`.options`, requests made by :mod:`.client`, tasks run by
:mod:`.task`, shown by :mod:`.panel` (widgets) or :mod:`.static` (saved notebooks, terminals).
"""

from __future__ import annotations

import getpass
import json
import os
import threading
from collections.abc import Callable
from typing import Any

from IPython.core.error import StdinNotImplementedError, UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.display import display
from traitlets import Enum, Float, Unicode

from ..api.client import KieClient, check_key
from ..api.errors import KieConfigError, KieError, TaskNotFoundError
from ..api.models import Size, TaskStatus
from ..engine.checks import check_save_dir, check_timeout
from ..engine.history import HistoryEntry, HistoryStore, default_output_dir
from ..engine.inputs import PENDING_UPLOAD
from ..engine.poller import PollSchedule
from ..engine.task import Task
from ..hints import with_hint
from . import options
from .cards import EMBED_CHOICES, status_text
from .demo import (
    BANNER,
    DEMO_KEY,
    DemoHandover,
    DemoServer,
    demo_requested,
    park,
    stop_tasks,
    unpark,
)
from .views import config_table, history_table, status_snapshot

__all__ = ["Kie4o"]

SUBCOMMANDS = ("login", "demo", "status", "resume", "history", "credits", "config")


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

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._api_key: str | None = None  # from %kie4o login: memory only
        self.demo = DemoServer()
        self._tasks: list[Task] = []
        self._clients: dict[tuple[Any, ...], KieClient] = {}
        self._lock = threading.Lock()

    # -- settings ----------------------------------------------------------------------------

    def client(self) -> KieClient:
        """A client for the current settings (demo server, trait, environment, default)."""
        if self.demo.running:
            key: tuple[Any, ...] = ("demo", self.demo.url)
            make = lambda: KieClient(DEMO_KEY, base_url=self.demo.url,  # noqa: E731
                                     upload_url=self.demo.url, demo=True)
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
        return HistoryStore(self.output_dir or default_output_dir())

    def _widgets(self) -> bool:
        if self.frontend != "auto":
            return self.frontend == "widget"
        return getattr(self.shell, "kernel", None) is not None

    def load_message(self, continued: bool = False) -> str:
        """The one line printed at load: endpoint and whether a key was found."""
        if self.demo.running and continued:
            # A reload never switches a kernel from demo to live without a word.
            return (f"kie4o: demo mode continues on {self.demo.url} (synthetic images, no "
                    "credits spent); `%kie4o demo off` to use the live endpoint")
        if self.demo.running:
            return f"kie4o: demo mode on {self.demo.url} (synthetic images, no key needed)"
        try:
            client = self.client()
        except UsageError as exc:
            return f"kie4o: {exc}"
        found = "API key found" if client.has_key else (
            "no API key (set KIE_API_KEY, `%kie4o login`, or `%kie4o demo`)")
        return f"kie4o: endpoint {client.base_url}; {found}. `%%kie4o?` for help."

    def shutdown(self) -> None:
        """Stop every poller and the demo server (``%unload_ext``)."""
        stop_tasks(self._tasks, self._clients.values())
        self._tasks.clear()
        self._clients.clear()
        self.demo.stop()

    def _take_demo(self) -> DemoHandover | None:
        """Detach the running demo server, its clients and unfinished tasks (for a reload)."""
        if not self.demo.running:
            return None
        clients = {k: self._clients.pop(k) for k in list(self._clients) if k[0] == "demo"}
        mine = set(map(id, clients.values()))
        tasks = [t for t in self._tasks if id(t.client) in mine and not t.done]
        self._tasks = [t for t in self._tasks if t not in tasks]
        state = DemoHandover(self.demo, clients, tasks)
        self.demo = DemoServer()  # an idle one: shutting this instance down keeps the server
        return state

    def _adopt_demo(self, state: DemoHandover) -> None:
        self.demo = state.server
        self._clients.update(state.clients)
        self._tasks.extend(state.tasks)

    # -- the magic -------------------------------------------------------------------------

    @no_var_expand
    @options.declare
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
        if cell is None:
            return self._line(line)
        return self._cell(line, cell)

    def _cell(self, line: str, cell: str) -> None:
        opts = options.parse_cell(self.kie4o, line, cell, self.shell.user_ns,
                                  default_size=self.default_size)
        client = self.client()
        if opts.dry_run:
            display(self._dry_run(opts, client))
            return None
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
        task = Task(
            opts.request, client=client, inputs=opts.images, mask=opts.mask,
            timeout=timeout, schedule=PollSchedule(min_interval=self.poll_interval),
            save_dir=save_dir, embed=self.embed, history=self.history(),
        )
        self._run_task(task, out=opts.out, wait=not opts.no_wait)
        return None

    def _run_task(self, task: Task, *, out: str | None, wait: bool) -> None:
        """Start and show a task; when waiting, a Ctrl-C ends the cell in error."""
        self._tasks = [t for t in self._tasks if not t.done]
        self._tasks.append(task)
        self.shell.user_ns["_kie4o"] = task
        if out:
            self.shell.user_ns[out] = task
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
        from .panel import TaskPanel  # ipywidgets is imported only when a panel is shown

        task.start()  # first: the request leaves before the panel is built (submit latency)
        panel = TaskPanel(task, show_images=not wait, save_dir=task.save_dir)
        task.subscribe(panel.update)
        panel.update(task)  # whatever happened while it was being built
        handle = display(panel, display_id=True)
        if not wait:
            return False
        interrupted = self._wait(task)
        if handle is not None:
            handle.update(panel)  # refresh the text/plain fallback kept in the notebook
        # The static output is what a saved notebook keeps (widgets need their kernel): the
        # images on success, the reason otherwise.
        if task.status is not TaskStatus.SUCCESS or task.embed != "none":
            display(task)
        return interrupted

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
        body = opts.request.to_body()
        if "filesUrl" in body:
            # Only local files are uploads; a URL is sent as it is (and shown as such).
            local = iter(i.label for i in opts.images if i.url is None)
            body["filesUrl"] = [f"<upload of {next(local)}>" if u == PENDING_UPLOAD else u
                                for u in body["filesUrl"]]
        if body.get("maskUrl") == PENDING_UPLOAD and opts.mask:
            body["maskUrl"] = f"<upload of {opts.mask.label}>"
        text = (
            f"POST {client.base_url}/api/v1/gpt4o-image/generate\n"
            f"Authorization: Bearer {client.masked_key()}\n"
            f"Content-Type: application/json\n\n"
            f"{json.dumps(body, indent=2, ensure_ascii=False)}\n\n"
            "(dry run: nothing was sent)"
        )
        return _Text(text)

    # -- line magic ------------------------------------------------------------------------

    def _line(self, line: str) -> Any:
        # Split first, then fill $name and {expr} word by word (the decorator that keeps the
        # cell magic's `-i $task` intact turns IPython's own expansion off for both forms):
        # a value with spaces stays one word, and what cannot be filled is an error, not sent.
        words = options.split_line(line, "%kie4o")
        if not words:
            raise UsageError(f"%kie4o: give a subcommand: {', '.join(SUBCOMMANDS)}")
        sub = words[0]
        if sub not in SUBCOMMANDS:
            raise UsageError(
                f"%kie4o: {sub!r} is not a subcommand ({', '.join(SUBCOMMANDS)}); to generate, "
                "use the cell magic: options on the %%kie4o line, the prompt on the lines "
                "below it"
            )
        args, _ = options.expand_words(words[1:], self.shell.user_ns, where=f"%kie4o {sub}",
                                       prefix=f"%kie4o {sub} ")
        return getattr(self, f"_cmd_{sub}")(args)

    def _cmd_login(self, args: list[str]) -> None:
        if args:
            raise UsageError("%kie4o login takes no argument: the key is asked with a hidden "
                             "prompt so it is never saved in the notebook")
        try:
            key = check_key(getpass.getpass("KIE.AI API key (hidden): "))
        except (StdinNotImplementedError, EOFError):
            raise UsageError("%kie4o login: this front end cannot ask for input (no terminal); "
                             "set the KIE_API_KEY environment variable instead") from None
        except KieConfigError as exc:
            raise _usage(exc, "%kie4o login: ") from None
        if not key:
            raise UsageError("%kie4o login: no key entered")
        self._api_key = key
        print("kie4o: key kept in memory for this session (never written to disk).")

    def _cmd_demo(self, args: list[str]) -> None:
        mode = args[0].lower() if args else "on"
        if len(args) > 1 or mode not in ("on", "off"):
            raise UsageError("%kie4o demo: use `%kie4o demo`, `%kie4o demo on` or "
                             "`%kie4o demo off`")
        if mode == "on":
            url = self.demo.start()
            print(BANNER.format(url=url))
        else:
            was = self.demo.running
            demo_clients = [self._clients.pop(k) for k in list(self._clients) if k[0] == "demo"]
            for task in self._tasks:
                if task.client in demo_clients:
                    task.stop()  # its server is going away
            for client in demo_clients:
                client.close()
            self.demo.stop()
            print("kie4o: demo mode off; " + self.load_message().removeprefix("kie4o: ")
                  if was else "kie4o: demo mode was not on")

    def _task_id_arg(self, args: list[str], sub: str) -> str:
        if len(args) != 1 or not args[0].strip():
            raise UsageError(f"%kie4o {sub}: give one task id, e.g. `%kie4o {sub} 3f2a…` "
                             "(see `%kie4o history`)")
        return args[0].strip()

    def _lost_demo_task(self, entry: HistoryEntry | None, *, not_found: bool = False) -> bool:
        """Whether history says a demo server made this task and that server is gone.

        Demo tasks live in the demo server's memory: a new kernel, `%kie4o demo off` or a
        restart of demo mode forgets them, which no "records are kept two months" explains.
        """
        if entry is None or getattr(entry, "demo", None) is not True:
            return False
        return not_found or not self.demo.running or entry.base_url != self.demo.url

    def _lookup(self, task_id: str, sub: str) -> tuple[KieClient, Any, HistoryEntry | None]:
        """The client, the API's record and the history entry of a task, or one error line."""
        entry = self.history().get(task_id)
        lost = (f"%kie4o {sub} {task_id}: a demo task, and the demo server that made it has "
                "restarted since (a new kernel or `%kie4o demo off`); demo tasks do not survive "
                "it — run its cell again")
        if self._lost_demo_task(entry):
            raise UsageError(lost)
        client = self.client()
        try:
            record = client.record_info(task_id)  # an unknown id fails here, in one line
        except TaskNotFoundError as exc:
            if self._lost_demo_task(entry, not_found=True):
                raise UsageError(lost) from None
            raise _usage(exc, f"%kie4o {sub} {task_id}: ", task_id) from None
        except KieError as exc:
            raise _usage(exc, f"%kie4o {sub} {task_id}: ", task_id) from None
        return client, record, entry

    def _cmd_status(self, args: list[str]) -> Any:
        task_id = self._task_id_arg(args, "status")
        _, record, entry = self._lookup(task_id, "status")
        return status_snapshot(task_id, record, entry)

    def _cmd_resume(self, args: list[str]) -> None:
        task_id = self._task_id_arg(args, "resume")
        try:
            timeout = check_timeout(self.timeout, "Kie4o.timeout")
        except KieError as exc:
            raise _usage(exc) from None
        client, record, entry = self._lookup(task_id, "resume")
        task = Task.resumed(task_id, client=client, entry=entry, snapshot=record,
                            timeout=timeout, embed=self.embed, history=self.history(),
                            schedule=PollSchedule(min_interval=self.poll_interval))
        self._run_task(task, out=None, wait=True)

    def _cmd_history(self, args: list[str]) -> Any:
        n, search = 20, None
        rest = list(args)
        while rest:
            word = rest.pop(0)
            if word == "--search":
                if not rest:
                    raise UsageError("%kie4o history --search: give the text to look for")
                search = rest.pop(0)
            elif word.isdigit() and int(word) > 0:
                n = int(word)
            else:
                raise UsageError(f"%kie4o history: {word!r} is not a positive count or "
                                 "--search TEXT")
        return history_table(self.history().recent(n, search), embed=self.embed != "none",
                             search=search)

    def _cmd_credits(self, args: list[str]) -> Any:
        if args:
            raise UsageError("%kie4o credits takes no argument")
        client = self.client()
        try:
            balance = client.credits()
        except KieError as exc:
            raise _usage(exc, "%kie4o credits: ") from None
        if getattr(client, "demo", False):
            print(f"kie4o: {balance:g} credits — the demo server's pretend balance, not real "
                  "credits (`%kie4o demo off` for your KIE.AI balance)")
        else:
            print(f"kie4o: {balance:g} credits")
        return None

    def _cmd_config(self, args: list[str]) -> Any:
        if args:
            raise UsageError("%kie4o config takes no argument; change settings with "
                             "`%config Kie4o.<name> = value`")
        client = self.client()
        rows = {
            "endpoint": client.base_url + (" (demo)" if self.demo.running else ""),
            "upload endpoint": client.upload_url,
            "API key": client.masked_key(),
            "output_dir": str(self.history().directory),
            "default_size": self.default_size,
            "timeout": f"{self.timeout:g} s",
            "poll_interval": f"{self.poll_interval:g} s",
            "embed": self.embed,
            "frontend": self.frontend,
        }
        return config_table(rows)


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
    line says so; live tasks of the old instance are stopped, as by ``%unload_ext``.
    """
    if previous is not None:
        unload(shell, previous)
    state = unpark(shell)
    magics = Kie4o(shell=shell)
    shell.register_magics(magics)
    if magics not in shell.configurables:
        shell.configurables.append(magics)
    transformers = getattr(shell, "input_transformers_cleanup", None)
    if transformers is not None and options.keep_empty_body not in transformers:
        transformers.append(options.keep_empty_body)
    if state is not None:
        magics._adopt_demo(state)
    elif demo_requested():
        magics.demo.start()
    print(magics.load_message(continued=state is not None))
    return magics


def unload(shell: Any, magics: Kie4o) -> None:
    """Undo :func:`load`: stop pollers, remove the magics.

    The demo server and its unfinished tasks are stopped when the current cell ends, unless a
    load in the same cell (``%reload_ext``) takes them over.
    """
    state = magics._take_demo()
    magics.shutdown()
    for kind in ("line", "cell"):
        shell.magics_manager.magics[kind].pop("kie4o", None)
    if magics in shell.configurables:
        shell.configurables.remove(magics)
    shell.magics_manager.registry.pop("Kie4o", None)
    transformers = getattr(shell, "input_transformers_cleanup", None)
    if transformers is not None and options.keep_empty_body in transformers:
        transformers.remove(options.keep_empty_body)
    if state is not None:
        park(shell, state)
