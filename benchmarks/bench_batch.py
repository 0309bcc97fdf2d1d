"""A 1,000-prompt ``kie4o --batch`` at the account's full rate: wall time ÷ (prompts ÷ rate).

The real ``kie4o`` command (``cli.main``, in this process) runs a batch file against a
MockKieServer that keeps an account limit of ``20 × speed`` generate requests per 10 s (the
API's 20 per 10 s, sped up so the run is short); the client's own limits are sped up by the
same factor (its submit limiter, and its process-wide poll budget, which a full-rate batch
would otherwise meet first). Task durations are 30–120 s × ``scale`` (small next to the run,
as the real ones are next to a 1,000-prompt batch at 2 per second). ``--concurrency`` covers
the tasks in flight (one window's worth and more). The figure is the batch's wall time
(``main`` called → returned) over ``prompts ÷ rate``; every task must succeed, and the mock's
log is checked for any window holding more than the limit (a 429 would have been retried).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import KEY, emit, spread_durations

LIMIT, WINDOW = 20, 10.0  # the API's: generate requests per window, seconds


@dataclass
class BatchResult:
    prompts: int
    speed: float  # the account's limit, sped up by this factor
    rate: float  # generate requests per second allowed (20 × speed / 10)
    concurrency: int
    scale: float
    wall: float
    ideal: float  # prompts / rate
    ratio: float
    succeeded: int
    refused: int  # 429s the mock answered (each retried)
    max_in_window: int  # most generate requests the mock saw in any window
    polls: int


def measure_batch(prompts: int = 1000, speed: float = 10.0, scale: float = 0.01,
                  concurrency: int = 250) -> BatchResult:
    from kie_jupyter import cli
    from kie_jupyter.api.ratelimit import submit_limiter
    from kie_jupyter.engine.poller import poll_budget
    from kie_jupyter.testing import MockKieServer

    limit = round(LIMIT * speed)
    durations = spread_durations(prompts, scale, seed=5)
    by_prompt = {f"batch prompt {k:04d}, a lighthouse at dusk": d
                 for k, d in enumerate(durations)}
    # The client's limits, sped up with the account's (the objects every client shares).
    submit_limiter.max_calls = limit
    poll_budget.max_calls = round(poll_budget.max_calls * speed)
    with MockKieServer(api_key=KEY, duration=lambda b: by_prompt.get(b.get("prompt"), 1.0),
                       rate_limit=(limit, WINDOW), credits=1e12,
                       image_long_side=256) as server, \
            tempfile.TemporaryDirectory(prefix="kie-bench-batch-",
                                        ignore_cleanup_errors=True) as tmp:
        batch = Path(tmp) / "prompts.txt"
        batch.write_text("\n".join(by_prompt) + "\n", encoding="utf-8")
        saved = {k: os.environ.get(k) for k in ("KIE_API_KEY", "KIE_BASE_URL",
                                                 "KIE_UPLOAD_URL", "KIE_OUTPUT_DIR", "KIE_DEMO")}
        os.environ.update(KIE_API_KEY=KEY, KIE_BASE_URL=server.url, KIE_UPLOAD_URL=server.url,
                          KIE_OUTPUT_DIR=str(Path(tmp) / "history"))
        os.environ.pop("KIE_DEMO", None)
        out = io.StringIO()
        try:
            start = time.monotonic()
            with contextlib.redirect_stdout(out):
                code = cli.main(["--batch", str(batch), "--save", str(Path(tmp) / "out"),
                                 "--concurrency", str(concurrency), "--timeout", "300",
                                 "--yes"])
            wall = time.monotonic() - start
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        times = sorted(r.time for r in server.requests_to("generate"))
        accepted = sorted(t["created"] if "created" in t else 0.0
                          for t in server.tasks.values())
        refused = len(times) - len(server.tasks)
        polls = len(server.requests_to("record-info"))
    del accepted
    most = 0
    j = 0
    for i, t in enumerate(times):  # requests arriving within one window (incl. refused)
        while times[j] <= t - WINDOW:
            j += 1
        most = max(most, i - j + 1)
    summary = out.getvalue().strip().splitlines()[-1] if out.getvalue().strip() else ""
    succeeded = int(summary.split(" done")[0].split()[-1]) if " done" in summary else 0
    if code not in (0, 1):
        raise RuntimeError(f"kie4o exited {code}: {summary}")
    rate = limit / WINDOW
    ideal = prompts / rate
    return BatchResult(prompts=prompts, speed=speed, rate=rate, concurrency=concurrency,
                       scale=scale, wall=wall, ideal=ideal, ratio=wall / ideal,
                       succeeded=succeeded, refused=refused, max_in_window=most, polls=polls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--concurrency", type=int, default=250)
    parser.add_argument("--json", action="store_true", help="end with a machine-readable line")
    args = parser.parse_args(argv)
    r = measure_batch(args.prompts, args.speed, args.scale, args.concurrency)
    print(f"{r.succeeded}/{r.prompts} done in {r.wall:.2f} s at {r.rate:g}/s (ideal "
          f"{r.ideal:.1f} s): ratio {r.ratio:.3f}; {r.refused} refused (429), at most "
          f"{r.max_in_window} in a {WINDOW:g} s window (limit {round(LIMIT * r.speed)}); "
          f"{r.polls} polls")
    if args.json:
        emit(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
