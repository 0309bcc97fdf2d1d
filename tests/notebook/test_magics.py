"""``%%kie4o`` and ``%kie4o`` driven through a real IPython shell against the mock server."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from kie_jupyter.api.errors import TaskFailedError
from kie_jupyter.api.models import TaskStatus
from kie_jupyter.testing.shell import TestingShell

# Shared helpers and the `server` and `shell` fixtures.
from magic_helpers import KEY, all_text, png_size, run, sent

# -- loading -----------------------------------------------------------------------------


def test_load_line_names_endpoint_not_key(server):
    sh = TestingShell.instance()
    cap = run(sh, "%load_ext kie_jupyter")
    try:
        assert cap.stdout.count("\n") == 1
        assert server.url in cap.stdout and "API key found" in cap.stdout
        assert KEY not in cap.stdout
    finally:
        run(sh, "%unload_ext kie_jupyter")


def test_reload_and_unload_leave_no_duplicates_or_pollers(shell, server):
    run(shell, "%%kie4o --no-wait\na slow one")
    run(shell, "%reload_ext kie_jupyter")
    configurables = [c for c in shell.configurables if type(c).__name__ == "Kie4o"]
    assert len(configurables) == 1
    assert "kie4o" in shell.magics_manager.magics["cell"]
    run(shell, "%unload_ext kie_jupyter")
    assert "kie4o" not in shell.magics_manager.magics["cell"]
    assert "kie4o" not in shell.magics_manager.magics["line"]
    time.sleep(0.2)
    assert not [t for t in threading.enumerate() if t.name.startswith("kie4o-task")]
    run(shell, "%load_ext kie_jupyter")  # the fixture unloads again


def test_config_lists_traits(shell):
    cap = run(shell, "%config Kie4o")
    for trait in ("poll_interval", "timeout", "output_dir", "default_size", "embed"):
        assert trait in cap.stdout


def test_help_is_the_options(shell):
    doc = shell.find_cell_magic("kie4o").__doc__
    for flag in ("--size", "--variants", "--image", "--mask", "--enhance", "--fallback",
                 "--callback", "--out", "--save", "--no-wait", "--timeout", "--dry-run"):
        assert flag in doc


# -- generating --------------------------------------------------------------------------


def test_cell_generates_and_binds_task(shell, server):
    cap = run(shell, "%%kie4o -s 3:2 -n 2 -o t\nA red fox, watercolor")
    task = shell.user_ns["t"]
    assert shell.user_ns["_kie4o"] is task
    assert task.status is TaskStatus.SUCCESS
    assert len(task.images) == 2
    assert all(png_size(img) == (512, 341) for img in task.images)
    body = sent(server, "generate")[0].json
    assert body == {"prompt": "A red fox, watercolor", "size": "3:2", "nVariants": 2}
    assert "Done in" in cap.stdout
    html = [o.data["text/html"] for o in cap.outputs if "text/html" in o.data]
    assert html and html[-1].count("data:image/") == 2


def test_every_api_option_reaches_the_body(shell, server):
    run(shell, "%%kie4o -s 2:3 -n 4 -e --fallback GPT_IMAGE_1 --callback https://cb.example/x"
               " --yes\n"
               "a cat")
    body = sent(server, "generate")[0].json
    assert body == {
        "prompt": "a cat", "size": "2:3", "nVariants": 4, "isEnhance": True,
        "enableFallback": True, "fallbackModel": "GPT_IMAGE_1",
        "callBackUrl": "https://cb.example/x",
    }


def test_fallback_without_model_uses_flux(shell, server):
    run(shell, "%%kie4o --fallback --yes\na cat")  # a fallback's price is unknown: it asks
    assert sent(server, "generate")[0].json["fallbackModel"] == "FLUX_MAX"


def test_default_size_trait(shell, server):
    run(shell, "%config Kie4o.default_size = '2:3'")
    run(shell, "%%kie4o\na cat")
    assert sent(server, "generate")[0].json["size"] == "2:3"


def test_templating_fills_names_and_keeps_escaped_braces(shell, server):
    shell.user_ns["animal"] = "owl"
    run(shell, "%%kie4o -o t\nAn {animal} holding a sign that says {{hi}}")
    assert sent(server, "generate")[0].json["prompt"] == "An owl holding a sign that says {hi}"


@pytest.mark.parametrize(
    ("cell", "needle"),
    [
        ("%%kie4o -s 4:3\nx", "--size"),
        ("%%kie4o -n 3\nx", "--variants"),
        ("%%kie4o -n two\nx", "--variants"),
        ("%%kie4o --bogus\nx", "unrecognized"),
        ("%%kie4o\n   ", "prompt"),
        ("%%kie4o\nA {undefined_name}", "undefined_name"),
        ("%%kie4o\nA {", "braces"),
        ("%%kie4o -m https://x.example/m.png\nx", "--mask"),
        ("%%kie4o --yes -i /no/such/file.png\nx", "no such file"),
        ("%%kie4o --yes -i $nope\nx", "$nope"),
        ("%%kie4o --fallback DALL_E\nx", "--fallback"),
        ("%%kie4o --timeout -3\nx", "--timeout"),
        ("%%kie4o -o 1abc\nx", "--out"),
        ("%%kie4o --callback ftp://x\nx", "--callback"),
        ("%%kie4o " + " ".join(f"-i https://x.example/{i}.png" for i in range(6)) + "\nx",
         "at most 5"),
    ],
)
def test_bad_input_is_one_line_and_sends_nothing(shell, server, cell, needle):
    with pytest.raises(UsageError) as info:
        run(shell, cell)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message.strip()
    assert not sent(server, "generate") and not [
        r for r in server.requests if r.endpoint.startswith("file-")
    ]


def test_directory_and_non_image_are_refused(shell, server, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    for source, needle in ((tmp_path, "directory"), (tmp_path / "notes.txt", "not an image")):
        with pytest.raises(UsageError, match=needle):
            run(shell, f"%%kie4o --yes -i {source}\nx")
    assert not server.requests


def test_dry_run_shows_body_masks_key_sends_nothing(shell, server):
    cap = run(shell, "%%kie4o --yes --dry-run -s 3:2 -i https://x.example/a.png\nhello")
    text = all_text(cap)
    assert '"filesUrl"' in text and '"size": "3:2"' in text and "hello" in text
    assert KEY not in text and "cdef" in text  # the last four characters only
    assert not server.requests


def test_no_key_says_how_to_set_one(shell, server, monkeypatch):
    monkeypatch.delenv("KIE_API_KEY")
    run(shell, "%reload_ext kie_jupyter")
    with pytest.raises(UsageError, match="KIE_API_KEY.*%kie4o demo"):
        run(shell, "%%kie4o\na cat")
    assert not server.requests


# -- inputs ------------------------------------------------------------------------------


def test_local_image_is_uploaded_then_sent(shell, server, tmp_path):
    from kie_jupyter.fakeapi.images import render_png as make_png

    path = tmp_path / "in.png"
    path.write_bytes(make_png("input", "1:1"))
    run(shell, f"%%kie4o --yes -i {path} -o t\nmake it blue")
    uploads = sent(server, "file-stream-upload")
    assert len(uploads) == 1
    files = sent(server, "generate")[0].json["filesUrl"]
    assert len(files) == 1 and files[0].startswith(server.url + "/files/uploads/")
    assert shell.user_ns["t"].status is TaskStatus.SUCCESS


def test_earlier_task_as_input_and_mask_size_check(shell, server, tmp_path):
    from kie_jupyter.fakeapi.images import render_png as make_png

    run(shell, "%%kie4o -n 2 -o first\na fox")
    run(shell, "%%kie4o --yes -i $first -o second\nthe fox in winter")
    urls = list(shell.user_ns["first"].urls)
    assert sent(server, "generate")[1].json["filesUrl"] == urls
    image, mask = tmp_path / "a.png", tmp_path / "m.png"
    image.write_bytes(make_png("a", "1:1"))
    mask.write_bytes(make_png("m", "3:2"))
    before = len(server.requests)
    with pytest.raises(UsageError, match="does not match"):
        run(shell, f"%%kie4o --yes -i {image} -m {mask}\nedit")
    assert len(server.requests) == before


def test_mask_is_uploaded_with_the_image(shell, server, tmp_path):
    from kie_jupyter.fakeapi.images import render_png as make_png

    image, mask = tmp_path / "a.png", tmp_path / "m.png"
    image.write_bytes(make_png("a", "1:1"))
    mask.write_bytes(make_png("m", "1:1"))
    run(shell, f"%%kie4o --yes -i {image} -m {mask} -o t\nreplace the sky")
    body = sent(server, "generate")[0].json
    assert body["maskUrl"].startswith(server.url) and len(body["filesUrl"]) == 1
    assert len(sent(server, "file-stream-upload")) == 2


# -- outcomes ----------------------------------------------------------------------------


def test_failed_task_does_not_raise_and_explains(shell, server):
    cap = run(shell, "%%kie4o -o t\n[mock:fail] something")
    task = shell.user_ns["t"]
    assert task.status is TaskStatus.FAILED
    assert "content polic" in str(task.error)
    assert "Failed:" in cap.stdout
    with pytest.raises(TaskFailedError, match=task.task_id):
        _ = task.images


def test_api_error_in_plain_words(shell, server, monkeypatch):
    monkeypatch.setenv("KIE_API_KEY", "sk-wrong-key-000000")
    run(shell, "%reload_ext kie_jupyter")
    cap = run(shell, "%%kie4o -o t\na cat")
    assert "401" in cap.stdout and "KIE_API_KEY" in cap.stdout
    assert "sk-wrong-key-000000" not in all_text(cap)


def test_no_wait_returns_before_the_task_ends(shell, server):
    server.script_next_task(duration=2.0)  # a cell that blocked would return it done
    run(shell, "%%kie4o --no-wait -o t\na slow fox")
    task = shell.user_ns["t"]
    assert not task.done
    task.wait(10)
    assert task.status is TaskStatus.SUCCESS and task.images


def test_save_writes_images_and_sidecar(shell, server, tmp_path):
    out = tmp_path / "keep"
    run(shell, f"%%kie4o -n 2 --save {out} -o t\na kept fox")
    task = shell.user_ns["t"]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{task.task_id}_0.png", f"{task.task_id}_1.png",
                            f"{task.task_id}.json"])
    sidecar = json.loads((out / f"{task.task_id}.json").read_text())
    assert sidecar["prompt"] == "a kept fox" and sidecar["params"]["variants"] == 2
    assert KEY not in (out / f"{task.task_id}.json").read_text()


def test_history_records_task_without_key(shell, server, tmp_path):
    run(shell, "%%kie4o -o t\na remembered fox")
    task = shell.user_ns["t"]
    entry = task.history.get(task.task_id)
    assert entry is not None and entry.prompt == "a remembered fox"
    stored = b"".join(p.read_bytes() for p in (tmp_path / "kie").glob("history.sqlite*"))
    assert task.task_id.encode() in stored and KEY.encode() not in stored


# -- the panel ---------------------------------------------------------------------------


def test_panel_traits_through_a_whole_task(shell, server):
    from kie_jupyter.notebook import panel as panel_module

    seen: dict[str, list] = {"bar": [], "status": []}
    made = []
    original = panel_module.TaskPanel.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)
        seen["bar"].append(self.bar.value)  # as built (the task may have started already)
        seen["status"].append(self.status.value)
        self.bar.observe(lambda c: seen["bar"].append(c["new"]), "value")
        self.status.observe(lambda c: seen["status"].append(c["new"]), "value")

    run(shell, "%config Kie4o.frontend = 'widget'")
    server.script_next_task(duration=3.0)  # long enough for several progress updates
    panel_module.TaskPanel.__init__ = spy
    try:
        cap = run(shell, "%%kie4o -n 2 -o t\na <b>bold</b> fox")
    finally:
        panel_module.TaskPanel.__init__ = original
    (panel,) = made
    assert "&lt;b&gt;bold&lt;/b&gt;" in panel.prompt.value
    assert seen["bar"] == sorted(seen["bar"]) and seen["bar"][-1] == 1.0
    assert any(s.startswith(("Submitting", "Generating")) for s in seen["status"])
    assert any(s.startswith("Generating") and s != "Generating 0 %" for s in seen["status"])
    assert 0 < min(v for v in seen["bar"] if v > 0) < 1.0  # progress shown on the way
    assert seen["status"][-1].startswith("Done in")
    assert panel.bar.bar_style == "success" and panel.stop_button.disabled
    # The card replaced the panel (the same display, updated) and the widgets are closed.
    assert panel.comm is None and all(c.comm is None for c in panel.children)
    html = [o.data.get("text/html", "") for o in cap.outputs]
    assert sum(h.count("data:image/") for h in html) == 2
    assert sum(h.count("kie4o-card") for h in html) == 1


def test_no_wait_panel_gives_way_to_its_card_and_stop_works(shell, server):
    from kie_jupyter.notebook import panel as panel_module

    made = []
    original = panel_module.TaskPanel.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    run(shell, "%config Kie4o.frontend = 'widget'")
    panel_module.TaskPanel.__init__ = spy
    try:
        run(shell, "%%kie4o --no-wait -o first\none")
        run(shell, "%%kie4o --no-wait -o second\ntwo")
    finally:
        panel_module.TaskPanel.__init__ = original
    first, second = shell.user_ns["first"], shell.user_ns["second"]
    made[1].stop_button.click()
    second.wait(5)
    first.wait(10)
    assert second.status is TaskStatus.STOPPED
    assert "Stopped" in made[1].status.value
    assert first.status is TaskStatus.SUCCESS
    # Each task's own thread put its card in place and closed its panel.
    assert made[0].comm is None and made[1].comm is None


def test_key_never_in_any_output(shell, server, tmp_path):
    cells = [
        "%%kie4o -o t\na fox", "%%kie4o --dry-run\na fox", "%kie4o config",
        "%kie4o history", "%kie4o credits", "%%kie4o\n[mock:fail] x",
    ]
    texts = [all_text(run(shell, c)) for c in cells]
    texts.append(repr(shell.user_ns["t"]) + repr(shell.user_ns["t"].client))
    for text in texts:
        assert KEY not in text
    for path in Path(tmp_path / "kie").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes()


def test_save_that_fails_after_paying_keeps_the_images(shell, server, tmp_path):
    # A folder that cannot work is refused before sending (tests/test_trust_magic.py); one
    # that breaks while the task runs must still not cost the paid-for images.
    import shutil

    from kie_jupyter.notebook.cards import status_text

    out = tmp_path / "keep"
    server.script_next_task(duration=2.0)
    run(shell, f"%%kie4o --no-wait --save {out} -o t\nunsaved fox")
    shutil.rmtree(out)
    out.write_text("now a file")  # the folder is gone before the images arrive
    task = shell.user_ns["t"].wait(15)
    assert task.status is TaskStatus.SUCCESS and task.images
    assert "could not save" in task.save_error and "could not save" in status_text(task)


def test_an_edit_keeps_its_source_shape_and_shows_it_beside_the_result(shell, server, tmp_path):
    from kie_jupyter.fakeapi.images import render_png

    wide = tmp_path / "wide.png"
    wide.write_bytes(render_png("a wide source", "3:2", 0, 300))
    mask = tmp_path / "mask.png"
    from PIL import Image

    painted = Image.new("L", (300, 200), 255)
    painted.paste(0, (0, 0, 150, 200))  # the left half will change
    painted.save(mask)
    cap = run(shell, f"%%kie4o --yes -i {wide} -m {mask} -o t\nreplace the sky")
    assert sent(server, "generate")[-1].json["size"] == "3:2"  # not 1:1
    page = "\n".join(o.data.get("text/html", "") for o in cap.outputs)
    # Before and after: the source with the mask drawn over it, one figure, beside the result.
    assert page.count('class="kie4o-source"') == 1 and "source: " in page
    assert "tinted = the mask&#x27;s area (changed)" in page
    import base64
    import io
    import re

    src = re.search(r'class="kie4o-source".*?src="data:image/\w+;base64,([^"]+)"', page)[1]
    shown = Image.open(io.BytesIO(base64.b64decode(src))).convert("RGB")
    original = Image.open(wide).convert("RGB").resize(shown.size)
    w, h = shown.size
    left, right = (w // 4, h // 2), (3 * w // 4, h // 2)
    kept = zip(shown.getpixel(right), original.getpixel(right), strict=True)
    assert all(abs(a - b) < 10 for a, b in kept)  # kept: as it was (a JPEG thumbnail)
    r, g, b = shown.getpixel(left)
    r0, g0, b0 = original.getpixel(left)
    assert r - g > r0 - g0 + 40  # painted: tinted red
    run(shell, f"%%kie4o --yes -s 1:1 -i {wide}\nsquare it")  # -s says otherwise
    assert sent(server, "generate")[-1].json["size"] == "1:1"
    run(shell, f"%%kie4o --yes --model seedream-4.5 -i {wide}\nthe same, at night")
    body = sent(server, "createTask")[-1].json
    assert body["input"]["aspect_ratio"] == "3:2"


def test_an_edit_of_an_earlier_result_keeps_its_shape_and_shows_it(shell, server):
    # The usual edit: an earlier task's image (by its URL), whose bytes are at hand.
    run(shell, "%%kie4o -s 3:2 -o fox\nA red fox")
    for source in ("$fox", "$fox[0]"):
        cap = run(shell, f"%%kie4o --yes -i {source} -o e\nmake it blue")
        body = sent(server, "generate")[-1].json
        assert body["size"] == "3:2", source  # not 1:1
        assert body["filesUrl"] == [shell.user_ns["fox"].urls[0]]  # still sent by its URL
        page = "\n".join(o.data.get("text/html", "") for o in cap.outputs)
        assert 'class="kie4o-source"' in page, source
