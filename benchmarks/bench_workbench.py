"""The workbench: gallery first paint on a 1,000-task history, and a 12-task sweep's wall
time as a ratio to its longest task.

The gallery figure is the time from ``%kie4o gallery`` being asked to its HTML being ready
(history read and folded, one page queried, thumbnails read and embedded), in a fresh
process, on a history of 1,000 finished tasks with a thumbnail each. The sweep runs the real
``kie_jupyter.sweep`` against a MockKieServer whose tasks take 30–120 s × ``--scale``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import emit, median, spread_durations


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


def _history(folder: Path, n: int) -> None:
    from PIL import Image

    thumbs = folder / "thumbs"
    thumbs.mkdir(parents=True)
    lines = []
    for i in range(n):
        path = thumbs / f"t{i:05d}_0.jpg"
        buf = io.BytesIO()
        Image.new("RGB", (256, 171), (i % 256, 80, 160)).save(buf, format="JPEG", quality=82)
        path.write_bytes(buf.getvalue())
        base = {"task_id": f"t{i:05d}", "prompt": f"prompt number {i}, a fox in the snow",
                "params": {"size": "3:2", "variants": 1}, "created": "2026-11-24T10:00:00",
                "status": "generating", "demo": True}
        lines.append(json.dumps(base))  # submitted…
        lines.append(json.dumps({"task_id": base["task_id"], "status": "success",
                                 "thumbs": [str(path)], "urls": ["https://x/a.png"]}))
    (folder / "history.jsonl").write_text("\n".join(lines) + "\n")


def measure_gallery(n: int, reps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "kie"
        _history(folder, n)
        times = []
        for _ in range(reps):
            out = subprocess.run([sys.executable, "-c", _PAINT, str(folder)], check=True,
                                 capture_output=True, text=True, timeout=120)
            data = json.loads(out.stdout.strip().splitlines()[-1])
            assert data["total"] == n and data["imgs"] == 24, data
            times.append(data["s"])
        return median(times) * 1000


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
    parser.add_argument("--history", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--json", action="store_true", help="end with a machine-readable line")
    args = parser.parse_args(argv)
    gallery = measure_gallery(args.history, args.reps)
    total, longest, ok = measure_sweep(args.tasks, args.scale)
    r = WorkbenchResult(args.history, gallery, args.tasks, total, longest, total / longest, ok)
    print(f"gallery first paint on {r.history_tasks} tasks: {r.gallery_ms:.0f} ms (median of "
          f"{args.reps}); {r.sweep_tasks}-task sweep: {r.sweep_total:.2f} s / longest "
          f"{r.sweep_longest:.2f} s = {r.sweep_ratio:.3f} ({ok} succeeded)")
    if args.json:
        emit(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
