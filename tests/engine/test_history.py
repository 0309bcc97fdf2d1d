"""The local history: append-only, crash-safe, concurrent, tolerant of corrupt lines."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from kie_jupyter.api.models import TaskStatus
from kie_jupyter.engine.history import HistoryStore, default_output_dir


def fake_task(task_id: str, prompt: str = "p", status: TaskStatus = TaskStatus.GENERATING,
              **extra):
    values = dict(
        task_id=task_id, prompt=prompt, params={"prompt": prompt, "size": "1:1", "variants": 1},
        status=status, created=datetime(2026, 1, 2, tzinfo=timezone.utc), completed=None,
        urls=(), saved_paths=[], error=None, demo=False, model="4o", parents=[],
        thumb_paths=[], labels={},
    )
    values.update(extra)
    return SimpleNamespace(**values)


def test_record_then_final_state_folds_by_task_id(tmp_path):
    store = HistoryStore(tmp_path)
    store.record(fake_task("t1", "a fox"))
    store.record(fake_task("t1", "a fox", TaskStatus.SUCCESS, urls=("https://x/a.png",),
                           completed=datetime(2026, 1, 2, 0, 1, tzinfo=timezone.utc)))
    store.record(fake_task("t2", "an owl"))
    (first, second) = store.entries()
    assert first.task_id == "t1" and first.status == "success"
    assert first.urls == ["https://x/a.png"] and first.completed
    assert second.prompt == "an owl" and second.status == "generating"
    assert [e.task_id for e in store.recent(5)] == ["t2", "t1"]
    assert [e.task_id for e in store.recent(5, search="FOX")] == ["t1"]
    assert store.get("t2").prompt == "an owl" and store.get("nope") is None


def test_task_without_id_is_not_recorded(tmp_path):
    store = HistoryStore(tmp_path)
    store.record(fake_task(None))
    assert not store.path.exists()


def test_corrupt_and_truncated_lines_of_the_old_history_are_skipped_with_one_warning(tmp_path):
    store = HistoryStore(tmp_path)
    good = json.dumps({"task_id": "good1", "prompt": "a", "status": "success"})
    later = json.dumps({"task_id": "good2", "prompt": "b", "status": "success"})
    store.jsonl_path.write_bytes(
        (good + "\n{not json}\n[\"a list\"]\n" + later + "\n").encode()
        + b'{"task_id": "cut", "prompt": "half a li')  # a crash mid-write
    with pytest.warns(UserWarning, match="skipped 3 corrupt lines") as caught:
        entries = store.entries()
    assert len(caught) == 1
    assert [e.task_id for e in entries] == ["good1", "good2"]


def test_concurrent_writers_lose_nothing(tmp_path):
    store = HistoryStore(tmp_path)
    other = HistoryStore(tmp_path)  # a second store on the same file, like a second kernel

    def write(s, base):
        for i in range(50):
            s.record(fake_task(f"{base}-{i}", "x" * 500))
            s.record(fake_task(f"{base}-{i}", "x" * 500, TaskStatus.SUCCESS))

    threads = [threading.Thread(target=write, args=(s, f"w{n}"))
               for n, s in enumerate([store, other, store, other])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = store.entries()
    assert len(entries) == 200 and {e.status for e in entries} == {"success"}


def test_default_output_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "x"))
    assert default_output_dir() == tmp_path / "x"
    monkeypatch.delenv("KIE_OUTPUT_DIR")
    assert default_output_dir().name == ".kie_jupyter"
