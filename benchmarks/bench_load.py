"""``%load_ext kie_jupyter`` time, as a ratio to ``import ipywidgets`` alone.

Each is timed in a fresh interpreter (``python -c``), with an IPython shell created before
the clock starts in both, so the two figures are the extra cost on the same starting state.
Runs alternate (load, import, load, ...) after one discarded warm-up pair; medians are
reported. The load child also reports whether ``load_ext`` imported ipywidgets and requests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from _common import emit, median

_PRELUDE = """
import io, contextlib, json, sys, time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
"""
_LOAD = _PRELUDE + """
with contextlib.redirect_stdout(io.StringIO()):
    t0 = time.perf_counter()
    shell.run_line_magic("load_ext", "kie_jupyter")
    t1 = time.perf_counter()
print(json.dumps({"s": t1 - t0, "ipywidgets": "ipywidgets" in sys.modules,
                  "requests": "requests" in sys.modules}))
"""
_WIDGETS = _PRELUDE + """
t0 = time.perf_counter()
import ipywidgets
t1 = time.perf_counter()
print(json.dumps({"s": t1 - t0}))
"""


@dataclass
class LoadResult:
    """Median seconds of each, and their ratio."""

    reps: int
    load_ext_s: float
    ipywidgets_s: float
    ratio: float
    imports_ipywidgets: bool
    imports_requests: bool


def _child(code: str, env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_load(reps: int = 5) -> LoadResult:
    """``reps`` alternating fresh-process timings of each (after one warm-up pair)."""
    with tempfile.TemporaryDirectory(prefix="kie-bench-load-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KIE_")}
        # A key and a loopback endpoint: load prints its one line and sends nothing.
        env.update(KIE_API_KEY="sk-BENCH-0123456789abcdef", KIE_BASE_URL="http://127.0.0.1:9",
                   KIE_UPLOAD_URL="http://127.0.0.1:9", KIE_OUTPUT_DIR=tmp)
        _child(_LOAD, env), _child(_WIDGETS, env)  # warm the file cache and bytecode
        loads, widgets = [], []
        last: dict[str, object] = {}
        for _ in range(reps):
            last = _child(_LOAD, env)
            loads.append(float(last["s"]))  # type: ignore[arg-type]
            widgets.append(float(_child(_WIDGETS, env)["s"]))  # type: ignore[arg-type]
    load_s, widgets_s = median(loads), median(widgets)
    return LoadResult(reps=reps, load_ext_s=load_s, ipywidgets_s=widgets_s,
                      ratio=load_s / widgets_s, imports_ipywidgets=bool(last["ipywidgets"]),
                      imports_requests=bool(last["requests"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="end with a machine-readable line")
    args = parser.parse_args(argv)
    r = measure_load(args.reps)
    print(f"%load_ext kie_jupyter {r.load_ext_s * 1000:.1f} ms, import ipywidgets "
          f"{r.ipywidgets_s * 1000:.1f} ms (medians of {r.reps}): ratio {r.ratio:.2f}; "
          f"load_ext imports ipywidgets: {r.imports_ipywidgets}, requests: {r.imports_requests}")
    if args.json:
        emit(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
