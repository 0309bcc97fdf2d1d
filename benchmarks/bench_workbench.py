"""The workbench: gallery first paint on 1,000- and 50,000-task histories, and a 12-task
sweep's wall time as a ratio to its longest task.

The gallery figure is the time from ``%kie4o gallery`` being asked to its HTML being ready
(imports, the database opened, one page queried, thumbnails read and embedded), in a fresh
process, on a history of N finished tasks with a ~16 KB thumbnail each (a pool shared by
the tasks: a page reads 24). Each history is built once as a user's would be after
upgrading: ``history.jsonl`` read into ``history.sqlite`` by a child (that one-time import
is reported apart, not in the figure); then each rep is a fresh ``python -c``. With two
sizes (``--history 1000,50000``) the ratio of the last to the first is reported. The sweep
runs the real ``kie_jupyter.sweep`` against a MockKieServer whose tasks take 30–120 s ×
``--scale``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import emit, median, spread_durations
from bench_history import build_history


@dataclass
class WorkbenchResult:
    """Gallery first paint (median ms) and the sweep's ratio."""

    history_tasks: int
    gallery_ms: float
    sweep_tasks: int
    sweep_total: float
    sweep_longest: float
    sweep_ratio: float
    sweep_succeeded: int
    #: The largest history of ``--history`` when it gives two sizes (0: one size only).
    large_tasks: int = 0
    large_gallery_ms: float = float("nan")
    #: ``large_gallery_ms / gallery_ms``.
    gallery_ratio: float = float("nan")
    #: One-time read-in of each history's JSON lines, in s (not in the figures).
    import_s: list[float] = field(default_factory=list)
    #: Every rep's ms, per size.
    gallery_samples: list[list[float]] = field(default_factory=list)


_PAINT = """
import json, sys, time
t0 = time.perf_counter()
from kie_jupyter.engine.history import HistoryStore
from kie_jupyter.notebook import workbench
store = HistoryStore(sys.argv[1])
entries, total = store.query(per_page=24)
view = workbench.gallery_view([workbench.item_of_entry(e) for e in entries], total=total,
                              page=1, per_page=24, query="")
html = view._repr_mimebundle_()["text/html"]
print(json.dumps({"s": time.perf_counter() - t0, "total": total, "imgs": html.count("<img")}))
"""


def measure_gallery(n: int, reps: int) -> tuple[float, float, list[float]]:
    """Build an ``n``-task history, then paint its gallery in ``reps`` fresh processes:
    (median ms, import s, every rep's ms)."""
    with tempfile.TemporaryDirectory(prefix="kie-bench-gallery-") as tmp:
        folder = Path(tmp) / "kie"
        imported = build_history(folder, n)
        times = []
        for _ in range(reps):
            out = subprocess.run([sys.executable, "-c", _PAINT, str(folder)], check=True,
                                 capture_output=True, text=True, timeout=120)
            data = json.loads(out.stdout.strip().splitlines()[-1])
            assert data["total"] == n and data["imgs"] == 24, data
            times.append(1000 * data["s"])
        return median(times), imported, [round(t, 1) for t in times]


def measure_sweep(tasks: int, scale: float) -> tuple[float, float, int]:
    os.environ["KIE_OUTPUT_DIR"] = tempfile.mkdtemp()
    import kie_jupyter
    from kie_jupyter import KieClient
    from kie_jupyter.testing import MockKieServer

    durations = spread_durations(tasks, scale)
    by_prompt = {f"v{k}": d for k, d in enumerate(durations)}
    with MockKieServer(api_key="bench-key", duration=lambda b: by_prompt[b["prompt"]]) as srv:
        client = KieClient("bench-key", base_url=srv.url, upload_url=srv.url)
        prompt = "{" + "|".join(by_prompt) + "}"
        t0 = time.monotonic()
        sw = kie_jupyter.sweep(prompt, yes=True, client=client)
        total = time.monotonic() - t0
    return total, max(durations), sw.counts()["succeeded"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", default="1000",
                        help="tasks in the history; two sizes (1000,50000) give their ratio")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--no-sweep", action="store_true", help="the gallery only")
    parser.add_argument("--json", action="store_true", help="end with a machine-readable line")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in str(args.history).split(",") if x.strip()]
    if not sizes or len(sizes) > 2:
        parser.error("--history: one size or two (e.g. 1000,50000)")
    galleries = [measure_gallery(n, args.reps) for n in sizes]
    if args.no_sweep:
        total, longest, ok = float("nan"), float("nan"), 0
    else:
        total, longest, ok = measure_sweep(args.tasks, args.scale)
    r = WorkbenchResult(sizes[0], galleries[0][0], args.tasks, total, longest,
                        total / longest, ok, import_s=[g[1] for g in galleries],
                        gallery_samples=[g[2] for g in galleries])
    if len(sizes) == 2:
        r.large_tasks, r.large_gallery_ms = sizes[1], galleries[1][0]
        r.gallery_ratio = r.large_gallery_ms / r.gallery_ms
    for n, (ms, imported, samples) in zip(sizes, galleries, strict=True):
        print(f"gallery first paint on {n} tasks: {ms:.1f} ms (median of {args.reps}: "
              f"{samples}; history read in from JSON lines once: {imported:.1f} s)")
    if r.large_tasks:
        print(f"gallery {r.large_tasks} ÷ {r.history_tasks} tasks: {r.gallery_ratio:.2f}×")
    if not args.no_sweep:
        print(f"{r.sweep_tasks}-task sweep: {r.sweep_total:.2f} s / longest "
              f"{r.sweep_longest:.2f} s = {r.sweep_ratio:.3f} ({ok} succeeded)")
    if args.json:
        emit(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
