"""Review 23: sweep grids say which cell each image is, a part of a sweep keeps its prompt,
-n sweeps show the index users type, and export takes each task and each image once, by its
own number."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import warnings
import zipfile

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from PIL import Image

from kie_jupyter.engine.sweep import Sweep
from kie_jupyter.notebook.cards import sweep_bundle
from kie_jupyter.notebook.workbench import Item, contact_sheet, export_zip

from magic_helpers import cell

OWLS = "%%kie4o --model 4o,seedream-4.5 -o sw\nA {red|charcoal sketch} owl"


def _returned(sh, text: str) -> dict:
    """The mimebundle of what a line magic returns."""
    with capture_output():
        result = sh.run_cell(text)
    if result.error_in_exec is not None:
        raise result.error_in_exec
    return result.result._repr_mimebundle_()


def _last(cap, kind: str) -> str:
    return [o.data[kind] for o in cap.outputs if kind in o.data][-1]


def _alts(page: str) -> list[str]:
    return [html.unescape(a) for a in re.findall(r'<img [^>]*?alt="([^"]*)"', page)]


def _pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB").tobytes()


def test_each_sweep_image_says_its_cell_model_and_pick(shell):
    page = _last(cell(shell, OWLS), "text/html")
    alts = _alts(page)
    assert len(alts) == 4 and len(set(alts)) == 4, alts
    assert "A red owl — red / 4o — image 1 (sw['red', '4o'][0])" in alts, alts
    assert ("A charcoal sketch owl — charcoal sketch / seedream-4.5 — image 1 "
            "(sw['charcoal sketch', 'seedream-4.5'][0])") in alts, alts
    # One model for every cell: it is still said, after the labels.
    sw = shell.user_ns["sw"]
    alone = _alts(sweep_bundle(sw["4o"])["text/html"])
    assert alone == ["A red owl — red / 4o — image 1", "A charcoal sketch owl — charcoal "
                     "sketch / 4o — image 1"], alone


def test_a_part_of_a_sweep_keeps_its_template_and_shows_no_false_shared_prompt(shell):
    cell(shell, OWLS)
    sw = shell.user_ns["sw"]
    part = sw["4o"]
    assert isinstance(part, Sweep)
    assert (part.template, part.source) == (sw.template, sw.source) != (None, None)
    # Its grid has the values it holds: one model column, not an empty one beside it.
    assert [a.values for a in part.axes] == [("red", "charcoal sketch"), ("4o",)]
    prompt = re.search(r'class="kie4o-prompt"[^>]*>(.*?)</div>',
                       sweep_bundle(part)["text/html"]).group(1)
    assert "{red|charcoal sketch}" in prompt and "A red owl" not in prompt, prompt
    # Made without a template, prompts that differ are not shown as one shared prompt.
    bare = Sweep(sw.axes, [(sw.label(t), t) for t in part.tasks])
    page = sweep_bundle(bare)["text/html"]
    assert page.count("kie4o-cell-none") == 2  # the holes keep their places in the grid
    assert "kie4o-prompt" not in page and "A red owl" not in re.sub(
        r' (alt|aria-label)="[^"]*"', "", page)


def test_an_n_sweep_shows_the_index_that_picks_each_task(shell):
    cap = cell(shell, "%%kie4o -n 2 --model seedream-4.5 -o sdn\nA cat")
    page, text = _last(cap, "text/html"), _last(cap, "text/plain")
    heads = re.findall(r'class="kie4o-col"[^>]*>([^<]*)<', page)
    assert heads == ["sdn[0]", "sdn[1]"], heads
    assert "sdn[0][0]" in page and "sdn[1][0]" in page
    lines = text.splitlines()[1:]
    assert [line.split()[0] for line in lines] == ["sdn[0]", "sdn[1]"], text
    sdn = shell.user_ns["sdn"]
    assert sdn[0] is sdn.tasks[0] and sdn[1] is sdn.tasks[1]
    unnamed = sweep_bundle(sdn)
    assert re.findall(r'class="kie4o-col"[^>]*>([^<]*)<', unnamed["text/html"]) == [
        "[0]", "[1]"]
    assert [ln.split()[0] for ln in unnamed["text/plain"].splitlines()[1:]] == ["[0]", "[1]"]


def test_export_and_compare_take_each_task_once(shell, tmp_path):
    cell(shell, "%%kie4o -o fox -n 2\nA red fox")
    cell(shell, OWLS)
    fox, sw = shell.user_ns["fox"], shell.user_ns["sw"]
    cell(shell, f"%kie4o export {tmp_path / 'a.html'} $fox $fox[1] {fox.task_id}")
    assert (tmp_path / "a.html").read_text().count('<section class="card"') == 1
    cell(shell, f"%kie4o export {tmp_path / 'b.html'} $sw $sw[0]")
    assert (tmp_path / "b.html").read_text().count('<section class="card"') == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zipfile's "Duplicate name" would raise
        cell(shell, f"%kie4o export {tmp_path / 'a.zip'} $fox $fox[1]")
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        names = zf.namelist()
    assert len(names) == len(set(names)) == 3, names
    page = _returned(shell, "%kie4o compare $sw $sw[0]")["text/html"]
    assert page.count("<code>") == 4 and page.count(sw.tasks[0].task_id) == 1
    with pytest.raises(UsageError, match="two or more"):
        cell(shell, "%kie4o compare $fox $fox[0]")


def test_the_zip_names_each_image_by_its_number_whatever_file_it_was_saved_as(
        shell, tmp_path):
    cell(shell, "%%kie4o -o fox -n 2\nA red fox")
    fox = shell.user_ns["fox"]
    fox[0].save(tmp_path / "pa" / "pick.png")
    fox[1].save(tmp_path / "pb" / "pick.png")
    cell(shell, f"%kie4o export {tmp_path / 'e.zip'} $fox")
    with zipfile.ZipFile(tmp_path / "e.zip") as zf:
        names = zf.namelist()
        images = {n: zf.read(f"{fox.task_id}/{fox.task_id}_{n}.png") for n in (0, 1)}
        meta = json.loads(zf.read(f"{fox.task_id}/{fox.task_id}.json"))
    assert len(names) == len(set(names)) == 3, names
    for n, data in images.items():
        assert _pixels(data) == _pixels(fox[n].data), n
        assert b"kie:task_id" in data
    assert meta["files"] == [f"{fox.task_id}_0.png", f"{fox.task_id}_1.png"]
    assert meta["missing"] is None


def test_the_sheet_goes_image_by_image_and_says_what_is_only_small(shell, tmp_path):
    cell(shell, "%%kie4o -o fox -n 2 -s 3:2\nA red fox")
    fox = shell.user_ns["fox"]
    fox[1].save(tmp_path / "only" / "pick.png")  # image 2 only, under a name of its own
    out = tmp_path / "c.html"
    cell(shell, f"%kie4o export {out} $fox")
    page = out.read_text()
    assert _alts(page) == ["A red fox — image 1 (4o), a small copy", "A red fox — image 2 (4o)"]
    sizes = []
    for src in re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page):
        with Image.open(io.BytesIO(base64.b64decode(src))) as im:
            sizes.append(im.size)
    assert sizes == [(256, 171), (512, 341)], sizes  # the kept copy, then the saved image
    assert '<p class="note">image 1: not saved; only its small copy is kept</p>' in page


def _jpeg(colour: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buf, "JPEG")
    return buf.getvalue()


def test_without_a_full_image_or_a_copy_the_export_says_so_and_numbers_the_rest():
    # Three images: the first was never kept at all, the second only as a small copy, the
    # third saved under a name of its own that says its number.
    item = Item(task_id="t1", prompt="a fox", params={}, status="success",
                urls=["https://x/0.png", "https://x/1.png", "https://x/2.png"],
                thumbs=[_jpeg("red")], thumb_numbers=[1],
                full=[("t1_2.png", _png("blue"))])
    page = contact_sheet([item], "sheet")
    assert _alts(page) == ["a fox — image 2 (4o), a small copy", "a fox — image 3 (4o)"]
    assert "image 1: not saved, and no copy of it is kept" in page
    archive = export_zip([item])
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        meta = json.loads(zf.read("t1/t1.json"))
    assert meta["files"] == ["t1_1_small.jpg", "t1_2.png"]
    assert meta["missing"] == ["image 1: not saved, and no copy of it is kept",
                               "image 2: not saved; only its small copy is kept"]

    def fetch(url: str) -> bytes:
        if url.endswith("0.png"):
            raise OSError("gone")
        return _png("green")

    with zipfile.ZipFile(io.BytesIO(export_zip([item], fetch=fetch))) as zf:
        meta = json.loads(zf.read("t1/t1.json"))
    assert meta["files"] == ["t1_1.png", "t1_2.png"]
    assert meta["missing"] == ["image 1: not saved, and its link failed (gone), and no copy "
                               "of it is kept"]


def _png(colour: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buf, "PNG")
    return buf.getvalue()
