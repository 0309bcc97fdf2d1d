"""``kie4o``: the same engine from a shell, for single prompts and batches.

    kie4o "A red fox, watercolor" -s 3:2 -n 2 --save out/
    kie4o --batch prompts.txt --concurrency 4 --save out/      # one prompt per line
    kie4o --demo "try it with no key"                         # the bundled mock server
    kie4o --credits
    kie4o --resume TASK_ID --save out/
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from .client import KieClient
from .demo import DEMO_KEY, DemoServer
from .errors import KieError
from .history import HistoryStore
from .inputs import request_with_inputs, resolve_images, resolve_mask
from .models import VARIANTS, Size, TaskStatus
from .static import status_text
from .task import Task

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kie4o", description="KIE.AI 4o Image generation.")
    p.add_argument("prompt", nargs="?", default="", help="the prompt (or use --batch)")
    p.add_argument("-s", "--size", choices=[s.value for s in Size], default="1:1")
    p.add_argument("-n", "--variants", type=int, choices=list(VARIANTS), default=1)
    p.add_argument("-i", "--image", action="append", default=[], help="input image (≤ 5)")
    p.add_argument("-m", "--mask", default=None, help="mask for the one --image")
    p.add_argument("-e", "--enhance", action="store_true")
    p.add_argument("--save", default="kie4o_images", help="folder for the images")
    p.add_argument("--batch", type=Path, help="a text file with one prompt per line")
    p.add_argument("--concurrency", type=int, default=4, help="tasks at once (batch)")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--resume", metavar="TASK_ID", help="follow an existing task and save it")
    p.add_argument("--credits", action="store_true", help="print the balance and exit")
    p.add_argument("--demo", action="store_true", help="use the bundled mock server")
    return p


def _run(tasks: list[Task], concurrency: int) -> int:
    """Run tasks at most ``concurrency`` at a time; print one line as each ends."""
    gate = threading.Semaphore(max(concurrency, 1))
    lock = threading.Lock()
    failed = 0

    def one(task: Task) -> None:
        nonlocal failed
        with gate:
            task.run()
        with lock:
            ok = task.status is TaskStatus.SUCCESS
            failed += not ok
            where = ", ".join(task.saved_paths) if ok else ""
            print(f"{task.task_id or '-'}  {status_text(task)}  {where}".rstrip(), flush=True)

    threads = [threading.Thread(target=one, args=(t,), daemon=True) for t in tasks]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:
        for task in tasks:
            task.stop()
        submitted = [task.task_id for task in tasks if task.task_id]
        print(f"kie4o: interrupted; {len(submitted)} task(s) were submitted and go on at "
              f"KIE.AI (in the history; `kie4o --resume ID` to get them):", file=sys.stderr)
        for task_id in submitted:
            print(f"  {task_id}", file=sys.stderr)
        return 130
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kie4o`` command."""
    args = _parser().parse_args(argv)
    demo = DemoServer() if args.demo else None
    try:
        if demo is not None:
            url = demo.start()
            client = KieClient(DEMO_KEY, base_url=url, upload_url=url)
        else:
            client = KieClient()
        if args.credits:
            print(f"{client.credits():g} credits")
            return 0
        if not client.has_key:
            raise KieError("no API key: set KIE_API_KEY, or use --demo")
        history = HistoryStore()
        if args.resume:
            task = Task(None, client=client, task_id=args.resume, timeout=args.timeout,
                        save_dir=args.save, history=history)
            return _run([task], 1)
        prompts = [args.prompt] if not args.batch else [
            line.strip() for line in args.batch.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        images = resolve_images(args.image)
        mask = resolve_mask(args.mask, images)
        tasks = [
            Task(request_with_inputs(prompt, images, mask, size=args.size,
                                     variants=args.variants, enhance=args.enhance),
                 client=client, inputs=images, mask=mask, timeout=args.timeout,
                 save_dir=args.save, history=history)
            for prompt in prompts
        ]
        return _run(tasks, args.concurrency)
    except (KieError, OSError) as exc:
        print(f"kie4o: {exc}", file=sys.stderr)
        return 2
    finally:
        if demo is not None:
            demo.stop()


if __name__ == "__main__":
    sys.exit(main())
