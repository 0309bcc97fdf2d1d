"""Exporting replay packs from the history (``engine.packs``), read back by the fake server's
reader (``fakeapi.packs``): the two sides of one format."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from PIL import Image

from kie_jupyter.engine import packs as writer
from kie_jupyter.engine.history import HistoryStore
from kie_jupyter.fakeapi import packs as reader


def png(colour, size=(40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def jpeg(colour) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (30, 30), colour).save(out, format="JPEG")
    return out.getvalue()


SAVED = png((250, 100, 0))
ONLINE = png((0, 100, 250))
MARKET = jpeg((20, 200, 20))
EDITED = png((120, 0, 120))


@pytest.fixture
def store(tmp_path):
    store = HistoryStore(tmp_path / "history")
    saved = tmp_path / "saved" / "t1_0.png"
    saved.parent.mkdir()
    saved.write_bytes(SAVED)
    store.append({"task_id": "t1", "prompt": "A lighthouse at dusk.", "status": "success",
                  "model": "4o", "params": {"size": "3:2", "variants": 2},
                  "urls": ["https://cdn.example/t1_0.png", "https://cdn.example/t1_1.png"],
                  "saved_paths": [str(saved)], "created": "2026-01-01T10:00:00+00:00"})
    store.append({"task_id": "t2", "prompt": "a failed one", "status": "failed",
                  "params": {"size": "1:1"}})
    store.append({"task_id": "task_nano-banana-pro_1700000000000", "prompt": "an owl",
                  "status": "success", "model": "nano-banana-pro",
                  "params": {"size": "16:9"}, "urls": ["https://cdn.example/owl.jpg"]})
    store.append({"task_id": "t3", "prompt": "A lighthouse at dusk.", "status": "success",
                  "model": "4o", "params": {"size": "3:2", "files": [
                      "https://cdn.example/my-photo.png"]},
                  "urls": ["https://cdn.example/t3_0.png"]})
    return store


def online(url: str) -> bytes:
    images = {"https://cdn.example/t1_1.png": ONLINE, "https://cdn.example/owl.jpg": MARKET,
              "https://cdn.example/t3_0.png": EDITED}
    if url not in images:
        raise OSError("HTTP 404")
    return images[url]


@pytest.mark.parametrize("text", ["A red fox.", "a  red\tfox", "«Un renard roux»", "",
                                  "...", "Straße!", "fox (watercolor)", " x ", "ÉCOLE ?"])
def test_writer_and_reader_normalise_prompts_alike(text):
    assert writer.normalise_prompt(text) == reader.normalise_prompt(text)


def test_writer_and_reader_agree_on_the_format():
    assert (writer.FORMAT, writer.VERSION, writer.MANIFEST) == (
        reader.FORMAT, reader.VERSION, reader.MANIFEST)


def test_export_takes_saved_files_then_downloads_the_rest(store, tmp_path):
    out = tmp_path / "lesson.kiepack"
    report = writer.export_pack(store.entries(), out, fetch=online)
    assert (report.tasks, report.images) == (3, 4)
    assert report.missing == ["task t2: failed, not a success; not included"]
    assert report.bytes == out.stat().st_size
    with zipfile.ZipFile(out) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert zf.read("images/t1_0.png") == SAVED
        assert zf.read("images/t1_1.png") == ONLINE
        assert zf.read("images/task_nano-banana-pro_1700000000000_0.jpg") == MARKET
    assert manifest["format"] == "kiepack" and manifest["version"] == 1
    first, second, edit = manifest["tasks"]
    assert first == {
        "task_id": "t1", "prompt": "A lighthouse at dusk.", "key": "a lighthouse at dusk",
        "model": "4o", "match_models": ["4o"], "size": "3:2", "edit": False,
        "params": {"size": "3:2", "variants": 2},
        "images": ["images/t1_0.png", "images/t1_1.png"],
        "created": "2026-01-01T10:00:00+00:00", "completed": None, "demo": False,
    }
    # A Market model matches by the API's model id and the ratio as sent.
    assert second["match_models"] == ["nano-banana-pro"] and second["size"] == "16:9"
    # A task given input images is recorded as an edit.
    assert (first["edit"], second["edit"], edit["edit"]) == (False, False, True)


def test_what_is_exported_comes_back_from_the_reader(store, tmp_path):
    out = tmp_path / "lesson.kiepack"
    writer.export_pack(store.entries(), out, fetch=online)
    pack = reader.load_pack(out)
    names = pack.match("a LIGHTHOUSE at dusk", "4o", "3:2")
    assert [pack.image(n)[0] for n in names] == [SAVED, ONLINE]  # not the edit's image
    names = pack.match("a LIGHTHOUSE at dusk", "4o", "3:2", edit=True)
    assert [pack.image(n)[0] for n in names] == [EDITED]  # only the edit's
    assert pack.image(pack.match("An owl!", "nano-banana-pro", "16:9")[0]) == (MARKET,
                                                                              "image/jpeg")


def test_an_image_that_cannot_be_had_is_left_out_and_said_so(store, tmp_path):
    report = writer.export_pack(store.entries(), tmp_path / "p.kiepack", fetch=lambda u: 1 / 0)
    assert report.images == 1  # the saved file
    assert "task t1 image 2: not saved, and its URL no longer works (division by zero); not " \
           "included" in report.missing
    with pytest.raises(ValueError, match="no image of these tasks could be had"):
        writer.export_pack([store.get("task_nano-banana-pro_1700000000000")],
                           tmp_path / "q.kiepack", fetch=None)
    assert not (tmp_path / "q.kiepack").exists()


def test_a_market_task_matches_the_api_model_of_the_mode_it_ran_in(tmp_path):
    store = HistoryStore(tmp_path / "history")
    for n, files in enumerate(([], ["https://cdn.example/me.png"])):
        store.append({"task_id": f"task_seedream_{n}", "prompt": "a fox", "status": "success",
                      "model": "seedream-4.5", "params": {"size": "1:1", "files": files},
                      "urls": ["https://cdn.example/owl.jpg"]})
    writer.export_pack(store.entries(), tmp_path / "s.kiepack", fetch=online)
    with zipfile.ZipFile(tmp_path / "s.kiepack") as zf:
        text, edit = json.loads(zf.read("manifest.json"))["tasks"]
    assert (text["match_models"], text["edit"]) == (["seedream/4.5-text-to-image"], False)
    assert (edit["match_models"], edit["edit"]) == (["seedream/4.5-edit"], True)


def test_a_pack_needs_its_own_file_name(store, tmp_path):
    with pytest.raises(ValueError, match=r"a replay pack's name ends in \.kiepack"):
        writer.export_pack(store.entries(), tmp_path / "lesson.zip", fetch=online)
    assert not (tmp_path / "lesson.zip").exists()
