"""``%kie4o`` subcommands: login, demo, status, resume, history, credits, config."""

from __future__ import annotations

import getpass
import time

import pytest
from IPython.core.error import UsageError

from kie_jupyter.api.models import TaskStatus
from kie_jupyter.testing import MockKieServer
from kie_jupyter.testing.shell import TestingShell

from magic_helpers import KEY, all_text, run, sent


def test_unknown_subcommand_lists_the_valid_ones(shell):
    with pytest.raises(UsageError, match="login, demo, status, resume, history"):
        run(shell, "%kie4o frobnicate")
    with pytest.raises(UsageError, match="subcommand"):
        run(shell, "%kie4o")


def test_login_uses_a_hidden_prompt_and_keeps_key_in_memory(shell, server, monkeypatch):
    monkeypatch.delenv("KIE_API_KEY")
    run(shell, "%reload_ext kie_jupyter")
    prompts = []
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": prompts.append(prompt) or KEY)
    cap = run(shell, "%kie4o login")
    assert prompts and KEY not in all_text(cap)
    run(shell, "%%kie4o -o t\nafter login")
    assert shell.user_ns["t"].status is TaskStatus.SUCCESS
    auth = sent(server, "generate")[0].headers["Authorization"]
    assert auth == f"Bearer {KEY}"
    with pytest.raises(UsageError, match="hidden prompt"):
        run(shell, f"%kie4o login {KEY}")


def test_login_with_empty_key_is_refused(shell, monkeypatch):
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": "  ")
    with pytest.raises(UsageError, match="no key"):
        run(shell, "%kie4o login")


def test_demo_on_and_off_restores_the_endpoint(shell, server, monkeypatch):
    monkeypatch.delenv("KIE_API_KEY")
    run(shell, "%reload_ext kie_jupyter")
    cap = run(shell, "%kie4o demo")
    assert "synthetic" in cap.stdout
    run(shell, "%%kie4o -o t\na demo fox")
    task = shell.user_ns["t"]
    assert task.status is TaskStatus.SUCCESS and task.images
    assert not server.requests  # the demo server answered, not the configured one
    assert task.client.base_url != server.url
    cap = run(shell, "%kie4o demo off")
    assert server.url in cap.stdout
    with pytest.raises(UsageError, match="no API key"):
        run(shell, "%%kie4o\nagain")
    with pytest.raises(UsageError, match="demo"):
        run(shell, "%kie4o demo maybe")


def test_kie_demo_env_turns_demo_on_at_load(server, monkeypatch):
    monkeypatch.setenv("KIE_DEMO", "1")
    monkeypatch.delenv("KIE_API_KEY")
    sh = TestingShell.instance()
    cap = run(sh, "%load_ext kie_jupyter")
    try:
        assert "demo mode" in cap.stdout
        run(sh, "%%kie4o -o t\nbinder")
        assert sh.user_ns["t"].status is TaskStatus.SUCCESS
    finally:
        run(sh, "%unload_ext kie_jupyter")


def test_status_snapshot_and_unknown_id(shell, server):
    run(shell, "%%kie4o -n 2 -o t\nstatus me")
    task = shell.user_ns["t"]
    cap = run(shell, f"%kie4o status {task.task_id}")
    text = all_text(cap)
    assert "success" in text and task.urls[0] in text and "status me" in text
    with pytest.raises(UsageError, match="not-a-task.*record is null"):
        run(shell, "%kie4o status not-a-task")
    with pytest.raises(UsageError, match="one task id"):
        run(shell, "%kie4o status")


def test_resume_follows_a_task_to_its_end_and_binds(shell, server):
    run(shell, "%%kie4o --no-wait -o t\nresume me")
    first = shell.user_ns["t"]
    first.stop()
    first.wait(5)
    assert first.status is TaskStatus.STOPPED and first.task_id
    run(shell, f"%kie4o resume {first.task_id}")
    resumed = shell.user_ns["_kie4o"]
    assert resumed is not first and resumed.task_id == first.task_id
    assert resumed.status is TaskStatus.SUCCESS and resumed.images
    assert resumed.prompt == "resume me"
    assert len(sent(server, "generate")) == 1  # resuming never submits again
    with pytest.raises(UsageError, match="record is null"):
        run(shell, "%kie4o resume 0000dead")


def test_resume_of_a_task_from_the_dashboard_not_in_history(shell, server, tmp_path):
    import requests

    answer = requests.post(f"{server.url}/api/v1/gpt4o-image/generate",
                           json={"prompt": "made elsewhere", "size": "1:1"},
                           headers={"Authorization": f"Bearer {KEY}"}, timeout=5).json()
    task_id = answer["data"]["taskId"]
    run(shell, f"%kie4o resume {task_id}")
    task = shell.user_ns["_kie4o"]
    assert task.status is TaskStatus.SUCCESS and task.prompt == "made elsewhere"


def test_history_table_and_search(shell, server):
    run(shell, "%%kie4o -o t\na red fox")
    run(shell, "%%kie4o -s 3:2\nan owl at night")
    text = all_text(run(shell, "%kie4o history"))
    assert "a red fox" in text and "an owl at night" in text and "3:2" in text
    text = all_text(run(shell, "%kie4o history --search OWL"))
    assert "an owl at night" in text and "a red fox" not in text
    text = all_text(run(shell, "%kie4o history 1"))
    assert "an owl at night" in text and "a red fox" not in text
    with pytest.raises(UsageError, match="positive count"):
        run(shell, "%kie4o history -3")


def test_history_shows_thumbnails_of_saved_images(shell, server, tmp_path):
    run(shell, f"%%kie4o --save {tmp_path / 'saved'}\nkeep me")
    table = shell.run_line_magic("kie4o", "history")
    html = table._repr_mimebundle_()["text/html"]
    assert "data:image/" in html and "keep me" in html


def test_credits_and_config(shell, server):
    cap = run(shell, "%kie4o credits")
    assert "100 credits" in cap.stdout
    text = all_text(run(shell, "%kie4o config"))
    assert server.url in text and "sk-…cdef" in text and KEY not in text


def test_credits_error_in_one_line(shell, server):
    server.add_fault("credit", http_status=200, code=401, times=10)
    with pytest.raises(UsageError, match="401"):
        run(shell, "%kie4o credits")


def test_insufficient_credits_is_explained(shell, server):
    server.credits = 0
    cap = run(shell, "%%kie4o -o t\nexpensive")
    assert "402" in cap.stdout and "credits" in cap.stdout


def test_second_mock_server_is_independent():
    with MockKieServer(api_key=None) as a, MockKieServer(api_key=None) as b:
        assert a.url != b.url


def test_line_magic_fills_names_from_the_notebook(shell, server):
    run(shell, "%%kie4o -o t\nfill me")
    task = shell.user_ns["t"]
    text = all_text(run(shell, "%kie4o status {t.task_id}"))
    assert task.task_id in text and "success" in text
    shell.user_ns["tid"] = task.task_id
    run(shell, "%kie4o resume $tid")
    assert shell.user_ns["_kie4o"].task_id == task.task_id


def test_a_key_set_after_loading_is_used(shell, server, monkeypatch):
    monkeypatch.delenv("KIE_API_KEY")
    run(shell, "%reload_ext kie_jupyter")
    monkeypatch.setenv("KIE_API_KEY", KEY)  # e.g. os.environ[...] = ... in a later cell
    run(shell, "%%kie4o -o t\nlate key")
    assert shell.user_ns["t"].status is TaskStatus.SUCCESS


def test_login_refuses_a_key_with_a_line_break(shell, monkeypatch):
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": "sk-abc\ndef")
    with pytest.raises(UsageError, match="line breaks") as info:
        run(shell, "%kie4o login")
    assert "sk-abc" not in str(info.value)


def test_demo_off_stops_the_demo_tasks(shell, server, monkeypatch):
    monkeypatch.setenv("KIE_DEMO_DURATION", "30")
    run(shell, "%kie4o demo")
    run(shell, "%%kie4o --no-wait -o t\nlong demo task")
    task = shell.user_ns["t"]
    # Once it runs on the server (a request still in flight when the server goes is another
    # case: it may have arrived, and the task says so).
    deadline = time.monotonic() + 10
    while task.task_id is None and time.monotonic() < deadline:
        time.sleep(0.02)
    run(shell, "%kie4o demo off")
    task.wait(5)
    assert task.status is TaskStatus.STOPPED


def test_unload_is_quick_with_tasks_in_flight(shell, server):
    server.add_fault("record-info", delay=3.0, times=100)  # every poll hangs for 3 s
    for n in range(4):
        run(shell, f"%%kie4o --no-wait -o t{n}\nslow poll {n}")
    time.sleep(1.0)  # the first polls are in flight
    start = time.monotonic()
    run(shell, "%unload_ext kie_jupyter")
    # Stopped together, not one hanging poll after another (4 × 3 s).
    assert time.monotonic() - start < 4 * 3.0 / 2
    run(shell, "%load_ext kie_jupyter")  # the fixture unloads again
