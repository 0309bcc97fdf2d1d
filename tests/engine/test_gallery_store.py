"""What the gallery stands on: thumbnails for every finished task, stars, paged queries."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from kie_jupyter import KieClient, generate
from kie_jupyter.engine.history import HistoryStore
from kie_jupyter.testing import MockKieServer

KEY = "sk-gallery-test-0123456789"


def test_every_finished_task_keeps_thumbnails_with_its_history(tmp_path, monkeypatch):
    monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "hist"))
    with MockKieServer(api_key=KEY, duration=0.2) as srv:
        client = KieClient(KEY, base_url=srv.url, upload_url=srv.url)
        task = generate("a fox", variants=2, size="3:2", client=client)  # not saved
        failed = generate("[mock:fail] x", client=client)
    entry = HistoryStore(tmp_path / "hist").get(task.task_id)
    assert entry is not None and len(entry.thumbs) == 2
    for path in entry.thumbs:
        with Image.open(path) as im:
            assert im.format == "JPEG" and max(im.size) <= 256
            assert im.size[0] > im.size[1]  # the aspect ratio is kept
    assert HistoryStore(tmp_path / "hist").get(failed.task_id).thumbs == []


def _store_with(tmp_path, n: int) -> HistoryStore:
    store = HistoryStore(tmp_path)
    lines = []
    for i in range(n):
        lines.append(json.dumps({
            "task_id": f"t{i:04d}", "prompt": f"{'fox' if i % 3 == 0 else 'owl'} number {i}",
            "status": "success", "demo": i % 2 == 0, "created": f"2026-11-{1 + i % 28:02d}",
        }))
    store.directory.mkdir(parents=True, exist_ok=True)
    store.jsonl_path.write_text("\n".join(lines) + "\n")  # an earlier version's history
    return store


def test_query_pages_newest_first_with_search_stars_and_demo(tmp_path):
    store = _store_with(tmp_path, 1000)
    page, total = store.query(per_page=24)
    assert total == 1000 and [e.task_id for e in page[:2]] == ["t0999", "t0998"]
    page3, _ = store.query(page=3, per_page=24)
    assert page3[0].task_id == "t0951"
    foxes, n_fox = store.query(search="FOX", per_page=5)
    assert n_fox == 334 and all("fox" in e.prompt for e in foxes)
    _, n_demo = store.query(demo=True)
    _, n_live = store.query(demo=False)
    assert (n_demo, n_live) == (500, 500)
    store.star("t0005")
    store.star("t0007")
    store.star("t0007", False)
    starred, n = store.query(starred=True)
    assert n == 1 and starred[0].task_id == "t0005" and starred[0].starred


def test_starring_an_unknown_task_is_refused(tmp_path):
    with pytest.raises(KeyError):
        _store_with(tmp_path, 3).star("nope")
