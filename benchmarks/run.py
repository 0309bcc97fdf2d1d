"""Run every benchmark against the mock server and print one table of figures and targets.

    python benchmarks/run.py                # the full run (about 2-3 minutes on 2 cores)
    python benchmarks/run.py --quick        # a ~30 s smoke run (figures only indicative)
    python benchmarks/run.py --write        # also write benchmarks/results.md
    python benchmarks/run.py --scale 0.1    # task durations 30-120 s x 0.1 = 3-12 s

Each benchmark runs in a fresh interpreter (no shared limiter, poll budget, shell or threads
between them) and talks only to a MockKieServer on 127.0.0.1. The exit status is 1 only when
a benchmark could not run (or, with ``--strict``, when a target is missed).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _common import HERE, from_dict, machine, run_child
from bench_concurrency import ConcurrencyResult
from bench_detection import DetectionResult, DetectionRow
from bench_load import LoadResult
from bench_memory import MemoryResult
from bench_submit import SubmitResult
from bench_workbench import WorkbenchResult

BENCHES = ("detection", "submit", "concurrency", "load", "memory", "workbench")
DETECTION_TARGET = 0.5  # s, mean
SUBMIT_TARGET_MS = 20.0
CONCURRENCY_TARGET = 1.1
FREE_CELL_TARGET_MS = 100.0
MEMORY_TARGET = 1.1
GALLERY_TARGET_MS = 300.0
SWEEP_TARGET = 1.15


@dataclass
class Settings:
    """What one run measures, and how much of it."""

    scale: float
    detection_tasks: int
    curves: str
    submit_runs: int
    concurrency_tasks: int
    load_reps: int
    memory_tasks: int
    quick: bool


@dataclass
class Target:
    """One line of the targets table."""

    name: str
    figure: str
    target: str
    met: bool | None  # None: informational, no target in the SPEC


def settings(args: argparse.Namespace) -> Settings:
    if args.quick:
        return Settings(scale=args.scale or 0.03, detection_tasks=6, curves="linear",
                        submit_runs=8, concurrency_tasks=20, load_reps=2, memory_tasks=30,
                        quick=True)
    return Settings(scale=args.scale or 0.05, detection_tasks=20,
                    curves="linear,ease-in,ease-out", submit_runs=20, concurrency_tasks=20,
                    load_reps=5, memory_tasks=100, quick=False)


# -- running -------------------------------------------------------------------------------------

def run_all(s: Settings, only: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """Run the selected benchmarks, each in a fresh process; return results and errors."""
    plan: dict[str, tuple[str, list[str], Callable[[dict[str, Any]], Any], float]] = {
        "detection": ("bench_detection.py",
                      ["--scale", f"{s.scale}", "--tasks", f"{s.detection_tasks}",
                       "--curves", s.curves],
                      lambda d: from_dict(DetectionResult, d), 900.0),
        "submit": ("bench_submit.py", ["--runs", f"{s.submit_runs}"],
                   lambda d: from_dict(SubmitResult, d), 300.0),
        "concurrency": ("bench_concurrency.py",
                        ["--scale", f"{s.scale}", "--tasks", f"{s.concurrency_tasks}"],
                        lambda d: ConcurrencyResult(**d), 600.0),
        "load": ("bench_load.py", ["--reps", f"{s.load_reps}"],
                 lambda d: LoadResult(**d), 600.0),
        "memory": ("bench_memory.py", ["--tasks", f"{s.memory_tasks}"],
                   lambda d: MemoryResult(**d), 600.0),
        "workbench": ("bench_workbench.py",
                      ["--scale", f"{s.scale}", "--reps", "2" if s.quick else "5",
                       "--history", "1000"],
                      lambda d: WorkbenchResult(**d), 600.0),
    }
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in BENCHES:
        if name not in only:
            continue
        script, argv, build, timeout = plan[name]
        started = time.monotonic()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            results[name] = build(run_child(script, argv, timeout))
        except Exception as exc:  # report it in the table, carry on with the others
            errors[name] = f"{type(exc).__name__}: {exc}".strip()
        print(f"[bench] {name} done in {time.monotonic() - started:.1f} s", file=sys.stderr,
              flush=True)
    return results, errors


# -- the table -------------------------------------------------------------------------------------

def _s(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3f} s"


def _ms(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.1f} ms"


def _x(a: float, b: float) -> str:
    if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return "n/a"
    return f"{a / b:.2f}×"


def _verdict(met: bool | None) -> str:
    return "—" if met is None else ("**met**" if met else "**MISSED**")


def _find(rows: list[DetectionRow], curve: str, method: str) -> DetectionRow | None:
    return next((r for r in rows if r.curve == curve and r.method == method), None)


def _detection_target(rows: list[DetectionRow], curve: str, label: str) -> Target | None:
    ours = _find(rows, curve, "ours (adaptive)")
    fixed1 = _find(rows, curve, "fixed 1 s")
    if ours is None or fixed1 is None:
        return None
    met = (ours.failures == 0 and ours.mean <= DETECTION_TARGET and ours.polls < fixed1.polls)
    figure = (f"mean {_s(ours.mean)} (p95 {_s(ours.p95)}); {ours.polls:.1f} polls/task vs "
              f"{fixed1.polls:.1f} for the fixed 1 s loop"
              + (f"; {ours.failures} task(s) not done" if ours.failures else ""))
    return Target(label, figure, f"≤ {DETECTION_TARGET} s mean, fewer polls than fixed 1 s",
                  met)


def targets(results: dict[str, Any], scale: float) -> list[Target]:
    out: list[Target] = []
    det: DetectionResult | None = results.get("detection")
    if det is not None:
        for row_set, curve, label in (
            (det.live, "linear", f"Detection delay, linear progress (live, ×{scale:g})"),
            (det.model, "linear", "Detection delay, linear progress (model, unscaled)"),
            (det.model, "ease-in", "Detection delay, ease-in progress (model; beyond SPEC)"),
            (det.model, "ease-out", "Detection delay, ease-out progress (model; beyond SPEC)"),
        ):
            t = _detection_target(row_set, curve, label)
            if t is not None:
                out.append(t)
    sub: SubmitResult | None = results.get("submit")
    if sub is not None:
        for r in sub.rows:
            out.append(Target(
                f"Submit overhead, {r.frontend} front end (cell start → generate received)",
                f"median {_ms(r.median_ms)}, p95 {_ms(r.p95_ms)} (max {_ms(r.max_ms)}; "
                f"first cell {_ms(r.cold_ms)})",
                f"≤ {SUBMIT_TARGET_MS:g} ms (p95)", r.p95_ms <= SUBMIT_TARGET_MS))
    con: ConcurrencyResult | None = results.get("concurrency")
    if con is not None:
        out.append(Target(
            f"Concurrency: {con.tasks} --no-wait tasks, all done ÷ longest duration",
            f"{con.ratio:.3f} ({_s(con.total)} / {_s(con.longest)}; "
            f"{con.succeeded}/{con.tasks} succeeded; same overhead on unscaled tasks "
            f"≈ {con.unscaled_estimate:.3f})",
            f"≤ {CONCURRENCY_TARGET}",
            con.ratio <= CONCURRENCY_TARGET and con.succeeded == con.tasks))
        out.append(Target(
            f"Free cell (`x = 1`) while {con.tasks} tasks poll",
            f"max {_ms(con.probe_max_ms)}, p95 {_ms(con.probe_p95_ms)} over {con.probes} runs "
            f"(idle {_ms(con.idle_median_ms)})",
            f"≤ {FREE_CELL_TARGET_MS:g} ms (max)", con.probe_max_ms <= FREE_CELL_TARGET_MS))
    mem: MemoryResult | None = results.get("memory")
    if mem is not None:
        mib = 1024 * 1024
        out.append(Target(
            f"Memory: RSS growth ÷ image bytes, {mem.tasks} finished tasks",
            f"{mem.ratio:.3f} (+{mem.growth / mib:.1f} MiB for {mem.image_bytes / mib:.1f} MiB "
            f"of images)",
            f"≤ {MEMORY_TARGET}", mem.ratio <= MEMORY_TARGET and mem.succeeded == mem.tasks))
    wb: WorkbenchResult | None = results.get("workbench")
    if wb is not None:
        out.append(Target(
            f"Gallery first paint, {wb.history_tasks}-task history (fresh process, imports "
            "included)", f"{_ms(wb.gallery_ms)} (median)",
            f"≤ {GALLERY_TARGET_MS:g} ms", wb.gallery_ms <= GALLERY_TARGET_MS))
        out.append(Target(
            f"Sweep of {wb.sweep_tasks} tasks: all done ÷ longest task",
            f"{wb.sweep_ratio:.3f} ({_s(wb.sweep_total)} / {_s(wb.sweep_longest)}; "
            f"{wb.sweep_succeeded}/{wb.sweep_tasks} succeeded)",
            f"≤ {SWEEP_TARGET}",
            wb.sweep_ratio <= SWEEP_TARGET and wb.sweep_succeeded == wb.sweep_tasks))
    load: LoadResult | None = results.get("load")
    if load is not None:
        out.append(Target(
            "`%load_ext kie_jupyter` ÷ `import ipywidgets` (fresh processes)",
            f"{load.ratio:.2f} ({load.load_ext_s * 1000:.0f} ms / "
            f"{load.ipywidgets_s * 1000:.0f} ms, medians of {load.reps})",
            "— (no SPEC target)", None))
    return out


def _detection_table(rows: list[DetectionRow], unscaled: bool) -> list[str]:
    lines = ["| Progress | Method | Polls every | Mean delay | p95 | Max | Polls/task "
             "| Mean delay ÷ ours | Polls ÷ ours |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ours = _find(rows, r.curve, "ours (adaptive)")
        every = ("adaptive" if r.interval is None
                 else f"{r.interval:g} s" if unscaled else f"{r.interval:.3g} s")
        if not unscaled and r.achieved:
            every += f" (seen: {r.achieved:.3g} s)"
        failed = f" ({r.failures} not done)" if r.failures else ""
        lines.append(
            f"| {r.curve} | {r.method}{failed} | {every} | {_s(r.mean)} | {_s(r.p95)} | "
            f"{_s(r.max)} | {r.polls:.1f} | "
            f"{_x(r.mean, ours.mean) if ours else 'n/a'} | "
            f"{_x(r.polls, ours.polls) if ours else 'n/a'} |")
    return lines


def render(results: dict[str, Any], errors: dict[str, str], s: Settings,
           wall: float) -> str:
    m = machine()
    lo, hi = 30 * s.scale, 120 * s.scale
    out = [
        "# kie-jupyter benchmarks",
        "",
        f"Machine: {m['cores']} cores · {m['python']} · {m['cpu']} · {m['os']}  ",
        f"Run: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · `--scale {s.scale:g}` "
        f"(task durations 30–120 s → {lo:.3g}–{hi:.3g} s) · "
        f"{'`--quick` smoke run, figures only indicative · ' if s.quick else ''}"
        f"all against MockKieServer on 127.0.0.1 · whole run {wall:.0f} s",
        "",
        "## Targets",
        "",
        "| Figure | Measured | Target | Result |",
        "|---|---|---|---|",
    ]
    for t in targets(results, s.scale):
        out.append(f"| {t.name} | {t.figure} | {t.target} | {_verdict(t.met)} |")
    for name, err in errors.items():
        out.append(f"| {name} | could not run: {err.splitlines()[0][:160]} | | **ERROR** |")

    det: DetectionResult | None = results.get("detection")
    if det is not None:
        f = det.scale
        out += [
            "",
            f"## Detection delay: server success → images available (live, ×{f:g}: "
            f"fixed 10 s / 3 s / 1 s loops poll every {10 * f:g} / {3 * f:g} / {f:g} s)",
            "",
            f"Real seconds as measured. Task durations 30–120 s × {f:g}; the fixed loops are "
            f"scaled by the same factor: a fixed 10 s loop at scale {f:g} polls every "
            f"{10 * f:g} s, a 3 s loop every {3 * f:g} s, a 1 s loop every {1 * f:g} s "
            "(sleep, record-info, then download; \"seen\" is the spacing the mock logged). "
            "Ours is the real `Task` with its default schedule, which is *not* scaled "
            "(0.34 s floor, 1 s while progress is unknown, 10 s ceiling). Success = generate "
            "request received + duration; available = `Task.status` SUCCESS (listener) or the "
            f"baseline's downloads done. {det.live[0].tasks if det.live else 0} tasks per row, "
            "run concurrently.",
            "",
            *_detection_table(det.live, unscaled=False),
            "",
            "## Detection delay, model at scale 1 (fake clock)",
            "",
            "The same `poll_task` and the same mock task state (`MockTask`, incl. the null "
            "first record, progress rounded down to 0.01 and held at 0.99 until done), driven "
            "by a fake clock with real 30–120 s durations "
            f"({det.model[0].tasks if det.model else 0} uniform samples): no HTTP latency, "
            "no download. Non-linear curves: ease-in "
            "p = f², ease-out p = 1 − (1 − f)² of the elapsed share f.",
            "",
            *_detection_table(det.model, unscaled=True),
        ]
    sub: SubmitResult | None = results.get("submit")
    if sub is not None:
        out += ["", "## Submit overhead (`%%kie4o --no-wait`, no uploads)", "",
                "| Front end | Runs | Median | p95 | Max | First cell | run_cell median |",
                "|---|---|---|---|---|---|---|"]
        for r in sub.rows:
            out.append(f"| {r.frontend} | {r.runs} | {_ms(r.median_ms)} | {_ms(r.p95_ms)} | "
                       f"{_ms(r.max_ms)} | {_ms(r.cold_ms)} | {_ms(r.cell_ms)} |")
    con: ConcurrencyResult | None = results.get("concurrency")
    if con is not None:
        out += ["", f"## Concurrency ({con.tasks} × `--no-wait`, {con.frontend} front end, "
                f"×{con.scale:g})", "",
                "| All done | Longest task | Ratio | Longest: submitted at / SUCCESS late by "
                "| Submits spread | Detection mean / max "
                "| Polls (all) | Free cell median / p95 / max | Idle cell |",
                "|---|---|---|---|---|---|---|---|---|",
                f"| {_s(con.total)} | {_s(con.longest)} | {con.ratio:.3f} | "
                f"+{_s(con.longest_offset)} / {_s(con.longest_delay)} | "
                f"{_ms(con.submit_span * 1000)} | {_s(con.mean_delay)} / {_s(con.max_delay)} | "
                f"{con.polls} | {_ms(con.probe_median_ms)} / {_ms(con.probe_p95_ms)} / "
                f"{_ms(con.probe_max_ms)} | {_ms(con.idle_median_ms)} |"]
    mem: MemoryResult | None = results.get("memory")
    if mem is not None:
        mib = 1024 * 1024
        out += ["", "## Memory (fresh process, 1024 px images, tasks kept alive)", "",
                "| Tasks | RSS before | RSS after | Growth | Image bytes | Ratio | Peak RSS |",
                "|---|---|---|---|---|---|---|",
                f"| {mem.succeeded}/{mem.tasks} | {mem.rss_before / mib:.1f} MiB | "
                f"{mem.rss_after / mib:.1f} MiB | {mem.growth / mib:.1f} MiB | "
                f"{mem.image_bytes / mib:.1f} MiB | {mem.ratio:.3f} | "
                f"{mem.peak_rss / mib:.1f} MiB |"]
    load: LoadResult | None = results.get("load")
    if load is not None:
        out += ["", "## Load time (fresh processes, IPython shell created before timing)", "",
                "| `%load_ext kie_jupyter` | `import ipywidgets` | Ratio | load_ext imports "
                "ipywidgets | load_ext imports requests |",
                "|---|---|---|---|---|",
                f"| {load.load_ext_s * 1000:.1f} ms | {load.ipywidgets_s * 1000:.1f} ms | "
                f"{load.ratio:.2f} | {load.imports_ipywidgets} | {load.imports_requests} |"]
    out += [
        "",
        "## Notes on method",
        "",
        "- The mock runs in the benchmark's own process (same interpreter, same GIL) except "
        "for memory, where the tasks run in a fresh child. Its request log is stamped with "
        "`time.monotonic()`, the clock the benchmarks read.",
        "- Scaling shortens the tasks but not our poller's own constants (0.34 s floor, 0.4 s "
        "first poll, 1 s while progress is unknown, 10 s ceiling): live figures for ours are "
        "pessimistic for short scaled tasks, which is why the unscaled model is shown too.",
        "- Detection and memory use clients with a private, roomy submit limiter (they "
        "submit more than 20 tasks per 10 s); submit does too (21+ cells in a row); "
        "concurrency keeps the real process-wide one (20 per 10 s) and the mock's 20-per-10-s "
        "generate limit.",
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmarks of kie_jupyter against the mock server.")
    parser.add_argument("--scale", type=float, default=None,
                        help="multiply the 30-120 s task durations (default 0.05; 0.03 quick)")
    parser.add_argument("--quick", action="store_true", help="a ~30 s smoke run")
    parser.add_argument("--write", action="store_true",
                        help="also write the table as markdown to benchmarks/results.md")
    parser.add_argument("--output", type=Path, default=HERE / "results.md",
                        help="where --write puts the markdown")
    parser.add_argument("--only", default=",".join(BENCHES),
                        help=f"comma-separated subset of: {', '.join(BENCHES)}")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    if args.scale is not None and not (math.isfinite(args.scale) and 0 < args.scale <= 1):
        parser.error("--scale must be in (0, 1]")
    only = tuple(b.strip() for b in args.only.split(",") if b.strip())
    unknown = [b for b in only if b not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    s = settings(args)
    started = time.monotonic()
    results, errors = run_all(s, only)
    text = render(results, errors, s, time.monotonic() - started)
    print(text)
    if args.write:
        args.output.write_text(text, encoding="utf-8")
        print(f"(written to {args.output})", file=sys.stderr)
    if errors:
        return 1
    if args.strict and any(t.met is False for t in targets(results, s.scale)):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
