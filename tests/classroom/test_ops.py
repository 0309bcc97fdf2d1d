"""Running the class proxy: a private ledger in a folder it makes, one-line failures (the
ledger, a taken port), a hub's service that stops with its hub, and a timestamped log."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kie_jupyter.classroom.cli import main
from kie_jupyter.classroom.ledger import Ledger

from class_helpers import TEACHER_KEY, bearer, submit

#: Nowhere: no test may reach the internet (nothing is sent to these in the tests below).
NOWHERE = "http://127.0.0.1:9"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _class(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kie_jupyter.cli", "class", *args],
                          capture_output=True, text=True, env=env, timeout=60,
                          stdin=subprocess.DEVNULL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


# -- the ledger's file --------------------------------------------------------------------------


def test_a_new_ledger_in_a_missing_folder_is_private(tmp_path, umask_022):
    db = tmp_path / "srv" / "kie-class" / "class.db"
    book = Ledger(db)
    try:
        book.add_students(["Ada", "Alan"], 5)
        book.note("cli", "add-students", detail="2 students")
        assert _mode(db.parent) == 0o700
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: oct(_mode(f)) for f in files} == {f.name: "0o600" for f in files}
    finally:
        book.close()


def test_an_existing_readable_ledger_is_made_private(tmp_path, umask_022, caplog):
    db = tmp_path / "class.db"
    Ledger(db).close()
    os.chmod(db, 0o644)
    # A proxy still has it open: its -wal and -shm are there, readable by all too.
    other = sqlite3.connect(db)
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("CREATE TABLE IF NOT EXISTS t (x)")
    try:
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
        for name in files[1:]:
            os.chmod(name, 0o644)
        book = Ledger(db)
        book.add_student("Ada", 3)
        assert {f.name: oct(_mode(f)) for f in files} == {f.name: "0o600" for f in files}
        book.close()
    finally:
        other.close()
    assert caplog.text.count("made private") == 3


def test_a_command_makes_the_ledger_s_folder(tmp_path, umask_022):
    # The docs' /srv/kie-class was never made: the first command makes it (private).
    db = tmp_path / "srv" / "kie-class" / "class.db"
    made = _class("teacher-token", "--db", str(db))
    assert made.returncode == 0, made.stderr
    assert _mode(db.parent) == 0o700 and oct(_mode(db)) == "0o600"


# -- one line, exit status 1 --------------------------------------------------------------------

_COMMANDS = [
    ("students",), ("add-students", "--name", "Ada"), ("add", "--name", "Ada"),
    ("add-quota", "Ada", "3"), ("credits", "Ada", "5"), ("expires", "Ada", "never"),
    ("models", "Ada", "class"), ("revoke", "Ada"), ("restore", "Ada"), ("reissue", "Ada"),
    ("teacher-token",), ("pause",), ("resume",), ("serve", "--port", "0"),
]


@pytest.mark.parametrize("command", _COMMANDS, ids=[c[0] for c in _COMMANDS])
@pytest.mark.parametrize("what", ["folder is a file", "not a database"])
def test_every_command_says_in_one_line_that_the_ledger_cannot_be_opened(
        tmp_path, capsys, monkeypatch, command, what):
    monkeypatch.setenv("KIE_API_KEY", TEACHER_KEY)
    if what == "folder is a file":
        (tmp_path / "srv").write_text("not a folder")
        db, why = tmp_path / "srv" / "class.db", "Not a directory"
    else:
        db, why = tmp_path / "class.db", "file is not a database"
        db.write_bytes(b"this is no SQLite file, " * 100)
        db.chmod(0o600)
    code = main([*command, "--db", str(db), *(("--upstream", NOWHERE, "--upload-upstream",
                                               NOWHERE) if command[0] == "serve" else ())])
    err = capsys.readouterr().err
    assert code == 1
    assert err == f"kie4o class: cannot open the class ledger {db}: {why}\n"


def test_a_ledger_that_cannot_be_opened_is_one_line_from_the_real_command(tmp_path):
    (tmp_path / "srv").write_text("not a folder")
    db = tmp_path / "srv" / "class.db"
    env = {**os.environ, "KIE_API_KEY": TEACHER_KEY}
    for args in (("teacher-token",), ("serve", "--port", "0", "--upstream", NOWHERE,
                                      "--upload-upstream", NOWHERE)):
        failed = _class(*args, "--db", str(db), env=env)
        assert failed.returncode == 1, failed.stderr
        assert failed.stderr.splitlines() == [
            f"kie4o class: cannot open the class ledger {db}: Not a directory"]
        assert TEACHER_KEY not in failed.stdout + failed.stderr


def test_serve_on_a_taken_port_is_one_line_and_status_1(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        failed = _class("serve", "--db", str(tmp_path / "class.db"), "--port", str(port),
                        "--upstream", NOWHERE, "--upload-upstream", NOWHERE,
                        env={**os.environ, "KIE_API_KEY": TEACHER_KEY})
    assert failed.returncode == 1
    assert failed.stderr.splitlines() == [
        f"kie4o class: port {port} on 127.0.0.1 is in use — is another class proxy still "
        "running? Stop it, or choose another --port"]


# -- a hub's service stops with its hub ---------------------------------------------------------

_HUB = """
import subprocess, sys
db, port, out = sys.argv[1:]
child = subprocess.Popen(
    [sys.executable, "-m", "kie_jupyter.cli", "class", "serve", "--hub", "--hub-api-url",
     "http://127.0.0.1:9/hub/api", "--db", db, "--port", port, "--upstream",
     "http://127.0.0.1:9", "--upload-upstream", "http://127.0.0.1:9"],
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(out, "w"))
print(child.pid, flush=True)
child.wait()
"""


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie nobody reaped yet counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return fields[0] in ("Z", "X")


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_hub_service_stops_when_the_hub_is_killed(tmp_path):
    script, log = tmp_path / "hub.py", tmp_path / "service.log"
    script.write_text(_HUB)
    port = _free_port()
    hub = subprocess.Popen([sys.executable, str(script), str(tmp_path / "class.db"), str(port),
                            str(log)], stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "KIE_API_KEY": TEACHER_KEY})
    service = int(hub.stdout.readline())
    try:
        deadline = time.monotonic() + 30
        while not _listening(port):
            assert time.monotonic() < deadline and not _gone(service), log.read_text()
            time.sleep(0.1)
        hub.kill()  # kill -9: the hub cannot stop its services
        hub.wait(timeout=10)
        killed = time.monotonic()
        while not _gone(service):
            assert time.monotonic() - killed < 8, "the service outlived its hub"
            time.sleep(0.1)
        assert not _listening(port)  # the next hub's service can have the port
        text = log.read_text()
        assert "is gone: stopping the class proxy" in text
        assert "stopped; the ledger is saved" in text and "Traceback" not in text
    finally:
        hub.kill()
        if not _gone(service):
            os.kill(service, signal.SIGKILL)


# -- the log ------------------------------------------------------------------------------------

_STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


@pytest.mark.parametrize("level", ["info", "warning"])
def test_serve_logs_with_timestamps_at_its_level(tmp_path, kie, level):
    db = str(tmp_path / "class.db")
    token = _class("add-students", "--name", "ada", "--db", db).stdout.splitlines()[1]
    token = token.split(",", 1)[1]
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kie_jupyter.cli", "class", "serve", "--db", db, "--port",
         str(port), "--upstream", kie.url, "--upload-upstream", kie.url, "--log-level", level],
        env={**os.environ, "KIE_API_KEY": TEACHER_KEY}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/class/me", headers=bearer(token))
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        task_id = submit(url, token).json()["data"]["taskId"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    forwarded = re.compile(rf"^{_STAMP} INFO kie_jupyter\.classroom: ada: .* → task "
                           rf"{re.escape(task_id)} ", re.M)
    if level == "info":
        assert forwarded.search(err), err
        assert re.search(rf"^{_STAMP} INFO uvicorn\.error: ", err, re.M)  # uvicorn's too
    else:
        assert not forwarded.search(err) and task_id not in err
    assert TEACHER_KEY not in out + err and token not in out + err
