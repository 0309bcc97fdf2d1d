"""Execute notebooks with nbclient (as Run All would) and write them, and HTML copies, out.

    python scripts/execute_notebooks.py --demo --html --out out notebooks/quickstart.ipynb
    python scripts/execute_notebooks.py --demo --in-place notebooks/*.ipynb

``--demo`` sets KIE_DEMO=1 so the notebooks run against the bundled mock server with no key.
Exits non-zero if a cell fails or an executed notebook holds no image.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from kie_jupyter.testing.notebooks import count_images


def execute(path: Path, *, timeout: int, workdir: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)  # a previous run's widget state, if any
    # No widget state: each panel is replaced by its static card and closed, but nbclient keeps
    # the state of every widget it saw, closed or not (dead weight in the committed file).
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            store_widget_state=False,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--demo", action="store_true", help="run in demo mode (KIE_DEMO=1)")
    parser.add_argument("--out", type=Path, default=None, help="folder for executed copies")
    parser.add_argument("--in-place", action="store_true", help="overwrite the notebooks")
    parser.add_argument("--html", action="store_true", help="also write an HTML copy")
    parser.add_argument("--timeout", type=int, default=600, help="per-cell timeout (s)")
    args = parser.parse_args(argv)
    if args.demo:
        os.environ["KIE_DEMO"] = "1"
        os.environ.pop("KIE_API_KEY", None)
    # History and saved images of the run go to a scratch folder unless one is chosen.
    os.environ.setdefault("KIE_OUTPUT_DIR", tempfile.mkdtemp(prefix="kie4o-run-"))
    failed = 0
    for path in args.notebooks:
        workdir = path.resolve().parent
        print(f"executing {path} ...", flush=True)
        try:
            nb = execute(path, timeout=args.timeout, workdir=workdir)
        except Exception as exc:  # report every notebook, then fail
            print(f"FAILED {path}: {type(exc).__name__}: {str(exc)[-2000:]}", file=sys.stderr)
            failed += 1
            continue
        images = count_images(nb)
        target = path if args.in_place else (args.out or Path("out")) / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        print(f"wrote {target} ({images} images)")
        if args.html:
            from nbconvert import HTMLExporter

            body, _ = HTMLExporter().from_notebook_node(nb)
            html_path = target.with_suffix(".html")
            html_path.write_text(body, encoding="utf-8")
            print(f"wrote {html_path}")
        if images == 0:
            print(f"FAILED {path}: no image in the executed notebook", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
