"""A class notebook run as a student through the proxy (nbclient, a real kernel): real images,
the key never in the kernel, and the proxy's refusal shown in the card as it is."""

from __future__ import annotations

import json
import sys

import nbformat
from nbclient import NotebookClient

from kie_jupyter.testing.notebooks import write_kernelspec


def _kernelspec(tmp_path) -> dict[str, str]:
    return {"JUPYTER_PATH": str(write_kernelspec(tmp_path / "jupyter", "kie-class"))}


def _text(cell) -> str:
    parts = []
    for out in cell.outputs:
        parts.append(out.get("text", ""))
        for value in out.get("data", {}).values():
            parts.append(value if isinstance(value, str) else json.dumps(value))
        parts.append(out.get("evalue", ""))
    return "\n".join(parts)


def test_a_student_notebook_makes_images_through_the_proxy(proxy, ledger, tmp_path,
                                                           monkeypatch):
    token = ledger.add_student("ada", 2)
    for key, value in {**_kernelspec(tmp_path), "KIE_API_KEY": token,
                       "KIE_BASE_URL": proxy.url, "KIE_UPLOAD_URL": proxy.url + "/upload",
                       "KIE_OUTPUT_DIR": str(tmp_path / "out")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("KIE_DEMO", raising=False)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in [
        "%load_ext kie_jupyter",
        "%%kie4o -n 2 -o fox\nA fox in the snow",
        "print(len(fox.images), fox.status.value)",
        "%%kie4o -o cat\nA cat on a mat",
        "%kie4o credits",
        "import os\nprint('KIE key in kernel:', 'TEACHER' in os.environ.get('KIE_API_KEY', ''))",
    ]])
    NotebookClient(nb, timeout=120, kernel_name="kie-class", allow_errors=True,
                   store_widget_state=False).execute()
    assert _text(nb.cells[2]).strip() == "2 success"
    assert "data:image/" in _text(nb.cells[1])
    refused = _text(nb.cells[3])
    assert "class quota used: 2 of 2 images — ask your teacher" in refused, refused
    assert "top up" not in refused  # the proxy's words, not KIE's hint
    assert "0" in _text(nb.cells[4])
    assert "False" in _text(nb.cells[5])
    assert ledger.student_named("ada").used == 2
