"""The workbench subcommands through a real IPython shell: gallery, star, compare, rerun,
info, export."""

from __future__ import annotations

import json
import re
import zipfile

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from magic_helpers import all_text, run


class Ran:
    """What one line showed: printed text and the value it returned."""

    def __init__(self, cap, value) -> None:
        self.cap, self.value = cap, value

    def bundle(self) -> dict:
        return self.value._repr_mimebundle_() if self.value is not None else {}


def line(sh, text: str) -> Ran:
    """Run one line magic; raise the UsageError it ends with, else return what it showed."""
    with capture_output() as cap:
        result = sh.run_cell(text)
    if result.error_in_exec is not None:
        raise result.error_in_exec
    return Ran(cap, result.result)


def html_of(ran: Ran) -> str:
    return ran.bundle().get("text/html", "")


@pytest.fixture()
def made(shell):
    """Three finished tasks: a fox in two sizes and an owl."""
    run(shell, "%%kie4o -o fox\na red fox in the snow")
    run(shell, "%%kie4o -o fox2 -s 3:2\na red fox in the rain, at night")
    run(shell, "%%kie4o -o owl -n 2\nan owl <b>bold</b>")
    ns = shell.user_ns
    return ns["fox"], ns["fox2"], ns["owl"]


def test_gallery_pages_searches_and_stars(shell, made):
    fox, fox2, owl = made
    page = html_of(line(shell, "%kie4o gallery"))
    assert "3 task(s)" in page and page.count("<img") == 4  # every finished task, thumbnails
    assert page.index(owl.task_id) < page.index(fox.task_id)  # newest first
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page  # escaped
    # No remote image or link: a price's source page only in a tooltip.
    shown = re.sub(r' title="[^"]*"', "", page.split("kie4o gallery")[1])
    assert "data:image/jpeg;base64," in page and "http" not in shown
    second = html_of(line(shell, "%kie4o gallery 2 --page 2"))
    assert "page 2 of 2" in second and fox.task_id in second
    rain = line(shell, "%kie4o gallery --search RAIN").bundle()["text/plain"]
    assert "1 task(s), matching 'RAIN'" in rain and fox2.task_id in rain
    line(shell, f"%kie4o star {fox2.task_id}")
    starred = html_of(line(shell, "%kie4o gallery --starred"))
    assert fox2.task_id in starred and fox.task_id not in starred
    line(shell, f"%kie4o unstar {fox2.task_id}")
    assert "1 task" not in html_of(line(shell, "%kie4o gallery --starred"))
    assert "0 task(s)" in line(shell, "%kie4o gallery --demo").bundle()["text/plain"]
    assert "3 task(s)" in line(shell, "%kie4o gallery --live").bundle()["text/plain"]
    with pytest.raises(UsageError, match="not a task in the history"):
        line(shell, "%kie4o star nope")


def test_compare_marks_word_and_parameter_differences(shell, made):
    fox, fox2, _ = made
    page = html_of(line(shell, f"%kie4o compare $fox {fox2.task_id}"))
    assert "<del" in page and "snow" in page.split("<del")[1][:200]
    assert "<ins" in page and "rain, at night" in page.split("<ins")[1][:200]
    assert "<mark" in page and "3:2" in page.split("<mark")[1][:100]
    assert page.count("<img") == 2
    with pytest.raises(UsageError, match="two or more"):
        line(shell, "%kie4o compare $fox")
    with pytest.raises(UsageError, match="not a task in the history"):
        line(shell, "%kie4o compare $fox nope")


def test_rerun_puts_the_cell_below_from_a_task_an_id_or_a_png(shell, made, tmp_path):
    fox, fox2, owl = made
    payloads = []
    shell.set_next_input = lambda text, replace=False: payloads.append(text)
    line(shell, "%kie4o rerun $owl")
    assert payloads[-1] == "%%kie4o -s 1:1 -n 2\nan owl <b>bold</b>"
    line(shell, f"%kie4o rerun {fox2.task_id}")
    assert payloads[-1] == "%%kie4o -s 3:2\na red fox in the rain, at night"
    path = fox2[0].save(tmp_path / "keep.png")
    line(shell, f"%kie4o rerun {path}")
    assert payloads[-1] == "%%kie4o -s 3:2\na red fox in the rain, at night"
    info = line(shell, f"%kie4o info {path}").bundle()["text/plain"]
    assert fox2.task_id in info and "rain, at night" in info
    # The re-run cell runs as it is.
    run(shell, payloads[-1])
    assert shell.user_ns["_kie4o"].status.value == "success"


def test_export_html_opens_offline_and_zip_has_images_and_json(shell, made, tmp_path):
    fox, fox2, owl = made
    out = tmp_path / "sheet.html"
    line(shell, f"%kie4o export {out}")
    page = out.read_text()
    assert page.count("data:image/jpeg;base64,") == 4
    # No external resource: the only URLs are the full-size links.
    srcs = [s.split('"')[0] for s in page.split('src="')[1:]]
    assert all(s.startswith("data:") for s in srcs) and "<link" not in page
    archive = tmp_path / "all.zip"
    line(shell, f"%kie4o export {archive} --search fox")
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        assert f"{fox.task_id}/{fox.task_id}.json" in names
        assert not any(owl.task_id in n for n in names)
        meta = json.loads(zf.read(f"{fox2.task_id}/{fox2.task_id}.json"))
        assert meta["prompt"] == "a red fox in the rain, at night" and meta["files"]
        png = zf.read(f"{fox2.task_id}/{meta['files'][0]}")
        assert b"kie:task_id" in png
    with pytest.raises(UsageError, match=r"\.html.*\.zip"):
        line(shell, f"%kie4o export {tmp_path / 'x.pdf'}")


def test_each_new_subcommand_has_help(shell):
    for sub in ("gallery", "star", "unstar", "compare", "rerun", "info", "export"):
        ran = line(shell, f"%kie4o {sub} -h")
        assert "usage: %kie4o " + sub in all_text(ran.cap)


def test_rerun_keeps_a_model_s_own_options():
    from kie_jupyter.notebook.workbench import rerun_cell

    params = {"size": "16:9", "resolution": "4K", "output_format": "jpg",
              "params": {"seed": 3}, "files": []}
    cell = rerun_cell(params, "a lighthouse {at} night", model="nano-banana-pro")
    assert cell == ("%%kie4o --model nano-banana-pro -s 16:9 --resolution 4K --format jpg "
                    "--param seed=3\na lighthouse {{at}} night")


def test_the_contact_sheet_is_fit_to_send(shell, tmp_path):
    import base64
    import io

    from PIL import Image

    run(shell, f"%%kie4o -s 3:2 -o fox --save {tmp_path / 'saved'}\na red fox in the snow")
    fox = shell.user_ns["fox"]
    fox[0].save(tmp_path / "pick.png")  # the same image saved twice
    from kie_jupyter.engine.history import HistoryStore

    assert len(HistoryStore().get(fox.task_id).saved_paths) == 2
    out = tmp_path / "sheet.html"
    line(shell, f"%kie4o export {out} {fox.task_id}")
    page = out.read_text()
    # Parameters as chips, not raw JSON; provenance folded away; no link anywhere.
    assert '<span class="chip">3:2</span>' in page and '<span class="chip">4o</span>' in page
    assert '"callback_url"' not in page and "{&quot;" not in page
    assert "<details><summary>How it was made</summary>" in page
    assert "<a " not in page and "href=" not in page
    assert "break-all" not in page and "@media print" in page
    # The image is the saved one, large (not the 256-pixel thumbnail), with alt text.
    (src,) = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    with Image.open(io.BytesIO(base64.b64decode(src))) as im:
        assert im.size == (512, 341)
    assert 'alt="a red fox in the snow — image 1 (4o)"' in page
    archive = tmp_path / "one.zip"
    line(shell, f"%kie4o export {archive} {fox.task_id}")
    with zipfile.ZipFile(archive) as zf:
        pngs = [n for n in zf.namelist() if n.endswith(".png")]
    assert len(pngs) == 1  # each image once, though saved twice


def test_info_says_what_it_shows_and_help_has_single_percent_signs(shell, tmp_path):
    run(shell, f"%%kie4o -o fox --save {tmp_path}\na fox")
    (png,) = tmp_path.glob("*.png")
    shown = line(shell, f"%kie4o info {png}").bundle()["text/plain"]
    assert shown.startswith(f"kie4o info — how {png.name} was made")
    assert "settings" not in shown.splitlines()[0]
    helped = all_text(line(shell, "%kie4o -h").cap)
    assert "`%kie4o gallery --starred`" in helped and "%%kie4o gallery" not in helped
    doc = shell.find_cell_magic("kie4o").__doc__
    assert "{a|b}" in doc and "--model" in doc and "4o Image API" not in doc
    assert "prices" in doc and "gallery" in doc


def test_every_command_takes_a_task_its_image_a_sweep_an_id_or_a_prefix(shell, made, tmp_path):
    fox, fox2, owl = made
    line(shell, "%kie4o star $fox")
    line(shell, "%kie4o star $owl[1]")
    line(shell, f"%kie4o star {fox2.task_id[:8]}")
    from kie_jupyter.engine.history import HistoryStore

    history = HistoryStore()
    assert all(history.get(t.task_id).starred for t in made)
    line(shell, "%kie4o unstar {fox}")
    assert not HistoryStore().get(fox.task_id).starred
    with pytest.raises(UsageError, match="needs 6 characters or more"):
        line(shell, f"%kie4o star {fox.task_id[:3]}")
    out = tmp_path / "picks.html"
    line(shell, f"%kie4o export {out} $fox $owl[0]")
    page = out.read_text()
    assert fox.task_id in page and owl.task_id in page and fox2.task_id not in page
    status = line(shell, f"%kie4o status {owl.task_id[:10]}").bundle()["text/plain"]
    assert owl.task_id in status
    assert owl.task_id in line(shell, "%kie4o status $owl").bundle()["text/plain"]


def test_rerun_of_a_sweep_puts_its_own_line_and_body_below(shell):
    payloads = []
    shell.set_next_input = lambda text, replace=False: payloads.append(text)
    run(shell, "%%kie4o -s 1:1,3:2 -o sw\na {red|blue} fox")
    line(shell, "%kie4o rerun $sw")
    assert payloads[-1] == "%%kie4o -s 1:1,3:2 -o sw\na {red|blue} fox"


def test_compare_marks_stay_readable_in_a_dark_theme(shell, made):
    # JupyterLab's dark theme makes text white; the marks' pale backgrounds keep dark text.
    page = html_of(line(shell, "%kie4o compare $fox $fox2"))
    marks = re.findall(r"<(ins|del|mark) style=\"([^\"]*)\"", page)
    assert marks, page[:500]
    assert all("color:#1f1f1f" in style for _, style in marks), marks


def test_compare_and_gallery_images_know_their_true_size_and_saved_file(shell, made, tmp_path):
    # The views embed small copies: each says its image's own size, and where a saved file
    # holds the full image, so the viewer can say it shows the embedded copy and where to look.
    fox = made[0]
    fox[0].save(tmp_path)
    page = html_of(line(shell, "%kie4o compare $fox $fox2"))
    imgs = re.findall(r"<img [^>]*>", page)
    assert len(imgs) == 2, page[:300]
    sizes = [re.search(r'data-size="(\d+)×(\d+)"', im) for im in imgs]
    assert all(sizes), imgs
    assert [int(v) for v in sizes[0].groups()] == list(_pixels(fox[0].data))
    saved = re.search(r'data-saved="([^"]*)"', imgs[0])
    assert saved and saved.group(1).endswith(f"{fox.task_id}_0.png"), imgs[0][-300:]
    assert "data-saved" not in imgs[1]  # fox2 was never saved
    tile = html_of(line(shell, "%kie4o gallery"))
    assert f'{fox.task_id}_0.png"' in tile  # the gallery's tile says where, too


def _pixels(data: bytes) -> tuple[int, int]:
    import io

    from PIL import Image
    with Image.open(io.BytesIO(data)) as im:
        return im.size
