"""Shared helpers of the benchmarks: statistics, machine facts, the mock and child processes.

Every benchmark talks only to a :class:`~kie_jupyter.testing.MockKieServer` on 127.0.0.1.
Run as scripts (``python benchmarks/run.py``), the modules import each other by file name.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kie_jupyter.fakeapi._state import MockTask, format_progress
from kie_jupyter.testing import MockKieServer

KEY = "sk-BENCH-0123456789abcdef"
HERE = Path(__file__).resolve().parent
#: Realistic server-side durations of a 4o Image task, in unscaled seconds.
REAL_MIN, REAL_MAX = 30.0, 120.0
RESULT_MARK = "BENCH-RESULT "

T = TypeVar("T")


# -- statistics ------------------------------------------------------------------------------

def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def percentile(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100): a value that was actually measured."""
    if not xs:
        return float("nan")
    ordered = sorted(xs)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def median(xs: Sequence[float]) -> float:
    if not xs:
        return float("nan")
    ordered = sorted(xs)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def spread_durations(n: int, scale: float, seed: int = 4) -> list[float]:
    """``n`` task durations evenly spread over 30..120 s, times ``scale``, in a seeded order."""
    if n == 1:
        real = [REAL_MAX]
    else:
        real = [REAL_MIN + (REAL_MAX - REAL_MIN) * k / (n - 1) for k in range(n)]
    random.Random(seed).shuffle(real)
    return [d * scale for d in real]


# -- machine -----------------------------------------------------------------------------------

def machine() -> dict[str, str]:
    """Cores, Python version and CPU model (from /proc/cpuinfo when there is one)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "cores": f"{usable} usable ({os.cpu_count()} online)",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu": model,
        "os": f"{platform.system()} {platform.release()}",
    }


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm (Linux)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


# -- the mock ----------------------------------------------------------------------------------

Curve = Callable[[float], float]

#: Progress curves: how the reported progress follows the elapsed share ``f`` of a task.
CURVES: dict[str, Curve] = {
    "linear": lambda f: f,
    "ease-in": lambda f: f * f,  # slow start, fast end: a linear predictor guesses too late
    "ease-out": lambda f: 1.0 - (1.0 - f) ** 2,  # fast start, slow end: guesses too early
}
CURVE_NOTES = {
    "linear": "p = f (the mock's own progress)",
    "ease-in": "p = f² (slow start, fast finish)",
    "ease-out": "p = 1-(1-f)² (fast start, slow finish)",
}


@dataclass
class CurvedTask(MockTask):
    """A mock task whose reported progress follows ``curve`` instead of the elapsed share."""

    curve: Curve = CURVES["linear"]

    def progress(self, now: float) -> str:
        if self.duration <= 0 or self.is_done(now):
            return super().progress(now)
        fraction = max(0.0, (now - self.created) / self.duration)
        return format_progress(min(self.curve(fraction), 0.99))


class CurvedMockServer(MockKieServer):
    """``MockKieServer`` with a non-linear progress curve.

    The mock's :class:`TaskScript` only scripts outcomes and durations (progress is always
    linear in time), so this subclass swaps the created :class:`MockTask` for a
    :class:`CurvedTask` (it overrides the private ``_new_task`` hook: benchmark-only).
    """

    def __init__(self, *args: Any, curve: Curve = CURVES["linear"], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.curve = curve

    def _new_task(self, body: dict[str, Any], n: int, now: float) -> MockTask:
        task = super()._new_task(body, n, now)
        fields = {f.name: getattr(task, f.name) for f in dataclasses.fields(MockTask)}
        return CurvedTask(**fields, curve=self.curve)


_DURATION_RE = re.compile(r"\[d=([0-9.]+)\]")


def prompt_with_duration(text: str, seconds: float) -> str:
    """A prompt that tells :func:`duration_from_body` how long its task runs."""
    return f"{text} [d={seconds:.4f}]"


def generate_arrival(server: MockKieServer, prompt: str, timeout: float) -> float:
    """The mock's arrival time (its clock: ``time.monotonic()``) of the generate request
    carrying ``prompt``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for r in server.requests_to("generate"):
            if isinstance(r.json, dict) and r.json.get("prompt") == prompt:
                return r.time
        time.sleep(0.002)
    raise RuntimeError(f"the generate request for {prompt!r} never arrived")


def duration_from_body(body: dict[str, Any]) -> float:
    """The mock's ``duration`` callable: read ``[d=SECONDS]`` from the prompt (default 1 s)."""
    match = _DURATION_RE.search(str(body.get("prompt") or ""))
    return float(match.group(1)) if match else 1.0


@contextmanager
def mock_env(server: MockKieServer) -> Iterator[Path]:
    """Point ``KIE_*`` at ``server`` (and history at a temporary folder) for the block."""
    names = ("KIE_API_KEY", "KIE_BASE_URL", "KIE_UPLOAD_URL", "KIE_OUTPUT_DIR", "KIE_DEMO")
    saved = {name: os.environ.get(name) for name in names}
    # A task thread may still append to the history as the block ends: never fail on it.
    with tempfile.TemporaryDirectory(prefix="kie-bench-", ignore_cleanup_errors=True) as tmp:
        os.environ.update(KIE_API_KEY=KEY, KIE_BASE_URL=server.url, KIE_UPLOAD_URL=server.url,
                          KIE_OUTPUT_DIR=tmp)
        os.environ.pop("KIE_DEMO", None)
        try:
            yield Path(tmp)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


# -- results through a fresh process -------------------------------------------------------------

def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a (possibly nested) result dataclass from :func:`dataclasses.asdict` output."""
    kwargs: dict[str, Any] = {}
    hints = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name, value in data.items():
        field = hints.get(name)
        if field is None:
            continue
        inner = field.metadata.get("item")
        if inner is not None and isinstance(value, list):
            value = [from_dict(inner, v) for v in value]
        kwargs[name] = value
    return cls(**kwargs)


def emit(result: Any) -> None:
    """Print ``result`` (a dataclass) as the one machine-readable line a child ends with."""
    print(RESULT_MARK + json.dumps(dataclasses.asdict(result)), flush=True)


class FakeClock:
    """A clock for simulated polling: ``clock()`` reads it, ``clock.sleep(s)`` moves it on."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


def run_child(script: str, args: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run ``benchmarks/<script>`` in a fresh interpreter; return its emitted result."""
    cmd = [sys.executable, str(HERE / script), "--json", *args]
    # Every child (and the interpreters it starts) keeps its history and thumbnails in a
    # folder of its own, never the user's ~/.kie_jupyter.
    with tempfile.TemporaryDirectory(prefix="kie-bench-out-", ignore_cleanup_errors=True) as out:
        env = {**os.environ, "KIE_OUTPUT_DIR": out}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=str(HERE.parent), env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    tail = (proc.stderr or proc.stdout)[-2000:]
    raise RuntimeError(f"{script} exited {proc.returncode} without a result:\n{tail}")
