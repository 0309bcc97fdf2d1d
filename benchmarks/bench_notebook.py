"""Saved notebook bytes per image, at the default ``embed`` (thumb), with no widget state.

A notebook of ``cells`` ``%%kie4o`` cells (blocking, one and two images, and ``--no-wait``)
is executed by nbclient in a real kernel (this interpreter's ipykernel) against a
MockKieServer serving 1024 px images (the API's size), with ``store_widget_state=False`` —
how ``scripts/execute_notebooks.py`` and the tests save notebooks — and written with
nbformat. The figure is the whole file's bytes over the images it shows; also reported:
the same with nbclient's default (widget state stored), and whether any widget state or
widget view is left in either.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from _common import KEY, emit

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@dataclass
class NotebookResult:
    cells: int
    images: int
    file_bytes: int
    per_image: float  # file bytes / images (store_widget_state=False)
    empty_bytes: int  # the same notebook with its outputs cleared
    widget_state: bool  # "widgets" in the metadata
    widget_views: int  # outputs that are widget views
    stored_file_bytes: int  # with nbclient's default store_widget_state=True
    stored_per_image: float
    stored_widget_models: int  # widget models nbclient kept in that case


def _sources(cells: int) -> list[str]:
    out = []
    for k in range(cells):
        kind = k % 4
        if kind == 0:
            out.append(f"%%kie4o -o a{k}\nA lighthouse on a cliff at dusk, oil painting {k}")
        elif kind == 1:
            out.append(f"%%kie4o -n 2 -o b{k}\nA red fox in the snow, watercolor {k}")
        elif kind == 2:
            out.append(f"%%kie4o -s 3:2 -o c{k}\nA city street in the rain at night {k}")
        else:
            out.append(f"%%kie4o --no-wait -o d{k}\nA bowl of fruit on a table {k}")
    return out


def _run(cells: int, store: bool, tmp: Path) -> tuple[dict, int, int]:
    import nbformat
    from nbclient import NotebookClient

    from kie_jupyter.testing import MockKieServer
    from kie_jupyter.testing.notebooks import count_images, write_kernelspec

    root = write_kernelspec(tmp / "jupyter", "kie-bench")
    with MockKieServer(api_key=KEY, duration=0.5, image_long_side=1024, rate_limit=None,
                       credits=1e9) as server:
        env = {"JUPYTER_PATH": str(root), "KIE_API_KEY": KEY, "KIE_BASE_URL": server.url,
               "KIE_UPLOAD_URL": server.url, "KIE_OUTPUT_DIR": str(tmp / "out")}
        saved = {k: os.environ.get(k) for k in (*env, "KIE_DEMO")}
        os.environ.update(env)
        os.environ.pop("KIE_DEMO", None)
        try:
            nb = nbformat.v4.new_notebook()
            sources = _sources(cells)
            waits = [s.split("-o ")[1].split()[0] for s in sources if "--no-wait" in s]
            nb.cells = [nbformat.v4.new_code_cell("%load_ext kie_jupyter")]
            nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
            if waits:  # Run All: a later cell waits for the --no-wait tasks
                nb.cells.append(nbformat.v4.new_code_cell(
                    "for _t in (" + ", ".join(waits) + ",): _t.wait()"))
            NotebookClient(nb, timeout=300, kernel_name="kie-bench",
                           store_widget_state=store).execute()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    text = nbformat.writes(nb)
    return nb, len(text.encode("utf-8")), count_images(nb)


def measure_notebook(cells: int = 8) -> NotebookResult:
    import nbformat

    with tempfile.TemporaryDirectory(prefix="kie-bench-nb-") as tmp:
        nb, size, images = _run(cells, False, Path(tmp) / "plain")
        stored, stored_size, stored_images = _run(cells, True, Path(tmp) / "stored")
    empty = nbformat.from_dict(json.loads(nbformat.writes(nb)))
    for cell in empty.cells:
        cell.outputs = []
    views = sum(1 for c in nb.cells for o in c.get("outputs", [])
                if WIDGET_VIEW in o.get("data", {}))
    state = stored.metadata.get("widgets", {}).get(
        "application/vnd.jupyter.widget-state+json", {}).get("state", {})
    return NotebookResult(
        cells=cells, images=images, file_bytes=size,
        per_image=size / images if images else float("nan"),
        empty_bytes=len(nbformat.writes(empty).encode("utf-8")),
        widget_state="widgets" in nb.metadata, widget_views=views,
        stored_file_bytes=stored_size,
        stored_per_image=stored_size / stored_images if stored_images else float("nan"),
        stored_widget_models=len(state),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="end with a machine-readable line")
    args = parser.parse_args(argv)
    r = measure_notebook(args.cells)
    print(f"{r.cells} cells, {r.images} images: {r.file_bytes / 1024:.1f} KB saved "
          f"({r.per_image / 1024:.1f} KB per image; {r.empty_bytes / 1024:.1f} KB with no "
          f"outputs); widget state: {r.widget_state}, widget views: {r.widget_views}; with "
          f"nbclient's default widget state: {r.stored_per_image / 1024:.1f} KB per image, "
          f"{r.stored_widget_models} widget models kept")
    if args.json:
        emit(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
