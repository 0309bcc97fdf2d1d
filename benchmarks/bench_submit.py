"""Submit overhead: ``run_cell`` start -> the mock receives the generate request (no uploads).

A real IPython shell (:class:`TestingShell`) with ``%load_ext kie_jupyter`` runs
``%%kie4o --no-wait`` cells against an in-process :class:`MockKieServer`; the delay is the
mock's arrival time for the generate (its request log, ``time.monotonic()``) minus
``time.monotonic()`` just before ``run_cell``: same process, same clock. Each task is stopped
once its request has arrived, so no poller runs during the next cell. The first cell of each
front end is reported apart ("cold": first connection, first panel, ipywidgets import); it is
not a fresh kernel's first cell (the mock in this process has imported part of what it needs,
the widget cells come after the text ones): ``bench_firstcell.py`` measures that.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

from _common import KEY, emit, generate_arrival, median, mock_env, percentile
from IPython.utils.capture import capture_output

from kie_jupyter.api.ratelimit import SlidingWindowLimiter
from kie_jupyter.testing import MockKieServer
from kie_jupyter.testing.shell import TestingShell


@dataclass
class SubmitRow:
    """One front end: milliseconds from cell start to the generate request's arrival."""

    frontend: str
    runs: int
    median_ms: float
    p95_ms: float
    max_ms: float
    cold_ms: float  # the first cell with this front end
    cell_ms: float  # median wall time of run_cell itself


@dataclass
class SubmitResult:
    rows: list[SubmitRow] = field(default_factory=list, metadata={"item": SubmitRow})


def measure_submit(runs: int = 20, frontends: tuple[str, ...] = ("text", "widget")
                   ) -> SubmitResult:
    """``runs`` timed ``%%kie4o --no-wait`` cells per front end, after one cold cell each."""
    result = SubmitResult()
    with MockKieServer(api_key=KEY, duration=0.2, rate_limit=None, credits=1e9) as server, \
            mock_env(server):
        shell = TestingShell.instance()
        with capture_output():
            shell.run_cell("%load_ext kie_jupyter")
        magics = shell.magics_manager.registry["Kie4o"]
        # The process-wide submit limiter (20 per 10 s) would hold back the 21st cell by
        # seconds; the overhead measured here is ours, so this client gets a roomy one.
        magics.client().limiter = SlidingWindowLimiter(max_calls=10_000, period=1.0)
        for frontend in frontends:
            with capture_output():
                shell.run_cell(f"%config Kie4o.frontend = '{frontend}'")
            delays: list[float] = []
            cells: list[float] = []
            for i in range(runs + 1):
                prompt = f"submit overhead {frontend} #{i}"
                with capture_output():
                    start = time.monotonic()
                    shell.run_cell(f"%%kie4o --no-wait\n{prompt}")
                    cells.append(time.monotonic() - start)
                arrived = generate_arrival(server, prompt, 5.0)
                delays.append(arrived - start)
                task = shell.user_ns["_kie4o"]
                task.stop()
                task.wait(5)
            cold, warm = delays[0], delays[1:]
            result.rows.append(SubmitRow(
                frontend=frontend, runs=len(warm), median_ms=1000 * median(warm),
                p95_ms=1000 * percentile(warm, 95), max_ms=1000 * max(warm),
                cold_ms=1000 * cold, cell_ms=1000 * median(cells[1:]),
            ))
        with capture_output():
            shell.run_cell("%unload_ext kie_jupyter")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--frontends", default="text,widget")
    parser.add_argument("--json", action="store_true", help="end with a machine-readable line")
    args = parser.parse_args(argv)
    result = measure_submit(args.runs, tuple(f for f in args.frontends.split(",") if f))
    for r in result.rows:
        print(f"{r.frontend:7} median {r.median_ms:6.2f} ms  p95 {r.p95_ms:6.2f} ms  "
              f"max {r.max_ms:6.2f} ms  cold {r.cold_ms:6.2f} ms  (run_cell {r.cell_ms:.2f} ms, "
              f"{r.runs} runs)")
    if args.json:
        emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
