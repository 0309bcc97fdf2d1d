"""Memory: resident growth after 100 finished tasks, over the bytes of their images.

The mock runs in this process; the tasks run in a fresh child interpreter (so the mock's
own memory, its rendered PNGs included, is not counted). The child warms up with a few
tasks (discarded), takes its RSS (``/proc/self/statm``), runs ``tasks`` tasks with
``kie_jupyter.generate(..., wait=True)`` (``workers`` at a time), keeps them in a list,
collects garbage and takes its RSS again. Images are 1024 px on the long side (about
0.85 MB each, like the API's 1024x1024 results).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass

from _common import HERE, KEY, emit

from kie_jupyter.testing import MockKieServer

_CHILD = r"""
import gc, json, os, sys
from concurrent.futures import ThreadPoolExecutor
sys.path.insert(0, {here!r})
from _common import rss_bytes
import kie_jupyter
from kie_jupyter import KieClient, TaskStatus
from kie_jupyter.api.ratelimit import SlidingWindowLimiter

url, n, workers, warmup = {url!r}, {n}, {workers}, {warmup}
# A roomy submit limiter: 100 tasks would otherwise wait 50 s on the 20-per-10-s one.
client = KieClient({key!r}, base_url=url, upload_url=url,
                   limiter=SlidingWindowLimiter(max_calls=10_000, period=1.0))

def one(name):
    return kie_jupyter.generate(name, client=client, wait=True, timeout=120)

with ThreadPoolExecutor(workers) as pool:
    warm = list(pool.map(one, [f"memory warm-up {{i}}" for i in range(warmup)]))
    del warm
    gc.collect()
    before = rss_bytes()
    tasks = list(pool.map(one, [f"memory task {{i}}" for i in range(n)]))
gc.collect()
after = rss_bytes()
ok = [t for t in tasks if t.status is TaskStatus.SUCCESS]
image_bytes = sum(len(b) for t in ok for b in t.images)
import resource
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"before": before, "after": after, "image_bytes": image_bytes,
                  "succeeded": len(ok), "peak": peak}}))
"""


@dataclass
class MemoryResult:
    """Bytes: RSS before and after, the images held, and growth / images."""

    tasks: int
    succeeded: int
    rss_before: int
    rss_after: int
    growth: int
    image_bytes: int
    ratio: float
    peak_rss: int


def measure_memory(tasks: int = 100, workers: int = 8, warmup: int = 4,
                   long_side: int = 1024) -> MemoryResult:
    """Run the child against an in-process mock with a short task duration."""
    with MockKieServer(api_key=KEY, duration=0.05, null_polls=0, rate_limit=None,
                       credits=1e9, image_long_side=long_side) as server:
        code = _CHILD.format(here=str(HERE), url=server.url, n=tasks, workers=workers,
                             warmup=warmup, key=KEY)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"memory child failed:\n{out.stderr[-2000:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    growth = data["after"] - data["before"]
    return MemoryResult(
        tasks=tasks, succeeded=data["succeeded"], rss_before=data["before"],
        rss_after=data["after"], growth=growth, image_bytes=data["image_bytes"],
        ratio=growth / data["image_bytes"] if data["image_bytes"] else float("nan"),
        peak_rss=data["peak"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="end with a machine-readable line")
    args = parser.parse_args(argv)
    r = measure_memory(args.tasks)
    mb = 1024 * 1024
    print(f"{r.succeeded}/{r.tasks} tasks: RSS {r.rss_before / mb:.1f} -> {r.rss_after / mb:.1f} "
          f"MiB (+{r.growth / mb:.1f} MiB), images {r.image_bytes / mb:.1f} MiB: ratio "
          f"{r.ratio:.3f} (peak RSS {r.peak_rss / mb:.1f} MiB)")
    if args.json:
        emit(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
