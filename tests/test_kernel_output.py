"""Background updates reach the right output in a real kernel, on ipykernel 7 and 6.

A ``--no-wait`` cell returns at once; its panel keeps updating from the task's thread. nbclient
records every widget message in the notebook's widget state, so the saved state shows whether
the updates arrived: the progress bar at 1.0, "Done in …", the image widgets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from kie_jupyter.testing import MockKieServer

KEY = "sk-KERNEL-0123456789"
IPYKERNEL6 = os.environ.get("KIE_IPYKERNEL6_PYTHON")

KERNELS = [pytest.param(sys.executable, id="ipykernel-current")]
KERNELS.append(pytest.param(
    IPYKERNEL6, id="ipykernel-6",
    marks=pytest.mark.skipif(not IPYKERNEL6, reason="KIE_IPYKERNEL6_PYTHON not set "
                             "(scripts/test.sh sets it up)"),
))


def kernelspec(tmp_path: Path, python: str) -> tuple[str, dict[str, str]]:
    """A kernelspec named for this test whose kernel runs on ``python``."""
    root = tmp_path / "jupyter"
    spec = root / "kernels" / "kie-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "kie test", "language": "python",
    }))
    return "kie-test", {"JUPYTER_PATH": str(root)}


def widget_states(nb) -> dict[str, dict]:
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    return {mid: m["state"] | {"_model_name": m["model_name"]} for mid, m in state.items()}


@pytest.mark.parametrize("python", KERNELS)
def test_no_wait_panels_update_from_the_background(tmp_path, monkeypatch, python):
    version = subprocess.run([python, "-c", "import ipykernel; print(ipykernel.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    name, env = kernelspec(tmp_path, python)
    with MockKieServer(api_key=KEY, duration=1.5) as server:
        for k, v in {**env, "KIE_API_KEY": KEY, "KIE_BASE_URL": server.url,
                     "KIE_UPLOAD_URL": server.url, "KIE_OUTPUT_DIR": str(tmp_path / "o")}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("KIE_DEMO", raising=False)
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_code_cell("%load_ext kie_jupyter"),
            nbformat.v4.new_code_cell("%%kie4o --no-wait -o a\nfirst of two"),
            nbformat.v4.new_code_cell("%%kie4o --no-wait -n 2 -o b\nsecond of two"),
            nbformat.v4.new_code_cell("print(a.done, b.done)"),
            nbformat.v4.new_code_cell("a.wait(); b.wait(); import time; time.sleep(0.5)\n"
                                      "print(a.status.value, b.status.value)"),
        ]
        NotebookClient(nb, timeout=120, kernel_name=name).execute()
    assert nb.cells[3].outputs[0]["text"].strip() == "False False", version
    assert nb.cells[4].outputs[0]["text"].strip() == "success success", version
    states = widget_states(nb)
    bars = [s for s in states.values() if s["_model_name"] == "FloatProgressModel"]
    assert len(bars) == 2 and all(b["value"] == 1.0 for b in bars), version
    statuses = [s["value"] for s in states.values()
                if s["_model_name"] == "HTMLModel" and "Done in" in s.get("value", "")]
    assert len(statuses) == 2, version
    images = [s for s in states.values() if s["_model_name"] == "ImageModel"]
    assert len(images) == 3, version
    # Each panel is the output of its own cell (the right output).
    for index in (1, 2):
        kinds = [o["output_type"] for o in nb.cells[index].outputs]
        assert "display_data" in kinds
