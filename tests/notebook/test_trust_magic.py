"""Issue 11, the notebook side: no credit spent by accident, no paid task lost, every mistake
one line. Each test drives the magic through a real IPython shell against the mock server."""

from __future__ import annotations

import getpass
import os
import threading
import time

import pytest
from IPython.core.error import StdinNotImplementedError, UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from kie_jupyter.api.models import TaskStatus
from kie_jupyter.api.ratelimit import SlidingWindowLimiter
from kie_jupyter.engine.history import HistoryStore
from kie_jupyter.engine.task import Task
from kie_jupyter.fakeapi.images import render_png
from kie_jupyter.notebook.cards import static_bundle, status_text

from magic_helpers import all_text, run, sent


def one_line_error(sh, cell) -> str:
    """Run a cell that must fail with a one-line UsageError; return the message."""
    with pytest.raises(UsageError) as info:
        run(sh, cell)
    message = str(info.value).strip()
    assert "\n" not in message, message
    return message


def magics(sh):
    return sh.magics_manager.registry["Kie4o"]


def run_unraised(sh, cell):
    """Run a cell as a notebook does (errors shown, not raised); return result and output."""
    with capture_output() as cap:
        result = InteractiveShell.run_cell(sh, cell)
    return result, cap


def interrupt_once(monkeypatch, when=lambda task: True):
    """Make the first blocking wait on a task raise KeyboardInterrupt, as a kernel interrupt
    does, once ``when(task)`` holds (later waits are the real ones)."""
    original = Task.wait
    fired = threading.Event()

    def wait(self, timeout=None):
        if not fired.is_set():
            deadline = time.monotonic() + 10
            while not when(self) and not self.done and time.monotonic() < deadline:
                original(self, 0.02)
            fired.set()
            raise KeyboardInterrupt
        return original(self, timeout)

    monkeypatch.setattr(Task, "wait", wait)
    return fired


def wait_for_id(task) -> None:
    deadline = time.monotonic() + 10
    while task.task_id is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert task.task_id


def hold_submissions(sh, period: float = 60.0) -> None:
    """Fill the magic's client's rate-limit window: the next submission waits ``period`` s."""
    client = magics(sh).client()
    client.limiter = SlidingWindowLimiter(1, period)
    client.limiter.reserve()


# -- 2. validation before paying ---------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e999"])
def test_timeout_that_cannot_work_is_refused_before_sending(shell, server, value):
    message = one_line_error(shell, f"%%kie4o --timeout {value}\na fox")
    assert message.startswith("--timeout") and "positive number of seconds" in message
    assert not server.requests


def test_timeout_setting_that_cannot_work_is_refused(shell, server):
    run(shell, "%config Kie4o.timeout = float('inf')")
    message = one_line_error(shell, "%%kie4o\na fox")
    assert "Kie4o.timeout" in message
    assert not server.requests


@pytest.mark.parametrize(("target", "needle"), [
    ("imgs/notes.txt", "is a file, not a folder"),
    ("notes.txt/sub", "a file"),
    ("imgs/notes.txt/deeper/still", "a file"),
])
def test_save_folder_that_cannot_work_is_refused_before_sending(shell, server, tmp_path,
                                                               monkeypatch, target, needle):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "notes.txt").write_text("notes")
    (tmp_path / "notes.txt").write_text("notes")
    monkeypatch.chdir(tmp_path)
    message = one_line_error(shell, f"%%kie4o --save {target}\na fox")
    assert message.startswith("--save") and needle in message
    assert not server.requests


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes to read-only folders")
def test_save_folder_not_writable_is_refused_before_sending(shell, server, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        message = one_line_error(shell, f"%%kie4o --save {locked}\na fox")
    finally:
        locked.chmod(0o700)
    assert message.startswith("--save") and "cannot write" in message
    assert not server.requests


def test_save_folder_is_created_and_used(shell, server, tmp_path):
    out = tmp_path / "new" / "folder"
    run(shell, f"%%kie4o --save {out} -o t\na kept fox")
    task = shell.user_ns["t"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        [f"{task.task_id}_0.png", f"{task.task_id}.json"])


# -- 3. Ctrl-C ends the cell in error -----------------------------------------------------


@pytest.mark.parametrize("frontend", ["text", "widget"])
def test_ctrl_c_stops_the_task_prints_how_to_resume_and_fails_the_cell(
        shell, server, monkeypatch, frontend):
    run(shell, f"%config Kie4o.frontend = '{frontend}'")
    server.script_next_task(duration=30.0)
    interrupt_once(monkeypatch, when=lambda task: task.task_id is not None)
    result, cap = run_unraised(shell, "%%kie4o -o t\na long fox")
    task = shell.user_ns["t"]
    assert result.success is False  # Run All stops here, before the next (paid) cell
    assert isinstance(result.error_in_exec, UsageError)
    assert "\n" not in str(result.error_in_exec).strip()
    assert "Traceback" not in cap.stdout + cap.stderr
    assert task.status is TaskStatus.STOPPED and task.task_id
    assert f"`%kie4o resume {task.task_id}`" in cap.stdout
    assert len(sent(server, "generate")) == 1


def test_ctrl_c_before_the_request_left_says_nothing_was_charged(shell, server, monkeypatch):
    hold_submissions(shell)  # the request waits for the rate limiter: it has not left
    interrupt_once(monkeypatch, when=lambda task: task.queued_until is not None)
    result, cap = run_unraised(shell, "%%kie4o -o t\nnever sent")
    assert result.success is False and isinstance(result.error_in_exec, UsageError)
    assert "stopped before the request was sent; nothing was charged" in cap.stdout
    assert "goes on at KIE.AI" not in cap.stdout
    assert shell.user_ns["t"].status is TaskStatus.STOPPED
    assert not sent(server, "generate")


def test_ctrl_c_during_resume_fails_the_cell(shell, server, monkeypatch):
    server.script_next_task(duration=30.0)
    run(shell, "%%kie4o --no-wait -o t\nresume me")
    first = shell.user_ns["t"]
    wait_for_id(first)
    first.stop()
    interrupt_once(monkeypatch)
    result, cap = run_unraised(shell, f"%kie4o resume {first.task_id}")
    assert result.success is False and isinstance(result.error_in_exec, UsageError)
    assert f"`%kie4o resume {first.task_id}`" in cap.stdout
    assert "Traceback" not in cap.stdout + cap.stderr


# -- 4. demo mode survives %reload_ext ----------------------------------------------------


def test_reload_keeps_demo_mode_and_its_running_task(shell, server, monkeypatch):
    monkeypatch.setenv("KIE_DEMO_DURATION", "2")
    run(shell, "%kie4o demo")
    demo_server = magics(shell).demo
    run(shell, "%%kie4o --no-wait -o t\na demo fox still running")
    running = shell.user_ns["t"]
    assert os.environ["KIE_API_KEY"]  # a live key is there: a reload must not switch to it
    cap = run(shell, "%reload_ext kie_jupyter")
    assert "demo mode continues" in cap.stdout and cap.stdout.count("\n") == 1
    assert running.wait(20).status is TaskStatus.SUCCESS  # not STOPPED by the reload
    run(shell, "%%kie4o -o after\nafter the reload")
    after = shell.user_ns["after"]
    assert after.status is TaskStatus.SUCCESS and after.demo
    assert not server.requests  # nothing went to the live endpoint
    run(shell, "%unload_ext kie_jupyter")  # alone, it stops everything
    assert not demo_server.running
    time.sleep(0.2)
    assert not [t for t in threading.enumerate() if t.name.startswith("kie4o-task")]
    run(shell, "%load_ext kie_jupyter")  # the fixture unloads again
    assert not magics(shell).demo.running
    shell.user_ns.pop("after", None)


def test_unload_stops_the_demo_and_its_tasks(shell, server, monkeypatch):
    monkeypatch.setenv("KIE_DEMO_DURATION", "30")
    run(shell, "%kie4o demo")
    demo_server = magics(shell).demo
    run(shell, "%%kie4o --no-wait -o t\nlong demo task")
    wait_for_id(shell.user_ns["t"])
    run(shell, "%unload_ext kie_jupyter")
    assert shell.user_ns["t"].wait(5).status is TaskStatus.STOPPED
    assert not demo_server.running
    run(shell, "%load_ext kie_jupyter")


# -- 5. quoting on the option line --------------------------------------------------------


def test_quoted_values_lose_their_quotes(shell, server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "imgs" / "dir with space"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(render_png("a", "1:1"))
    run(shell, """%%kie4o --yes -s '3:2' -o "fox" -i "imgs/dir with space/a.png" \
--save "dir with space"
a quoted fox""")
    fox = shell.user_ns.pop("fox")
    assert fox.status is TaskStatus.SUCCESS
    assert sent(server, "generate")[0].json["size"] == "3:2"
    assert len(sent(server, "file-stream-upload")) == 1
    assert any(p.suffix == ".png" for p in (tmp_path / "dir with space").iterdir())
    assert not list(tmp_path.glob('"*'))  # no folder literally named with quotes


def test_escaped_spaces_and_bad_quotes(shell, server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = all_text(run(shell, "%%kie4o --dry-run --callback https://cb.example/a\\ b\nx"))
    assert '"callBackUrl": "https://cb.example/a b"' in text
    message = one_line_error(shell, "%%kie4o -s '3:2\nx")
    assert "quotation" in message
    assert not server.requests


# -- 6. $name and {expr} on the option line -----------------------------------------------


@pytest.fixture()
def fox(shell, server):
    run(shell, "%%kie4o -n 2 -o fox\na fox")
    task = shell.user_ns["fox"]
    assert len(task.urls) == 2
    yield task
    shell.user_ns.pop("fox", None)


@pytest.mark.parametrize(("option", "picked"), [
    ("-i {fox.urls[1]}", [1]),
    ("-i $fox.urls[1]", [1]),
    ("-i $fox", [0, 1]),
    ("-i $fox[1]", [1]),
    ("-i {fox[1]}", [1]),
    ("--image={fox[0]}", [0]),
])
def test_expressions_on_the_option_line(shell, server, fox, option, picked):
    before = len(server.requests)
    text = all_text(run(shell, f"%%kie4o --dry-run {option}\nthe fox in winter"))
    for n in range(2):
        assert (fox.urls[n] in text) is (n in picked), (option, n)
    assert len(server.requests) == before  # a dry run sends nothing


def test_expressions_keep_spaces_and_escapes(shell, server, tmp_path):
    shell.user_ns["outdir"] = str(tmp_path / "out dir")
    run(shell, "%%kie4o --save {outdir} -o t\nsaved where I said")
    assert any(p.suffix == ".png" for p in (tmp_path / "out dir").iterdir())
    text = all_text(run(shell, "%%kie4o --dry-run --callback https://cb.example/$$x/{{y}}\nx"))
    assert '"callBackUrl": "https://cb.example/$x/{y}"' in text
    shell.user_ns.pop("outdir")


@pytest.mark.parametrize(("line", "needle"), [
    ("-i {missing.task_id}", "--image: {missing.task_id}: missing is not defined"),
    ("-i $missing", "--image: $missing is not defined"),
    ("-i {1/0}", "--image: {1/0} failed: ZeroDivisionError"),
    ("--save {missing}", "--save: {missing} is not defined"),
    ("-m imgs/{missing}.png", "--mask: imgs/{missing}.png: missing is not defined"),
])
def test_expression_that_cannot_be_filled_is_one_line(shell, server, line, needle):
    assert needle in one_line_error(shell, f"%%kie4o {line}\nx")
    assert not server.requests


def test_line_magic_expression_that_cannot_be_filled_is_not_sent(shell, server):
    message = one_line_error(shell, "%kie4o resume {missing.task_id}")
    assert "{missing.task_id}" in message and "not defined" in message
    assert not server.requests


# -- 11. messages that mislead ------------------------------------------------------------


def test_history_search_without_match_says_so(shell, server):
    run(shell, "%%kie4o\na red fox")
    text = all_text(run(shell, "%kie4o history --search nomatch"))
    assert "no task matches 'nomatch'" in text and "no tasks yet" not in text


def test_resume_of_a_demo_task_from_an_earlier_kernel(shell, server, tmp_path):
    HistoryStore(tmp_path / "kie").append({
        "task_id": "demo-old-1", "prompt": "from yesterday", "status": "success",
        "base_url": "http://127.0.0.1:9", "demo": True,
    })
    message = one_line_error(shell, "%kie4o resume demo-old-1")
    assert "demo server" in message and "restarted" in message
    assert "two months" not in message
    assert not server.requests


def test_resume_of_a_demo_task_after_demo_restarted(shell, server):
    run(shell, "%kie4o demo")
    run(shell, "%%kie4o -o t\na demo fox")
    task_id = shell.user_ns["t"].task_id
    run(shell, "%kie4o demo off")
    run(shell, "%kie4o demo")
    message = one_line_error(shell, f"%kie4o resume {task_id}")
    assert "demo server" in message and "restarted" in message
    message = one_line_error(shell, f"%kie4o status {task_id}")
    assert "demo server" in message


def test_dry_run_labels_only_local_files_as_uploads(shell, server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "local.png").write_bytes(render_png("l", "1:1"))
    text = all_text(run(
        shell, "%%kie4o --yes --dry-run -i https://x.example/remote.png -i local.png\nx"))
    assert '"https://x.example/remote.png"' in text
    assert "<upload of local.png>" in text and "<upload of https" not in text
    assert not server.requests


def test_a_task_queued_by_the_rate_limiter_says_so(shell, server):
    hold_submissions(shell, period=2.0)
    cap = run(shell, "%%kie4o -o t\nqueued fox")
    assert "kie4o: Queued: rate limit, sending in" in cap.stdout
    assert shell.user_ns["t"].status is TaskStatus.SUCCESS


def test_status_text_of_a_queued_task(shell, server):
    hold_submissions(shell)
    run(shell, "%%kie4o --no-wait -o t\nqueued fox")
    task = shell.user_ns["t"]
    deadline = time.monotonic() + 10
    while task.queued_until is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert status_text(task).startswith("Queued: rate limit, sending in ")
    task.stop()
    assert task.wait(5).status is TaskStatus.STOPPED
    assert status_text(task) == "Stopped before the request was sent; nothing was charged"


@pytest.mark.parametrize("error", [StdinNotImplementedError, EOFError])
def test_login_without_a_terminal_says_to_set_the_variable(shell, monkeypatch, error):
    def no_stdin(prompt=""):
        raise error("no stdin")

    monkeypatch.setattr(getpass, "getpass", no_stdin)
    message = one_line_error(shell, "%kie4o login")
    assert "KIE_API_KEY" in message


def test_prompt_on_the_option_line_is_pointed_below(shell, server):
    message = one_line_error(shell, "%%kie4o -n 2 a fox")
    assert message == ("%%kie4o: put the prompt on the lines below %%kie4o "
                       "(found 'a fox' on the option line)")
    message = one_line_error(shell, "%kie4o -n 2 a fox")
    assert "the prompt on the lines below" in message
    assert not server.requests


def test_cell_with_images_and_no_body_runs(shell, server):
    run(shell, "%%kie4o --yes -i https://x.example/a.png -o t")
    assert sent(server, "generate")[0].json["filesUrl"] == ["https://x.example/a.png"]


# -- 12. demo is visible ------------------------------------------------------------------


def test_demo_shows_on_the_card_in_history_and_credits(shell, server):
    run(shell, "%kie4o demo")
    run(shell, "%%kie4o -o t\na demo fox")
    task = shell.user_ns["t"]
    assert ">demo</span>" in static_bundle(task)["text/html"]
    assert "(demo)" in static_bundle(task)["text/plain"]
    assert "success (demo)" in all_text(run(shell, "%kie4o history"))
    text = run(shell, "%kie4o credits").stdout
    assert "pretend balance" in text and "not real credits" in text
    run(shell, "%kie4o demo off")
    run(shell, "%%kie4o -o live\na live fox")
    assert ">demo</span>" not in static_bundle(shell.user_ns.pop("live"))["text/html"]


# -- 13. the notebook's hints --------------------------------------------------------------


def test_api_errors_carry_the_notebook_hint(shell, server):
    server.add_fault("credit", http_status=200, code=401, times=10)
    message = one_line_error(shell, "%kie4o credits")
    assert "401" in message and "`%kie4o login`" in message


def test_a_failed_task_says_what_to_do_in_notebook_words(shell, server):
    server.credits = 0
    cap = run(shell, "%%kie4o -o t\nexpensive")
    task = shell.user_ns["t"]
    assert task.status is TaskStatus.FAILED
    assert "`%kie4o credits`" in cap.stdout
    assert "`%kie4o credits`" in static_bundle(task)["text/html"]
    assert "kie4o --credits" not in cap.stdout
