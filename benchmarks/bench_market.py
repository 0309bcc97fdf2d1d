"""Market-model detection: success → images available for a family with no progress field.

KIE's Market jobs (Nano Banana, Seedream, GPT Image 1.5…) report only a state, never a
progress, so the poller cannot predict a task's end from it. It forecasts from how long the
same model's earlier tasks took (``engine.poller.DurationBook``, fed by the task runner).

Model part (the figure with a target): the real ``poll_task`` and ``PollSchedule`` with the
fake server's own Market task state (``MarketTask``: a null first record, ``waiting`` →
``queuing`` → ``generating`` → ``success``, no progress) read through the real
``MarketRecord``, driven by a fake clock at scale 1: ``samples`` durations uniform in
30–120 s. "ours, learned" has seen ``train`` earlier tasks of the model (other durations from
the same range); "ours, first tasks" has seen none. Baselines: fixed 1/2/3 s loops.

Live part (the wiring, scaled): real ``Task`` objects of a Market model against a
MockKieServer, durations 30–120 s × ``scale``: a first round teaches the runner the model's
durations, a second round is measured (polls from the mock's log). The poller's own
constants (0.34 s floor) are not scaled, so this only shows that the learned schedule is used.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass, field

from _common import KEY, REAL_MAX, REAL_MIN, FakeClock, emit, mean, percentile

from kie_jupyter.api.market import MarketRecord
from kie_jupyter.engine.poller import DurationBook, PollSchedule, poll_task
from kie_jupyter.fakeapi._market import MarketTask
from kie_jupyter.fakeapi._state import TaskScript

MODEL = "nano-banana-2"
#: (label, fixed interval in seconds; None = ours)
BASELINES = (("fixed 1 s", 1.0), ("fixed 2 s", 2.0), ("fixed 3 s", 3.0))


@dataclass
class MarketRow:
    method: str
    tasks: int
    mean: float
    p95: float
    max: float
    polls: float


@dataclass
class MarketResult:
    samples: int
    train: int
    span: list[float]
    rows: list[MarketRow] = field(default_factory=list, metadata={"item": MarketRow})
    live_tasks: int = 0
    live_scale: float = 0.0
    live_succeeded: int = 0
    live_mean: float = float("nan")
    live_polls: float = float("nan")
    live_fixed2_polls: float = float("nan")  # a fixed 2 s × scale loop's polls, same tasks
    live_span: list[float] = field(default_factory=list)


def _sim_one(duration: float, interval: float | None,
             span: tuple[float, float] | None) -> tuple[float, int]:
    """(detection delay, polls) of one Market task of ``duration`` s on a fake clock."""
    clock = FakeClock()
    mock = MarketTask(task_id="sim", params={"model": "nano-banana-2"},
                      result_urls=["http://127.0.0.1/r.png"], created=0.0, create_ms=0,
                      duration=duration, script=TaskScript(), null_polls=1)

    def fetch(task_id: str) -> MarketRecord | None:
        data = mock.record(clock())
        return None if data is None else MarketRecord.from_api(data, task_id)

    if interval is None:
        for _record in poll_task(fetch, "sim", submitted_at=0.0, timeout=3600.0, clock=clock,
                                 sleep=clock.sleep, budget=None, schedule=PollSchedule(),
                                 span=span):
            pass
        return clock() - duration, mock.polls
    for _ in range(int(3600 / interval)):
        clock.sleep(interval)
        record = fetch("sim")
        if record is not None and record.finished:
            break
    return clock() - duration, mock.polls


def _row(method: str, results: list[tuple[float, int]]) -> MarketRow:
    delays = [r[0] for r in results]
    return MarketRow(method=method, tasks=len(results), mean=mean(delays),
                     p95=percentile(delays, 95), max=max(delays),
                     polls=mean([float(r[1]) for r in results]))


def model(samples: int = 400, train: int = 20, rounds: int = 8, seed: int = 7) -> MarketResult:
    """``rounds`` times: teach a fresh :class:`DurationBook` ``train`` durations, then run
    ``samples // rounds`` tasks with the span it learnt (so no one lucky set of earlier
    tasks decides the figure); baselines on the same tasks."""
    rng = random.Random(seed)
    per_round = max(samples // rounds, 1)
    learned: list[tuple[float, int]] = []
    spans = []
    durations: list[float] = []
    for _ in range(rounds):
        book = DurationBook()
        for _k in range(train):  # what the runner notes as each earlier task succeeds
            book.add(MODEL, rng.uniform(REAL_MIN, REAL_MAX))
        span = book.span(MODEL)
        spans.append(span)
        batch = [rng.uniform(REAL_MIN, REAL_MAX) for _ in range(per_round)]
        durations += batch
        learned += [_sim_one(d, None, span) for d in batch]
    rows = [_row("ours, learned", learned),
            _row("ours, first tasks", [_sim_one(d, None, None) for d in durations])]
    rows += [_row(label, [_sim_one(d, every, None) for d in durations])
             for label, every in BASELINES]
    lo = mean([s[0] for s in spans if s])
    hi = mean([s[1] for s in spans if s])
    return MarketResult(samples=len(durations), train=train, span=[lo, hi], rows=rows)


def live(result: MarketResult, tasks: int, scale: float) -> None:
    """Two rounds of ``tasks`` Market tasks against the mock: learn, then measure."""
    import os
    import tempfile

    os.environ["KIE_OUTPUT_DIR"] = tempfile.mkdtemp(prefix="kie-bench-market-")
    import kie_jupyter
    from kie_jupyter import KieClient, TaskStatus
    from kie_jupyter.api.ratelimit import SlidingWindowLimiter
    from kie_jupyter.engine.poller import durations as book
    from kie_jupyter.testing import MockKieServer

    rng = random.Random(11)
    plan = {f"market bench {k}": rng.uniform(REAL_MIN, REAL_MAX) * scale
            for k in range(2 * tasks)}
    with MockKieServer(api_key=KEY, duration=lambda b: plan.get(
            str((b.get("input") or {}).get("prompt") or b.get("prompt")), 1.0),
            rate_limit=None, credits=1e9) as server:
        client = KieClient(KEY, base_url=server.url, upload_url=server.url,
                           limiter=SlidingWindowLimiter(max_calls=10_000, period=1.0))
        prompts = list(plan)
        first, second = prompts[:tasks], prompts[tasks:]
        learning = [kie_jupyter.generate(p, model=MODEL, client=client, wait=False)
                    for p in first]  # a session's earlier tasks: the runner notes their times
        for t in learning:
            t.wait(REAL_MAX * scale + 60)
        span = book.span(f"market:{MODEL}")
        running = []
        for p in second:
            running.append(kie_jupyter.generate(p, model=MODEL, client=client, wait=False))
        for t in running:
            t.wait(REAL_MAX * scale + 60)
        sent = {}
        for r in server.requests_to("createTask"):
            if isinstance(r.json, dict):
                sent[str((r.json.get("input") or {}).get("prompt"))] = r.time
        ok = [t for t in running if t.status is TaskStatus.SUCCESS]
        delays = [t.finished_monotonic - (sent[t.prompt] + plan[t.prompt]) for t in ok
                  if t.finished_monotonic is not None and t.prompt in sent]
        polls = [sum(1 for r in server.requests_to("recordInfo")
                     if (r.query or {}).get("taskId") in (t.task_id, [t.task_id]))
                 for t in ok]
    result.live_tasks = tasks
    result.live_scale = scale
    result.live_succeeded = len(ok)
    result.live_mean = mean(delays)
    result.live_polls = mean([float(p) for p in polls])
    result.live_fixed2_polls = mean([float(int(plan[t.prompt] / (2 * scale)) + 1) for t in ok])
    result.live_span = list(span or ())


def measure_market(samples: int = 400, train: int = 20, live_tasks: int = 10,
                   scale: float = 0.05) -> MarketResult:
    result = model(samples, train)
    if live_tasks:
        live(result, live_tasks, scale)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--train", type=int, default=20)
    parser.add_argument("--live-tasks", type=int, default=10)
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--json", action="store_true", help="end with a machine-readable line")
    args = parser.parse_args(argv)
    r = measure_market(args.samples, args.train, args.live_tasks, args.scale)
    print(f"learned span (mean of the rounds) {r.span}")
    for row in r.rows:
        print(f"{row.method:18s} mean {row.mean:.3f} s  p95 {row.p95:.3f} s  max {row.max:.3f} s"
              f"  polls/task {row.polls:.1f}")
    if r.live_tasks:
        print(f"live ×{r.live_scale:g}: {r.live_succeeded}/{r.live_tasks} ok, span "
              f"{r.live_span}, mean delay {r.live_mean:.3f} s, polls/task {r.live_polls:.1f} "
              f"(fixed 2 s×{r.live_scale:g}: {r.live_fixed2_polls:.1f})")
    if args.json:
        emit(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
