"""Smoke test of the benchmarks: ``benchmarks/run.py --quick`` runs and prints its table.

No timing is asserted (figures depend on the machine); only that every benchmark ran.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_run_prints_the_table_and_exits_0(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--write", "--output", str(tmp_path / "r.md")],
        capture_output=True, text=True, timeout=840, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "| Figure | Measured | Target | Result |" in out
    assert "Machine:" in out and "cores" in out
    for figure in ("Detection delay", "Submit overhead", "Concurrency", "Free cell",
                   "Memory", "%load_ext kie_jupyter", "Market model", "shown with panels",
                   "Saved notebook bytes per image", "Batch of", "Gallery first paint",
                   "Sweep of", "Class proxy: ", "Class proxy fair share",
                   "Class proxy under load", "Class proxy killed", "First `%%kie4o` cell"):
        assert figure in out, figure
    assert "ERROR" not in out
    assert (tmp_path / "r.md").read_text(encoding="utf-8").strip() == out.strip()
