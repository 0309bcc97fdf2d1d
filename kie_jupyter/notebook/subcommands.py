"""The ``%kie4o`` line magic: one argparse subparser and one handler per subcommand.

    %kie4o login                       the key, asked with a hidden prompt (memory only)
    %kie4o demo [on|off]               the bundled mock server
    %kie4o status TASK_ID              one snapshot of any task
    %kie4o resume TASK_ID              follow a task to its end (binds _kie4o)
    %kie4o history [N] [--search TEXT] recent tasks
    %kie4o credits                     the balance
    %kie4o config                      the effective settings, key masked

Each takes ``-h``, which prints its help (and ``%kie4o -h`` lists them). The line is split
like a shell line first, then ``$name`` and ``{expr}`` are filled word by word, as for the
cell magic's options. Every mistake is one ``UsageError`` line naming the subcommand.

The handlers get the ``Kie4o`` magics instance (its settings, client, history and tasks)
through the :class:`Host` protocol: this module never imports :mod:`.magics`, which imports it.
"""

from __future__ import annotations

import argparse
import functools
import getpass
from collections.abc import Callable
from typing import Any, NoReturn, Protocol

from IPython.core.error import StdinNotImplementedError, UsageError

from ..api.client import KieClient, check_key
from ..api.errors import KieConfigError, KieError, TaskNotFoundError
from ..engine.checks import check_timeout
from ..engine.history import HistoryEntry, HistoryStore
from ..engine.poller import PollSchedule
from ..engine.task import Task
from . import options
from .demo import BANNER, DemoServer
from .views import config_table, history_table, status_snapshot

__all__ = ["SUBCOMMANDS", "Host", "run", "parser"]

SUBCOMMANDS = ("login", "demo", "status", "resume", "history", "credits", "config")
#: ``%kie4o history`` with no count.
_HISTORY_DEFAULT = 20


class Host(Protocol):
    """What the handlers use of the ``Kie4o`` magics."""

    shell: Any
    demo: DemoServer
    timeout: float
    poll_interval: float
    embed: str
    default_size: str
    frontend: str
    _api_key: str | None
    _tasks: list[Task]
    _clients: dict[tuple[Any, ...], KieClient]

    def client(self) -> KieClient: ...

    def history(self) -> HistoryStore: ...

    def load_message(self, continued: bool = False) -> str: ...

    def _run_task(self, task: Task, *, out: str | None, wait: bool) -> None: ...


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
    args, _ = options.expand_words(words[1:], host.shell.user_ns, where=f"%kie4o {sub}",
                                   prefix=f"%kie4o {sub} ")
    try:
        # The subcommand's own parser, so that its mistakes and its -h are its own.
        namespace = _parsers()[1][sub].parse_args(args)
    except _HelpShown:
        return None
    return namespace.handler(host, namespace)


# -- the handlers ------------------------------------------------------------------------------


def _login(host: Host, args: argparse.Namespace) -> None:
    try:
        key = check_key(getpass.getpass("KIE.AI API key (hidden): "))
    except (StdinNotImplementedError, EOFError):
        raise UsageError("%kie4o login: this front end cannot ask for input (no terminal); "
                         "set the KIE_API_KEY environment variable instead") from None
    except KieConfigError as exc:
        raise options.usage_error(exc, "%kie4o login: ") from None
    if not key:
        raise UsageError("%kie4o login: no key entered")
    host._api_key = key
    print("kie4o: key kept in memory for this session (never written to disk).")


def _demo(host: Host, args: argparse.Namespace) -> None:
    if args.mode == "on":
        url = host.demo.start()
        print(BANNER.format(url=url))
        return
    was = host.demo.running
    demo_clients = [host._clients.pop(k) for k in list(host._clients) if k[0] == "demo"]
    for task in host._tasks:
        if task.client in demo_clients:
            task.stop()  # its server is going away
    for client in demo_clients:
        client.close()
    host.demo.stop()
    print("kie4o: demo mode off; " + host.load_message().removeprefix("kie4o: ")
          if was else "kie4o: demo mode was not on")


def _task_id(args: argparse.Namespace) -> str:
    task_id = (args.task_id or "").strip()
    if not task_id:
        raise UsageError(_give_one_task_id(args.sub))
    return task_id


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


def _lookup(host: Host, task_id: str, sub: str) -> tuple[KieClient, Any, HistoryEntry | None]:
    """The client, the API's record and the history entry of a task, or one error line."""
    entry = host.history().get(task_id)
    lost = (f"%kie4o {sub} {task_id}: a demo task, and the demo server that made it has "
            "restarted since (a new kernel or `%kie4o demo off`); demo tasks do not survive "
            "it — run its cell again")
    if _lost_demo_task(host, entry):
        raise UsageError(lost)
    client = host.client()
    try:
        record = client.record_info(task_id)  # an unknown id fails here, in one line
    except TaskNotFoundError as exc:
        if _lost_demo_task(host, entry, not_found=True):
            raise UsageError(lost) from None
        raise options.usage_error(exc, f"%kie4o {sub} {task_id}: ", task_id) from None
    except KieError as exc:
        raise options.usage_error(exc, f"%kie4o {sub} {task_id}: ", task_id) from None
    return client, record, entry


def _status(host: Host, args: argparse.Namespace) -> Any:
    task_id = _task_id(args)
    _, record, entry = _lookup(host, task_id, "status")
    return status_snapshot(task_id, record, entry)


def _resume(host: Host, args: argparse.Namespace) -> None:
    task_id = _task_id(args)
    try:
        timeout = check_timeout(host.timeout, "Kie4o.timeout")
    except KieError as exc:
        raise options.usage_error(exc) from None
    client, record, entry = _lookup(host, task_id, "resume")
    task = Task.resumed(task_id, client=client, entry=entry, snapshot=record,
                        timeout=timeout, embed=host.embed, history=host.history(),
                        schedule=PollSchedule(min_interval=host.poll_interval))
    host._run_task(task, out=None, wait=True)


def _history(host: Host, args: argparse.Namespace) -> Any:
    n = _HISTORY_DEFAULT
    if args.count is not None:
        if not (args.count.isdigit() and int(args.count) > 0):
            raise UsageError(f"%kie4o history: {args.count!r} is not a positive count or "
                             "--search TEXT")
        n = int(args.count)
    return history_table(host.history().recent(n, args.search), embed=host.embed != "none",
                         search=args.search)


def _credits(host: Host, args: argparse.Namespace) -> None:
    client = host.client()
    try:
        balance = client.credits()
    except KieError as exc:
        raise options.usage_error(exc, "%kie4o credits: ") from None
    if getattr(client, "demo", False):
        print(f"kie4o: {balance:g} credits — the demo server's pretend balance, not real "
              "credits (`%kie4o demo off` for your KIE.AI balance)")
    else:
        print(f"kie4o: {balance:g} credits")


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
    return config_table(rows)


# -- the parsers -------------------------------------------------------------------------------


def _history_mistake(message: str) -> str:
    if "--search" in message:
        return "%kie4o history --search: give the text to look for"
    return f"%kie4o history: {message} (give [N] [--search TEXT])"


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
               "no key, no credits) or off",
               mistake="%kie4o demo: use `%kie4o demo`, `%kie4o demo on` or "
                       "`%kie4o demo off`")
    demo.add_argument("mode", nargs="?", type=str.lower, choices=("on", "off"), default="on",
                      help="on (default) or off")
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
    add("credits", _credits, "the account's credit balance",
        mistake="%kie4o credits takes no argument")
    add("config", _config, "the effective settings, key masked; change them with "
        "%config Kie4o.<name> = value",
        mistake="%kie4o config takes no argument; change settings with "
                "`%config Kie4o.<name> = value`")
    assert tuple(by_name) == SUBCOMMANDS, "every subcommand has a parser, in order"
    return top, by_name
