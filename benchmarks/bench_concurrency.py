"""Concurrency: 20 ``%%kie4o --no-wait`` tasks at once, and a free cell while they poll.

Twenty cells run back to back through a real IPython shell (widget front end by default,
the notebook case), with durations spread over 30-120 s times ``scale`` on a
:class:`MockKieServer` that keeps the API's generate limit (20 per 10 s); the client keeps
its process-wide submit limiter (20 per 10 s), which 20 tasks fit. The ratio is the time
from the first cell's start until all 20 are SUCCESS, over the longest task's server
duration. While they poll, a trivial cell ``x = 1`` runs every ``probe_every`` seconds; its
``run_cell`` wall time is the "free cell" delay (compared with the same cell run idle).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

from _common import (
    KEY,
    duration_from_body,
    emit,
    mean,
    median,
    mock_env,
    percentile,
    prompt_with_duration,
    spread_durations,
)
from IPython.utils.capture import capture_output

from kie_jupyter import Task, TaskStatus
from kie_jupyter.testing import MockKieServer
from kie_jupyter.testing.shell import TestingShell


@dataclass
class ConcurrencyResult:
    """Seconds and milliseconds of one 20-task run."""

    scale: float
    frontend: str
    tasks: int
    succeeded: int
    longest: float  # the longest task's server duration, s
    total: float  # first cell start -> all SUCCESS, s
    ratio: float
    submit_span: float  # first cell start -> last generate request received, s
    mean_delay: float  # per task: SUCCESS - (generate received + duration), s
    max_delay: float
    polls: int  # record-info requests in all
    probes: int
    probe_median_ms: float
    probe_p95_ms: float
    probe_max_ms: float
    idle_median_ms: float  # the same trivial cell with nothing running
    longest_offset: float  # first cell start -> the longest task's generate received, s
    longest_delay: float  # the longest task: SUCCESS - (generate received + duration), s
    unscaled_estimate: float  # the ratio if the same absolute overhead met 30-120 s tasks


def _time_cell(shell: TestingShell, cell: str) -> float:
    start = time.monotonic()
    shell.run_cell(cell)
    return time.monotonic() - start


def measure_concurrency(scale: float = 0.05, tasks: int = 20, frontend: str = "widget",
                        probe_every: float = 0.1) -> ConcurrencyResult:
    """Run ``tasks`` ``--no-wait`` cells and probe the shell with ``x = 1`` until all end."""
    durations = spread_durations(tasks, scale, seed=11)
    with MockKieServer(api_key=KEY, duration=duration_from_body, credits=1e9) as server, \
            mock_env(server):
        shell = TestingShell.instance()
        with capture_output():
            shell.run_cell("%load_ext kie_jupyter")
            shell.run_cell(f"%config Kie4o.frontend = '{frontend}'")
            shell.run_cell("import ipywidgets")  # a warm kernel: no first-import cost
            # ...nor the engine's, the option parser's and requests' (%load_ext defers them
            # to the first use, which the submit benchmark reports as its "first cell").
            shell.run_cell("%%kie4o --dry-run\nwarm-up (nothing is sent)")
            shell.run_cell("%kie4o credits")  # the client's first request: no task made
        idle = [_time_cell(shell, "x = 1") for _ in range(30)]
        prompts = [prompt_with_duration(f"concurrency #{i}", d) for i, d in enumerate(durations)]
        running: list[Task] = []
        start = time.monotonic()
        with capture_output():
            for i, prompt in enumerate(prompts):
                shell.run_cell(f"%%kie4o --no-wait -o t{i}\n{prompt}")
                running.append(shell.user_ns[f"t{i}"])
        deadline = start + max(durations) + 60.0
        probes: list[float] = []
        while not all(t.done for t in running) and time.monotonic() < deadline:
            probes.append(_time_cell(shell, "x = 1"))
            time.sleep(probe_every)
        for t in running:
            t.wait(max(deadline - time.monotonic(), 0.0))
        finished = [t for t in running if t.status is TaskStatus.SUCCESS]
        end = max((t.finished_monotonic or deadline) for t in running)
        sent = {r.json["prompt"]: r.time for r in server.requests_to("generate")
                if isinstance(r.json, dict)}
        snapshot = server.tasks
        delays = [
            t.finished_monotonic - (sent[t.prompt] + snapshot[t.task_id]["duration"])
            for t in finished if t.finished_monotonic is not None and t.prompt in sent
        ]
        polls = len(server.requests_to("record-info"))
        slowest = running[durations.index(max(durations))]
        longest_offset = sent.get(slowest.prompt, float("nan")) - start
        longest_delay = (slowest.finished_monotonic or float("nan")) - (
            sent.get(slowest.prompt, float("nan")) + max(durations))
        for t in running:
            t.stop()
        with capture_output():
            shell.run_cell("%unload_ext kie_jupyter")
    longest = max(durations)
    total = end - start
    return ConcurrencyResult(
        scale=scale, frontend=frontend, tasks=tasks, succeeded=len(finished), longest=longest,
        total=total, ratio=total / longest,
        submit_span=max(sent.values(), default=start) - start,
        mean_delay=mean(delays), max_delay=max(delays, default=float("nan")), polls=polls,
        probes=len(probes), probe_median_ms=1000 * median(probes),
        probe_p95_ms=1000 * percentile(probes, 95),
        probe_max_ms=1000 * max(probes, default=float("nan")),
        idle_median_ms=1000 * median(idle),
        longest_offset=longest_offset, longest_delay=longest_delay,
        unscaled_estimate=1.0 + (total - longest) / (longest / scale),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--frontend", choices=("widget", "text"), default="widget")
    parser.add_argument("--json", action="store_true", help="end with a machine-readable line")
    args = parser.parse_args(argv)
    r = measure_concurrency(args.scale, args.tasks, args.frontend)
    print(f"{r.succeeded}/{r.tasks} SUCCESS in {r.total:.3f} s; longest {r.longest:.3f} s; "
          f"ratio {r.ratio:.3f}; submits spread over {r.submit_span * 1000:.1f} ms; "
          f"detection mean {r.mean_delay:.3f} s max {r.max_delay:.3f} s; {r.polls} polls")
    print(f"longest task: generate at +{r.longest_offset:.3f} s, SUCCESS {r.longest_delay:.3f} s "
          f"after the server's; same overhead on unscaled tasks: ratio ~{r.unscaled_estimate:.3f}")
    print(f"free cell: median {r.probe_median_ms:.2f} ms  p95 {r.probe_p95_ms:.2f} ms  "
          f"max {r.probe_max_ms:.2f} ms over {r.probes} runs (idle median "
          f"{r.idle_median_ms:.2f} ms)")
    if args.json:
        emit(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
