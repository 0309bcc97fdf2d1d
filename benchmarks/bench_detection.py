"""Detection delay: server success -> images available, ours vs fixed-interval polling loops.

Live part: tasks with durations spread over 30-120 s times ``scale`` run on a
:class:`MockKieServer` (one server per progress curve). "Ours" is the real :class:`Task` with
its default :class:`PollSchedule`; the baselines are a plain loop (sleep, ``record_info``,
then download) at 10, 3 and 1 s -- scaled by the same factor as the durations. A task's
server success is the arrival of its generate request (the mock's request log) plus its
duration; "available" is when ``Task.status`` becomes SUCCESS (a listener records
``time.monotonic()``) or, for a baseline, when its downloads return. Polls per task are the
record-info requests the mock logged for the task id.

Model part: the same poller (``poll_task``) and the same mock task state (``MockTask``)
driven by a fake clock at scale 1 (real 30-120 s durations, no HTTP, no download), because
the poller's own constants (0.34 s floor, 1 s while progress is unknown, 10 s ceiling) are
not scaled in the live part.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import threading
import time
from dataclasses import dataclass, field

from _common import (
    CURVES,
    KEY,
    REAL_MAX,
    REAL_MIN,
    CurvedMockServer,
    CurvedTask,
    FakeClock,
    duration_from_body,
    emit,
    mean,
    percentile,
    prompt_with_duration,
    spread_durations,
)

from kie_jupyter import KieClient, Task, TaskStatus
from kie_jupyter.api.models import GenerationRequest, TaskRecord
from kie_jupyter.api.ratelimit import SlidingWindowLimiter
from kie_jupyter.engine.poller import poll_task
from kie_jupyter.fakeapi._state import TaskScript

#: (label, nominal interval in unscaled seconds; None = ours)
METHODS: tuple[tuple[str, float | None], ...] = (
    ("ours (adaptive)", None),
    ("fixed 10 s", 10.0),
    ("fixed 3 s", 3.0),
    ("fixed 1 s", 1.0),
)


@dataclass
class DetectionRow:
    """One method under one progress curve: delays in seconds, polls per task."""

    curve: str
    method: str
    interval: float | None  # seconds between polls as run (None: adaptive)
    tasks: int
    mean: float
    p95: float
    max: float
    polls: float
    failures: int = 0
    achieved: float | None = None  # mean seconds between polls actually seen by the mock


@dataclass
class DetectionResult:
    """Live rows (scaled durations, real seconds) and model rows (unscaled, fake clock)."""

    scale: float
    live: list[DetectionRow] = field(default_factory=list, metadata={"item": DetectionRow})
    model: list[DetectionRow] = field(default_factory=list, metadata={"item": DetectionRow})


# -- live ---------------------------------------------------------------------------------------

def _client(url: str) -> KieClient:
    # A private, roomy submit limiter: the detection phases submit more than 20 tasks per 10 s
    # and the submit limiter has nothing to do with detection.
    return KieClient(KEY, base_url=url, upload_url=url,
                     limiter=SlidingWindowLimiter(max_calls=10_000, period=1.0))


def _fixed_loop(client: KieClient, prompt: str, interval: float, deadline: float,
                out: dict[str, tuple[str, float]]) -> None:
    """The baseline: submit, then sleep ``interval`` and query until done; then download."""
    task_id = client.generate(GenerationRequest(prompt=prompt))
    while time.monotonic() < deadline:
        time.sleep(interval)
        record = client.record_info(task_id)
        if record is not None and record.finished and record.urls:
            images = [client.fetch_image(u) for u in record.urls]
            if images:
                out[prompt] = (task_id, time.monotonic())
            return


def _run_ours(client: KieClient, prompts: list[str], deadline: float,
              out: dict[str, tuple[str, float]]) -> None:
    tasks: list[Task] = []
    for prompt in prompts:
        task = Task(GenerationRequest(prompt=prompt), client=client,
                    timeout=max(deadline - time.monotonic(), 1.0))

        def on_change(t: Task, prompt: str = prompt) -> None:
            if t.status is TaskStatus.SUCCESS and prompt not in out:
                out[prompt] = (str(t.task_id), time.monotonic())

        task.subscribe(on_change)
        tasks.append(task.start())
    for task in tasks:
        task.wait(max(deadline - time.monotonic(), 0.0))
    for task in tasks:
        task.stop()


def _run_fixed(client: KieClient, prompts: list[str], interval: float, deadline: float,
               out: dict[str, tuple[str, float]]) -> None:
    threads = [
        threading.Thread(target=_fixed_loop, args=(client, p, interval, deadline, out),
                         daemon=True)
        for p in prompts
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(deadline - time.monotonic(), 0.0) + 5.0)


def _live_curve(curve: str, durations: list[float], scale: float) -> list[DetectionRow]:
    rows: list[DetectionRow] = []
    with CurvedMockServer(api_key=KEY, duration=duration_from_body, curve=CURVES[curve],
                          rate_limit=None, credits=1e9) as server:
        for method, nominal in METHODS:
            client = _client(server.url)
            prompts = [prompt_with_duration(f"detection {curve} {method} #{i}", d)
                       for i, d in enumerate(durations)]
            deadline = time.monotonic() + max(durations) + 30.0
            done: dict[str, tuple[str, float]] = {}
            if nominal is None:
                _run_ours(client, prompts, deadline, done)
            else:
                _run_fixed(client, prompts, nominal * scale, deadline, done)
            client.close()
            sent = {r.json["prompt"]: r.time for r in server.requests_to("generate")
                    if isinstance(r.json, dict)}
            snapshot = server.tasks
            polls_by_id: dict[str, int] = {}
            last_poll: dict[str, float] = {}
            for r in server.requests_to("record-info"):
                tid = r.query.get("taskId", "")
                polls_by_id[tid] = polls_by_id.get(tid, 0) + 1
                last_poll[tid] = r.time
            delays: list[float] = []
            polls: list[int] = []
            spacing: list[float] = []
            for prompt in prompts:
                if prompt not in done or prompt not in sent:
                    continue
                task_id, available = done[prompt]
                success = sent[prompt] + snapshot[task_id]["duration"]
                delays.append(available - success)
                polls.append(polls_by_id.get(task_id, 0))
                if polls[-1]:
                    spacing.append((last_poll[task_id] - sent[prompt]) / polls[-1])
            rows.append(DetectionRow(
                curve=curve, method=method,
                interval=None if nominal is None else nominal * scale,
                tasks=len(delays), mean=mean(delays), p95=percentile(delays, 95),
                max=max(delays, default=float("nan")), polls=mean(polls),
                failures=len(prompts) - len(delays), achieved=mean(spacing),
            ))
    return rows


# -- model (fake clock, unscaled) ---------------------------------------------------------------

def _sim_one(curve: str, duration: float, interval: float | None) -> tuple[float, int]:
    """(detection delay, polls) of one task of ``duration`` s on a fake clock."""
    clock = FakeClock()
    mock = CurvedTask(task_id="sim", params={}, result_urls=["http://127.0.0.1/r.png"],
                      created=0.0, create_ms=0, duration=duration, script=TaskScript(),
                      null_polls=1, curve=CURVES[curve])

    def fetch(task_id: str) -> TaskRecord | None:
        data = mock.record(clock(), "resultUrls")
        return None if data is None else TaskRecord.from_api(data, task_id)

    if interval is None:
        for _record in poll_task(fetch, "sim", submitted_at=0.0, timeout=3600.0, clock=clock,
                                 sleep=clock.sleep, budget=None):
            pass
        return clock() - duration, mock.polls
    for _ in range(int(3600 / interval)):
        clock.sleep(interval)
        record = fetch("sim")
        if record is not None and record.finished:
            break
    return clock() - duration, mock.polls


def model_rows(curves: list[str], samples: int = 400, seed: int = 7) -> list[DetectionRow]:
    """The unscaled model: ``samples`` durations uniform in 30..120 s per curve and method."""
    rng = random.Random(seed)
    durations = [rng.uniform(REAL_MIN, REAL_MAX) for _ in range(samples)]
    rows = []
    for curve in curves:
        for method, nominal in METHODS:
            results = [_sim_one(curve, d, nominal) for d in durations]
            delays = [r[0] for r in results]
            rows.append(DetectionRow(
                curve=curve, method=method, interval=nominal, tasks=len(delays),
                mean=mean(delays), p95=percentile(delays, 95), max=max(delays),
                polls=mean([r[1] for r in results]),
            ))
    return rows


def measure_detection(scale: float = 0.05, tasks: int = 16,
                      curves: tuple[str, ...] = ("linear", "ease-in", "ease-out"),
                      model_curves: tuple[str, ...] = ("linear", "ease-in", "ease-out"),
                      ) -> DetectionResult:
    """Run the live phases (one per curve and method, tasks concurrent) and the model."""
    durations = spread_durations(tasks, scale)
    live: list[DetectionRow] = []
    for curve in curves:
        live.extend(_live_curve(curve, durations, scale))
    return DetectionResult(scale=scale, live=live, model=model_rows(list(model_curves)))


def _fmt(row: DetectionRow) -> str:
    every = "adaptive" if row.interval is None else f"every {row.interval:g} s"
    return (f"{row.curve:9} {row.method:16} {every:15} mean {row.mean:6.3f} s  "
            f"p95 {row.p95:6.3f} s  max {row.max:6.3f} s  polls/task {row.polls:6.1f}"
            + (f"  (one per {row.achieved:.3f} s)" if row.achieved else "")
            + (f"  FAILED {row.failures}" if row.failures else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--curves", default="linear,ease-in,ease-out")
    parser.add_argument("--json", action="store_true", help="end with a machine-readable line")
    args = parser.parse_args(argv)
    curves = tuple(c for c in args.curves.split(",") if c)
    unknown = [c for c in curves if c not in CURVES]
    if unknown or not math.isfinite(args.scale) or args.scale <= 0:
        parser.error(f"bad --curves {unknown} or --scale")
    result = measure_detection(args.scale, args.tasks, curves)
    print(f"live, durations 30-120 s x {args.scale:g}:")
    for row in result.live:
        print("  " + _fmt(row))
    print("model, unscaled (fake clock):")
    for row in result.model:
        print("  " + _fmt(row))
    if args.json:
        emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
