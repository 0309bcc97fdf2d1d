"""Provenance: every PNG written carries how it was made, and reads back; parents chain."""

from __future__ import annotations

import io

from PIL import Image

import kie_jupyter
from kie_jupyter import KieClient, generate
from kie_jupyter.engine.history import HistoryStore
from kie_jupyter.engine.provenance import embed_provenance, read_provenance
from kie_jupyter.testing import MockKieServer

KEY = "sk-prov-test-0123456789"


def _client(srv: MockKieServer) -> KieClient:
    return KieClient(KEY, base_url=srv.url, upload_url=srv.url)


def test_every_written_png_carries_its_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "hist"))
    with MockKieServer(api_key=KEY, duration=0.2) as srv:
        fox = generate("a red fox, watercolor", size="3:2", variants=2, client=_client(srv),
                       save=tmp_path / "saved")
        written = [
            *fox.save(tmp_path / "all"),
            *fox.save(tmp_path / "one", index=1),
            fox[0].save(tmp_path / "pick.png"),
        ]
        for path in written + [tmp_path / "saved" / p.name for p in written[:2]]:
            info = kie_jupyter.provenance(path)
            assert info["prompt"] == "a red fox, watercolor"
            assert info["task_id"] == fox.task_id
            assert info["parameters"]["size"] == "3:2"
            assert info["model"] == "4o" and info["parents"] == []
            assert info["created"] == fox.created.isoformat()
            assert info["software"].startswith("kie-jupyter")
            with Image.open(path) as im:  # still a valid PNG with the same pixels
                im.load()
                assert im.text["Description"] == "a red fox, watercolor"


def test_parents_chain_through_tasks_images_and_saved_pngs(tmp_path, monkeypatch):
    monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "hist"))
    with MockKieServer(api_key=KEY, duration=0.2) as srv:
        client = _client(srv)
        fox = generate("a fox", variants=2, client=client)
        by_image = generate("the same fox at night", images=fox[1], yes=True, client=client)
        assert by_image.parents == [fox.task_id]
        path = fox[0].save(tmp_path / "fox0.png")
        from_png = generate("the fox in snow", images=[path], yes=True, client=client)
        assert from_png.parents == [fox.task_id]
        saved = from_png[0].save(tmp_path / "snow.png")
        assert kie_jupyter.provenance(saved)["parents"] == [fox.task_id]
        entry = HistoryStore(tmp_path / "hist").get(from_png.task_id)
        assert entry is not None and entry.parents == [fox.task_id] and entry.model == "4o"


def test_saving_again_replaces_rather_than_repeats_the_chunks():
    out = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(out, format="PNG")
    once = embed_provenance(out.getvalue(), {"kie:prompt": "one", "Software": "x"})
    twice = embed_provenance(once, {"kie:prompt": "two", "Software": "x"})
    assert twice.count(b"kie:prompt") == 1
    info = read_provenance(io.BytesIO(twice))
    assert info["prompt"] == "two"


def test_other_images_have_no_provenance(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(path)
    assert kie_jupyter.provenance(path) == {}
    jpeg = io.BytesIO()
    Image.new("RGB", (4, 4)).save(jpeg, format="JPEG")
    assert embed_provenance(jpeg.getvalue(), {"kie:prompt": "x"}) == jpeg.getvalue()
