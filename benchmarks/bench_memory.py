"""Memory: resident growth after 100 finished tasks, over the bytes of their images.

Two children: ``plain`` (``kie_jupyter.generate``, tasks kept in a list) and ``panels``
(``%%kie4o --no-wait -o tK`` cells in a real IPython shell with the widget front end: each
task shown with its live panel, which gives way to its card; the shell's display publisher
sends outputs nowhere, as a kernel does once they are sent). The panels child then deletes
one task's name and checks (weakref, after ``gc.collect()``) that the task and its images
were freed, then every name, and counts those freed.

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


_PANELS_CHILD = r"""
import gc, json, os, sys, time, weakref
sys.path.insert(0, {here!r})
from _common import rss_bytes
import kie_jupyter.api.client as client_module
from kie_jupyter.api.ratelimit import SlidingWindowLimiter
from kie_jupyter.testing.shell import TestingShell

# A roomy submit limiter: 100 tasks would otherwise wait 50 s on the 20-per-10-s one.
client_module.submit_limiter = SlidingWindowLimiter(max_calls=10_000, period=1.0)
shell = TestingShell.instance()
sent = [0]
def publish(data, metadata=None, source=None, **kwargs):  # a kernel sends and forgets
    sent[0] += sum(len(v) for v in data.values() if isinstance(v, str))
shell.display_pub.publish = publish
shell.run_cell("%load_ext kie_jupyter")
shell.run_cell("%config Kie4o.frontend = 'widget'")
shell.run_cell("import ipywidgets")
n, warmup, batch = {n}, {warmup}, {batch}

def run(names):
    for name in names:
        shell.run_cell(f"%%kie4o --no-wait -o {{name}}\npanel memory {{name}}")
    for name in names:
        shell.user_ns[name].wait(120)
    shell.run_cell("pass")  # the next cell: cards finished from threads are sent again

run([f"w{{i}}" for i in range(warmup)])
for i in range(warmup):
    del shell.user_ns[f"w{{i}}"]
shell.user_ns.pop("_kie4o", None)
gc.collect()
before = rss_bytes()
names = [f"t{{i}}" for i in range(n)]
for k in range(0, n, batch):  # as a notebook is run: a few cells at a time, not all at once
    run(names[k:k + batch])
gc.collect()
after = rss_bytes()
from kie_jupyter import TaskStatus
tasks = [shell.user_ns[name] for name in names]
ok = [t for t in tasks if t.status is TaskStatus.SUCCESS]
image_bytes = sum(len(b) for t in ok for b in t.images)
succeeded = len(ok)
refs = [weakref.ref(t) for t in tasks]
del tasks, ok
# One task deleted by its user: its name goes (and _kie4o, which names the latest).
del shell.user_ns["t0"]
gc.collect()
one_freed = refs[0]() is None
for name in names[1:]:
    del shell.user_ns[name]
shell.user_ns.pop("_kie4o", None)
gc.collect()
all_freed = sum(1 for r in refs if r() is None)
import ipywidgets
open_widgets = len(ipywidgets.Widget.widgets)
import resource
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"before": before, "after": after, "image_bytes": image_bytes,
                  "succeeded": succeeded,
                  "peak": peak, "one_freed": one_freed, "all_freed": all_freed,
                  "open_widgets": open_widgets, "sent": sent[0]}}))
"""


@dataclass
class PanelMemoryResult:
    """The panels child: RSS growth over image bytes, and what was freed."""

    tasks: int
    succeeded: int
    rss_before: int
    rss_after: int
    growth: int
    image_bytes: int
    ratio: float
    peak_rss: int
    one_freed: bool  # the task whose name was deleted was freed
    all_freed: int  # tasks freed once every name was deleted
    open_widgets: int  # widgets still registered at the end


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
    panels: PanelMemoryResult | None = None


def measure_memory(tasks: int = 100, workers: int = 8, warmup: int = 4,
                   long_side: int = 1024) -> MemoryResult:
    """Run the child against an in-process mock with a short task duration."""
    import os
    import tempfile

    with MockKieServer(api_key=KEY, duration=0.05, null_polls=0, rate_limit=None,
                       credits=1e9, image_long_side=long_side) as server, \
            tempfile.TemporaryDirectory(prefix="kie-bench-mem-",
                                        ignore_cleanup_errors=True) as tmp:
        code = _CHILD.format(here=str(HERE), url=server.url, n=tasks, workers=workers,
                             warmup=warmup, key=KEY)
        # The tasks' history and thumbnails go to a folder of its own, not ~/.kie_jupyter.
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=600, env={**os.environ, "KIE_OUTPUT_DIR": tmp})
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


def measure_panels(tasks: int = 100, warmup: int = 4, long_side: int = 1024,
                   batch: int = 10) -> PanelMemoryResult:
    """The panels child against an in-process mock (its environment points at it)."""
    import os
    import tempfile

    with MockKieServer(api_key=KEY, duration=0.05, null_polls=0, rate_limit=None,
                       credits=1e9, image_long_side=long_side) as server, \
            tempfile.TemporaryDirectory(prefix="kie-bench-mem-",
                                        ignore_cleanup_errors=True) as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KIE_")}
        env.update(KIE_API_KEY=KEY, KIE_BASE_URL=server.url, KIE_UPLOAD_URL=server.url,
                   KIE_OUTPUT_DIR=tmp)
        code = _PANELS_CHILD.format(here=str(HERE), n=tasks, warmup=warmup, batch=batch)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=600, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"memory (panels) child failed:\n{out.stderr[-2000:]}")
    d = json.loads(out.stdout.strip().splitlines()[-1])
    growth = d["after"] - d["before"]
    return PanelMemoryResult(
        tasks=tasks, succeeded=d["succeeded"], rss_before=d["before"], rss_after=d["after"],
        growth=growth, image_bytes=d["image_bytes"],
        ratio=growth / d["image_bytes"] if d["image_bytes"] else float("nan"),
        peak_rss=d["peak"], one_freed=d["one_freed"], all_freed=d["all_freed"],
        open_widgets=d["open_widgets"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--no-panels", action="store_true", help="only the plain child")
    parser.add_argument("--json", action="store_true", help="end with a machine-readable line")
    args = parser.parse_args(argv)
    r = measure_memory(args.tasks)
    if not args.no_panels:
        r.panels = measure_panels(args.tasks)
    mb = 1024 * 1024
    print(f"{r.succeeded}/{r.tasks} tasks: RSS {r.rss_before / mb:.1f} -> {r.rss_after / mb:.1f} "
          f"MiB (+{r.growth / mb:.1f} MiB), images {r.image_bytes / mb:.1f} MiB: ratio "
          f"{r.ratio:.3f} (peak RSS {r.peak_rss / mb:.1f} MiB)")
    p = r.panels
    if p is not None:
        print(f"with panels: {p.succeeded}/{p.tasks} tasks: +{p.growth / mb:.1f} MiB for "
              f"{p.image_bytes / mb:.1f} MiB of images: ratio {p.ratio:.3f}; deleted task "
              f"freed: {p.one_freed}; all names deleted: {p.all_freed}/{p.tasks} freed; "
              f"{p.open_widgets} widgets left open")
    if args.json:
        emit(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
