"""The ``%kie4o`` line magic: one argparse subparser and one handler per subcommand.

    %kie4o login                       the key, asked with a hidden prompt (memory only)
    %kie4o demo [on|off] [--pack FILE] the bundled mock server (with a class's replay pack)
    %kie4o status TASK_ID              one snapshot of any task
    %kie4o resume TASK_ID              follow a task to its end (binds _kie4o)
    %kie4o history [N] [--search TEXT] recent tasks (--export FILE.jsonl, --info)
    %kie4o credits                     the balance
    %kie4o config                      the effective settings, key masked
    %kie4o gallery [N] [--search TEXT] [--starred] [--demo|--live] [--page K]
    %kie4o star ID / unstar ID         mark a task to find it again
    %kie4o compare A B [C …]           tasks, sweeps ($name) or history ids side by side
    %kie4o rerun SRC                   a new cell with the %%kie4o that made SRC
    %kie4o info FILE.png               how a PNG written by this tool was made
    %kie4o export OUT.html|OUT.zip [--search TEXT] [--starred] [ID …]
    %kie4o models                      the models and their options
    %kie4o pack export FILE.kiepack [--search TEXT] [--starred] [ID …]   a replay pack
    %kie4o pack show [FILE]            what a replay pack (or the loaded one) holds
    %kie4o class URL [--token-env NAME | --hub-token] / class off   join a class, or leave
    %kie4o mask IMAGE -o NAME          paint a mask for -m $NAME (painted = will change)
    %kie4o upscale | remove-bg | vary | reframe IMAGE   one-step follow-ups on a picked image

Each takes ``-h``, which prints its help (and ``%kie4o -h`` lists them). The line is split
like a shell line first, then ``$name`` and ``{expr}`` are filled word by word, as for the
cell magic's options. Every mistake is one ``UsageError`` line naming the subcommand.

The handlers get the ``Kie4o`` magics instance (its settings, client, history and tasks)
through the :class:`Host` protocol: this module never imports :mod:`.magics`, which imports it.

Size: one handler and one parser per subcommand (17 of them), each small; a module per
subcommand group (workbench, session, class) is the next split.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, Protocol

from IPython.core.error import StdinNotImplementedError, UsageError

from ..api.backend import Backend
from ..api.catalogue import CATALOGUE
from ..api.client import KieClient, check_key
from ..api.errors import KieConfigError, KieError, TaskNotFoundError
from ..api.registry import MODELS, backend_for_task_id, describe, find_task_backend
from ..engine.checks import check_timeout
from ..engine.history import HistoryEntry, HistoryStore, thumb_cap_bytes
from ..engine.historydb import HistoryUnavailable
from ..engine.packs import SUFFIX as PACK_SUFFIX
from ..engine.poller import PollSchedule
from ..engine.provenance import read_provenance
from ..engine.sweep import Sweep
from ..engine.task import Task, recently_created
from ..engine.taskimage import TaskImage
from ..fakeapi.demo import PACK_ENV, env_pack
from ..fakeapi.packs import PackError, ReplayPack, load_pack
from ..session import Session
from . import classjoin, options, picks, replay, steps, workbench
from .demo import DemoServer, banner
from .errors import usage_error
from .views import Table, config_table, history_table, status_snapshot

__all__ = ["SUBCOMMANDS", "Host", "run", "parser"]

SUBCOMMANDS = ("login", "demo", "status", "resume", "history", "credits", "config", "gallery",
               "star", "unstar", "compare", "rerun", "info", "export", "models", "pack",
               "class", "prices", "spend", *steps.VERB_NAMES)
#: Subcommands whose arguments may be objects from the notebook (`$fox`, `{sw}`).
_TAKE_OBJECTS = frozenset({"compare", "rerun", "star", "unstar", "export", "status",
                           "resume", *steps.VERB_NAMES})
#: ``%kie4o gallery`` with no count: one page.
_GALLERY_PAGE = 24
#: ``%kie4o history`` with no count.
_HISTORY_DEFAULT = 20


class Host(Protocol):
    """What the handlers use of the ``Kie4o`` magics: the shell, the settings, the session."""

    shell: Any
    session: Session
    base_url: str | None
    upload_url: str | None
    timeout: float
    poll_interval: float
    embed: str
    default_size: str
    frontend: str

    @property
    def demo(self) -> DemoServer: ...

    def client(self) -> KieClient: ...

    def history(self) -> HistoryStore: ...

    def load_message(self, continued: bool = False) -> str: ...

    def _run_task(self, task: Task, *, out: str | None, wait: bool) -> None: ...

    def run_options(self, opts: options.CellOptions, source: str) -> None: ...


Handler = Callable[[Host, argparse.Namespace], Any]


class _HelpShown(Exception):
    """``-h`` printed the help: the line ends there, quietly."""


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one-line usage errors and whose ``-h`` never exits.

    ``mistake`` is the subcommand's own one-line message for any bad argument (a string, or a
    function of argparse's message); without one, argparse's message follows the command.
    """

    def __init__(self, *args: Any, mistake: str | Callable[[str], str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mistake = mistake

    def error(self, message: str) -> NoReturn:
        if callable(self.mistake):
            raise UsageError(self.mistake(message))
        raise UsageError(self.mistake or f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status:
            self.error(message or f"exit status {status}")
        raise _HelpShown


def run(host: Host, line: str) -> Any:
    """Run one ``%kie4o`` line on ``host``; return what the subcommand shows, if anything."""
    # Split first, then fill $name and {expr} word by word (the decorator that keeps the cell
    # magic's `-i $task` intact turns IPython's own expansion off for both forms): a value
    # with spaces stays one word, and what cannot be filled is an error, not sent.
    words = options.split_line(line, "%kie4o")
    if not words:
        raise UsageError(f"%kie4o: give a subcommand: {', '.join(SUBCOMMANDS)}")
    sub = words[0]
    if sub in ("-h", "--help"):
        parser().print_help()
        return None
    if sub not in SUBCOMMANDS:
        raise UsageError(
            f"%kie4o: {sub!r} is not a subcommand ({', '.join(SUBCOMMANDS)}); to generate, "
            "use the cell magic: options on the %%kie4o line, the prompt on the lines "
            "below it"
        )
    # For compare and rerun, a word that is one expression keeps its object (a task, a
    # sweep); a word that follows no option has the option name None.
    args, objects = options.expand_words(
        words[1:], host.shell.user_ns, where=f"%kie4o {sub}", prefix=f"%kie4o {sub} ",
        objects_for=frozenset({None}) if sub in _TAKE_OBJECTS else frozenset())
    try:
        # The subcommand's own parser, so that its mistakes and its -h are its own.
        namespace = _parsers()[1][sub].parse_args(args)
    except _HelpShown:
        return None
    namespace.objects = objects
    namespace.line = line
    try:
        return namespace.handler(host, namespace)
    except HistoryUnavailable as exc:  # e.g. a file that is not a database (moved aside, fixed)
        raise UsageError(f"%kie4o {sub}: {exc}") from None


# -- the handlers ------------------------------------------------------------------------------


def _login(host: Host, args: argparse.Namespace) -> None:
    try:
        key = check_key(getpass.getpass("KIE.AI API key (hidden): "))
    except (StdinNotImplementedError, EOFError):
        raise UsageError("%kie4o login: this front end cannot ask for input (no terminal); "
                         "set the KIE_API_KEY environment variable instead") from None
    except KieConfigError as exc:
        raise usage_error(exc, "%kie4o login: ") from None
    if not key:
        raise UsageError("%kie4o login: no key entered")
    # A personal key must not go to a class proxy, and `class off` must not undo the login:
    # logging in leaves the class first (its settings of before come back, then the new key).
    left = classjoin.leave(host, say=False)
    host.session.api_key = key
    kept = "key kept in memory for this session (never written to disk)"
    if left is None:
        print(f"kie4o: {kept}.")
        return
    try:
        endpoint = f"; endpoint {host.client().base_url}"
    except UsageError:  # the settings of before have a problem; the next cell says it
        endpoint = ""
    print(f"kie4o: left the class at {left}; {kept}{endpoint}.")


def _demo(host: Host, args: argparse.Namespace) -> None:
    if args.mode == "on":
        joined = classjoin.joined(host)
        if joined is not None:
            # Demo mode would hide the class the student joined (and "Run All" of a notebook
            # that turns demo on by itself must not do that behind their back).
            raise UsageError(f"%kie4o demo: you are in the class at {joined}; "
                             "`%kie4o class off` first")
        pack: ReplayPack | None = None
        try:
            # Read and checked before anything starts: a bad file changes nothing.
            if args.pack is not None:
                pack = load_pack(args.pack)
            elif not host.demo.running:
                pack = env_pack()
        except PackError as exc:
            where = "%kie4o demo --pack" if args.pack is not None else "%kie4o demo"
            raise UsageError(f"{where}: {exc}") from None
        url = host.demo.start(pack)
        print(banner(url, host.demo.pack))
        return
    if args.pack is not None:
        raise UsageError("%kie4o demo off: --pack goes with `%kie4o demo --pack FILE`")
    _demo_off(host)


def _demo_off(host: Host, *, say: bool = True) -> None:
    was = host.demo.running
    demo_clients = list(host.session.take_demo_clients().values())
    for task in host.session.tasks:
        if task.client in demo_clients:
            task.stop()  # its server is going away
    for client in demo_clients:
        client.close()
    host.demo.stop()
    if say:
        print("kie4o: demo mode off; " + host.load_message().removeprefix("kie4o: ")
              if was else "kie4o: demo mode was not on")


def _task_id(args: argparse.Namespace, history: HistoryStore) -> str:
    """The one task a subcommand names: an id (or a unique prefix of one in ``history``),
    or ``$name`` of a task or one of its images."""
    raw = args.task_id
    value = options.unmark(raw, args.objects) if raw is not None else None
    if isinstance(value, str):
        value = value.strip()
    if not value:
        raise UsageError(_give_one_task_id(args.sub))
    found = picks.task_ids(value, history, f"%kie4o {args.sub}", unknown_ok=True)
    if len(found) != 1:
        raise UsageError(f"%kie4o {args.sub}: give one task (that sweep has {len(found)})")
    return found[0]


def _give_one_task_id(sub: str) -> str:
    return (f"%kie4o {sub}: give one task id, e.g. `%kie4o {sub} 3f2a…` "
            "(see `%kie4o history`)")


def _lost_demo_task(host: Host, entry: HistoryEntry | None, *, not_found: bool = False) -> bool:
    """Whether history says a demo server made this task and that server is gone.

    Demo tasks live in the demo server's memory: a new kernel, `%kie4o demo off` or a
    restart of demo mode forgets them, which no "records are kept two months" explains.
    """
    if entry is None or getattr(entry, "demo", None) is not True:
        return False
    return not_found or not host.demo.running or entry.base_url != host.demo.url


def _lookup(host: Host, task_id: str, sub: str,
            ) -> tuple[KieClient, Any, HistoryEntry | None, Backend]:
    """The client, the API's record, the history entry and the backend (API family) of a
    task, or one error line."""
    entry = host.history().get(task_id)
    lost = (f"%kie4o {sub} {task_id}: a demo task, and the demo server that made it has "
            "restarted since (a new kernel or `%kie4o demo off`); demo tasks do not survive "
            "it — run its cell again")
    if _lost_demo_task(host, entry):
        raise UsageError(lost)
    client = host.client()
    backend = backend_for_task_id(task_id, client, model=entry.model if entry else None)
    try:
        if entry is None or not entry.model:  # which API knows it? (asking is free)
            backend, found = find_task_backend(task_id, client)
            if found:
                print(f"kie4o: {found}")
        record = backend.poll(task_id)  # an unknown id fails here, in one line
    except TaskNotFoundError as exc:
        if _lost_demo_task(host, entry, not_found=True):
            raise UsageError(lost) from None
        if (entry is not None and entry.created and recently_created(entry.created)
                and entry.base_url in (None, client.base_url)):
            return client, None, entry, backend  # made a moment ago: KIE may not show it yet
        raise usage_error(exc, f"%kie4o {sub} {task_id}: ", task_id) from None
    except KieError as exc:
        raise usage_error(exc, f"%kie4o {sub} {task_id}: ", task_id) from None
    return client, record, entry, backend


def _status(host: Host, args: argparse.Namespace) -> Any:
    task_id = _task_id(args, host.history())
    _, record, entry, _ = _lookup(host, task_id, "status")
    return status_snapshot(task_id, record, entry)


def _resume(host: Host, args: argparse.Namespace) -> None:
    task_id = _task_id(args, host.history())
    try:
        timeout = check_timeout(host.timeout, "Kie4o.timeout")
    except KieError as exc:
        raise usage_error(exc) from None
    client, record, entry, backend = _lookup(host, task_id, "resume")
    task = Task.resumed(task_id, client=client, entry=entry, snapshot=record, backend=backend,
                        timeout=timeout, embed=host.embed, history=host.history(),
                        schedule=PollSchedule(min_interval=host.poll_interval))
    host._run_task(task, out=None, wait=True)


def _history(host: Host, args: argparse.Namespace) -> Any:
    if args.info or args.export:
        if args.count is not None or args.search or (args.info and args.export):
            raise UsageError("%kie4o history: --info and --export FILE each stand alone "
                             "(no N, no --search)")
        if args.info:
            return _history_info(host.history())
        _history_export(host.history(), args.export)
        return None
    n = _HISTORY_DEFAULT
    if args.count is not None:
        if not (args.count.isdigit() and int(args.count) > 0):
            raise UsageError(f"%kie4o history: {args.count!r} is not a positive count or "
                             "--search TEXT")
        n = int(args.count)
    return history_table(host.history().recent(n, args.search), embed=host.embed != "none",
                         search=args.search)


def _history_info(history: HistoryStore) -> Table:
    info = history.info()
    if info is None:
        return config_table({"folder": str(history.directory), "tasks": "none yet"},
                            "kie4o history", ("", ""))
    mb = 1024 * 1024
    cap = history.thumb_cap if history.thumb_cap is not None else thumb_cap_bytes()
    return config_table({
        "database": info.path,
        "tasks": f"{info.tasks} ({info.starred} starred)",
        "size": f"{info.size_bytes / mb:.1f} MB",
        "search": info.search,
        "thumbnails": f"{info.thumbs} tasks, {info.thumb_bytes / mb:.1f} MB (cap for unstarred "
                      f"tasks: {cap / mb:.0f} MB, KIE_THUMBS_MAX_MB); {info.thumbs_dropped} "
                      "dropped",
        "backup": info.backup or "none (no history.jsonl from an earlier version)",
    }, "kie4o history", ("", ""))


def _history_export(history: HistoryStore, target: str) -> None:
    path = Path(target).expanduser()
    if path.suffix.lower() != ".jsonl":
        raise UsageError(f"%kie4o history --export: {target!r} is not a .jsonl file name")
    if path.resolve() == history.jsonl_path.resolve():
        raise UsageError(f"%kie4o history --export: {target} is the backup of the earlier "
                         "history; give another file name")
    if path.is_dir() or not path.absolute().parent.is_dir():
        raise UsageError(f"%kie4o history --export: cannot write {target} (not a file in an "
                         "existing folder)")
    try:
        count = history.export_jsonl(path)
    except OSError as exc:
        raise UsageError(f"%kie4o history --export: cannot write {target} "
                         f"({exc.strerror or exc})") from None
    print(f"kie4o: {count} task(s) written to {path} (one JSON object per line)")


def _credits(host: Host, args: argparse.Namespace) -> None:
    client = host.client()
    try:
        balance = client.credits()
    except KieError as exc:
        raise usage_error(exc, "%kie4o credits: ") from None
    if getattr(client, "demo", False):
        print(f"kie4o: {balance:g} credits — the demo server's pretend balance, not real "
              "credits (`%kie4o demo off` for your KIE.AI balance)")
    elif classjoin.joined(host) == client.base_url:
        # The class proxy answers with what the student has left (credits where the class
        # counts them, else images); its /class/me says both.
        left = classjoin.standing_now(client) or f"{balance:g} left in your class quota"
        print(f"kie4o: {left} ({client.base_url})")
    else:
        from ..api.prices import active_prices, format_credits
        from .costviews import what_it_buys

        buys = what_it_buys(balance, active_prices(), getattr(host, "model", "4o"))
        print(f"kie4o: {format_credits(balance)} credits" + (f" — {buys}" if buys else ""))


def _prices(host: Host, args: argparse.Namespace) -> Any:
    from ..api.prices import active_prices
    from .costviews import prices_table

    try:
        return prices_table(active_prices())
    except KieError as exc:
        raise usage_error(exc, "%kie4o prices: ") from None


def _spend(host: Host, args: argparse.Namespace) -> Any:
    from .costviews import parse_since, spend_table

    try:
        since = parse_since(args.since)
        return spend_table(host.history().cost_entries(demo=args.demo), since=since, by=args.by,
                           demo=args.demo)
    except KieError as exc:
        raise usage_error(exc, "%kie4o spend: ") from None


def _config(host: Host, args: argparse.Namespace) -> Any:
    client = host.client()
    rows = {
        "endpoint": client.base_url + (" (demo)" if host.demo.running else ""),
        "upload endpoint": client.upload_url,
        "API key": client.masked_key(),
        "output_dir": str(host.history().directory),
        "default_size": host.default_size,
        "timeout": f"{host.timeout:g} s",
        "poll_interval": f"{host.poll_interval:g} s",
        "embed": host.embed,
        "frontend": host.frontend,
    }
    pack = host.demo.pack if host.demo.running else None
    if pack is not None:
        rows["replay pack"] = (f"{pack.name}: {len(pack.tasks)} recorded prompt(s), "
                               f"{pack.image_count} image(s)")
    joined = classjoin.joined(host)
    if joined is not None and joined == client.base_url:
        rows["class"] = f"{joined} (`%kie4o class off` to leave)"
    return config_table(rows)


def _gallery(host: Host, args: argparse.Namespace) -> Any:
    per_page = _GALLERY_PAGE
    if args.count is not None:
        if not (args.count.isdigit() and int(args.count) > 0):
            raise UsageError(f"%kie4o gallery: {args.count!r} is not a positive count")
        per_page = int(args.count)
    if args.page < 1:
        raise UsageError(f"%kie4o gallery --page: {args.page} must be 1 or more")
    demo = True if args.demo else (False if args.live else None)
    entries, total = host.history().query(search=args.search, starred=args.starred,
                                          demo=demo, page=args.page, per_page=per_page,
                                          stopped_empty=args.all)
    query = "".join([f", matching {args.search!r}" if args.search else "",
                     ", starred" if args.starred else "",
                     ", demo" if args.demo else "", ", live" if args.live else ""])
    return workbench.gallery_view([workbench.item_of_entry(e) for e in entries], total=total,
                                  page=args.page, per_page=per_page, query=query)


def _star(host: Host, args: argparse.Namespace) -> None:
    value = options.unmark(args.task_id, args.objects) if args.task_id is not None else None
    if value is None or (isinstance(value, str) and not value.strip()):
        raise UsageError(_give_one_task_id(args.sub))
    history = host.history()
    ids = picks.task_ids(value, history, f"%kie4o {args.sub}")
    for task_id in ids:
        try:
            history.star(task_id, args.sub == "star")
        except KeyError:
            raise UsageError(f"%kie4o {args.sub} {task_id}: no such task in the history "
                             "(see `%kie4o gallery`)") from None
        except OSError as exc:
            raise UsageError(f"%kie4o {args.sub}: cannot write the history ({exc})") from None
    print(f"kie4o: {'starred' if args.sub == 'star' else 'unstarred'} {', '.join(ids)}")


def _items(host: Host, args: argparse.Namespace, sources: list[str]) -> list[workbench.Item]:
    """Tasks and sweeps from the notebook, or history ids, as workbench items: each task
    once (``$fox $fox[1]``, or a sweep and one of its tasks)."""
    found: list[workbench.Item] = []
    seen: set[str] = set()
    history = host.history()
    for raw in sources:
        value = options.unmark(raw, args.objects)
        if isinstance(value, TaskImage):
            value = value.task
        if isinstance(value, (Task, Sweep)):
            for task in value.tasks if isinstance(value, Sweep) else [value]:
                if _first(task.task_id, seen):
                    found.append(workbench.item_of_task(task))
            continue
        for task_id in picks.task_ids(value, history, f"%kie4o {args.sub}"):
            entry = history.get(task_id)
            assert entry is not None  # picks found it there
            if _first(task_id, seen):
                found.append(workbench.item_of_entry(entry))
    return found


def _first(task_id: str | None, seen: set[str]) -> bool:
    """Whether a task is met for the first time (one not yet sent is always its own)."""
    if task_id is None:
        return True
    if task_id in seen:
        return False
    seen.add(task_id)
    return True


def _once(ids: list[str]) -> list[str]:
    """Task ids in their first order, each once."""
    return list(dict.fromkeys(ids))


def _compare(host: Host, args: argparse.Namespace) -> Any:
    items = _items(host, args, args.sources)
    if args.parent:
        items = _with_parents(host, items)
    if len(items) < 2:
        raise UsageError("%kie4o compare: give two or more tasks (`$a $b`, a sweep, or "
                         "history ids), or one with --parent")
    return workbench.compare_view(items)


def _with_parents(host: Host, items: list[workbench.Item]) -> list[workbench.Item]:
    """Each item after the task(s) it was made from (from the history), each task once."""
    history = host.history()
    out: list[workbench.Item] = []
    seen: set[str] = set()
    for item in items:
        if not item.parents:
            raise UsageError(f"%kie4o compare --parent: {item.task_id} was made from no "
                             "earlier task (not an edit or a follow-up)")
        for parent in item.parents:
            entry = history.get(parent)
            if entry is None:
                raise UsageError(f"%kie4o compare --parent: {parent} (the parent of "
                                 f"{item.task_id}) is not in this history")
            if _first(parent, seen):
                out.append(workbench.item_of_entry(entry))
        if _first(item.task_id, seen):
            out.append(item)
    return out


def _rerun(host: Host, args: argparse.Namespace) -> None:
    value = options.unmark(args.source, args.objects)
    if isinstance(value, Sweep):  # the whole sweep: its own line and body
        if not value.source:
            raise UsageError("%kie4o rerun: that sweep was made from Python "
                             "(kie_jupyter.sweep); rerun one of its tasks, e.g. "
                             "`%kie4o rerun {sw.tasks[0]}`")
        host.shell.set_next_input(value.source, replace=False)
        print("kie4o: a new cell below holds the %%kie4o that made that sweep; edit and run it")
        return
    if isinstance(value, str) and value.lower().endswith(".png") and Path(value).is_file():
        found = read_provenance(value)
        if not found:
            raise UsageError(f"%kie4o rerun: {value} was not written by kie-jupyter (no "
                             "prompt or parameters in it; see `%kie4o info`)")
        params, prompt = found.get("parameters") or {}, found.get("prompt", "")
        model, source = found.get("model", "4o"), value
    else:
        item = _items(host, args, [args.source])[0]
        params, prompt, model, source = item.params, item.prompt, item.model, item.task_id
    cell = workbench.rerun_cell(params, prompt, model=model)
    host.shell.set_next_input(cell, replace=False)
    print(f"kie4o: a new cell below holds the %%kie4o that made {source}; edit and run it")


def _info(host: Host, args: argparse.Namespace) -> Any:
    path = Path(args.file).expanduser()
    if not path.is_file():
        raise UsageError(f"%kie4o info: {args.file}: no such file")
    try:
        found = read_provenance(path)
    except Exception as exc:
        raise UsageError(f"%kie4o info: {args.file}: not an image ({exc})") from None
    title, header = f"kie4o info — how {path.name} was made", ("field", "value")
    if not found:
        return config_table({"file": str(path), "provenance": "none (not written by "
                             "kie-jupyter, or written by another tool)"}, title, header)
    rows = {"file": str(path)}
    for key in ("prompt", "model", "task_id", "parents", "created", "demo", "parameters",
                "software"):
        if key in found:
            value = found[key]
            rows[key] = value if isinstance(value, str) else json.dumps(value)
    return config_table(rows, title, header)


def _export(host: Host, args: argparse.Namespace) -> None:
    out = Path(args.out).expanduser()
    kind = out.suffix.lower()
    if kind not in (".html", ".zip"):
        raise UsageError(f"%kie4o export: {args.out}: give a .html (contact sheet) or .zip "
                         "(full images and JSON) file name")
    history = host.history()
    if args.ids:
        entries = []
        ids = [task_id for raw in args.ids for task_id in picks.task_ids(
            options.unmark(raw, args.objects), history, "%kie4o export")]
        for task_id in _once(ids):  # $fox $fox[1]: the task once
            entry = history.get(task_id)
            if entry is None:
                raise UsageError(f"%kie4o export: {task_id!r} is not a task in the history")
            entries.append(entry)
    else:
        entries, _ = history.query(search=args.search, starred=args.starred, per_page=10**9)
    if not entries:
        raise UsageError("%kie4o export: no task matches; nothing written")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if kind == ".html":  # the saved images, large, where there are some
            items = [workbench.item_of_entry(e, full=True) for e in entries]
            out.write_text(workbench.contact_sheet(items, f"kie4o — {len(items)} task(s)"),
                           encoding="utf-8")
        else:
            items = [workbench.item_of_entry(e, full=True) for e in entries]
            out.write_bytes(workbench.export_zip(items, fetch=host.client().fetch_image))
    except OSError as exc:
        raise UsageError(f"%kie4o export: cannot write {args.out} ({exc.strerror or exc})"
                         ) from None
    print(f"kie4o: {len(entries)} task(s) exported to {out}")


_KINDS = (("generator", "makes images from a prompt (and edits, given -i)"),
          ("editor", "needs an input image (-i) and a prompt"),
          ("tool", "takes an input image (-i) and no prompt"))


def _models(host: Host, args: argparse.Namespace) -> Any:
    rows = []
    for kind, says in _KINDS:
        rows.append([f"— {kind}s —", says, "", ""])
        for spec in MODELS.values():
            if spec.kind != kind:
                continue
            # "1:1 / 3:2 / …" wraps between values, not inside one.
            options = describe(spec).split(": ", 1)[-1].split("; -n", 1)[0].replace("/", " / ")
            extras = [w for w, on in (("--seed", spec.takes_seed),
                                      ("--negative", spec.takes_negative)) if on]
            if extras:
                options += "; " + ", ".join(extras)
            if spec.notes:
                options += f" ({spec.notes})"
            rows.append([spec.name, options,
                         {"native": "in one task", "one task each": "a task each"}
                         .get(spec.variants, spec.variants), spec.doc])
    if args.all:
        rows.append(["— not registered —", "KIE's image models whose fields could not be "
                     "confirmed on KIE's pages, or that are not offered yet", "", ""])
        rows.extend([e.title, e.why_not or "", "", e.doc] for e in CATALOGUE if not e.model)
    title = "kie4o models (--model NAME)" + ("" if args.all else
                                            "; --all adds KIE's models not registered")
    return Table(title, ["model", "options", "-n", "checked against (docs.kie.ai)"], rows)


def _pack_needs_action(host: Host, args: argparse.Namespace) -> None:
    raise UsageError("%kie4o pack: give `export FILE.kiepack [--search TEXT] [ID …]` or "
                     "`show [FILE]`")


def _pack_export(host: Host, args: argparse.Namespace) -> None:
    replay.export(host, args.out, ids=args.ids, search=args.search, starred=args.starred)


def _pack_show(host: Host, args: argparse.Namespace) -> Any:
    return replay.show(host, args.file)


def _class(host: Host, args: argparse.Namespace) -> None:
    if args.url.strip().lower() == "off":
        if args.token_env or args.hub_token:
            raise UsageError("%kie4o class off takes no --token-env or --hub-token")
        classjoin.leave(host)
        return
    classjoin.join(host, args.url, token_env=args.token_env, hub_token=args.hub_token,
                   demo_off=lambda h: _demo_off(h, say=False))


# -- the parsers -------------------------------------------------------------------------------


def _pack_export_mistake(message: str) -> str:
    if "required" in message:
        return ("%kie4o pack export: give the pack's file name, e.g. "
                f"`%kie4o pack export lesson{PACK_SUFFIX} --search lighthouse`")
    return (f"%kie4o pack export: {message} (give FILE{PACK_SUFFIX} [--search TEXT] "
            "[--starred] [ID …])")


def _demo_mistake(message: str) -> str:
    if "--pack" in message:
        return ("%kie4o demo --pack: give the pack file, e.g. "
                f"`%kie4o demo --pack lesson{PACK_SUFFIX}`")
    return "%kie4o demo: use `%kie4o demo`, `%kie4o demo on` or `%kie4o demo off`"


def _history_mistake(message: str) -> str:
    if "--search" in message:
        return "%kie4o history --search: give the text to look for"
    if "--export" in message:
        return "%kie4o history --export: give the file to write, e.g. `--export tasks.jsonl`"
    return (f"%kie4o history: {message} (give [N] [--search TEXT], --export FILE.jsonl or "
            "--info)")


def parser() -> argparse.ArgumentParser:
    """The ``%kie4o`` parser: one subparser per subcommand (``%kie4o -h`` lists them)."""
    return _parsers()[0]


@functools.cache
def _parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``%kie4o`` parser and each subcommand's own parser, by name (built once)."""
    top = _Parser(prog="%kie4o", description="KIE.AI 4o Image subcommands; for generating, "
                  "see `%%kie4o?`.")
    subs = top.add_subparsers(dest="sub", metavar="SUBCOMMAND", parser_class=_Parser)
    by_name: dict[str, argparse.ArgumentParser] = {}

    def add(name: str, handler: Handler, summary: str, *,
            mistake: str | Callable[[str], str] | None = None) -> argparse.ArgumentParser:
        # Help strings are %-formatted by argparse: a literal % is written %%.
        sp = subs.add_parser(name, help=summary.replace("%", "%%"), description=summary,
                             mistake=mistake)
        sp.set_defaults(handler=handler, sub=name)
        by_name[name] = sp
        return sp

    add("login", _login, "ask for the API key with a hidden prompt; it is kept in memory "
        "only, never written to disk or to the notebook",
        mistake="%kie4o login takes no argument: the key is asked with a hidden prompt so "
                "it is never saved in the notebook")
    demo = add("demo", _demo, "turn demo mode on (the bundled mock server: synthetic images, "
               "no key, no credits) or off; --pack FILE answers a class's recorded prompts "
               "with their real images",
               mistake=_demo_mistake)
    demo.add_argument("mode", nargs="?", type=str.lower, choices=("on", "off"), default="on",
                      help="on (default) or off")
    demo.add_argument("--pack", metavar="FILE",
                      help=f"a replay pack ({PACK_SUFFIX}, made with `%%kie4o pack export`); "
                           f"default: ${PACK_ENV}")
    for name, handler, summary in (
        ("status", _status, "one snapshot of any task: status, progress, URLs"),
        ("resume", _resume, "follow a task to its end in a panel and bind it to _kie4o "
                            "(e.g. after a kernel restart)"),
    ):
        sp = add(name, handler, summary, mistake=_give_one_task_id(name))
        sp.add_argument("task_id", nargs="?", metavar="TASK_ID",
                        help="the task id (see %%kie4o history)")
    history = add("history", _history, "recent tasks: prompt, parameters, status, time, id",
                  mistake=_history_mistake)
    history.add_argument("count", nargs="?", metavar="N",
                         help=f"how many, newest first (default {_HISTORY_DEFAULT})")
    history.add_argument("--search", metavar="TEXT",
                         help="only tasks whose prompt contains TEXT (any case)")
    history.add_argument("--export", metavar="FILE.jsonl",
                         help="write every task to FILE.jsonl, one JSON object per line "
                              "(replaces FILE)")
    history.add_argument("--info", action="store_true",
                         help="the database: where, how many tasks, size, how search works, "
                              "thumbnails and their cap")
    add("credits", _credits, "the account's credit balance",
        mistake="%kie4o credits takes no argument")
    add("config", _config, "the effective settings, key masked; change them with "
        "%config Kie4o.<name> = value",
        mistake="%kie4o config takes no argument; change settings with "
                "`%config Kie4o.<name> = value`")
    gallery = add("gallery", _gallery, "past results as a thumbnail grid, newest first "
                  "(static: a saved notebook keeps it)")
    gallery.add_argument("count", nargs="?", metavar="N",
                         help=f"how many per page (default {_GALLERY_PAGE})")
    gallery.add_argument("--search", metavar="TEXT", help="prompts containing TEXT")
    gallery.add_argument("--starred", action="store_true", help="starred tasks only")
    which = gallery.add_mutually_exclusive_group()
    which.add_argument("--demo", action="store_true", help="demo tasks only")
    which.add_argument("--live", action="store_true", help="live tasks only")
    gallery.add_argument("--page", type=int, default=1, metavar="K", help="page K (from 1)")
    gallery.add_argument("--all", action="store_true",
                         help="also tasks stopped before they had an image (left out by "
                              "default: nothing to see)")
    for name, verb in (("star", "mark a task as starred (`%kie4o gallery --starred`)"),
                       ("unstar", "remove the star")):
        sp = add(name, _star, verb, mistake=_give_one_task_id(name))
        sp.add_argument("task_id", nargs="?", metavar="TASK_ID")
    compare = add("compare", _compare, "tasks or sweeps ($name) or history ids side by side: "
                  "prompt differences marked, parameters, images")
    compare.add_argument("sources", nargs="*", metavar="TASK")
    compare.add_argument("--parent", action="store_true",
                         help="show each task after the one it was made from (an edit, an "
                              "upscale…): before and after")
    rerun = add("rerun", _rerun, "put a new cell below with the %%kie4o line and prompt that "
                "made a task (a task, a history id, or a PNG written by this tool)")
    rerun.add_argument("source", metavar="SRC")
    info = add("info", _info, "how a PNG written by this tool was made (its provenance)")
    info.add_argument("file", metavar="FILE")
    export = add("export", _export, "a contact sheet (.html, opens offline) or a zip of full "
                 "images with provenance and one JSON per task (.zip)")
    export.add_argument("out", metavar="OUT")
    export.add_argument("ids", nargs="*", metavar="ID", help="these tasks (default: all)")
    export.add_argument("--search", metavar="TEXT", help="prompts containing TEXT")
    export.add_argument("--starred", action="store_true", help="starred tasks only")
    models = add("models", _models, "KIE's image models by kind (generators, editors, "
                 "tools): their options and allowed values, what -n does, and the doc page "
                 "each was checked against", mistake="%kie4o models takes only --all")
    models.add_argument("--all", action="store_true",
                        help="also KIE's image models that are not registered, and why")
    pack = add("pack", _pack_needs_action, "replay packs: `export` chosen tasks with their "
               "real images into one file; `show` what a pack holds",
               mistake=lambda m: f"%kie4o pack: {m} (give `export FILE{PACK_SUFFIX} "
                                 "[--search TEXT] [--starred] [ID …]` or `show [FILE]`)")
    actions = pack.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    pack_export = actions.add_parser(
        "export", help="write tasks (prompt, parameters, model, images) into FILE"
        f"{PACK_SUFFIX}", description="write chosen tasks of the history (prompt, parameters, "
        f"model and their real images) into one {PACK_SUFFIX} file for demo mode",
        mistake=_pack_export_mistake)
    pack_export.set_defaults(handler=_pack_export)
    pack_export.add_argument("out", metavar=f"FILE{PACK_SUFFIX}")
    pack_export.add_argument("ids", nargs="*", metavar="ID",
                             help="these tasks (default: all that match)")
    pack_export.add_argument("--search", metavar="TEXT", help="prompts containing TEXT")
    pack_export.add_argument("--starred", action="store_true", help="starred tasks only")
    pack_show = actions.add_parser(
        "show", help="the prompts a pack holds (default: the one demo mode serves)",
        description="the recorded prompts of a replay pack, with model, size and images",
        mistake="%kie4o pack show: give at most one pack file")
    pack_show.set_defaults(handler=_pack_show)
    pack_show.add_argument("file", nargs="?", metavar="FILE")
    joining = add("class", _class, "join a class proxy: its URL becomes this kernel's API and "
                  "upload endpoint and your class token its key (asked with a hidden prompt; "
                  "$JUPYTERHUB_API_TOKEN unasked only for a class on your hub); "
                  "`%kie4o class off` leaves",
                  mistake="%kie4o class: give the class's URL (`%kie4o class https://…`) or "
                          "`off`")
    joining.add_argument("url", metavar="URL", help="the class proxy's address, or off")
    joining.add_argument("--token-env", metavar="NAME",
                         help="read the token from this environment variable")
    joining.add_argument("--hub-token", action="store_true",
                         help="send your hub login ($JUPYTERHUB_API_TOKEN) to this class even "
                              "though it is not on your hub's address (it can act as you on "
                              "the hub: only for a class you trust)")
    add("prices", _prices, "KIE's prices in credits (and USD) for each model, each with "
        "the page it was read on and the date; %config Kie4o.prices adds your own file",
        mistake="%kie4o prices takes no argument")
    spend = add("spend", _spend, "what this history spent: KIE's reported credits where it "
                "reported them, else the estimate (≈)")
    spend.add_argument("--since", metavar="DATE", help="tasks created from DATE (2026-11-01)")
    spend.add_argument("--by", choices=("model", "day"), default="model",
                       help="group by model (default) or day")
    spend.add_argument("--demo", action="store_true",
                       help="the demo tasks instead (what they would have cost)")
    steps.add_parsers(add)
    assert tuple(by_name) == SUBCOMMANDS, "every subcommand has a parser, in order"
    return top, by_name
