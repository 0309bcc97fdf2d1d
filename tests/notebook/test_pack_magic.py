"""Replay packs through a real shell: ``%kie4o pack export``, then demo mode with the pack
(``%kie4o demo --pack FILE`` or ``KIE_DEMO_PACK``) shows the recorded images for matching
prompts and labelled synthetic ones for the rest."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from IPython.core.error import UsageError
from PIL import Image

from kie_jupyter.api.models import TaskStatus
from kie_jupyter.notebook.cards import chip_html
from kie_jupyter.notebook.demo import image_source

from magic_helpers import all_text, run


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB").tobytes()


def settings(shell) -> dict[str, str]:
    """``%kie4o config``'s rows, from the table it returns (it prints nothing itself)."""
    text = shell.run_line_magic("kie4o", "config")._repr_mimebundle_()["text/plain"]
    rows = {}
    for line in text.splitlines()[2:]:  # the title, then the header row
        name, _, value = line.partition("  ")
        rows[name.strip()] = value.strip()
    return rows


@pytest.fixture(autouse=True)
def quick_demo(monkeypatch):
    monkeypatch.setenv("KIE_DEMO_DURATION", "0.3")
    monkeypatch.delenv("KIE_DEMO_PACK", raising=False)


@pytest.fixture
def recorded(shell, tmp_path):
    """Two tasks made on the (fake) live API, one saved, exported as a pack."""
    run(shell, "%%kie4o -s 3:2 -o t\nA lighthouse at dusk.")
    run(shell, f"%%kie4o -n 2 -o first --save {tmp_path / 'saved'}\nan owl on a branch")
    run(shell, "%%kie4o -o second\na sunflower field")
    pack = tmp_path / "lesson.kiepack"
    ids = f"{shell.user_ns['t'].task_id} {shell.user_ns['first'].task_id}"  # not the sunflowers
    cap = run(shell, f"%kie4o pack export {pack} {ids}")
    return pack, cap


def test_export_then_demo_with_the_pack_gives_the_recorded_images(shell, server, recorded):
    pack, cap = recorded
    lighthouse, owl = shell.user_ns["t"], shell.user_ns["first"]
    assert f"kie4o: replay pack {pack} written: 2 task(s), 3 image(s)" in cap.stdout
    with zipfile.ZipFile(pack) as zf:
        prompts = [t["prompt"] for t in json.loads(zf.read("manifest.json"))["tasks"]]
    assert prompts == ["A lighthouse at dusk.", "an owl on a branch"]
    try:
        text = run(shell, f"%kie4o demo --pack {pack}").stdout
        assert "with the class pack lesson.kiepack (2 recorded prompt(s)" in text
        requests_before = len(server.requests)
        # The same prompts, written a little differently, at the same size and model.
        run(shell, "%%kie4o -s 3:2 -o again\na lighthouse   at DUSK")
        run(shell, "%%kie4o -n 2 -o owls\nAn owl on a branch!")
        again, owls = shell.user_ns["again"], shell.user_ns["owls"]
        assert again.demo and again.status is TaskStatus.SUCCESS
        assert again.images == lighthouse.images
        # Saved files carry provenance chunks (and the pack takes saved files first): the
        # same pictures, pixel for pixel.
        assert [pixels(i) for i in owls.images] == [pixels(i) for i in owl.images]
        assert all("/files/pack/" in url for url in (*again.urls, *owls.urls))
        assert image_source(again.urls) == "from the class pack"
        assert ">demo · class pack</span>" in chip_html(again)
        listing = all_text(run(shell, "%kie4o history 1"))
        assert "success (demo, from the class pack)" in listing, listing
        # Another prompt, or the same at another size: synthetic, and not the recorded ones.
        run(shell, "%%kie4o -s 3:2 -o other\na lighthouse at night")
        run(shell, "%%kie4o -s 1:1 -o square\nA lighthouse at dusk.")
        for name in ("other", "square"):
            task = shell.user_ns[name]
            assert task.status is TaskStatus.SUCCESS and "/files/results/" in task.urls[0]
            assert task.images[0] not in lighthouse.images
            assert image_source(task.urls) == "synthetic"
        assert len(server.requests) == requests_before  # demo mode: nothing went to the API
        table = shell.run_line_magic("kie4o", "pack show")._repr_mimebundle_()["text/plain"]
        assert "2 recorded prompt(s), 3 image(s)" in table and "an owl on a branch" in table
        table = shell.run_line_magic("kie4o", "config")._repr_mimebundle_()["text/plain"]
        assert "replay pack      lesson.kiepack: 2 recorded prompt(s), 3 image(s)" in table
    finally:
        run(shell, "%kie4o demo off")


def test_the_pack_from_the_environment_is_read_when_demo_mode_starts(shell, recorded,
                                                                      monkeypatch):
    pack, _ = recorded
    lighthouse = shell.user_ns["t"]
    monkeypatch.setenv("KIE_DEMO_PACK", str(pack))
    monkeypatch.setenv("KIE_DEMO", "1")
    run(shell, "%unload_ext kie_jupyter")
    loaded = run(shell, "%load_ext kie_jupyter")  # KIE_DEMO=1: demo mode starts with the pack
    try:
        assert "class pack lesson.kiepack: its 2 recorded prompt(s) show recorded images, " \
               "others synthetic, no key needed" in all_text(loaded), all_text(loaded)
        run(shell, "%%kie4o -s 3:2 -o again\nA lighthouse at dusk")
        assert shell.user_ns["again"].images == lighthouse.images
        assert "class pack lesson.kiepack" in run(shell, "%kie4o demo").stdout
    finally:
        run(shell, "%kie4o demo off")


def test_a_recorded_edit_answers_only_an_edit(shell, server, tmp_path):
    photos = []
    for n, colour in enumerate(((200, 30, 30), (30, 30, 200))):
        photos.append(tmp_path / f"photo{n}.png")
        Image.new("RGB", (64, 48), colour).save(photos[-1])
    run(shell, f"%%kie4o --yes -s 1:1 -i {photos[0]} -o t\nMake it a watercolor painting")
    edit = shell.user_ns["t"]
    pack = tmp_path / "edits.kiepack"
    run(shell, f"%kie4o pack export {pack} {edit.task_id}")
    with zipfile.ZipFile(pack) as zf:
        assert json.loads(zf.read("manifest.json"))["tasks"][0]["edit"] is True
    try:
        run(shell, f"%kie4o demo --pack {pack}")
        # A student's edit of their own photo, with the recorded prompt: the recorded edit.
        run(shell, f"%%kie4o --yes -s 1:1 -i {photos[1]} -o first\nmake it a watercolor painting")
        assert shell.user_ns["first"].images == edit.images
        # The same words with no picture: not the teacher's edit of another picture.
        run(shell, "%%kie4o -s 1:1 -o second\nMake it a watercolor painting")
        second = shell.user_ns["second"]
        assert second.status is TaskStatus.SUCCESS and image_source(second.urls) == "synthetic"
        assert second.images[0] not in edit.images
    finally:
        run(shell, "%kie4o demo off")


def test_export_says_what_it_could_not_include(shell, server, tmp_path):
    run(shell, "%kie4o demo")
    run(shell, "%%kie4o -o t\na demo fox")
    run(shell, "%kie4o demo off")  # its server, and so its images, are gone
    run(shell, "%%kie4o -o first\na live fox")
    cap = run(shell, f"%kie4o pack export {tmp_path / 'p.kiepack'} --search fox")
    task_id = shell.user_ns["t"].task_id
    assert (f"kie4o: left out: task {task_id[:12]}… image 1: not saved, and its URL no longer "
            "works (the demo server that made it has stopped); not included") in cap.stdout
    assert "written: 1 task(s), 1 image(s)" in cap.stdout
    with pytest.raises(UsageError, match=r"^%kie4o pack export: no image of these tasks could "
                                         r"be had \(task .*\); nothing written$"):
        run(shell, f"%kie4o pack export {tmp_path / 'q.kiepack'} {task_id}")
    assert not (tmp_path / "q.kiepack").exists()


def test_bad_input_is_one_line_before_anything_is_done(shell, server, tmp_path):
    run(shell, "%%kie4o -o t\na fox")
    not_a_pack = tmp_path / "notes.kiepack"
    not_a_pack.write_text("hello")
    newer = tmp_path / "newer.kiepack"
    with zipfile.ZipFile(newer, "w") as zf:
        zf.writestr("manifest.json", json.dumps({"format": "kiepack", "version": 9,
                                                 "tasks": []}))
    cases = [
        (f"pack export {tmp_path / 'x.zip'}",
         f"%kie4o pack export: {tmp_path / 'x.zip'}: give a file name ending in .kiepack "
         "(e.g. lesson.kiepack)"),
        (f"pack export {tmp_path / 'x.kiepack'} --search zebra",
         "%kie4o pack export: no task in the history matches 'zebra'; nothing written"),
        (f"pack export {tmp_path / 'x.kiepack'} 0123abc",
         "%kie4o pack export: '0123abc' is not a task in the history; nothing written"),
        ("pack export", "%kie4o pack export: give the pack's file name, e.g. "
                        "`%kie4o pack export lesson.kiepack --search lighthouse`"),
        (f"pack export {tmp_path / 'x.kiepack'} --stared",
         "%kie4o pack: unrecognized arguments: --stared (give `export FILE.kiepack "
         "[--search TEXT] [--starred] [ID …]` or `show [FILE]`)"),
        ("pack", "%kie4o pack: give `export FILE.kiepack [--search TEXT] [ID …]` or "
                 "`show [FILE]`"),
        ("pack show", "%kie4o pack show: no replay pack is loaded; give a file "
                      "(`%kie4o pack show lesson.kiepack`)"),
        (f"demo --pack {tmp_path / 'gone.kiepack'}",
         f"%kie4o demo --pack: {tmp_path / 'gone.kiepack'}: no such file"),
        (f"demo --pack {not_a_pack}",
         f"%kie4o demo --pack: {not_a_pack}: not a replay pack (not a zip file; make one "
         "with `%kie4o pack export FILE.kiepack`)"),
        (f"demo --pack {newer}",
         f"%kie4o demo --pack: {newer}: replay pack format version 9, this kie-jupyter reads "
         "version 1; upgrade kie-jupyter"),
        ("demo --pack", "%kie4o demo --pack: give the pack file, e.g. "
                        "`%kie4o demo --pack lesson.kiepack`"),
        (f"demo off --pack {newer}", "%kie4o demo off: --pack goes with "
                                     "`%kie4o demo --pack FILE`"),
    ]
    before = len(server.requests)
    for line, message in cases:
        with pytest.raises(UsageError) as info:
            run(shell, f"%kie4o {line}")
        assert str(info.value) == message
    assert len(server.requests) == before
    assert not list(tmp_path.glob("x.*"))
    rows = settings(shell)  # demo never started: the live endpoint, no pack
    assert rows["endpoint"] == server.url and "replay pack" not in rows


def test_a_bad_pack_in_the_environment_stops_demo_before_it_starts(shell, server, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("KIE_DEMO_PACK", str(tmp_path / "gone.kiepack"))
    with pytest.raises(UsageError) as info:
        run(shell, "%kie4o demo")
    assert str(info.value) == (f"%kie4o demo: KIE_DEMO_PACK={tmp_path / 'gone.kiepack'}: "
                               "no such file")
    rows = settings(shell)
    assert rows["endpoint"] == server.url and "replay pack" not in rows


def test_image_source_words_where_a_demo_tasks_images_came_from():
    pack, made = "http://127.0.0.1:1/files/pack/a_0.png", "http://127.0.0.1:1/files/results/a_1.png"
    assert image_source([pack, pack]) == "from the class pack"
    assert image_source([pack, made]) == "partly from the class pack"
    assert image_source([made]) == image_source([]) == "synthetic"
