"""What a notebook saved by nbclient keeps, in a real kernel, on ipykernel 7 and 6.

Per task, exactly one output holds its card (the prompt once, the id once) with its images, or
the reason on failure: the live panel gave way to it in the same display, for blocking,
failing and ``--no-wait`` cells alike. No output is a widget view, and no widget the notebook
shows is left in its widget state. A ``--no-wait`` task's card is put in place from the task's
own thread, while a later cell waits for it (what Run All does).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from kie_jupyter.testing import MockKieServer

KEY = "sk-KERNEL-0123456789"
IPYKERNEL6 = os.environ.get("KIE_IPYKERNEL6_PYTHON")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: Bytes a saved notebook spends per image at the default ``embed`` (thumb): a 512-pixel
#: JPEG, wide enough to judge (issue #23), and the full-size viewer's script with each card.
MAX_BYTES_PER_IMAGE = 48 * 1024

KERNELS = [pytest.param(sys.executable, id="ipykernel-current")]
KERNELS.append(pytest.param(
    IPYKERNEL6, id="ipykernel-6",
    marks=pytest.mark.skipif(not IPYKERNEL6, reason="KIE_IPYKERNEL6_PYTHON not set "
                             "(scripts/test.sh sets it up)"),
))

CELLS = {
    "blocking": ("%%kie4o -n 2 -o fox\nA red fox in the snow, watercolor", 2),
    "failing": ("%%kie4o -o cat\nA cat [mock:fail]", 0),
    "no-wait one": ("%%kie4o --no-wait -o a\nfirst of two, in the background", 1),
    "no-wait two": ("%%kie4o --no-wait -n 2 -o b\nsecond of two, in the background", 2),
}


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


def html_of(output: dict) -> str:
    html = output.get("data", {}).get("text/html", "")
    return "".join(html) if isinstance(html, list) else html


def referenced_models(nb) -> set[str]:
    """Widget model ids that an output of the notebook shows."""
    return {o["data"][WIDGET_VIEW]["model_id"] for c in nb.cells for o in c.get("outputs", [])
            if WIDGET_VIEW in o.get("data", {})}


@pytest.mark.parametrize("python", KERNELS)
def test_saved_notebook_holds_one_card_per_task(tmp_path, monkeypatch, python):
    version = subprocess.run([python, "-c", "import ipykernel; print(ipykernel.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    name, env = kernelspec(tmp_path, python)
    with MockKieServer(api_key=KEY, duration=1.5) as server:
        for k, v in {**env, "KIE_API_KEY": KEY, "KIE_BASE_URL": server.url,
                     "KIE_UPLOAD_URL": server.url, "KIE_OUTPUT_DIR": str(tmp_path / "o")}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("KIE_DEMO", raising=False)
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("%load_ext kie_jupyter")]
        nb.cells += [nbformat.v4.new_code_cell(source) for source, _ in CELLS.values()]
        nb.cells += [
            nbformat.v4.new_code_cell("print(a.done, b.done)"),
            nbformat.v4.new_code_cell("a.wait(); b.wait()\nprint(a.status.value, b.status.value)"),
        ]
        NotebookClient(nb, timeout=120, kernel_name=name).execute()
    assert nb.cells[-2].outputs[0]["text"].strip() == "False False", version
    assert nb.cells[-1].outputs[0]["text"].strip() == "success success", version

    per_image = []
    for index, (label, (source, n_images)) in enumerate(CELLS.items(), start=1):
        outputs = nb.cells[index].outputs
        kinds = [sorted(o.get("data", {})) for o in outputs]
        where = f"{label} cell on ipykernel {version}: {kinds}"
        assert not any(WIDGET_VIEW in o.get("data", {}) for o in outputs), where
        cards = [o for o in outputs if "kie4o-card" in html_of(o)]
        assert len(cards) == 1, where
        html = html_of(cards[0])
        prompt = source.split("\n", 1)[1]
        task_id = re.search(r'class="kie4o-id"[^>]*>([0-9a-f]{32})<', html).group(1)
        shown = re.sub(r' (alt|aria-label)="[^"]*"', "", html)  # alt text repeats the prompt
        assert shown.count(prompt) == 1 and html.count(task_id) == 1, where
        assert html.count("data:image/") == n_images, where
        text = cards[0]["data"]["text/plain"]
        assert task_id in (text if isinstance(text, str) else "".join(text))
        if n_images:
            var = re.search(r"-o (\w+)", source).group(1)
            assert f">{var}[0]<" in html and f">{var}[{n_images - 1}]<" in html, where
            per_image.append(len(json.dumps(cards[0])) / n_images)
        else:
            assert "content polic" in html and "kie4o-error" in html, where
    print(f"\nipykernel {version}: bytes per image in the saved notebook (embed=thumb): "
          f"{', '.join(f'{b / 1024:.1f} KB' for b in per_image)}")
    assert max(per_image) <= MAX_BYTES_PER_IMAGE, per_image
    # nbclient keeps the state of every widget it saw, closed or not (it ignores comm_close):
    # none of them is shown by an output, so nothing asks for a model that is gone.
    assert referenced_models(nb) == set()


def test_nbclient_without_widget_state_saves_none(tmp_path, monkeypatch):
    """As scripts/execute_notebooks.py runs notebooks: no widget state in the metadata."""
    name, env = kernelspec(tmp_path, sys.executable)
    with MockKieServer(api_key=KEY, duration=0.5) as server:
        for k, v in {**env, "KIE_API_KEY": KEY, "KIE_BASE_URL": server.url,
                     "KIE_UPLOAD_URL": server.url, "KIE_OUTPUT_DIR": str(tmp_path / "o")}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("KIE_DEMO", raising=False)
        nb = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_code_cell("%load_ext kie_jupyter"),
            nbformat.v4.new_code_cell("%%kie4o -o fox\nA fox"),
        ])
        NotebookClient(nb, timeout=120, kernel_name=name, store_widget_state=False).execute()
    assert "widgets" not in nb.metadata
    assert not any(WIDGET_VIEW in o.get("data", {}) for o in nb.cells[1].outputs)
