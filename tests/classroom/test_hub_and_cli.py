"""JupyterHub identities (against a stand-in for the hub's ``GET /hub/api/user``) and the
``kie4o class`` commands run as a real process."""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from kie_jupyter.classroom.guard import BadTokenGuard
from kie_jupyter.classroom.hub import HubIdentity
from kie_jupyter.classroom.tokens import parse_student_token

from class_helpers import TEACHER_KEY, bearer, submit


def test_a_hub_user_needs_no_class_token(make_proxy, ledger, hub):
    proxy = make_proxy(hub=HubIdentity(hub.api_url), default_quota=3)
    me = httpx.get(proxy.url + "/class/me", headers=bearer("hub-token-ada"))
    assert {k: v for k, v in me.json()["data"].items() if k in (
        "student", "quota", "used", "remaining", "paused")} == {
        "student": "ada", "quota": 3, "used": 0, "remaining": 3, "paused": False}
    assert submit(proxy.url, "hub-token-ada").status_code == 200
    assert ledger.student_named("ada").used == 1 and ledger.student_named("ada").hub
    calls = len(hub.calls)
    httpx.get(proxy.url + "/class/me", headers=bearer("hub-token-ada"))
    assert len(hub.calls) == calls  # the hub's answer is cached
    # A service's token and an unknown token are refused; nothing is stored for them.
    for token in ("hub-token-svc", "hub-token-nobody"):
        refused = httpx.get(proxy.url + "/class/me", headers=bearer(token))
        assert refused.status_code == 401
    assert [s.name for s in ledger.students()] == ["ada"]
    # Revoking a hub user works as for a roster student.
    ledger.revoke(ledger.student_named("ada").id)
    assert submit(proxy.url, "hub-token-ada").status_code == 401


def test_a_hub_that_cannot_answer_is_503_and_refuses_no_one_later(make_proxy, ledger, hub):
    proxy = make_proxy(hub=HubIdentity("http://127.0.0.1:9/hub/api"),
                       guard=BadTokenGuard(rate=1000.0))
    for _ in range(4):
        answer = httpx.get(proxy.url + "/class/me", headers=bearer("hub-token-ada"))
        assert answer.status_code == 503 and "hub did not answer" in answer.json()["msg"]
    # Not remembered as a refusal: once the hub answers, the same login works.
    proxy.proxy.hub = HubIdentity(hub.api_url)
    assert httpx.get(proxy.url + "/class/me", headers=bearer("hub-token-ada")).status_code == 200
    assert submit(proxy.url, "hub-token-ada").status_code == 200


def test_without_hub_mode_a_hub_token_is_refused(proxy, ledger, hub):
    assert httpx.get(proxy.url + "/class/me", headers=bearer("hub-token-ada")).status_code == 401
    assert hub.calls == []


def _class(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kie_jupyter.cli", "class", *args],
                          capture_output=True, text=True, env=env, timeout=60, **kw)


def test_the_roster_commands(tmp_path):
    db = str(tmp_path / "class.db")
    roster = tmp_path / "roster.csv"
    roster.write_text("name,email\nAda Lovelace,ada@x\nAlan Turing,alan@x\n")
    added = _class("add-students", str(roster), "--name", "Grace", "--quota", "5", "--db", db)
    assert added.returncode == 0, added.stderr
    rows = list(csv.DictReader(io.StringIO(added.stdout)))
    assert [r["name"] for r in rows] == ["Ada Lovelace", "Alan Turing", "Grace"]
    assert all(parse_student_token(r["token"]) for r in rows)
    assert "shown only now" in added.stderr
    again = _class("add-students", "--name", "Grace", "--db", db)
    assert again.returncode == 2 and "already in the class: Grace" in again.stderr
    out = tmp_path / "tokens.csv"
    private = _class("add-students", "--name", "Linus", "--db", db, "--out", str(out))
    assert private.returncode == 0 and private.stdout == ""
    assert oct(out.stat().st_mode & 0o777) == "0o600" and "Linus," in out.read_text()
    assert _class("add-quota", "Grace", "7", "--db", db).returncode == 0
    assert _class("revoke", "Alan Turing", "--db", db).returncode == 0
    listing = _class("students", "--db", db).stdout
    assert "0/12" in listing and "(revoked)" in listing
    reissued = _class("reissue", "Alan Turing", "--db", db)
    assert reissued.stdout.startswith("Alan Turing,kc_")
    assert _class("restore", "Alan Turing", "--db", db).returncode == 0
    assert "(revoked)" not in _class("students", "--db", db).stdout
    missing = _class("revoke", "Nobody", "--db", db)
    assert missing.returncode == 2 and "no student named 'Nobody'" in missing.stderr
    none = _class("add-students", "--db", db)
    assert none.returncode == 2 and "no students given" in none.stderr
    # A roster that cannot be fully added adds no one (no student without a shown token).
    nodir = _class("add-students", "--name", "Zed", "--name", "Yan", "--db", db, "--out",
                   str(tmp_path / "missing" / "t.csv"))
    blank = _class("add-students", "--name", "Xi", "--name", " ", "--db", db)
    twice = _class("add-students", "--name", "Wu", "--name", " Wu", "--db", db)
    assert (nodir.returncode, blank.returncode, twice.returncode) == (2, 2, 2)
    assert "listed twice" in twice.stderr and "needs a name" in blank.stderr
    listing = _class("students", "--db", db).stdout
    assert not any(n in listing for n in ("Zed", "Yan", "Xi", "Wu"))
    teacher = _class("teacher-token", "--db", db)
    assert teacher.stdout.startswith("teacher token") and "kt_" in teacher.stdout


def test_serve_refuses_without_a_key_or_with_a_key_over_plain_http(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "KIE_API_KEY"}
    no_key = _class("serve", "--db", str(tmp_path / "c.db"), env=env)
    assert no_key.returncode == 2 and "set KIE_API_KEY" in no_key.stderr
    env["KIE_API_KEY"] = TEACHER_KEY
    plain = _class("serve", "--upstream", "http://api.example.com", env=env)
    assert plain.returncode == 2 and "plain http" in plain.stderr
    assert TEACHER_KEY not in plain.stderr + plain.stdout


def test_serve_runs_the_proxy_with_one_command(tmp_path, kie):
    db = str(tmp_path / "class.db")
    token = _class("add-students", "--name", "ada", "--db", db).stdout.splitlines()[1]
    token = token.split(",", 1)[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "KIE_API_KEY": TEACHER_KEY}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kie_jupyter.cli", "class", "serve", "--db", db, "--port",
         str(port), "--upstream", kie.url, "--upload-upstream", kie.url, "--credits", "100",
         "--models", "4o,nano-banana-2-lite", "--reset", "daily"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                me = httpx.get(url + "/class/me", headers=bearer(token))
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        assert me.json()["data"]["student"] == "ada"
        assert (me.json()["data"]["credits"], me.json()["data"]["reset"]) == (100, "daily")
        assert submit(url, token).json()["code"] == 200
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "no teacher token yet" in err  # not a terminal: never printed to a log
    assert "100 credits each; models 4o, nano-banana-2-lite; resets daily (UTC)" in err
    assert TEACHER_KEY not in out + err and token not in out + err
