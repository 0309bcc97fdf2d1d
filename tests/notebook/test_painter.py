"""The mask painter (``kie_jupyter.paint``) without a browser: what the front end sends becomes
a mask at the source's exact size in KIE's polarity; painting from code; the mask as an input;
the live → static rule (the painter gives way to a picture and closes); the one-line fallbacks;
the overlay picture; and a real notebook run by nbclient keeps the picture and no widget."""

from __future__ import annotations

import base64
import io
import json
import sys
import threading
import types
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from PIL import Image, ImageDraw

import kie_jupyter
from kie_jupyter.api.client import KieClient
from kie_jupyter.api.errors import KieUsageError
from kie_jupyter.engine.inputs import InputImage, resolve_images, resolve_mask
from kie_jupyter.notebook import painter, resend
from kie_jupyter.notebook.overlay import mask_overlay

from magic_helpers import KEY

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
SHAPES = [pytest.param((300, 200), id="3:2"), pytest.param((200, 300), id="2:3")]


# -- helpers -----------------------------------------------------------------------------------


def source_png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    """A picture with a gradient (every pixel told apart from the tint)."""
    w, h = size
    image = Image.new("RGB", size)
    image.putdata([(40 + 150 * x // w, 60 + 120 * y // h, 90) for y in range(h) for x in range(w)])
    out = io.BytesIO()
    image.convert(mode).save(out, format="PNG")
    return out.getvalue()


def front_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> str:
    """``mask_png`` as painter.js sends it: an RGBA PNG at the source's size, the paint in the
    alpha, with an antialiased edge: one column at alpha 128 (painted: the threshold) right
    of the box and one at alpha 127 (not painted) left of it."""
    layer = Image.new("RGBA", size, (255, 32, 64, 0))
    draw = ImageDraw.Draw(layer)
    x0, y0, x1, y1 = box
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=(255, 32, 64, 255))
    draw.line((x1, y0, x1, y1 - 1), fill=(255, 32, 64, 128))
    draw.line((x0 - 1, y0, x0 - 1, y1 - 1), fill=(255, 32, 64, 127))
    out = io.BytesIO()
    layer.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


def alpha_of_front(value: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(value))).convert("RGBA").getchannel("A")


class FakeHandle:
    """A display handle that records its updates."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []

    def update(self, obj: Any, **kwargs: Any) -> None:
        assert kwargs.get("raw") is True
        self.updates.append(obj)


@pytest.fixture()
def shown(monkeypatch):
    """A kernel is there: ``paint`` displays the painter (recorded here, with its handle)."""
    displayed: list[tuple[Any, FakeHandle]] = []

    def fake_display(obj: Any, display_id: bool = False) -> FakeHandle:
        assert display_id is True
        handle = FakeHandle()
        displayed.append((obj, handle))
        return handle

    monkeypatch.setattr(painter, "_has_kernel", lambda: True)
    monkeypatch.setattr(painter, "display", fake_display)
    monkeypatch.delenv("VSCODE_PID", raising=False)
    resend._pending.clear()
    yield displayed
    resend._pending.clear()


def open_mask(shown, size, name="m"):
    mask = painter.paint(source_png(size), name=name)
    ((widget, handle),) = shown
    return mask, widget, handle


# -- what the front end sends ------------------------------------------------------------------


@pytest.mark.parametrize("size", SHAPES)
def test_front_end_mask_is_the_source_size_in_kie_polarity(shown, size):
    w, h = size
    mask, widget, _handle = open_mask(shown, size)
    assert isinstance(widget, painter.MaskPainter)
    assert (widget.source_width, widget.source_height) == size
    assert widget.mask_png == "" and mask.empty and mask.painted == 0
    box = (w // 4, h // 5, w // 2, h // 2)  # a quarter across, a fifth down
    widget.mask_png = front_mask(size, box)  # as a stroke's sync sets it
    image = mask.image
    assert image.mode == "L" and image.size == size
    x0, y0, x1, y1 = box
    assert image.getpixel((x0, y0)) == 0 and image.getpixel((x1 - 1, y1 - 1)) == 0
    assert image.getpixel((x1, y0)) == 0  # alpha 128: painted
    assert image.getpixel((x0 - 1, y0)) == 255  # alpha 127: kept
    assert image.getpixel((0, 0)) == 255 and image.getpixel((w - 1, h - 1)) == 255
    assert image.getpixel((x0, y1)) == 255 and image.getpixel((x1 + 1, y0)) == 255
    assert set(image.tobytes()) == {0, 255}
    painted = (x1 - x0 + 1) * (y1 - y0)
    assert mask.painted == pytest.approx(painted / (w * h))
    assert Image.open(io.BytesIO(mask.png)).size == size
    assert repr(mask) == f"<kie4o mask m {w}×{h}, {round(100 * painted / (w * h))}% painted>"
    widget.mask_png = ""  # everything erased
    assert mask.empty


def test_display_copy_is_small_and_the_mask_keeps_the_source_size(shown):
    mask, widget, _ = open_mask(shown, (2400, 1600))
    head, data = widget.image_url.split(",", 1)
    assert head == "data:image/jpeg;base64"
    assert Image.open(io.BytesIO(base64.b64decode(data))).size == (1024, 683)
    assert (widget.source_width, widget.source_height) == (2400, 1600) == mask.size


def test_a_transparent_source_is_shown_as_png(shown):
    painter.paint(source_png((120, 80), "RGBA"))
    ((widget, _),) = shown
    assert widget.image_url.startswith("data:image/png;base64,")


# -- painting from code ------------------------------------------------------------------------


@pytest.mark.parametrize("size", SHAPES)
def test_paint_rect_fill_clear_invert_update_the_painter(shown, size):
    w, h = size
    mask, widget, _ = open_mask(shown, size)
    assert mask.paint_rect(0, 0, 0.5, 1) is mask
    image = mask.image
    assert image.getpixel((0, h - 1)) == 0 and image.getpixel((w // 2 - 1, 0)) == 0
    assert image.getpixel((w // 2, 0)) == 255 and mask.painted == pytest.approx(0.5)
    sent = alpha_of_front(widget.mask_png)  # the front end's new base: at the source's size
    assert sent.size == size and sent.getpixel((0, 0)) == 255 and sent.getpixel((w - 1, 0)) == 0
    mask.invert()
    assert mask.image.getpixel((0, 0)) == 255 and mask.image.getpixel((w - 1, 0)) == 0
    assert alpha_of_front(widget.mask_png).getpixel((w - 1, 0)) == 255
    mask.fill()
    assert mask.painted == 1 and set(mask.image.tobytes()) == {0}
    mask.clear()
    assert mask.empty and widget.mask_png == ""
    mask.paint_rect(0.25, 0.25, 0.75, 0.75)
    assert mask.image.getpixel((w // 2, h // 2)) == 0 and mask.image.getpixel((0, 0)) == 255
    for bad in [(0.5, 0, 0.5, 1), (0, 0, 1.5, 1), (-0.1, 0, 1, 1), (0, 0.8, 1, 0.2)]:
        with pytest.raises(KieUsageError, match="paint_rect: .*fractions 0–1"):
            mask.paint_rect(*bad)


def test_a_stroke_after_python_painted_replaces_python_s_mask(shown):
    mask, widget, _ = open_mask(shown, (300, 200))
    mask.fill()
    widget.mask_png = front_mask((300, 200), (10, 10, 20, 20))  # the user erased, then drew
    assert mask.painted == pytest.approx(11 * 10 / (300 * 200))


def test_a_front_end_mask_of_another_size_is_scaled_to_the_source(shown):
    mask, widget, _ = open_mask(shown, (300, 200))
    widget.mask_png = front_mask((150, 100), (0, 0, 75, 100))  # the left half, at half size
    assert mask.image.size == (300, 200)
    assert mask.image.getpixel((10, 100)) == 0 and mask.image.getpixel((290, 100)) == 255


def test_save_writes_the_png_and_a_folder_gets_mask_png(shown, tmp_path):
    mask, _, _ = open_mask(shown, (300, 200))
    mask.paint_rect(0.1, 0.1, 0.2, 0.3)
    folder = mask.save(tmp_path)
    assert folder == tmp_path / "mask.png" and folder.is_absolute()
    named = mask.save(tmp_path / "sub" / "edit-mask.png")
    assert named == tmp_path / "sub" / "edit-mask.png"
    for path in (folder, named):
        saved = Image.open(path)
        assert saved.mode == "L" and saved.size == (300, 200)
        assert saved.tobytes() == mask.image.tobytes()


# -- as an input -------------------------------------------------------------------------------


def test_an_empty_mask_is_refused_as_an_input(shown):
    mask, widget, handle = open_mask(shown, (300, 200))
    with pytest.raises(KieUsageError) as err:
        resolve_images([mask], "--mask")
    message = str(err.value)
    assert message == ("--mask: the mask has nothing painted — paint the area to change "
                       "(or m.fill()) first")
    assert "\n" not in message
    assert handle.updates == [] and widget.comm is not None  # still painting


def test_as_input_gives_the_png_and_finishes_the_painter(shown):
    mask, widget, handle = open_mask(shown, (300, 200))
    mask.paint_rect(0.5, 0, 1, 1)
    source = InputImage(label="fox.png", data=source_png((300, 200)))
    found = resolve_mask(mask, (source,))
    assert found == InputImage(label="painted mask", data=mask.png, source="painted mask")
    assert Image.open(io.BytesIO(found.data)).size == (300, 200)
    # Looked at only (a dry run, a refused cell): the painter stays live.
    assert handle.updates == [] and widget.comm is not None
    painter.forget_used()
    painter.finish_used()
    assert handle.updates == [] and widget.comm is not None
    resolve_mask(mask, (source,))
    painter.finish_used()  # the edit is sent: the painter gives way to its picture
    (bundle,) = handle.updates
    assert WIDGET_VIEW not in bundle
    assert sorted(bundle) == ["image/png", "text/html", "text/plain"]
    assert 'class="kie4o-static kie4o-mask"' in bundle["text/html"]
    assert "300×200" in bundle["text/html"] and "50% painted = will be changed" in bundle[
        "text/html"]
    assert bundle["text/plain"] == "<kie4o mask m 300×200, 50% painted>"
    overlay = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"])))
    assert overlay.format == "PNG" and overlay.size == (300, 200)
    assert widget.comm is None and widget.layout.comm is None  # every widget closed
    assert resend._pending == []  # from the cell's own thread: nothing to send again
    mask.as_input_images("--mask")  # a second use: the picture is already there
    painter.finish_used()
    assert len(handle.updates) == 1
    mask.paint_rect(0, 0, 0.5, 1)  # after done, painting from code redraws the picture
    assert len(handle.updates) == 2 and "100% painted" in handle.updates[1]["text/html"]


def test_done_clicked_in_the_front_end_is_sent_again_by_the_next_cell(shown):
    mask, widget, handle = open_mask(shown, (200, 300))
    widget.mask_png = front_mask((200, 300), (20, 20, 100, 150))
    widget._handle_custom_msg({"event": "done"}, [])  # the Done button's message
    assert len(handle.updates) == 1 and widget.comm is None
    assert [h for h, _ in resend._pending] == [handle]
    resend.resend_cards()  # the next cell's pre_run_cell hook
    assert len(handle.updates) == 2 and handle.updates[0] == handle.updates[1]
    assert not mask.empty and mask.image.getpixel((50, 50)) == 0


def test_done_from_another_thread_is_remembered(shown):
    mask, _, handle = open_mask(shown, (300, 200))
    mask.fill()
    worker = threading.Thread(target=mask.done)
    worker.start()
    worker.join()
    assert len(handle.updates) == 1 and [h for h, _ in resend._pending] == [handle]


# -- what it takes, and where widgets cannot show ----------------------------------------------


def test_several_images_or_no_pixels_are_refused():
    png = source_png((30, 20))
    with pytest.raises(KieUsageError, match=r"^mask: pick one image, e\.g\. \$fox\[0\]$"):
        painter.paint([png, png])
    with pytest.raises(KieUsageError, match=r"^mask: needs the image's pixels: give a local "
                                            r"file or a task image$"):
        painter.paint("https://example.com/fox.png")
    with pytest.raises(KieUsageError, match="^mask .*not an image"):
        painter.paint(b"not an image")


def test_a_task_with_two_images_is_refused_and_one_of_them_is_taken(server, capsys):
    client = KieClient(KEY, base_url=server.url, upload_url=server.url)
    task = kie_jupyter.generate("two foxes", size="3:2", variants=2, client=client)
    with pytest.raises(KieUsageError, match=r"pick one image"):
        kie_jupyter.paint(task)
    mask = kie_jupyter.paint(task[1], name="fox_mask")
    info = Image.open(io.BytesIO(task[1].data))
    assert mask.size == info.size and info.width > info.height


def test_without_a_kernel_one_line_and_painting_from_code(capsys, tmp_path):
    assert not painter._has_kernel()  # plain pytest: no IPython shell
    mask = painter.paint(source_png((300, 200)), name="m")
    out = capsys.readouterr().out
    assert out == painter.fallback_line("m") + "\n"
    assert out.startswith("kie4o mask painter: needs Jupyter widgets (JupyterLab, Notebook 7)")
    assert "m.paint_rect(" in out and "-m mask.png (black = change, white = keep" in out
    mask.paint_rect(0, 0, 1, 0.5).done()
    assert mask.painted == pytest.approx(0.5)
    assert mask.save(tmp_path / "m.png").exists()


def test_the_widget_s_text_plain_is_the_fallback_line(shown):
    _, widget, _ = open_mask(shown, (300, 200), name="hole")
    data, _meta = widget._repr_mimebundle_()
    assert WIDGET_VIEW in data
    assert data["text/plain"] == painter.fallback_line("hole")
    assert "hole.paint_rect(" in data["text/plain"]


def test_colab_and_vs_code_each_get_one_line_first(shown, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setenv("VSCODE_PID", "1234")
    painter.paint(source_png((30, 20)), name="m")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and len(shown) == 1
    assert "output.enable_custom_widget_manager()" in lines[0] and "Colab" in lines[0]
    assert "VS Code" in lines[1] and "CDN" in lines[1] and "m.paint_rect(" in lines[1]


def test_html_is_escaped(shown):
    mask, _, handle = open_mask(shown, (300, 200), name='<b onload="x">')
    mask.fill().done()
    html = handle.updates[0]["text/html"]
    assert "<b onload" not in html and "&lt;b onload=&quot;x&quot;&gt;" in html


def test_percent_never_rounds_to_nothing_or_everything():
    assert [painter._percent(f) for f in (0, 0.001, 0.2345, 0.996, 1)] == [
        "0%", "<1%", "23%", ">99%", "100%"]


# -- the overlay ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SHAPES)
def test_overlay_is_scaled_and_tints_the_painted_area(size):
    w, h = size
    source = source_png(size)
    kie = Image.new("L", size, 255)
    ImageDraw.Draw(kie).rectangle((0, 0, w // 2 - 1, h - 1), fill=0)  # left half: change
    buffer = io.BytesIO()
    kie.save(buffer, format="PNG")
    out = Image.open(io.BytesIO(mask_overlay(source, buffer.getvalue(), max_side=150)))
    assert out.format == "PNG" and max(out.size) == 150
    assert out.size == ((150, 100) if w > h else (100, 150))
    picture = Image.open(io.BytesIO(source)).convert("RGB").resize(out.size)
    ow, oh = out.size
    for x, y in [(ow // 8, oh // 2), (ow // 4, oh // 3)]:  # painted: half red
        r, g, b = out.getpixel((x, y))
        r0, g0, b0 = picture.getpixel((x, y))
        assert r > r0 + 40 and g < g0 - 20, ((r, g, b), (r0, g0, b0))
    for x, y in [(ow * 7 // 8, oh // 2), (ow * 3 // 4, oh // 4)]:  # kept: as it was
        assert all(abs(a - b) <= 12 for a, b in zip(out.getpixel((x, y)),
                                                     picture.getpixel((x, y)), strict=True))
    edge = [out.getpixel((ow // 2 - 1, oh // 2)), out.getpixel((ow // 2, oh // 2))]
    assert (150, 0, 24) in edge and (255, 255, 255) in edge  # the outline, both sides


# -- a real notebook ---------------------------------------------------------------------------


def test_notebook_keeps_the_static_overlay_and_no_widget(tmp_path, monkeypatch):
    """Demo mode, a 3:2 image, paint from code, done: what nbclient saves."""
    root = tmp_path / "jupyter"
    spec = root / "kernels" / "kie-painter"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "kie painter", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(root))
    for name in ("KIE_API_KEY", "KIE_BASE_URL", "KIE_UPLOAD_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KIE_DEMO", "1")
    monkeypatch.setenv("KIE_DEMO_DURATION", "0.3")
    monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "kie_home"))
    cells = [
        "%load_ext kie_jupyter",
        "%%kie4o -s 3:2 -o fox\nA red fox in the snow",
        "import kie_jupyter\nm = kie_jupyter.paint(fox[0], name='m')",
        "m.paint_rect(0.1, 0.2, 0.5, 0.7)",
        "m.done()",
        "import json\nw, h = m.size\nprint(json.dumps({'size': m.size, 'painted': m.painted, "
        "'at': m.image.getpixel((int(w * .3), int(h * .45))), "
        "'away': m.image.getpixel((int(w * .8), int(h * .45))), "
        "'source': list(__import__('PIL.Image').Image.open(__import__('io').BytesIO("
        "fox[0].data)).size)}))",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=120, kernel_name="kie-painter").execute()
    facts = json.loads(nb.cells[5].outputs[0]["text"])
    assert facts["size"] == facts["source"] and facts["size"][0] > facts["size"][1]
    assert facts["at"] == 0 and facts["away"] == 255
    assert facts["painted"] == pytest.approx(0.4 * 0.5, abs=0.01)
    outputs = nb.cells[2].outputs
    assert [sorted(o["data"]) for o in outputs] == [["image/png", "text/html", "text/plain"]]
    html = outputs[0]["data"]["text/html"]
    assert "kie4o-mask" in html and "data:image/jpeg;base64," in html and "20% painted" in html
    assert outputs[0]["data"]["text/plain"].startswith("<kie4o mask m ")
    shown = [o for c in nb.cells for o in c.get("outputs", [])
             if WIDGET_VIEW in o.get("data", {})]
    assert shown == []
    Path(tmp_path / "painted.ipynb").write_text(nbformat.writes(nb))  # a valid notebook
    nbformat.validate(nbformat.read(tmp_path / "painted.ipynb", as_version=4))


def test_strokes_and_done_arrive_as_messages_not_held_back(shown):
    """ipywidgets holds state syncs while the kernel is busy; the painter sends each stroke,
    and the last one with Done, as a message, so nothing painted is lost."""
    mask, widget, handle = open_mask(shown, (300, 200))
    stroke = front_mask((300, 200), (0, 0, 150, 200))
    mask._on_message(widget, {"event": "mask", "png": stroke}, [])
    assert mask.painted == pytest.approx(0.5, abs=0.01)
    last = front_mask((300, 200), (0, 0, 300, 200))
    mask._on_message(widget, {"event": "done", "png": last}, [])
    assert mask.painted == 1.0 and widget.comm is None
    assert "100% painted" in handle.updates[-1]["text/html"]
