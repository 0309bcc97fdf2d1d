"""The history at 50,000 tasks: ``%kie4o history --search WORD``, and recording one task.

The history (``history.sqlite``, :mod:`kie_jupyter.engine.historydb`) is built as a user's
would be after upgrading: a ``history.jsonl`` of two records per task (submitted, then
finished with a thumbnail), read in once by a child process (the one-time import, reported
apart, never in the figures). Prompts are drawn from a small vocabulary (seeded); ``fox``
is in about one prompt in ten, a rare word (``lighthouse``) in a handful. Thumbnails: a pool
of small JPEG files shared by the tasks (the views read at most a page of them).

- *search*: a fresh interpreter makes a real IPython shell, runs ``%load_ext kie_jupyter``,
  waits ``--pause`` s (a person typing the next cell; the extension's warm-up imports run
  meanwhile), then times ``run_cell("%kie4o history --search WORD")``, the table formatted
  by the display hook included. The first call opens the database (schema check, JSON-lines
  check); the warm calls after it, in the same process, do not. Median over fresh processes
  (first) and over the warm calls of all of them.
- *record*: :meth:`HistoryStore.record` of a task as the engine writes it (submitted: a new
  row; finished: its row updated with a ~16 KB thumbnail file, which the thumbnail cap then
  checks), in this process, which has opened the database once before (a page queried);
  the first record after that open is reported apart. Twice: with a cap the thumbnails
  are well under, then with the default cap (``KIE_THUMBS_MAX_MB``, 256 MB), which the
  imported thumbnails are over (50,000 × 16 KB, counted at the import: a heavy user's
  steady state, each finished task drops the oldest thumbnail); the first finished task of
  that run does the one-time drop down to the cap, reported apart.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from _common import emit, median, percentile

#: The rare word (in a handful of prompts) and the common one (about one in ten).
RARE, COMMON = "lighthouse", "fox"
RARE_EVERY = 5000
THUMB_POOL = 64
START = datetime(2025, 1, 6, 9, 0, tzinfo=timezone.utc)

_SUBJECTS = ("a red fox", "an old oak tree", "a city street", "a bowl of ramen", "a sailboat",
             "a mountain cabin", "a robot", "a cat on a windowsill", "a field of tulips",
             "a steam train", "a jazz band", "a desert canyon", "a koi pond", "a bicycle",
             "a castle ruin", "a snowy village", "a coral reef", "a market stall")
_PLACES = ("at dawn", "in the rain", "under neon lights", "in autumn", "at golden hour",
           "in fog", "at night", "in spring", "after a storm", "in the snow")
_STYLES = ("watercolor", "oil painting", "35 mm photo", "isometric 3D render", "ink sketch",
           "studio product shot", "pixel art", "ukiyo-e print", "cinematic still",
           "flat vector illustration")
_SIZES = ("1:1", "3:2", "2:3")


@dataclass
class SearchRow:
    """``%kie4o history --search WORD``: milliseconds per cell."""

    word: str
    matches: int  # prompts that have the word
    shown: int  # rows of the table (at most 20)
    first_ms: float  # median, first call of a fresh process (opens the database)
    warm_ms: float  # median of the calls after it
    max_first_ms: float
    query_ms: float  # median warm HistoryStore.recent(20, WORD) alone, no shell, no table
    first: list[float] = field(default_factory=list)


@dataclass
class HistoryResult:
    tasks: int = 0
    import_s: float = float("nan")  # one-time read-in of history.jsonl (not in the figures)
    db_bytes: int = 0
    pause: float = 0.5
    processes: int = 0
    rows: list[SearchRow] = field(default_factory=list, metadata={"item": SearchRow})
    #: Recording into the history with a cap its thumbnails are well under.
    records: int = 0  # timed records (two per task: submitted, finished)
    record_p50_ms: float = float("nan")
    record_p95_ms: float = float("nan")
    record_max_ms: float = float("nan")
    submit_p95_ms: float = float("nan")  # the new-row records alone
    finish_p95_ms: float = float("nan")  # the finished-with-thumbnail records alone
    record_first_ms: float = float("nan")  # the first record after the open
    #: The same with the default cap (KIE_THUMBS_MAX_MB), which a 50,000-task history with
    #: ~16 KB thumbnails is over.
    cap_mb: float = float("nan")
    cap_counted_mb: float = float("nan")  # thumbnail bytes counted before the first record
    cap_records: int = 0
    cap_p50_ms: float = float("nan")
    cap_p95_ms: float = float("nan")
    cap_max_ms: float = float("nan")
    cap_submit_p95_ms: float = float("nan")
    cap_finish_p95_ms: float = float("nan")
    cap_first_s: float = float("nan")  # the first finished task: the one-time drop to the cap


# -- building the history --------------------------------------------------------------------

def prompt_of(i: int) -> str:
    """Task ``i``'s prompt (seeded by ``i``): ``fox`` in about one in seven (one in ten by
    name, and the red foxes), ``lighthouse`` in one in 5,000."""
    rnd = random.Random(i)
    subject = _SUBJECTS[rnd.randrange(len(_SUBJECTS))]
    if i % 10 == 3:
        subject = "a fox"
    if i % RARE_EVERY == RARE_EVERY // 2:
        subject = f"a {RARE} on a cliff"
    return (f"{subject} {_PLACES[rnd.randrange(len(_PLACES))]}, "
            f"{_STYLES[rnd.randrange(len(_STYLES))]}, detailed, soft light")


def params_of(i: int) -> dict[str, Any]:
    """A 4o task's params as the engine keeps them (``GenerationRequest.to_dict()``)."""
    return {"prompt": prompt_of(i), "size": _SIZES[i % 3], "variants": 1, "files": [],
            "mask": None, "enhance": False, "fallback": False, "fallback_model": None,
            "callback_url": None, "upload_cn": False}


def _jpeg(i: int) -> bytes:
    """A 256 px thumbnail about the size the engine keeps of a real image (~16 KB)."""
    from PIL import Image

    noise = Image.effect_noise((256, 171), 40).convert("RGB")
    tint = Image.new("RGB", (256, 171), (i * 37 % 256, 80, 160))
    buf = io.BytesIO()
    Image.blend(noise, tint, 0.5).save(buf, format="JPEG", quality=82, optimize=True)
    return buf.getvalue()


def task_records(i: int, thumb: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two records the engine writes for task ``i``: submitted, then finished."""
    created = START + timedelta(seconds=90 * i)
    task_id = f"4o{i:08d}bench"
    submitted: dict[str, Any] = {
        "task_id": task_id, "prompt": prompt_of(i), "params": params_of(i),
        "status": "generating", "created": created.isoformat(), "completed": None,
        "urls": [], "saved_paths": [], "error": None, "error_source": None,
        "base_url": "https://api.kie.ai", "demo": False, "model": "4o", "parents": [],
        "thumbs": [], "labels": {}, "cost": _Cost("estimate").to_dict()}
    finished = {**submitted, "status": "success",
                "completed": (created + timedelta(seconds=75)).isoformat(),
                "urls": [f"https://tempfile.aiquickdraw.com/s/{task_id}_0.png"],
                "thumbs": [thumb], "cost": _Cost("reported").to_dict()}
    return submitted, finished


def write_jsonl(folder: Path, n: int, start: int = 0) -> None:
    """``history.jsonl`` of ``n`` tasks (two lines each) and the thumbnail pool."""
    thumbs = folder / "thumbs"
    thumbs.mkdir(parents=True, exist_ok=True)
    pool = []
    for k in range(THUMB_POOL):
        path = thumbs / f"pool{k:02d}_0.jpg"
        path.write_bytes(_jpeg(k))
        pool.append(str(path))
    with open(folder / "history.jsonl", "w", encoding="utf-8") as fh:
        for i in range(start, start + n):
            for rec in task_records(i, pool[i % THUMB_POOL]):
                fh.write(json.dumps(rec, separators=(",", ":")) + "\n")


_IMPORT = """
import sys, time
t0 = time.perf_counter()
from kie_jupyter.engine.history import HistoryStore
_, total = HistoryStore(sys.argv[1]).query(per_page=1)
print(total, time.perf_counter() - t0)
"""


def build_history(folder: Path, n: int) -> float:
    """A history of ``n`` finished tasks in ``folder``, read in from JSON lines by a child
    as on a user's first open after upgrading; return that import's seconds."""
    write_jsonl(folder, n)
    out = subprocess.run([sys.executable, "-c", _IMPORT, str(folder)], check=True,
                         capture_output=True, text=True, timeout=900)
    total, seconds = out.stdout.split()
    if int(total) != n:
        raise RuntimeError(f"imported {total} tasks, not {n}")
    return float(seconds)


# -- %kie4o history --search ----------------------------------------------------------------

_SEARCH = """
import json, os, sys, time
from IPython.utils.capture import capture_output
from kie_jupyter.testing.shell import TestingShell
word, pause, warm = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
shell = TestingShell.instance()
with capture_output():
    shell.run_cell("%load_ext kie_jupyter")
time.sleep(pause)
cell = f"%kie4o history --search {word}"
times = []
for _ in range(1 + warm):
    with capture_output() as cap:
        t0 = time.perf_counter()
        shell.run_cell(cell)
        times.append(time.perf_counter() - t0)
from kie_jupyter.engine.history import HistoryStore
store = HistoryStore()
query = []
for _ in range(warm):
    t0 = time.perf_counter()
    store.recent(20, word)
    query.append(time.perf_counter() - t0)
_, total = store.query(search=word, per_page=1)
title = [x for x in cap.stdout.splitlines() if x.startswith("kie4o history")]
print(json.dumps({"times": times, "query": query, "total": total,
                  "out": title[0] if title else ""}))
"""


def measure_search(folder: Path, word: str, processes: int, warm: int,
                   pause: float) -> SearchRow:
    import os

    env = {**os.environ, "KIE_OUTPUT_DIR": str(folder)}
    env.pop("KIE_DEMO", None)
    first: list[float] = []
    warms: list[float] = []
    queries: list[float] = []
    matches, shown = 0, 0
    for _ in range(processes):
        out = subprocess.run([sys.executable, "-c", _SEARCH, word, f"{pause}", f"{warm}"],
                             check=True, capture_output=True, text=True, timeout=120,
                             env=env)
        data = json.loads(out.stdout.strip().splitlines()[-1])
        first.append(1000 * data["times"][0])
        warms += [1000 * t for t in data["times"][1:]]
        queries += [1000 * t for t in data["query"]]
        matches = data["total"]
        title = data["out"]  # "kie4o history (20)", or "… no task matches …"
        shown = int(title.rsplit("(", 1)[1].rstrip(")")) if title.endswith(")") else 0
        if not title:
            raise RuntimeError(f"no history table for {word!r}: {out.stdout[-500:]}")
    return SearchRow(word=word, matches=matches, shown=shown, first_ms=median(first),
                     warm_ms=median(warms), max_first_ms=max(first),
                     query_ms=median(queries), first=[round(t, 1) for t in first])


# -- recording -------------------------------------------------------------------------------

class _Cost:
    def __init__(self, basis: str) -> None:
        self.basis = basis

    def to_dict(self) -> dict[str, Any]:
        return {"value": 6.0, "unit": "credits", "basis": self.basis, "demo": False,
                "source": "KIE" if self.basis == "reported" else "price table", "usd": 0.03}


class _Task:
    """What :meth:`HistoryStore.record` reads of a task (``RecordedTask``)."""

    def __init__(self, i: int) -> None:
        from kie_jupyter.api.models import TaskStatus

        self.task_id: str | None = f"4o{i:08d}bench"
        self.params: dict[str, Any] = params_of(i)
        self.status = TaskStatus.GENERATING
        self.created = datetime.now(timezone.utc)
        self.completed: datetime | None = None
        self.urls: tuple[str, ...] = ()
        self.saved_paths: list[str] = []
        self.error: Any = None
        self.thumb_paths: list[str] = []
        self.labels: dict[str, str] = {}
        self.cost = _Cost("estimate")
        self.prompt = prompt_of(i)
        self.demo = False
        self.model = "4o"
        self.parents: list[str] = []

    def finish(self, thumb: str) -> None:
        from kie_jupyter.api.models import TaskStatus

        self.status = TaskStatus.SUCCESS
        self.completed = datetime.now(timezone.utc)
        self.urls = (f"https://tempfile.aiquickdraw.com/s/{self.task_id}_0.png",)
        self.thumb_paths = [thumb]
        self.cost = _Cost("reported")


@dataclass
class RecordStats:
    """Milliseconds of :meth:`HistoryStore.record`, by kind."""

    submits: list[float]
    finishes: list[float]
    first: float = float("nan")  # the first task after the open: submitted…
    first_finish: float = float("nan")  # …and finished

    def both(self) -> list[float]:
        return self.submits + self.finishes

    def figures(self) -> tuple[int, float, float, float, float, float]:
        """Records; p50, p95 and max of them all; p95 of the submitted, of the finished."""
        both = self.both()
        return (len(both), median(both), percentile(both, 95), max(both),
                percentile(self.submits, 95), percentile(self.finishes, 95))


def measure_record(folder: Path, start: int, tasks: int, cap: int | None) -> RecordStats:
    """Record ``tasks`` new tasks (submitted, then finished with a thumbnail file) into the
    history in ``folder``, its thumbnails kept within ``cap`` bytes (``None``: the default),
    after opening it once and one untimed first task."""
    from kie_jupyter.engine.history import HistoryStore

    store = HistoryStore(folder, thumb_cap=cap)
    store.query(per_page=24)  # this process opens the database once, as a kernel would
    thumbs = store.thumbs_dir()
    stats = RecordStats([], [])
    for k in range(tasks + 1):
        task = _Task(start + k)
        thumb = thumbs / f"{task.task_id}_0.jpg"  # as the engine writes it: a new file
        t0 = time.perf_counter()
        store.record(task, "https://api.kie.ai")
        t1 = time.perf_counter()
        time.sleep(0.001)  # the task runs: the records are never back to back
        thumb.write_bytes(_jpeg(k))
        task.finish(str(thumb))
        t2 = time.perf_counter()
        store.record(task, "https://api.kie.ai")
        t3 = time.perf_counter()
        if k == 0:
            stats.first = 1000 * (t1 - t0)
            stats.first_finish = 1000 * (t3 - t2)
            continue
        stats.submits.append(1000 * (t1 - t0))
        stats.finishes.append(1000 * (t3 - t2))
    return stats


def counted_thumbnails(folder: Path) -> int:
    """The thumbnail bytes the history counts toward its cap."""
    from kie_jupyter.engine.history import HistoryStore

    info = HistoryStore(folder).info()
    return 0 if info is None else info.thumb_bytes


def thumb_cap_bytes() -> int:
    from kie_jupyter.engine.history import thumb_cap_bytes as cap

    return cap()


def run(n: int, words: tuple[str, ...], processes: int, warm: int, pause: float,
        record_tasks: int) -> HistoryResult:
    result = HistoryResult(tasks=n, pause=pause, processes=processes)
    with tempfile.TemporaryDirectory(prefix="kie-bench-history-") as tmp:
        folder = Path(tmp) / "kie"
        t0 = time.monotonic()
        result.import_s = build_history(folder, n)
        print(f"[history] {n} tasks built in {time.monotonic() - t0:.1f} s (their import "
              f"from JSON lines {result.import_s:.1f} s)", file=sys.stderr, flush=True)
        result.db_bytes = sum(p.stat().st_size for p in folder.glob("history.sqlite*"))
        for word in words:
            result.rows.append(measure_search(folder, word, processes, warm, pause))
        if record_tasks:
            rec = measure_record(folder, n, record_tasks, cap=1 << 40)
            (result.records, result.record_p50_ms, result.record_p95_ms, result.record_max_ms,
             result.submit_p95_ms, result.finish_p95_ms) = rec.figures()
            result.record_first_ms = rec.first
            result.cap_counted_mb = counted_thumbnails(folder) / 2**20
            result.cap_mb = thumb_cap_bytes() / 2**20
            cap = measure_record(folder, n + record_tasks + 1, record_tasks, cap=None)
            (result.cap_records, result.cap_p50_ms, result.cap_p95_ms, result.cap_max_ms,
             result.cap_submit_p95_ms, result.cap_finish_p95_ms) = cap.figures()
            result.cap_first_s = cap.first_finish / 1000
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50_000, help="tasks in the history")
    parser.add_argument("--words", default=f"{RARE},{COMMON}")
    parser.add_argument("--processes", type=int, default=5,
                        help="fresh processes per word (each: one first call)")
    parser.add_argument("--warm", type=int, default=10, help="warm calls per process")
    parser.add_argument("--pause", type=float, default=0.5,
                        help="seconds between %%load_ext and the search cell")
    parser.add_argument("--records", type=int, default=250,
                        help="tasks recorded (two records each: submitted, finished)")
    parser.add_argument("--quick", action="store_true", help="fewer processes and records")
    parser.add_argument("--json", action="store_true", help="end with a machine-readable line")
    args = parser.parse_args(argv)
    if args.quick:
        args.processes, args.warm, args.records = 2, 3, 50
    words = tuple(w for w in args.words.split(",") if w)
    r = run(args.tasks, words, args.processes, args.warm, args.pause, args.records)
    print(f"history of {r.tasks} tasks: {r.db_bytes / 1e6:.1f} MB (read in from JSON lines "
          f"once: {r.import_s:.1f} s)")
    for s in r.rows:
        print(f"history --search {s.word:10} {s.matches:5} match, {s.shown:2} shown: first "
              f"call {s.first_ms:6.1f} ms (max {s.max_first_ms:.1f}; {s.first}), warm "
              f"{s.warm_ms:6.1f} ms (query alone {s.query_ms:.2f} ms)")
    if r.records:
        print(f"record one task into {r.tasks} (thumbnails under the cap): p50 "
              f"{r.record_p50_ms:.2f} ms  p95 {r.record_p95_ms:.2f} ms  max "
              f"{r.record_max_ms:.2f} ms over {r.records} records (submitted p95 "
              f"{r.submit_p95_ms:.2f} ms, finished p95 {r.finish_p95_ms:.2f} ms; first after "
              f"the open {r.record_first_ms:.2f} ms)")
        print(f"record one task, thumbnails over the cap ({r.cap_counted_mb:.0f} MB, cap "
              f"{r.cap_mb:.0f} MB): p50 {r.cap_p50_ms:.2f} ms  p95 {r.cap_p95_ms:.2f} ms  max "
              f"{r.cap_max_ms:.2f} ms over {r.cap_records} records (submitted p95 "
              f"{r.cap_submit_p95_ms:.2f} ms, finished p95 {r.cap_finish_p95_ms:.2f} ms; the "
              f"first finished task, one-time drop to the cap: {r.cap_first_s:.2f} s)")
    if args.json:
        emit(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
