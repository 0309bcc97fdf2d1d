"""``kie4o``: the same engine from a shell, for single prompts and batches.

    kie4o "A red fox, watercolor" -s 3:2 -n 2 --save out/
    kie4o "a {red|blue} fox" -s 1:1,3:2 --dry-run              # a sweep: every request shown
    kie4o --batch prompts.txt --concurrency 4 --save out/      # one prompt per line
    kie4o --demo "try it with no key"                         # the bundled mock server
    kie4o --credits
    kie4o --resume TASK_ID --save out/

A prompt's ``{a|b}`` groups and comma lists in ``--model``, ``-s``, ``--resolution`` and
``--quality`` make a sweep, as in ``%%kie4o``: the engine's one plan
(:mod:`kie_jupyter.engine.plan`) expands and checks every request; a sweep of more than
8 tasks needs ``--yes``. Every option is checked before anything is sent (so a mistake costs
no credit), and every mistake is one line ``kie4o: …``. Exit codes: 0 every task done,
1 some failed, 2 bad usage (nothing sent), 130 interrupted.

Size: parsing, batch reading and resuming, and the honest Ctrl-C report; the batch part is
the next to move to a module of its own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .api.client import KieClient
from .api.errors import KieConfigError, KieError, KieUsageError
from .api.models import FallbackModel, Size, TaskStatus, is_http_url
from .api.prices import active_prices, use_prices
from .api.registry import backend_for_task_id, parse_param, resume_backend
from .engine.checks import check_save_dir, check_timeout
from .engine.history import HistoryEntry, HistoryStore
from .engine.plan import Plan, PlanCost, PlannedTask, Wanted, make_plan, resolve_inputs
from .engine.task import Task
from .fakeapi.demo import DEMO_KEY, DemoServer
from .hints import hint, status_text, with_hint
from .optiontable import (
    BY_DEST,
    MODELS,
    add_options,
    given_twice,
    name_the_flag,
    repeated_option,
)

__all__ = ["main", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_INTERRUPTED"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: After Ctrl-C, how long the tasks may take to settle (a generate in flight gets its id).
_SETTLE_SECONDS = 5.0
#: Where the images go when --save is not given.
_SAVE_DIR = "kie4o_images"
#: A sweep of more tasks than this needs --yes (the magic's default ``confirm_over``).
CONFIRM_OVER = 8
#: A run estimated over this many credits (or of unknown price) needs ``--yes``.
CONFIRM_OVER_CREDITS = 200.0
PRICES = "`kie4o --show-prices` shows the table"


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are a :class:`KieUsageError` (one line), not usage text."""

    def error(self, message: str) -> NoReturn:
        raise KieUsageError(with_hint(message, "options", "cli"))


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="kie4o", description="KIE.AI 4o Image generation.",
                epilog="Exit codes: 0 all done, 1 some failed, 2 bad usage (nothing sent), "
                       "130 interrupted.")
    p.add_argument("prompt", nargs="?", default="", help="the prompt (or use --batch)")
    # The options shared with %%kie4o come from the one table; only the defaults differ: a
    # shell run has no %config to fall back on, and its images must land somewhere.
    add_options(p, "cli", {
        # No default here: 4o gets 1:1 from the plan, every other model its own (a tool
        # has no size at all).
        "size": {"default": None, "help": f"{BY_DEST['size'].help} (default: "
                                          f"{Size.SQUARE.value} for 4o, else the model's own)"},
        # No argparse choices: ``kie4o --fallback "a fox"`` means the default model and a
        # prompt; _parse tells the two apart and checks the model.
        "fallback": {"choices": None},
        "save": {"default": _SAVE_DIR,
                 "help": f"{BY_DEST['save'].help} (default: {_SAVE_DIR})"},
        "timeout": {"default": 600.0},
        "yes": {"help": f"confirm a sweep of more than {CONFIRM_OVER} tasks, a run estimated "
                        f"over {CONFIRM_OVER_CREDITS:g} credits, or an unknown price"},
    })
    p.add_argument("--prices", metavar="FILE", default=os.environ.get("KIE_PRICES"),
                   help="a price file (JSON or TOML) overriding or extending KIE's prices "
                        "(default: $KIE_PRICES)")
    p.add_argument("--show-prices", action="store_true",
                   help="print the price table in use, with its sources, and exit")
    p.add_argument("--batch", type=Path, help="a text file with one prompt per line")
    p.add_argument("--concurrency", type=int, default=4, help="tasks at once (batch)")
    p.add_argument("--fresh", action="store_true",
                   help="with --batch: new tasks for every line, even those already done or "
                        "submitted by an earlier run")
    p.add_argument("--resume", metavar="TASK_ID", help="follow an existing task and save it")
    p.add_argument("--credits", action="store_true", help="print the balance and exit")
    p.add_argument("--demo", action="store_true", help="use the bundled mock server")
    return p


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse and check every option; nothing is sent or written yet."""
    twice = repeated_option(list(argv or []))
    if twice:
        raise KieUsageError(given_twice(twice))
    args = _parser().parse_args(argv)
    if args.fallback is not None and args.fallback not in MODELS:
        if args.prompt:
            raise KieUsageError(f"--fallback: {args.fallback!r} is not a fallback model; "
                                f"use one of {', '.join(MODELS)}")
        args.prompt, args.fallback = args.fallback, FallbackModel.FLUX_MAX.value
    given = [name for name, on in (("a prompt", bool(args.prompt)),
                                   ("--batch", args.batch is not None),
                                   ("--resume", args.resume is not None),
                                   ("--credits", args.credits)) if on]
    if len(given) > 1:
        raise KieUsageError(f"{given[0]} and {given[1]} cannot be used together; give one")
    if args.fresh and args.batch is None:
        raise KieUsageError("--fresh works with --batch (it re-runs every line)")
    if args.concurrency < 1:
        raise KieUsageError(f"--concurrency: {args.concurrency} must be at least 1")
    args.timeout = check_timeout(args.timeout, "--timeout")
    if args.callback is not None and not is_http_url(args.callback):
        raise KieUsageError(f"--callback: {args.callback!r} is not an http(s) URL")
    return args


def _read_batch(path: Path) -> list[tuple[int, str]]:
    """(line number, prompt) of each prompt in a batch file; blanks and ``#`` lines skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KieUsageError(f"--batch: {path}: no such file") from None
    except IsADirectoryError:
        raise KieUsageError(f"--batch: {path} is a directory, not a text file") from None
    except OSError as exc:
        raise KieUsageError(f"--batch: cannot read {path} ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise KieUsageError(
            f"--batch: {path} is not a text file (expected UTF-8, one prompt per line)"
        ) from None
    # Split on newlines only, so line numbers match an editor's (splitlines also splits on
    # form feeds and other separators).
    prompts = [(n, line.strip()) for n, line in enumerate(text.split("\n"), 1)
               if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise KieUsageError(f"--batch: no prompts in {path} (one prompt per line; # comments)")
    return prompts


def _wanted(args: argparse.Namespace, prompt: str, images: Sequence[Any], mask: Any) -> Wanted:
    """What one prompt of the run asks for, in the plan's words."""
    return Wanted(
        prompt, model=args.model, size=args.size, resolution=args.resolution,
        quality=args.quality, seed=args.seed, negative=args.negative,
        variants=args.variants, images=images, mask=mask,
        enhance=args.enhance, fallback=args.fallback is not None, fallback_model=args.fallback,
        callback_url=args.callback, output_format=args.output_format,
        params=dict(parse_param(p) for p in args.param) or None)


def _plans(args: argparse.Namespace) -> list[tuple[str, Plan]]:
    """Every plan of the run (one per prompt, with where it came from: ``FILE:LINE: `` for a
    batch line), each checked, so a bad batch line sends nothing at all. A prompt's ``{a|b}``
    groups and the comma lists make a sweep; ``-n`` is images per prompt."""
    if args.batch is None:
        try:
            return [("", make_plan(_wanted(args, args.prompt, args.image, args.mask)))]
        except KieUsageError as exc:
            raise _option_error(name_the_flag(str(exc))) from None
    prompts = _read_batch(args.batch)
    try:  # the images and mask are read once, for every line
        images, mask = resolve_inputs(_wanted(args, "", args.image, args.mask))
    except KieUsageError as exc:
        raise _option_error(name_the_flag(str(exc))) from None
    # (None when no model of the run takes a mask: each line's plan then refuses the one given)
    mask = mask if mask is not None else args.mask
    plans = []
    for n, prompt in prompts:
        where = f"{args.batch}:{n}: "
        try:
            plans.append((where, make_plan(_wanted(args, prompt, images, mask))))
        except KieUsageError as exc:
            raise _option_error(f"{where}{name_the_flag(str(exc))}") from None
    return plans


def _confirm(plans: list[tuple[str, Plan]], yes: bool, demo: bool) -> None:
    """A sweep of more than :data:`CONFIRM_OVER` tasks needs ``--yes`` (a dry run does not)."""
    for where, plan in plans:
        try:
            # Credits are checked on what will really be sent (_hold): a batch run again
            # skips or follows its lines already paid for.
            plan.confirm(CONFIRM_OVER, yes, setting="kie4o's limit", how="add --yes",
                         cost=plan.estimate(demo=demo) if plan.is_sweep else None,
                         credits=False)
        except KieUsageError as exc:
            raise _option_error(f"{where}{exc}") from None


def _hold(tasks: Sequence[Task], args: argparse.Namespace, demo: bool) -> None:
    """What the run will newly send (resumed and skipped batch lines are paid already) must
    be confirmed when over :data:`CONFIRM_OVER_CREDITS` or of unknown price, and must fit
    ``--max-credits``: one line with the figures, before anything is sent."""
    fresh = [t for t in tasks if t.task_id is None]
    cost = PlanCost(tuple(t.estimated_cost for t in fresh), tuple(t.model for t in fresh),
                    sum(int(t.params.get("variants") or 1) for t in fresh),
                    active_prices().usd_per_credit, demo)
    cost.confirm(args.yes, how="add --yes", over_credits=CONFIRM_OVER_CREDITS,
                 credits_setting="kie4o's limit", table=PRICES)
    cost.hold_to(max_credits=args.max_credits)


def _option_error(message: str) -> KieUsageError:
    """A bad option value: one line, with the pointer to ``kie4o --help``."""
    error = KieUsageError(message)
    error.fix = "options"
    return error


def _succeeded(task: Task) -> bool:
    """Done in full: every image downloaded and (with --save) written."""
    return (task.status is TaskStatus.SUCCESS and not task.save_error
            and len(task.numbered_images()) == len(task.urls))


def _line(task: Task, demo: bool) -> str:
    """The one line a task ends with: [demo], id, status in words (with the fix), paths."""
    text = status_text(task)
    if task.error is not None:
        fix = getattr(task.error, "fix", None)
        if task.status is TaskStatus.TIMED_OUT:
            fix = fix or "resume"
        text = with_hint(text, fix, "cli", task.task_id)
    mark = "[demo] " if demo else ""
    where = ", ".join(task.saved_paths)
    cost = task.cost
    spent = f"  [{cost}]" if task.task_id else ""
    notice = f"  ({task.notice})" if task.notice else ""
    return (f"{mark}{_label(task)}{task.task_id or '(not submitted)'}  {text}{spent}{notice}  "
            f"{where}").rstrip()


def _label(task: Task) -> str:
    """``[red / 3:2] ``: which combination of a sweep the task is (empty for one task)."""
    return f"[{task.labels['sweep']}] " if task.labels.get("sweep") else ""


def _batch_keys(save_dir: Path, requests: Sequence[Any], endpoint: str) -> list[str]:
    """What identifies each batch line across runs: the request, where its images go, the
    endpoint (a demo run never stands for a live one), and which occurrence it is (two
    identical lines, or the -n copies of a one-image model, are different paid tasks and
    must each find their own)."""
    seen: dict[str, int] = {}
    keys = []
    for request in requests:
        body = json.dumps({"save": str(save_dir), "request": request.to_dict(),
                           "endpoint": endpoint}, sort_keys=True)
        base = hashlib.sha256(body.encode()).hexdigest()[:20]
        seen[base] = seen.get(base, 0) + 1
        keys.append(f"{base}-{seen[base]}")
    return keys


def _files_exist(entry: HistoryEntry) -> bool:
    """Every image of the task is saved and still there (a partial download is not done)."""
    return (bool(entry.saved_paths) and len(entry.saved_paths) >= len(entry.urls)
            and all(Path(p).is_file() for p in entry.saved_paths))


def _batch_tasks(plans: list[Plan], *, fresh: bool, history: HistoryStore,
                 save_dir: Path, common: dict[str, Any], client: KieClient,
                 ) -> tuple[list[Task], int, int]:
    """The tasks of a batch run, and how many lines were skipped and resumed.

    A line whose task succeeded and whose files are still there is skipped; one whose task
    was submitted (and did not fail at KIE) is followed again by its id, on its own API
    family, never paid twice — also one that succeeded but whose images could not be
    downloaded or saved; the rest are new tasks (in demo mode too the unfinished ones: the
    earlier run's demo server is gone, and demo tasks cost nothing). ``fresh`` makes every
    line new.
    """
    latest: dict[str, HistoryEntry] = {}
    if not fresh:
        for earlier in history.labelled("batch"):
            key = earlier.labels.get("batch") if earlier.labels else None
            if key:
                latest[key] = earlier
    tasks: list[Task] = []
    skipped = resumed = 0
    planned = [(plan, p) for plan in plans for p in plan.tasks]
    # The demo server's address changes with each run (a free port): "demo" stands for it.
    keys = _batch_keys(save_dir, [p.request for _, p in planned],
                       "demo" if client.demo else client.base_url)
    for (plan, one), key in zip(planned, keys, strict=True):
        entry = latest.get(key)
        labels = {"batch": key}
        if one.labels:
            labels["sweep"] = " / ".join(one.labels)
        if entry is not None and entry.status == "success" and _files_exist(entry):
            skipped += 1
        elif entry is not None and entry.task_id and not client.demo and (
                entry.status not in ("failed", "") or entry.urls
                or entry.error_source != "kie"):
            # Submitted (so paid): follow it again — unless KIE itself said it failed. One
            # that failed here (a download, a timeout, a lost connection) may have succeeded
            # at KIE: its images are had by following it, not by paying again.
            resumed += 1
            backend = backend_for_task_id(entry.task_id, client, model=entry.model)
            tasks.append(Task.resumed(entry.task_id, entry=entry, labels=labels,
                                      backend=backend, client=client, **common))
        else:
            single = Plan(plan.axes, (one,), plan.images, plan.mask)
            tasks.extend(single.new_tasks(client, labels=_fixed(labels), **common))
    return tasks, skipped, resumed


def _fixed(labels: dict[str, str]) -> Callable[[PlannedTask], dict[str, str]]:
    """The same history tags for any planned task."""
    return lambda _: labels


def _run(tasks: list[Task], concurrency: int, demo: bool) -> int:
    """Run tasks at most ``concurrency`` at a time; print one line as each ends.

    ``concurrency`` workers take the tasks in order (a thousand-line batch makes a handful
    of threads, not a thousand); the client's limiter spaces the submissions at the
    account's rate, so a batch runs at that rate once ``concurrency`` covers the tasks in
    flight (the rate times a task's time: ``--concurrency 200`` for 20 per 10 s).
    """
    lock = threading.Lock()
    interrupted = threading.Event()
    started: set[int] = set()
    failed = 0
    todo = iter(tasks)

    def worker() -> None:
        nonlocal failed
        while True:
            with lock:
                task = None if interrupted.is_set() else next(todo, None)
                if task is None:
                    return  # no more, or interrupted: the rest are never submitted
                started.add(id(task))
            task.run()
            if interrupted.is_set():
                return  # the summary tells what became of it
            with lock:
                failed += not _succeeded(task)
                print(_line(task, demo), flush=True)

    threads = [threading.Thread(target=worker, name=f"kie4o-batch-{n}", daemon=True)
               for n in range(min(concurrency, len(tasks)))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:
        interrupted.set()
        for task in tasks:
            task.stop()
        _settle(threads)
        try:
            _report_interrupt(tasks, started, demo)
        except KeyboardInterrupt:  # a second Ctrl-C: the tasks are in the history
            _say("interrupted again; every submitted task is in the history "
                 "(`kie4o --resume ID`)")
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failed else EXIT_OK


def _settle(threads: list[threading.Thread]) -> None:
    """Give stopped tasks a moment to end (a generate in flight learns its task id)."""
    deadline = time.monotonic() + _SETTLE_SECONDS
    try:
        for t in threads:
            if t.ident is not None:  # a Ctrl-C may come before every worker has started
                t.join(max(deadline - time.monotonic(), 0.0))
    except KeyboardInterrupt:  # a second Ctrl-C: report what is known now
        pass


def _report_interrupt(tasks: list[Task], started: set[int], demo: bool) -> None:
    """After Ctrl-C, say what became of each task: only submitted, unfinished ones go on."""
    err = sys.stderr
    mark = "[demo] " if demo else ""
    print("kie4o: interrupted", file=err)
    never = 0
    for task in tasks:
        if task.status in (TaskStatus.SUCCESS, TaskStatus.FAILED):
            print(f"  {_line(task, demo)}", file=err)
        elif task.task_id:
            resume = hint("resume", "cli", task.task_id)
            charged = "" if demo else " (and is charged)"
            print(f"  {mark}{_label(task)}{task.task_id}  submitted and not finished: it goes "
                  f"on at {task.runs_at}{charged}; get it with {resume}", file=err)
        elif id(task) in started and not task.done:
            print(f"  {mark}{_label(task)}(submitting)  {task.prompt[:40]!r} was being sent: it "
                  f"may have reached {task.runs_at}"
                  + ("" if demo else "; check your KIE.AI dashboard"), file=err)
        else:
            never += 1
    if never:
        print(f"  {never} prompt(s) never submitted: nothing charged for them", file=err)


def _client(args: argparse.Namespace) -> tuple[KieClient, DemoServer | None]:
    """The client: the bundled mock server's with --demo, else KIE.AI's from the environment."""
    if not args.demo:
        return KieClient(), None
    demo = DemoServer()
    url = demo.start()
    return KieClient(DEMO_KEY, base_url=url, upload_url=url, demo=True), demo


def _credits(client: KieClient, demo: bool) -> int:
    balance = client.credits()
    if demo:
        print(f"{balance:g} credits [demo] — the demo server's pretend balance, "
              "not real credits")
    else:
        print(f"{balance:g} credits")
    return EXIT_OK


def _generate(args: argparse.Namespace) -> int:
    """Check everything, then submit the tasks (or follow the resumed one)."""
    if args.dry_run and args.resume:
        raise KieUsageError("--dry-run shows what a prompt would send; --resume sends "
                            "nothing new")
    plans = [] if args.resume else _plans(args)
    if not args.dry_run:
        _confirm(plans, args.yes, args.demo)
    client, demo = _client(args)
    try:
        if args.dry_run:
            print("\n\n".join(plan.dry_run(client) for _, plan in plans))
            if len(plans) > 1:  # a batch: the whole run's figures too
                whole = [plan.estimate(demo=client.demo) for _, plan in plans]
                run = PlanCost(tuple(c for w in whole for c in w.costs),
                               tuple(m for w in whole for m in w.models),
                               sum(w.images for w in whole), whole[0].usd_per_credit,
                               client.demo)
                print(f"\n(the whole batch: {run.counts()}; lines already done are skipped "
                      "when it runs)")
            return EXIT_OK
        if not client.has_key:
            raise KieConfigError("no API key: set KIE_API_KEY", fix="key")
        save_dir = check_save_dir(args.save, "--save")
        history = HistoryStore()
        common: dict[str, Any] = dict(timeout=args.timeout, save_dir=save_dir, history=history)
        if args.resume:
            entry = history.get(args.resume)
            backend, found = resume_backend(args.resume, client,
                                           entry.model if entry else None)
            if found:
                print(f"kie4o: {found}", file=sys.stderr)
            tasks = [Task.resumed(args.resume, entry=entry, backend=backend, client=client,
                                  **common)]
            return _run(tasks, args.concurrency, args.demo)
        if args.batch is None:
            ((_, plan),) = plans
            tasks = plan.new_tasks(client, **common)
            _hold(tasks, args, client.demo)
            return _run(tasks, args.concurrency, args.demo)
        tasks, skipped, resumed = _batch_tasks(
            [plan for _, plan in plans], fresh=args.fresh, history=history,
            save_dir=save_dir, common=common, client=client)
        _hold(tasks, args, client.demo)
        code = _run(tasks, args.concurrency, args.demo)
        if code != EXIT_INTERRUPTED:
            done = sum(1 for t in tasks if _succeeded(t))
            print(f"kie4o: {done} done, {len(tasks) - done} failed, {skipped} skipped "
                  f"(already done), {resumed} resumed", flush=True)
        return code
    finally:
        if demo is not None:
            demo.stop()


def _say(message: str) -> None:
    print(f"kie4o: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kie4o`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["class"]:  # the class proxy's commands (``kie4o -- class`` is a prompt)
        from .classroom.cli import main as class_main

        return class_main(argv[1:])
    try:
        args = _parse(argv)
        if args.prices:
            use_prices(args.prices)
        if args.show_prices:
            print("\n".join(active_prices().lines()))
            return EXIT_OK
        if args.credits:
            client, demo = _client(args)
            try:
                return _credits(client, args.demo)
            finally:
                if demo is not None:
                    demo.stop()
        return _generate(args)
    except KeyboardInterrupt:
        _say("interrupted before any task was submitted: nothing charged")
        return EXIT_INTERRUPTED
    except KieError as exc:
        _say(with_hint(str(exc), exc.fix, "cli", getattr(exc, "task_id", None)))
        return EXIT_USAGE if isinstance(exc, (KieUsageError, KieConfigError)) else EXIT_FAILED
    except OSError as exc:  # e.g. the history folder cannot be made
        where = f": {exc.filename}" if exc.filename else ""
        _say(f"{exc.strerror or exc}{where}")
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
