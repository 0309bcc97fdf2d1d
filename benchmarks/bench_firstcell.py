"""The first ``%%kie4o`` cell of a fresh kernel: cell start -> the mock receives the generate.

Issue 27's figure. Each sample is a new ipykernel (this interpreter, started by
jupyter_client) that runs ``%load_ext kie_jupyter`` and then one ``%%kie4o --no-wait`` cell;
the mock runs in this process, so the kernel imports nothing it would not import for KIE.
Cell start is ``time.monotonic()`` here as the cell's execute request is sent (the moment
the user presses Shift-Enter, ZMQ included); the mock stamps arrivals with the same clock
(CLOCK_MONOTONIC is system-wide on Linux). Two ways to reach the cell:

- *typed*: sent ``--pause`` s (0.5) after ``%load_ext``'s reply, as a person runs the next
  cell: the kernel was idle meanwhile (what the extension does with that time counts);
- *run all*: sent the moment the reply arrives, as Run All does: nothing idle in between.

``bench_submit.py`` reports the cells after the first; its "cold" cell runs in this
benchmark's own process, where the mock has imported much of what a kernel would not.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import KEY, emit, generate_arrival, median

from kie_jupyter.testing import MockKieServer
from kie_jupyter.testing.notebooks import write_kernelspec

MODES = ("typed", "run all")


@dataclass
class FirstCellRow:
    """One front end and way in: milliseconds from cell start to the generate's arrival."""

    frontend: str
    mode: str
    runs: int
    median_ms: float
    max_ms: float
    load_ms: float  # median round trip of the %load_ext cell itself
    samples: list[float] = field(default_factory=list)


@dataclass
class FirstCellResult:
    pause: float = 0.5
    rows: list[FirstCellRow] = field(default_factory=list, metadata={"item": FirstCellRow})


def _execute(kc: Any, code: str) -> float:
    """Run ``code``; the monotonic time its request was sent. Raises if the cell failed."""
    sent = time.monotonic()
    msg_id = kc.execute(code, store_history=False)
    while True:
        reply = kc.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"{code!r}: {reply['content'].get('evalue')}")
    return sent


def _one(server: MockKieServer, env: dict[str, str], ksm: Any, frontend: str, pause: float,
         n: int) -> tuple[float, float]:
    """A fresh kernel's first cell: (cell start -> arrival, %load_ext round trip), in s."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="kie-bench", kernel_spec_manager=ksm)
    km.start_kernel(env=env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        if frontend != "widget":  # a kernel's auto front end is the widget one
            _execute(kc, f"%config Kie4o.frontend = '{frontend}'")
        sent = _execute(kc, "%load_ext kie_jupyter")
        load = time.monotonic() - sent
        if pause:
            time.sleep(pause)
        prompt = f"first cell {frontend} {pause:g} #{n}"
        start = _execute(kc, f"%%kie4o --no-wait\n{prompt}")
        delay = generate_arrival(server, prompt, 10.0) - start
        _execute(kc, "_kie4o.stop(); _kie4o.wait(5)")
        return delay, load
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def measure_first_cell(runs: int = 5, frontends: tuple[str, ...] = ("widget", "text"),
                       pause: float = 0.5) -> FirstCellResult:
    """``runs`` fresh kernels per front end and way in (typed, run all)."""
    from jupyter_client.kernelspec import KernelSpecManager

    result = FirstCellResult(pause=pause)
    with tempfile.TemporaryDirectory(prefix="kie-bench-first-") as tmp, \
            MockKieServer(api_key=KEY, duration=0.2, rate_limit=None, credits=1e9) as server:
        root = Path(tmp) / "jupyter"
        write_kernelspec(root, "kie-bench")
        ksm = KernelSpecManager(kernel_dirs=[str(root / "kernels")])
        env = {k: v for k, v in os.environ.items() if not k.startswith("KIE_")}
        env.update(KIE_API_KEY=KEY, KIE_BASE_URL=server.url, KIE_UPLOAD_URL=server.url,
                   KIE_OUTPUT_DIR=str(Path(tmp) / "out"))
        for frontend in frontends:
            for mode in MODES:
                wait = pause if mode == "typed" else 0.0
                got = [_one(server, env, ksm, frontend, wait, n) for n in range(runs)]
                delays = [1000 * d for d, _ in got]
                result.rows.append(FirstCellRow(
                    frontend=frontend, mode=mode, runs=runs, median_ms=median(delays),
                    max_ms=max(delays), load_ms=1000 * median([lo for _, lo in got]),
                    samples=[round(d, 1) for d in delays]))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh kernels per row")
    parser.add_argument("--frontends", default="widget,text")
    parser.add_argument("--pause", type=float, default=0.5,
                        help="seconds between %%load_ext's reply and a typed first cell")
    parser.add_argument("--json", action="store_true", help="end with a machine-readable line")
    args = parser.parse_args(argv)
    result = measure_first_cell(args.runs, tuple(f for f in args.frontends.split(",") if f),
                                args.pause)
    for r in result.rows:
        print(f"{r.frontend:7} {r.mode:8} median {r.median_ms:6.1f} ms  max {r.max_ms:6.1f} ms"
              f"  (%load_ext cell {r.load_ms:.1f} ms; {r.samples})")
    if args.json:
        emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
