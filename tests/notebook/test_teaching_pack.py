"""How a teacher ships a replay pack: the Binder configuration builds and loads the lesson's
pack, and the teaching notebook, run as on Binder, shows the recorded pictures for the lesson's
recorded prompts and synthetic ones for the rest."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from test_notebooks import demo_env, kernelspec, problems

from kie_jupyter.fakeapi.packs import load_pack

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"


def make_pack(out: Path) -> None:
    subprocess.run([sys.executable, str(BINDER / "make_pack.py"), str(out)], check=True,
                   capture_output=True, text=True)


def test_binder_builds_the_lesson_pack_and_start_loads_it(tmp_path):
    assert "python binder/make_pack.py binder/lesson.kiepack" in (
        BINDER / "postBuild").read_text()
    binder = tmp_path / "binder"
    binder.mkdir()
    shutil.copy(BINDER / "start", binder / "start")
    env = {k: v for k, v in os.environ.items() if k not in ("KIE_DEMO_PACK", "KIE_DEMO")}

    def started() -> dict[str, str]:
        out = subprocess.run(["bash", str(binder / "start"), "env"], env=env, check=True,
                             capture_output=True, text=True).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    assert started()["KIE_DEMO"] == "1" and "KIE_DEMO_PACK" not in started()  # no pack: none
    make_pack(binder / "lesson.kiepack")
    assert started()["KIE_DEMO_PACK"] == str(binder / "lesson.kiepack")
    pack = load_pack(binder / "lesson.kiepack")
    assert len(pack.tasks) == 2 and all(t.size == "3:2" for t in pack.tasks)
    assert (binder / "lesson.kiepack").stat().st_size < 100_000  # a small file


def test_teaching_notebook_shows_the_pack_images_for_recorded_prompts(tmp_path, monkeypatch):
    work = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", work,
                    ignore=shutil.ignore_patterns("out", ".ipynb_checkpoints"))
    make_pack(work / "lesson.kiepack")  # shipped next to the notebook: its second cell loads it
    name, jupyter_path = kernelspec(tmp_path)
    monkeypatch.setenv("JUPYTER_PATH", jupyter_path)
    demo_env(monkeypatch, tmp_path)
    monkeypatch.delenv("KIE_DEMO_PACK", raising=False)
    nb = nbformat.read(work / "teaching.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    # What a curious student could check: where each picture came from.
    nb.cells.append(nbformat.v4.new_code_cell(
        "print('first:', first.urls[0].split('/files/')[1].split('/')[0])\n"
        "for task in styles.tasks:\n"
        "    print(task.prompt.split(', ')[1] + ':', task.urls[0].split('/files/')[1]"
        ".split('/')[0])"))
    NotebookClient(nb, timeout=180, kernel_name=name,
                   resources={"metadata": {"path": str(work)}}).execute()
    assert problems(nb) == []
    banner = "".join(o.get("text", "") for o in nb.cells[2].outputs)
    assert "with the class pack lesson.kiepack (2 recorded prompt(s)" in banner
    sources = "".join(o.get("text", "") for o in nb.cells[-1].outputs).splitlines()
    assert sources == ["first: pack", "watercolor illustration: pack",
                       "35 mm film photo: results", "pixel art: pack",
                       "charcoal sketch: results"]
