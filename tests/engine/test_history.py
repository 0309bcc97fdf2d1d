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
    with pytest.warns(UserWarning, match="skipped 2 corrupt lines") as caught:
        entries = store.entries()
    assert len(caught) == 1
    assert [e.task_id for e in entries] == ["good1", "good2"]
    # The cut last line was left: an older kernel may have been writing it. A line after it
    # shows it was cut for good: it is skipped then, and the new line read.
    with open(store.jsonl_path, "ab") as fh:
        fh.write(b"\n" + json.dumps({"task_id": "good3", "prompt": "c"}).encode() + b"\n")
    with pytest.warns(UserWarning, match="skipped 1 corrupt line "):
        entries = store.entries()
    assert [e.task_id for e in entries] == ["good1", "good2", "good3"]


def test_a_last_line_being_written_is_read_once_whole(tmp_path):
    store = HistoryStore(tmp_path)
    first = json.dumps({"task_id": "a", "prompt": "a fox", "status": "generating"})
    store.jsonl_path.write_text(first + "\n" + '{"task_id": "a", "sta')
    assert store.get("a").status == "generating"
    with open(store.jsonl_path, "a") as fh:  # the older kernel ends its line
        fh.write('tus": "success"}\n')
    assert store.get("a").status == "success"


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


# -- the database: import from JSON lines, search, the thumbnail cap ------------------------


def _jsonl(path, records) -> bytes:
    raw = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return raw


def test_the_old_history_is_imported_once_folded_and_kept_untouched(tmp_path):
    store = HistoryStore(tmp_path)
    raw = _jsonl(store.jsonl_path, [
        {"task_id": "a", "prompt": "a fox", "status": "generating", "created": "2026-01-01"},
        {"task_id": "b", "prompt": "an owl", "status": "generating", "created": "2026-01-02"},
        {"task_id": "a", "status": "success", "urls": ["https://x/a.png"],
         "created": "2026-05-05"},  # a resumed task keeps its first creation time
    ])
    entries = {e.task_id: e for e in store.entries()}
    assert entries["a"].status == "success" and entries["a"].prompt == "a fox"
    assert entries["a"].created == "2026-01-01" and entries["a"].urls == ["https://x/a.png"]
    assert entries["b"].status == "generating"
    assert [e.task_id for e in store.entries()] == ["a", "b"]  # first recorded first
    store.star("b")  # written to the database, never to the backup
    store.record(fake_task("c", "a hare"))
    assert store.jsonl_path.read_bytes() == raw
    # Opened again (another process, or after a restart): nothing is read in twice.
    assert [e.task_id for e in HistoryStore(tmp_path).entries()] == ["a", "b", "c"]
    assert HistoryStore(tmp_path).get("b").starred


def test_lines_an_older_kernel_appends_later_are_read_in_at_the_next_open(tmp_path):
    store = HistoryStore(tmp_path)
    _jsonl(store.jsonl_path, [{"task_id": "a", "prompt": "a fox", "status": "generating"}])
    assert store.get("a").status == "generating"
    with open(store.jsonl_path, "a") as fh:  # a kernel still on the JSON-lines version
        fh.write(json.dumps({"task_id": "a", "status": "success"}) + "\n")
        fh.write(json.dumps({"task_id": "z", "prompt": "late", "status": "success"}) + "\n")
    assert store.get("a").status == "success" and store.get("z").prompt == "late"
    assert len(store.entries()) == 2


def test_a_line_read_in_later_changes_only_what_it_says(tmp_path):
    store = HistoryStore(tmp_path)
    _jsonl(store.jsonl_path, [{"task_id": "a", "prompt": "a fox", "status": "generating"}])
    store.star("a")  # in this version's database
    with open(store.jsonl_path, "a") as fh:  # an older kernel, still running, saves a file
        fh.write(json.dumps({"task_id": "a", "saved_paths": ["/pics/a_0.png"]}) + "\n")
    entry = store.get("a")
    assert entry.saved_paths == ["/pics/a_0.png"] and entry.starred
    assert entry.prompt == "a fox" and entry.status == "generating"


def test_an_empty_folder_is_not_made_a_history_by_reading_it(tmp_path):
    store = HistoryStore(tmp_path / "none")
    assert store.entries() == [] and store.query() == ([], 0) and store.info() is None
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("fts", [True, False], ids=["fts5", "scan"])
def test_search_finds_any_part_of_a_prompt_in_any_case(tmp_path, monkeypatch, fts):
    from kie_jupyter.engine import historyindex

    if not fts:  # an interpreter whose SQLite has no FTS5 trigram tokenizer
        monkeypatch.setattr(historyindex, "available", lambda: False)
    store = HistoryStore(tmp_path)
    prompts = ["A red FOX in the snow", "an owl at night", 'the "quoted" fox',
               "foxglove, a flower", "Ünïcode Café at dawn", "ox", "die Straße in Köln"]
    for n, prompt in enumerate(prompts):
        store.record(fake_task(f"t{n}", prompt, demo=n % 2 == 0))
    assert store.info().search.startswith("full-text" if fts else "a scan")

    def ids(text, **kw):
        found, total = store.query(search=text, **kw)
        assert total == len(found)
        return [e.task_id for e in found]

    assert ids("fox") == ["t3", "t2", "t0"]  # newest first
    assert ids("FOX IN") == ["t0"]
    assert ids('"quoted"') == ["t2"] and ids('"') == ["t2"]
    assert ids("ox") == ["t5", "t3", "t2", "t0"]  # shorter than a trigram: still found
    assert ids("café") == ["t4"] and ids("CAFÉ") == ["t4"]
    # As Python folds case: ß is ss (so "ß", two letters folded, is a scan).
    assert ids("strasse") == ["t6"] and ids("STRASSE") == ["t6"] and ids("ß") == ["t6"]
    assert ids("fox", demo=True) == ["t2", "t0"] and ids("fox", demo=False) == ["t3"]
    assert ids("zebra") == [] and ids("fox AND owl") == [] and ids("fox*") == []
    assert [e.task_id for e in store.recent(2, "fox")] == ["t3", "t2"]


def _thumb(store, name: str, size: int) -> str:
    path = store.thumbs_dir() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"j" * size)
    return str(path)


def test_thumbnails_of_unstarred_tasks_keep_within_the_cap_oldest_dropped_first(tmp_path):
    store = HistoryStore(tmp_path, thumb_cap=2500)
    done = TaskStatus.SUCCESS
    store.record(fake_task("t0", status=done, thumb_paths=[_thumb(store, "t0_0.jpg", 1000)]))
    store.star("t0")  # starred: always kept, and not counted
    for n in range(1, 5):
        store.record(fake_task(f"t{n}", status=done, saved_paths=[f"/pics/t{n}_0.png"],
                               thumb_paths=[_thumb(store, f"t{n}_0.jpg", 1000)]))
    kept = {e.task_id: e for e in store.entries()}
    assert [n for n in kept if kept[n].thumbs_dropped] == ["t1", "t2"]
    assert kept["t1"].thumbs == [] and kept["t1"].saved_paths == ["/pics/t1_0.png"]
    assert all(kept[n].thumbs and not kept[n].thumbs_dropped for n in ("t0", "t3", "t4"))
    assert sorted(p.name for p in store.thumbs_dir().iterdir()) == [
        "t0_0.jpg", "t3_0.jpg", "t4_0.jpg"]
    # A later record of a dropped task (a resume) does not bring back what was deleted.
    store.record(fake_task("t1", status=done, thumb_paths=[]))
    assert store.get("t1").thumbs_dropped
    # Nor does a task object that still holds the deleted paths (re-recorded on a save).
    store.record(fake_task("t1", status=done, saved_paths=["/pics/t1_0.png", "/more/t1.png"],
                           thumb_paths=[str(store.thumbs_dir() / "t1_0.jpg")]))
    again = store.get("t1")
    assert again.thumbs == [] and again.thumbs_dropped and len(again.saved_paths) == 2
    info = store.info()
    assert (info.thumbs, info.thumb_bytes, info.thumbs_dropped) == (3, 3000, 2)


def test_imported_thumbnails_count_toward_the_cap_and_unstarring_counts_again(tmp_path):
    store = HistoryStore(tmp_path, thumb_cap=2500)
    old = [{"task_id": f"o{n}", "prompt": "old", "status": "success",
            "thumbs": [_thumb(store, f"o{n}_0.jpg", 1000)]} for n in range(2)]
    _jsonl(store.jsonl_path, old)
    assert store.info().thumb_bytes == 2000  # read in with their sizes
    store.star("o0")
    store.record(fake_task("t1", status=TaskStatus.SUCCESS,
                           thumb_paths=[_thumb(store, "t1_0.jpg", 1000)]))
    assert not any(e.thumbs_dropped for e in store.entries())  # o0 starred: 2000 counted
    store.star("o0", False)  # counted again: 3000 > 2500, dropped at the next record
    store.record(fake_task("t2", status=TaskStatus.SUCCESS,
                           thumb_paths=[_thumb(store, "t2_0.jpg", 1000)]))
    assert [e.task_id for e in store.entries() if e.thumbs_dropped] == ["o0", "o1"]
    assert sorted(p.name for p in store.thumbs_dir().iterdir()) == ["t1_0.jpg", "t2_0.jpg"]


def test_the_cap_never_deletes_a_file_outside_the_thumbnail_folder(tmp_path):
    store = HistoryStore(tmp_path / "kie", thumb_cap=0)
    mine = tmp_path / "my_picture.jpg"
    mine.write_bytes(b"j" * 100)
    store.record(fake_task("t0", status=TaskStatus.SUCCESS, thumb_paths=[str(mine)]))
    assert mine.exists() and store.get("t0").thumbs_dropped


def test_the_cap_comes_from_the_environment(tmp_path, monkeypatch, caplog):
    from kie_jupyter.engine.history import DEFAULT_THUMBS_MAX_MB, thumb_cap_bytes

    monkeypatch.setenv("KIE_THUMBS_MAX_MB", "0.5")
    assert thumb_cap_bytes() == 512 * 1024
    monkeypatch.setenv("KIE_THUMBS_MAX_MB", "inf")  # no cap
    assert thumb_cap_bytes() > 2**60
    monkeypatch.setenv("KIE_THUMBS_MAX_MB", "lots")
    assert thumb_cap_bytes() == DEFAULT_THUMBS_MAX_MB * 1024 * 1024
    assert "KIE_THUMBS_MAX_MB='lots' is not a size" in caplog.text
    monkeypatch.setenv("KIE_THUMBS_MAX_MB", "0")
    store = HistoryStore(tmp_path)
    store.record(fake_task("t0", status=TaskStatus.SUCCESS,
                           thumb_paths=[_thumb(store, "t0_0.jpg", 10)]))
    assert store.get("t0").thumbs_dropped and not any(store.thumbs_dir().iterdir())


def test_export_writes_what_a_fresh_folder_reads_back_the_same(tmp_path):
    store = HistoryStore(tmp_path / "kie")
    for n in range(3):
        store.record(fake_task(f"t{n}", f"prompt {n}", TaskStatus.SUCCESS,
                               urls=(f"https://x/{n}.png",), labels={"batch": f"k{n}"}))
    store.star("t1")
    assert store.export_jsonl(tmp_path / "out.jsonl") == 3
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(line)["task_id"] for line in lines] == ["t0", "t1", "t2"]
    again = HistoryStore(tmp_path / "again")
    again.directory.mkdir()
    (tmp_path / "out.jsonl").rename(again.jsonl_path)
    assert again.entries() == store.entries()


def test_an_interpreter_without_the_index_writes_and_one_with_it_catches_up(
        tmp_path, monkeypatch):
    from kie_jupyter.engine import historydb, historyindex
    from kie_jupyter.engine.history import _fold

    def opened(trigram: bool) -> historydb.HistoryDB:
        """The database as a process whose SQLite has (or lacks) the trigram tokenizer."""
        monkeypatch.setattr(historyindex, "available", lambda: trigram)
        historydb._open.clear()
        db = historydb.HistoryDB.open(tmp_path, _fold, create=True)
        assert db is not None and db.fts is trigram
        return db

    def record(db, task_id, prompt):
        db.upsert(task_id, {"task_id": task_id, "prompt": prompt}, _fold)

    def found(db, text):
        return [e["task_id"] for e in db.page(search=text)[0]]

    kernel = opened(True)  # a kernel that stays open throughout
    record(kernel, "t0", "a red fox")
    older = opened(False)  # kie4o --batch under an older Python, say
    record(older, "t1", "a fox at dawn")  # written (the index untouched), and marked stale
    assert found(older, "fox") == ["t1", "t0"]  # a scan
    assert found(kernel, "fox") == ["t1", "t0"]  # the kernel rebuilds before it searches
    newer = opened(True)  # another process with the tokenizer opens meanwhile…
    record(older, "t2", "fox in the snow")  # …and the older one still writes
    record(kernel, "t3", "a grey FOX")
    assert found(newer, "fox") == found(kernel, "fox") == ["t3", "t2", "t1", "t0"]
    assert found(kernel, "strasse") == []


def test_a_last_line_being_written_costs_no_write_per_read(tmp_path):
    import sqlite3

    store = HistoryStore(tmp_path)
    _jsonl(store.jsonl_path, [{"task_id": "a", "prompt": "a fox"}])
    with open(store.jsonl_path, "a") as fh:
        fh.write('{"task_id": "b", "pro')  # cut for good, or still being written
    assert store.get("a").prompt == "a fox"
    other = sqlite3.connect(store.path)
    (before,) = other.execute("PRAGMA data_version").fetchone()
    for _ in range(3):
        assert store.get("b") is None and store.get("a") is not None
    assert other.execute("PRAGMA data_version").fetchone() == (before,)  # nothing written
    other.close()


def test_a_history_this_user_cannot_write_is_still_read(tmp_path, monkeypatch):
    import errno
    import os

    from kie_jupyter.engine import historydb

    store = HistoryStore(tmp_path)
    store.record(fake_task("t0", "a red fox", status=TaskStatus.SUCCESS))
    historydb._open.clear()
    real_open = os.open

    def refuse(path, flags, *args):  # the tests may run as root: chmod would not do
        if str(path).endswith(historydb.DB_NAME) and flags & (os.O_RDWR | os.O_WRONLY):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(historydb.os, "open", refuse)
    assert [e.task_id for e in store.recent(5, "fox")] == ["t0"]
    assert store.get("t0").status == "success" and store.info().tasks == 1
    assert not store.record_safely(fake_task("t1", "an owl"))  # one warning, no error
    with pytest.raises(OSError):
        store.star("t0")


def test_what_spend_and_batch_read_is_what_the_whole_entries_say(tmp_path):
    from kie_jupyter.engine.spend import spend_report

    store = HistoryStore(tmp_path)
    done, failed = TaskStatus.SUCCESS, TaskStatus.FAILED
    store.record(fake_task("t0", status=done, model="4o"))
    store.record(fake_task("t1", status=done, model="nano-banana-2", demo=True,
                           labels={"batch": "k1"}))
    store.record(fake_task("t2", status=failed, model="seedream-4.5", labels={"batch": "k2"},
                           created=datetime(2026, 3, 4, tzinfo=timezone.utc)))
    store.append({"task_id": "t3", "prompt": "old, no cost recorded", "status": "success",
                  "created": "2025-06-01T10:00:00", "model": "4o",
                  "params": {"prompt": "x", "size": "1:1", "variants": 4}})
    store.append({"task_id": "t4", "status": "success", "created": "2025-06-02",
                  "cost": {"value": 3.5, "basis": "reported", "source": "KIE"}})
    for demo in (False, True):
        for by in ("model", "day"):
            assert (spend_report(store.cost_entries(demo=demo), by=by, demo=demo)
                    == spend_report(store.entries(), by=by, demo=demo))
    assert spend_report(store.cost_entries(), by="model")[1].tasks == 4  # t0, t2, t3, t4
    assert [e.task_id for e in store.labelled("batch")] == ["t1", "t2"]
    assert store.labelled("batch")[1].labels == {"batch": "k2"}
    assert store.labelled("nothing") == []


def test_a_search_while_another_process_holds_the_history_is_answered_by_a_scan(
        tmp_path, monkeypatch):
    import sqlite3

    from kie_jupyter.engine import historydb

    monkeypatch.setattr(historydb, "BUSY_SECONDS", 0.2)
    historydb._open.clear()
    store = HistoryStore(tmp_path)
    store.record(fake_task("t0", "a red fox"))
    store.append({"task_id": "t1", "prompt": True})  # a hand-edited line: stored as text
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("INSERT OR REPLACE INTO meta VALUES ('fts_stale', '1')")  # as an older
    other.execute("BEGIN IMMEDIATE")  # SQLite would; then it holds the lock for long
    try:
        assert [e.task_id for e in store.recent(5, "fox")] == ["t0"]  # no rebuild: a scan
        assert [e.task_id for e in store.recent(5, "ox")] == ["t0"]
        assert [e.task_id for e in store.recent(5, "true")] == ["t1"]
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert [e.task_id for e in store.recent(5, "fox")] == ["t0"]  # rebuilt, through the index
    assert [e.task_id for e in store.recent(5, "true")] == ["t1"]
