"""The example notebooks in notebooks/: they run, they are committed executed, and the README's
main job (``bash scripts/quickstart.sh``) works from a clean checkout.

Every notebook is executed as *Run All* would, with nbclient, in demo mode (the bundled mock
server, no API key), in a temporary copy of the notebooks folder so nothing in the repository is
written. The committed notebooks are checked as they are: executed in order, with their images,
and with nothing that looks like an API key.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from kie_jupyter.testing.notebooks import count_images, write_kernelspec

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
#: Fewest images each notebook shows once executed (a notebook not listed: at least one).
MIN_IMAGES = {"quickstart.ipynb": 20, "editing.ipynb": 5, "teaching.ipynb": 10,
              "iteration.ipynb": 15}
#: Largest committed notebook (outputs embed thumbnails, not full images).
MAX_BYTES = 1_572_864  # 1.5 MiB
#: Cells that print this are not working notebooks, whatever nbclient says.
FAILURE_TEXT = re.compile(r"UsageError|Traceback|Error:|Exception")
#: Things that look like a credential in a notebook's source or outputs.
KEY_PATTERNS = [
    re.compile(r"Bearer\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"KIE_API_KEY['\"\]]*\s*[=:]\s*['\"]?[A-Za-z0-9._-]{8,}"),
    re.compile(r"%env\s+KIE_API_KEY\s*=?\s*[A-Za-z0-9._-]{8,}"),
    re.compile(r"api[_-]?key['\"]?\s*[=:]\s*['\"][A-Za-z0-9._-]{8,}['\"]", re.IGNORECASE),
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),
]
#: KIE.AI keys are 32 hex digits, like task ids and widget model ids: each one found must be a
#: known id of the notebook.
HEX32 = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{32}(?![0-9a-fA-F])")

pytestmark = pytest.mark.skipif(not NOTEBOOKS, reason="no notebook in notebooks/")


# -- helpers -----------------------------------------------------------------------------------


def has_image(cell: nbformat.NotebookNode) -> bool:
    return count_images(nbformat.v4.new_notebook(cells=[cell])) > 0


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def is_generating_cell(cell: nbformat.NotebookNode) -> bool:
    """A ``%%kie4o`` cell that waits for its task (so its output must hold the images)."""
    first = cell.source.lstrip().splitlines()[0] if cell.source.strip() else ""
    return first.startswith("%%kie4o") and not re.search(r"--dry-run|--no-wait", first)


def problems(nb: nbformat.NotebookNode) -> list[str]:
    """What is wrong with an executed notebook's outputs (empty when all is well)."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        head = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                found.append(f"cell {index} ({head}): {out.ename}: {out.evalue}")
            elif out.output_type == "stream" and out.name == "stderr" and FAILURE_TEXT.search(
                    out.text):
                found.append(f"cell {index} ({head}) wrote to stderr: {out.text[:300]}")
        if is_generating_cell(cell) and not has_image(cell):
            found.append(f"cell {index} ({head}) shows no image")
        if head.startswith("%load_ext") and not cell.get("outputs"):
            found.append(f"cell {index} ({head}) printed nothing")
    return found


def kernelspec(tmp_path: Path) -> tuple[str, str]:
    """A kernelspec whose kernel runs on this interpreter (not whatever ``python3`` is)."""
    return "kie-notebooks", str(write_kernelspec(tmp_path / "jupyter", "kie-notebooks"))


def demo_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Demo mode as on Binder: no key, KIE_DEMO=1, history in a scratch folder."""
    for name in ("KIE_API_KEY", "KIE_BASE_URL", "KIE_UPLOAD_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KIE_DEMO", "1")
    monkeypatch.setenv("KIE_DEMO_DURATION", "0.5")
    monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "kie_home"))


# -- the notebooks run -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_in_demo_mode(path, tmp_path, monkeypatch):
    work = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOK_DIR, work, ignore=shutil.ignore_patterns("out", ".ipynb_checkpoints"))
    name, jupyter_path = kernelspec(tmp_path)
    monkeypatch.setenv("JUPYTER_PATH", jupyter_path)
    demo_env(monkeypatch, tmp_path)
    nb = nbformat.read(work / path.name, as_version=4)
    for cell in code_cells(nb):  # run from scratch, not from the committed outputs
        cell.outputs, cell.execution_count = [], None
    NotebookClient(nb, timeout=180, kernel_name=name,
                   resources={"metadata": {"path": str(work)}}).execute()
    assert problems(nb) == []
    assert count_images(nb) >= MIN_IMAGES.get(path.name, 1)
    # Whatever the notebook wrote stays beside it (here: the temporary copy).
    assert sorted(p.name for p in work.iterdir() if p.suffix != ".ipynb") in ([], ["out"])


# -- the committed notebooks -------------------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_is_executed(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    counts = [c.execution_count for c in code_cells(nb)]
    assert None not in counts, f"{path.name}: not executed (run scripts/execute_notebooks.py)"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: not run top to bottom"
    assert problems(nb) == []
    assert count_images(nb) >= MIN_IMAGES.get(path.name, 1)
    assert path.stat().st_size <= MAX_BYTES, f"{path.name}: {path.stat().st_size:,} bytes"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_holds_no_key(path):
    text = path.read_text(encoding="utf-8")
    for pattern in KEY_PATTERNS:
        assert not pattern.search(text), f"{path.name}: {pattern.search(text).group(0)!r}"
    nb = nbformat.reads(text, as_version=4)
    widgets = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    known = set(widgets.get("state", {}))  # widget model ids
    known |= set(re.findall(r"kie4o task ([0-9a-f]{32})", text))  # task ids
    known |= set(re.findall(r"/([0-9a-f]{32})_\d+\.\w+", text))  # task ids in image paths
    for cell in code_cells(nb):  # the task id column of history tables
        for out in cell.get("outputs", []):
            table = str(out.get("data", {}).get("text/plain", ""))
            if table.startswith("kie4o history"):
                known |= {line.split()[-1] for line in table.splitlines()[2:] if line.strip()}
    unknown = {m for m in HEX32.findall(text) if m not in known}
    assert not unknown, f"{path.name}: 32-hex strings that are no task or widget id: {unknown}"


# -- the README's main job from a clean checkout ----------------------------------------------


def overlay_venv(target: Path) -> Path:
    """A new venv that sees this interpreter's installed packages, for ``KIE_VENV``.

    ``scripts/quickstart.sh`` runs ``pip install -e .`` in ``$KIE_VENV``: pointed at the current
    venv itself, that would re-point its editable install at the temporary clone (gone after the
    test). A fresh venv whose ``.pth`` adds the current site-packages reuses every installed
    package without touching the current venv; only the clone's own editable install is new.
    """
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    python = target / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "_kie_reuse_parent_venv.pth").write_text("\n".join(sorted(here)) + "\n")
    return target


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="needs git and a git checkout")
def test_quickstart_script_from_a_clean_checkout(tmp_path):
    if not git("ls-files", "notebooks/quickstart.ipynb").strip():
        pytest.skip("notebooks/quickstart.ipynb is not committed yet, so a clean checkout "
                    "would not have it")
    clone = tmp_path / "clone"
    git("clone", "--quiet", str(ROOT), str(clone))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KIE_", "PYTEST_", "VIRTUAL_ENV"))}
    env.update({
        "KIE_VENV": str(overlay_venv(tmp_path / "venv")),
        "KIE_DEMO_DURATION": "0.5",
        "KIE_OUTPUT_DIR": str(tmp_path / "kie_home"),
        # This interpreter's Jupyter data (kernelspecs, nbconvert templates) for the overlay.
        "JUPYTER_PATH": os.pathsep.join(
            p for p in (str(Path(sys.prefix) / "share" / "jupyter"), os.environ.get(
                "JUPYTER_PATH")) if p),
        "PIP_NO_INPUT": "1",
    })
    result = subprocess.run(["bash", "scripts/quickstart.sh"], cwd=clone, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    notebook, page = clone / "out" / "quickstart.ipynb", clone / "out" / "quickstart.html"
    assert notebook.is_file() and page.is_file(), result.stdout
    nb = nbformat.read(notebook, as_version=4)
    assert problems(nb) == []
    assert count_images(nb) >= MIN_IMAGES["quickstart.ipynb"]
    assert page.read_text(encoding="utf-8").count("data:image/") >= MIN_IMAGES["quickstart.ipynb"]
