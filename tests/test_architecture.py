"""The layers hold: front ends → engine → api, a standalone fake server, no import cycles.

Runs import-linter on the package (its contracts live in pyproject.toml), and proves the check
can fail: a copy of the package with one cycle added is refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def _lint(workdir: Path, package_parent: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_package_keeps_its_contracts():
    result = _lint(ROOT, ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "added", "expected"), [
    # A cycle inside the engine, hidden in a function as the old code did.
    ("engine/history.py", "\n\ndef _late():\n    from .task import Task  # noqa\n",
     "No import cycles"),
    # The engine reaching up into the notebook front end.
    ("engine/poller.py", "\nfrom ..notebook import cards  # noqa\n", "one way"),
    # The fake server leaning on the client it stands in for.
    ("fakeapi/_files.py", "\nfrom ..api import errors  # noqa\n", "stands alone"),
])
def test_a_breach_is_refused(tmp_path, module, added, expected):
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "kie_jupyter", copy / "kie_jupyter",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(copy / "kie_jupyter" / module, "a", encoding="utf-8") as fh:
        fh.write(added)
    result = _lint(tmp_path, copy)
    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert expected in broken, result.stdout
