"""``%kie4o history --info / --export`` and the gallery where a thumbnail was dropped."""

from __future__ import annotations

import json

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from magic_helpers import run


def line(sh, text: str):
    with capture_output() as cap:
        result = sh.run_cell(text)
    if result.error_in_exec is not None:
        raise result.error_in_exec
    bundle = result.result._repr_mimebundle_() if result.result is not None else {}
    return cap.stdout, bundle


def test_info_says_where_how_many_and_how_search_works(shell, tmp_path):
    _, empty = line(shell, "%kie4o history --info")
    assert "none yet" in empty["text/plain"]
    assert not (tmp_path / "kie" / "history.sqlite").exists()  # looking made nothing
    run(shell, "%%kie4o -o fox\na red fox")
    _, shown = line(shell, "%kie4o history --info")
    text = shown["text/plain"]
    assert str(tmp_path / "kie" / "history.sqlite") in text
    assert "1 (0 starred)" in text and "full-text" in text and "KIE_THUMBS_MAX_MB" in text
    assert "1 tasks" in text and "0 dropped" in text  # the finished task's thumbnail


def test_export_writes_every_task_and_refuses_what_would_lose_something(shell, tmp_path):
    run(shell, "%%kie4o -o fox\na red fox")
    run(shell, "%%kie4o -o owl\nan owl")
    out = tmp_path / "mine.jsonl"
    printed, _ = line(shell, f"%kie4o history --export {out}")
    assert f"2 task(s) written to {out}" in printed
    rows = [json.loads(r) for r in out.read_text().splitlines()]
    ns = shell.user_ns
    assert [r["task_id"] for r in rows] == [ns["fox"].task_id, ns["owl"].task_id]
    assert rows[0]["prompt"] == "a red fox" and rows[1]["status"] == "success"
    backup = tmp_path / "kie" / "history.jsonl"
    for bad, says in [(str(backup), "backup of the earlier history"),
                      (str(backup.parent / "thumbs" / ".." / backup.name),
                       "backup of the earlier history"),
                      (str(tmp_path / "x.txt"), "not a .jsonl file name"),
                      (str(tmp_path / "no" / "x.jsonl"), "not a file in an existing folder"),
                      ("", "give the file to write")]:
        with pytest.raises(UsageError, match=says):
            line(shell, f"%kie4o history --export '{bad}'" if bad else
                 "%kie4o history --export")
    assert not backup.exists() and not (tmp_path / "x.txt").exists()
    with pytest.raises(UsageError, match="stand alone"):
        line(shell, "%kie4o history 5 --info")
    with pytest.raises(UsageError, match="stand alone"):
        line(shell, f"%kie4o history --search fox --export {out}")


def test_the_gallery_says_where_the_full_image_is_when_a_thumbnail_was_dropped(
        shell, tmp_path, monkeypatch):
    monkeypatch.setenv("KIE_THUMBS_MAX_MB", "0")  # no thumbnail of an unstarred task kept
    saved = tmp_path / "saved"
    run(shell, "%%kie4o -o fox\na red fox")
    run(shell, f"%%kie4o -o owl --save {saved}\nan owl")
    fox, owl = shell.user_ns["fox"], shell.user_ns["owl"]
    assert not list((tmp_path / "kie" / "thumbs").glob("*"))
    _, page = line(shell, "%kie4o gallery")
    html, text = page["text/html"], page["text/plain"]
    owl_file = saved / f"{owl.task_id}_0.png"
    assert f"thumbnail dropped, full image at {owl_file}" in html
    assert f"thumbnail dropped, full image at {owl_file}" in text
    assert "thumbnail dropped; the full image was not saved" in html
    assert html.count("<img") == 0 and fox.task_id in html
    _, info = line(shell, "%kie4o history --info")
    assert "2 dropped" in info["text/plain"]


def test_a_file_that_is_not_a_database_is_one_line_and_tasks_still_run(shell, tmp_path, caplog):
    folder = tmp_path / "kie"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "history.sqlite").write_bytes(b"this is not a database at all" * 100)
    for command in ("%kie4o gallery", "%kie4o history", "%kie4o history --info"):
        with pytest.raises(UsageError, match=r"cannot open .*history.sqlite: file is not a da"):
            line(shell, command)
    run(shell, "%%kie4o -o fox\na red fox")
    assert shell.user_ns["fox"].status.value == "success"
    assert "could not write the history" in caplog.text


def test_a_dropped_thumbnail_points_at_the_result_url_only_while_kie_keeps_it():
    from datetime import datetime, timedelta, timezone

    from kie_jupyter.notebook.workbench import Item, _dropped_text

    def said(days_ago: float, demo: bool = False) -> str:
        made = (datetime.now(timezone.utc) - timedelta(days=days_ago)).isoformat()
        return _dropped_text(Item("t1", "a fox", {}, "success", created=made, demo=demo,
                                  urls=["https://tempfile.example/t1.png"], thumbs_dropped=True))

    assert "full image at https://tempfile.example/t1.png" in said(2)
    assert "not saved" in said(15) and "not saved" in said(2, demo=True)
