"""``kie4o class …``: run the class proxy and manage its roster.

``serve`` runs the proxy on uvicorn; ``add-students`` (or ``add``), ``students``,
``add-quota``, ``credits``, ``expires``, ``models``, ``revoke``, ``reissue``, ``teacher-token``,
``pause`` and ``resume`` change or read the ledger (they work while the proxy runs: SQLite in
WAL mode lets both at once). Tokens are printed once, when they are made, and never again.
Every change is kept in the teacher's audit trail (the teacher page's "Teacher actions"). A
failure is one line on stderr: exit status 2 for a usage mistake, 1 for a ledger that cannot
be opened or used, or a port in use.
"""

from __future__ import annotations

import argparse
import csv
import errno
import os
import socket
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from ..api.errors import KieUsageError
from ..api.prices import format_credits, use_prices
from .budget import RESETS, ClassPolicy, parse_credits, parse_date, parse_models
from .ledger import Ledger, LedgerError, Student

__all__ = ["main"]

DEFAULT_DB = "kie-class.db"
DEFAULT_UPSTREAM = "https://api.kie.ai"
DEFAULT_UPLOAD_UPSTREAM = "https://kieai.redpandaai.co"


class _UsageError(Exception):
    """A mistake on the command line (exit status 2)."""


class _Failed(Exception):
    """The command could not be done: the ledger or the port (exit status 1)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _say(message: str) -> None:
    print(f"kie4o class: {message}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="kie4o class", description="A class proxy: share one KIE key with a "
                "class, with a quota per student. The key is read from KIE_API_KEY.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, help: str, aliases: Sequence[str] = ()) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help, aliases=list(aliases))
        c.add_argument("--db", default=os.environ.get("KIE_CLASS_DB", DEFAULT_DB),
                       help=f"the ledger file (default: $KIE_CLASS_DB or {DEFAULT_DB})")
        return c

    s = command("serve", "run the proxy")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on "
                   "(default 127.0.0.1; put TLS in front with a reverse proxy)")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--quota", type=int, default=20,
                   help="images for a JupyterHub user seen for the first time (default 20)")
    s.add_argument("--credits", type=_credits_arg, default=None, metavar="N",
                   help="each student's KIE credit budget, unless they have their own "
                   "(default: none)")
    s.add_argument("--class-credits", type=_credits_arg, default=None, metavar="N",
                   help="the whole class's KIE credit budget (default: none)")
    s.add_argument("--models", type=_models_arg, default=None, metavar="LIST",
                   help="the models students may use, e.g. 4o,nano-banana-2-lite "
                   "(default: every image model)")
    s.add_argument("--reset", choices=RESETS, default=None,
                   help="zero the used images and credits every day or week (UTC)")
    s.add_argument("--prices", default=os.environ.get("KIE_PRICES") or None, metavar="FILE",
                   help="a price file (JSON/TOML) over the package's table (default: "
                   "$KIE_PRICES)")
    s.add_argument("--upstream", default=os.environ.get("KIE_CLASS_UPSTREAM", DEFAULT_UPSTREAM),
                   help=f"KIE's API (default {DEFAULT_UPSTREAM})")
    s.add_argument("--upload-upstream",
                   default=os.environ.get("KIE_CLASS_UPLOAD_UPSTREAM", DEFAULT_UPLOAD_UPSTREAM),
                   help=f"KIE's File Upload API (default {DEFAULT_UPLOAD_UPSTREAM})")
    s.add_argument("--rate", type=int, default=20, help="submits per window for the whole "
                   "class (KIE's account limit: 20)")
    s.add_argument("--per", type=float, default=10.0, help="the window in seconds (10)")
    s.add_argument("--max-wait", type=float, default=20.0, help="longest a submit waits for "
                   "its turn before the answer is 429 with Retry-After (20 s)")
    s.add_argument("--hub", action="store_true", help="also accept JupyterHub users' API "
                   "tokens (asks the hub at $JUPYTERHUB_API_URL or --hub-api-url)")
    s.add_argument("--hub-api-url", default=os.environ.get("JUPYTERHUB_API_URL"))
    s.add_argument("--prefix", default=os.environ.get("JUPYTERHUB_SERVICE_PREFIX", ""),
                   help="serve under this path (default: $JUPYTERHUB_SERVICE_PREFIX)")
    s.add_argument("--forwarded-allow-ips", default=None, metavar="IPS",
                   help="show students' addresses from X-Forwarded-For sent by these "
                   "addresses in the access log (nothing is decided by address)")
    s.add_argument("--allow-callback", action="append", default=[], metavar="URL",
                   help="a callBackUrl starting with URL may be sent to KIE (repeatable); "
                   "default: callbacks are refused")
    s.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])

    a = command("add-students", "add students; prints each one's token once",
                aliases=["add"])
    a.add_argument("roster", nargs="?", type=Path,
                   help="a CSV with a 'name' column (or one name per line)")
    a.add_argument("--name", action="append", default=[], help="a student (repeatable)")
    a.add_argument("--quota", type=int, default=20, help="images each (default 20)")
    a.add_argument("--credits", type=_credits_arg, default=None, metavar="N",
                   help="a KIE credit budget each (default: the class's, from serve)")
    a.add_argument("--expires", type=_date_arg, default=None, metavar="DATE",
                   help="the last day (UTC) their tokens work, e.g. 2027-01-31")
    a.add_argument("--models", type=_models_arg, default=None, metavar="LIST",
                   help="the models they may use (default: the class's)")
    a.add_argument("--out", type=Path, help="write name,token to this CSV (made private) "
                   "instead of printing")
    command("students", "print each student's use")
    q = command("add-quota", "give a student more images (negative: take unused ones back)")
    q.add_argument("name")
    q.add_argument("images", type=int)
    c = command("credits", "give a student more KIE credits (negative: take unused ones "
                "back; a student with no budget gets one)")
    c.add_argument("name")
    c.add_argument("credits", type=float)
    e = command("expires", "set the last day (UTC) a student's token works")
    e.add_argument("name")
    e.add_argument("date", help="e.g. 2027-01-31, or never")
    m = command("models", "set the models a student may use")
    m.add_argument("name")
    m.add_argument("models", help="e.g. 4o,nano-banana-2-lite, or class (the class's)")
    r = command("revoke", "stop a student's token")
    r.add_argument("name")
    u = command("restore", "undo a revoke (the same token, or hub user, works again)")
    u.add_argument("name")
    i = command("reissue", "a new token for a student (the old one stops)")
    i.add_argument("name")
    command("teacher-token", "make (or replace) the teacher page's token; printed once")
    command("pause", "refuse new tasks for the whole class (running ones finish)")
    command("resume", "accept new tasks again")
    return p


def _credits_arg(text: str) -> float:
    try:
        return parse_credits(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _models_arg(text: str) -> tuple[str, ...]:
    try:
        return parse_models(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _date_arg(text: str) -> str:
    try:
        return parse_date(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _names(roster: Path | None, extra: Sequence[str]) -> list[str]:
    names: list[str] = []
    if roster is not None:
        try:
            text = roster.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise _UsageError(f"{roster}: {exc.strerror or exc}") from None
        rows = [row for row in csv.reader(text.splitlines()) if any(c.strip() for c in row)]
        column = 0
        if rows:
            header = [c.strip().lower() for c in rows[0]]
            if "name" in header:
                column = header.index("name")
                rows = rows[1:]
        for number, row in enumerate(rows, 1):
            if column >= len(row) or not row[column].strip():
                raise _UsageError(f"{roster}: row {number} has no name")
            names.append(row[column].strip())
    names.extend(n for n in extra)
    if not names:
        raise _UsageError("no students given: a roster file or --name NAME")
    return names


def _add_students(ledger: Ledger, args: argparse.Namespace) -> int:
    names = _names(args.roster, args.name)
    if args.quota < 0:
        raise _UsageError("--quota must be ≥ 0")
    out = None
    if args.out is not None:
        # Made (private, never over an existing file) before anyone is added: a student must
        # never be added whose token could not be shown.
        try:
            fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise _UsageError(f"{args.out} exists; tokens are never overwritten") from None
        except OSError as exc:
            raise _UsageError(f"{args.out}: {exc.strerror or exc}") from None
        out = os.fdopen(fd, "w", newline="", encoding="utf-8")
    try:
        tokens = ledger.add_students(names, args.quota, credits=args.credits,
                                     expires=args.expires, models=args.models)
    except BaseException:
        if out is not None:
            out.close()
            os.unlink(args.out)
        raise
    if out is not None:
        with out:
            writer = csv.writer(out)
            writer.writerow(["name", "token"])
            writer.writerows(tokens)
        _say(f"{len(tokens)} students added ({_each(args)} each); their tokens are in "
             f"{args.out} — hand each one out, then delete the file")
    else:
        writer = csv.writer(sys.stdout)
        writer.writerow(["name", "token"])
        writer.writerows(tokens)
        _say(f"{len(tokens)} students added ({_each(args)} each); the tokens above are "
             "shown only now")
    # Kept after the tokens are out: a failure here must not hide a token.
    ledger.note("cli", "add-students", detail=f"{len(tokens)} students ({_each(args)} each"
                f"{_extra_rules(args)}): " + ", ".join(name for name, _ in tokens))
    return 0


def _extra_rules(args: argparse.Namespace) -> str:
    expires = f", until {args.expires}" if args.expires else ""
    return expires + (", models " + ", ".join(args.models) if args.models else "")


def _each(args: argparse.Namespace) -> str:
    credits = f", {format_credits(args.credits)} credits" if args.credits is not None else ""
    return f"{args.quota} images{credits}"


def _students(ledger: Ledger) -> int:
    counts = ledger.task_counts()
    students = ledger.students()
    if not students:
        _say("no students yet: kie4o class add-students ROSTER.csv")
        return 0
    policy = ledger.policy()
    width = max(len(s.name) for s in students)
    print(f"{'student'.ljust(width)}  used/quota  {'credits used/budget':>19}  tasks")
    for s in students:
        flags = (" (hub)" if s.hub else "") + (" (revoked)" if s.revoked else "") + (
            f" (expires {s.expires})" if s.expires else "")
        print(f"{s.name.ljust(width)}  {f'{s.used}/{s.quota}':>10}  "
              f"{_credit_use(s, policy):>19}  {counts.get(s.id, 0):>5}{flags}")
    if policy.class_credits is not None:
        print(f"the class has used {format_credits(round(ledger.class_credits_used(), 2))} of "
              f"{format_credits(policy.class_credits)} credits")
    if ledger.paused:
        print("the class is paused")
    return 0


def _credit_use(student: Student, policy: ClassPolicy) -> str:
    budget = student.budget(policy)
    used = format_credits(round(student.credits_used, 2))
    return f"{used}/{format_credits(budget) if budget is not None else '-'}"


def _rules(policy: ClassPolicy) -> str:
    """``; 200 credits each, 1,000 for the class, models 4o, resets daily`` (or nothing)."""
    parts = []
    if policy.student_credits is not None:
        parts.append(f"{format_credits(policy.student_credits)} credits each")
    if policy.class_credits is not None:
        parts.append(f"{format_credits(policy.class_credits)} credits for the class")
    if policy.models is not None:
        parts.append("models " + ", ".join(policy.models))
    if policy.reset:
        parts.append(f"resets {policy.reset} (UTC)")
    return "".join(f"; {p}" for p in parts)


def _student_rules(ledger: Ledger, args: argparse.Namespace, student: Student) -> None:
    """``credits``, ``expires``, ``models``: one student's own rules."""
    if args.command == "credits":
        student = ledger.add_credits(student.id, args.credits)
        budget = format_credits(student.budget(ledger.policy()) or 0)
        ledger.note("cli", "credits", student.name,
                    f"{args.credits:+g} credits; budget now {budget}")
        _say(f"{student.name}: {format_credits(round(student.credits_used, 2))} of "
             f"{budget} credits used")
    elif args.command == "expires":
        never = args.date.strip().lower() == "never"
        student = ledger.set_expires(student.id, None if never else args.date)
        until = ("with no end date" if student.expires is None
                 else f"until {student.expires} (UTC) included")
        ledger.note("cli", "expires", student.name, until)
        _say(f"{student.name}: the token works {until}")
    else:
        same = args.models.strip().lower() == "class"
        student = ledger.set_models(student.id, None if same else args.models)
        shown = ", ".join(student.models) if student.models is not None else "the class's"
        ledger.note("cli", "models", student.name, shown)
        _say(f"{student.name}: models {shown}")


def _check_upstream(url: str, what: str) -> str:
    parts = urlsplit(url)
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _UsageError(f"{what}: {url!r} is not an http(s) URL")
    if parts.scheme == "http" and not local:
        raise _UsageError(f"{what}: the key would travel over plain http; use https")
    return url.rstrip("/")


def _callback_prefixes(urls: Sequence[str]) -> list[str]:
    """The ``--allow-callback`` prefixes, checked: https URLs with a host and a path."""
    out = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.netloc or not parts.path:
            raise _UsageError(f"--allow-callback {url!r}: give a full URL prefix with a "
                              "path, e.g. https://teacher.example.edu/kie-hook/")
        out.append(url)
    return out


def _serve(args: argparse.Namespace) -> int:
    key = os.environ.get("KIE_API_KEY", "").strip()
    if not key:
        raise _UsageError("set KIE_API_KEY in the proxy's environment (the teacher's KIE key; "
                          "never on the command line)")
    upstream = _check_upstream(args.upstream, "--upstream")
    upload = _check_upstream(args.upload_upstream, "--upload-upstream")
    if args.hub and not args.hub_api_url:
        raise _UsageError("--hub needs the hub's API URL: $JUPYTERHUB_API_URL or --hub-api-url")
    if args.rate < 1 or args.per <= 0 or args.max_wait <= 0:
        raise _UsageError("--rate must be ≥ 1, --per and --max-wait > 0")
    if args.quota < 0:
        raise _UsageError("--quota must be ≥ 0")
    args.allow_callback = _callback_prefixes(args.allow_callback)
    if args.prices:
        try:
            use_prices(args.prices)  # read once, checked now: a bad file stops here
        except KieUsageError as exc:
            raise _UsageError(str(exc)) from None
    policy = ClassPolicy(args.class_credits, args.credits, args.models, args.reset)
    try:
        import uvicorn  # noqa: F401 - the extra is there

        from . import serve  # noqa: F401 - and all it needs (starlette, httpx)
    except ImportError as exc:
        raise _UsageError(f"the class proxy needs its extra ({exc.name} is missing): "
                          "pip install 'kie-jupyter[class]'") from None
    sock = _listen(args.host, args.port)
    try:
        ledger = _open_ledger(args.db)
        try:
            return _run_server(args, ledger, sock, key, upstream, upload, policy)
        finally:
            ledger.close()
    finally:
        sock.close()


def _listen(host: str, port: int) -> socket.socket:
    from .serve import listen_socket

    try:
        return listen_socket(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise _Failed(f"port {port} on {host} is in use — is another class proxy still "
                          "running? Stop it, or choose another --port") from None
        raise _Failed(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _run_server(args: argparse.Namespace, ledger: Ledger, sock: socket.socket, key: str,
                upstream: str, upload: str, policy: ClassPolicy) -> int:
    from .app import build_app
    from .fairshare import FairShare
    from .forward import ClassProxy
    from .hub import HubIdentity
    from .serve import run_in_foreground

    if ledger.teacher_hash() is None:
        if sys.stdout.isatty():
            print(f"teacher token (shown once; sign in at /teacher): "
                  f"{ledger.new_teacher_token()}", flush=True)
            ledger.note("cli", "teacher-token", detail="made at the proxy's first start")
        else:
            _say("no teacher token yet: run `kie4o class teacher-token` in a terminal")
    ledger.set_policy(policy)  # here, not at the app's start: a ledger it fails on is one line
    proxy = ClassProxy(
        ledger=ledger, api_key=key, upstream=upstream, upload_upstream=upload,
        default_quota=args.quota,
        callbacks=tuple(args.allow_callback),
        fair=FairShare(args.rate, args.per, max_wait=args.max_wait),
        hub=HubIdentity(args.hub_api_url) if args.hub else None)
    _say(f"serving the class on http://{args.host}:{args.port}{args.prefix.rstrip('/')} "
         f"(ledger {args.db}; {len(ledger.students())} students{_rules(policy)})")
    # A hub's service stops with the hub: a killed hub's service must not keep the port.
    if not run_in_foreground(build_app(proxy, prefix=args.prefix), sock,
                             log_level=args.log_level,
                             forwarded_allow_ips=args.forwarded_allow_ips, with_parent=args.hub):
        _say("the class proxy did not start (see above)")
        return 1
    _say("stopped; the ledger is saved")
    return 0


def _open_ledger(db: str) -> Ledger:
    try:
        return Ledger(db)
    except (sqlite3.Error, OSError) as exc:
        raise _Failed(f"cannot open the class ledger {db}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """An OS or SQLite error in a few words, with the fix when it is a permission."""
    if not isinstance(exc, OSError):
        return str(exc)
    text = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM):
        text += " (the user running kie4o must be able to write its folder)"
    return text


def _manage(ledger: Ledger, args: argparse.Namespace) -> int:
    """The roster and class commands; each change is kept in the teacher's audit trail."""
    if args.command in ("add-students", "add"):
        return _add_students(ledger, args)
    if args.command == "students":
        return _students(ledger)
    if args.command == "teacher-token":
        print(f"teacher token (shown once; sign in at /teacher): "
              f"{ledger.new_teacher_token()}")
        ledger.note("cli", "teacher-token", detail="a new teacher token; the old one stops")
        return 0
    if args.command in ("pause", "resume"):
        ledger.set_paused(args.command == "pause")
        ledger.note("cli", args.command)
        _say("the class is paused: new tasks are refused" if ledger.paused
             else "the class is running")
        return 0
    student = ledger.student_named(args.name)
    if args.command == "add-quota":
        student = ledger.add_quota(student.id, args.images)
        ledger.note("cli", "add-quota", student.name,
                    f"{args.images:+d} images; quota now {student.quota}")
        _say(f"{student.name}: {student.used} of {student.quota} images used")
    elif args.command == "revoke":
        ledger.revoke(student.id)
        ledger.note("cli", "revoke", student.name)
        _say(f"{student.name}: token revoked")
    elif args.command == "restore":
        ledger.restore(student.id)
        ledger.note("cli", "restore", student.name)
        _say(f"{student.name}: access restored")
    elif args.command == "reissue":
        print(f"{student.name},{ledger.reissue(student.id)}")
        ledger.note("cli", "reissue", student.name, "a new token; the old one stops")
        _say(f"{student.name}: new token above (shown once); the old one is stopped")
    else:
        _student_rules(ledger, args, student)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``kie4o class …``; returns the exit code (0 done, 1 failed: the ledger or the port,
    2 bad usage). Every failure is one line on stderr."""
    try:
        args = _parser().parse_args(argv)
    except _UsageError as exc:
        _say(str(exc))
        return 2
    try:
        if args.command == "serve":
            return _serve(args)
        ledger = _open_ledger(args.db)
        try:
            return _manage(ledger, args)
        finally:
            ledger.close()
    except (_UsageError, LedgerError) as exc:
        _say(str(exc))
        return 2
    except _Failed as exc:
        _say(str(exc))
        return 1
    except sqlite3.Error as exc:  # the ledger failed while in use (locked, disk full, …)
        _say(f"the class ledger {args.db} failed: {exc}")
        return 1
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        _say(f"{_reason(exc)}{where}")
        return 1
    except KeyboardInterrupt:
        return 130
