"""``%kie4o class URL``: a student's kernel joins a class proxy, and ``class off`` leaves.

The proxy here is a stand-in (stdlib ``http.server`` on 127.0.0.1) that answers the URL
layout the real one serves: ``/class/me`` for who the token belongs to, and KIE's API under
the same URL (only ``chat/credit`` here, enough to see the key and endpoint in use). Its
refusals are the real proxy's (``kie_jupyter.classroom.forward``): HTTP 401, KIE's error shape
with ``"classProxy": true``, the same words.
"""

from __future__ import annotations

import getpass
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import pytest
from IPython.core.error import UsageError

from kie_jupyter.notebook.classjoin import HUB_URL_ENVS, joined_class

from magic_helpers import KEY, all_text, run

TOKEN = "class-token-alice-0123456789"
REVOKED = "class-token-bob-revoked-000"
HUB_TOKEN = "hub-token-of-alice-0123456789"
#: The real proxy's words (kie_jupyter/classroom/forward.py).
REVOKED_MSG = "this class token was revoked — ask your teacher"
UNKNOWN_MSG = "class token not recognised — check the token your teacher gave you"


class StandIn(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[tuple[str, str | None]] = []  # (path, Authorization)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        #: The same class as a hub service would be reached (``kie4o class serve`` behind the
        #: hub's proxy), and on another user's server on the hub's origin.
        self.service_url = self.url + SERVICE
        self.user_server_url = self.url + USER_SERVER


SERVICE = "/services/kie-class"
USER_SERVER = "/user/mallory/proxy/9000"


class Handler(BaseHTTPRequestHandler):
    server: StandIn

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        auth = self.headers.get("Authorization")
        path = self.path
        for prefix in (SERVICE, USER_SERVER):
            if path.startswith(prefix + "/"):
                path = path[len(prefix):]
        self.server.seen.append((path, auth))
        if path == "/class/me" and auth == f"Bearer {TOKEN}":
            self.answer(200, {"code": 200, "msg": "success", "data": {
                "student": "alice", "quota": 20, "used": 3, "remaining": 17, "paused": False}})
        elif path == "/class/me":
            why = REVOKED_MSG if auth == f"Bearer {REVOKED}" else UNKNOWN_MSG
            self.answer(401, {"code": 401, "msg": why, "data": None, "classProxy": True})
        elif path == "/api/v1/chat/credit" and auth == f"Bearer {TOKEN}":
            self.answer(200, {"code": 200, "msg": "success", "data": 17})
        else:
            self.answer(404, {"code": 404, "msg": "not found"})

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[StandIn]:
    server = StandIn()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def no_hub(monkeypatch):
    for name in ("JUPYTERHUB_API_TOKEN", *HUB_URL_ENVS):
        monkeypatch.delenv(name, raising=False)


def settings(shell) -> str:
    return shell.run_line_magic("kie4o", "config")._repr_mimebundle_()["text/plain"]


def ask(monkeypatch, answer: str) -> list[str]:
    prompts: list[str] = []
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": prompts.append(prompt) or answer)
    return prompts


def test_joining_asks_for_the_token_and_points_the_kernel_at_the_class(shell, server, proxy,
                                                                       monkeypatch):
    prompts = ask(monkeypatch, TOKEN)
    cap = run(shell, f"%kie4o class {proxy.url}/")
    assert prompts == ["Class token (hidden): "]
    assert cap.stdout.strip() == (f"kie4o: connected to the class at {proxy.url} as alice — "
                                  "17 of 20 images left. `%kie4o class off` to leave.")
    assert proxy.seen == [("/class/me", f"Bearer {TOKEN}")]
    table = settings(shell)
    assert f"endpoint         {proxy.url}" in table
    assert f"upload endpoint  {proxy.url}/upload" in table
    assert f"class            {proxy.url} (`%kie4o class off` to leave)" in table
    # Everything else is as before, with the class as the endpoint and the token as the key.
    text = all_text(run(shell, "%kie4o credits"))
    assert f"kie4o: 17 of 20 images left ({proxy.url})" in text
    assert proxy.seen[-2:] == [("/api/v1/chat/credit", f"Bearer {TOKEN}"),
                               ("/class/me", f"Bearer {TOKEN}")]
    assert TOKEN not in all_text(cap) + table + text


def test_a_class_survives_reload_ext_and_off_still_returns(shell, server, proxy, monkeypatch):
    before = settings(shell)
    ask(monkeypatch, TOKEN)
    run(shell, f"%kie4o class {proxy.url}")
    cap = run(shell, "%reload_ext kie_jupyter")
    assert cap.stdout.splitlines()[-1] == (f"kie4o: still in the class at {proxy.url} — "
                                           "`%kie4o class off` to leave.")
    assert joined_class(shell) == proxy.url
    text = all_text(run(shell, "%kie4o credits"))
    assert "17 of 20 images left" in text
    assert ("/api/v1/chat/credit", f"Bearer {TOKEN}") in proxy.seen[-2:]
    assert TOKEN not in all_text(cap) + text
    assert run(shell, "%kie4o class off").stdout.startswith(f"kie4o: left the class at "
                                                            f"{proxy.url}")
    assert settings(shell) == before
    assert "still in the class" not in run(shell, "%reload_ext kie_jupyter").stdout
    # A plain %unload_ext leaves the class: a later %load_ext starts afresh.
    run(shell, f"%kie4o class {proxy.url}")
    run(shell, "%unload_ext kie_jupyter")
    assert "still in the class" not in run(shell, "%load_ext kie_jupyter").stdout
    assert joined_class(shell) is None and settings(shell) == before


def test_class_off_returns_to_the_previous_settings(shell, server, proxy, monkeypatch):
    before = settings(shell)
    ask(monkeypatch, TOKEN)
    run(shell, f"%kie4o class {proxy.url}")
    run(shell, f"%kie4o class {proxy.url}")  # joining twice still leaves to the first settings
    text = run(shell, "%kie4o class off").stdout
    assert text.startswith(f"kie4o: left the class at {proxy.url}; endpoint {server.url}")
    assert settings(shell) == before
    run(shell, "%%kie4o -o t\na fox after class")  # the key of before is back, too
    assert server.requests_to("generate")[-1].headers["Authorization"] == f"Bearer {KEY}"
    assert run(shell, "%kie4o class off").stdout.strip() == (
        "kie4o: not in a class (`%kie4o class URL` joins one)")


def test_a_named_variable_needs_no_prompt(shell, server, proxy, monkeypatch):
    ask(monkeypatch, "never asked")
    monkeypatch.setenv("MY_CLASS_TOKEN", TOKEN)
    assert "as alice" in run(shell, f"%kie4o class {proxy.url} --token-env MY_CLASS_TOKEN").stdout
    assert [auth for _, auth in proxy.seen] == [f"Bearer {TOKEN}"]
    run(shell, "%kie4o class off")


@pytest.mark.parametrize("env", HUB_URL_ENVS)
def test_the_hub_token_goes_unasked_only_to_the_hub_itself(shell, server, proxy, monkeypatch,
                                                           env):
    port = proxy.url.rsplit(":", 1)[1]
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKEN)  # a proxy on the hub knows hub logins
    prompts = ask(monkeypatch, "never asked")
    monkeypatch.setenv(env, f"HTTP://127.0.0.1:{port}/hub/api")  # same origin, any path
    assert "as alice" in run(shell, f"%kie4o class {proxy.service_url}").stdout
    assert prompts == [] and proxy.seen == [("/class/me", f"Bearer {TOKEN}")]
    run(shell, "%kie4o class off")


@pytest.mark.parametrize("path", ["", USER_SERVER, "/services", "/services/../user/mallory",
                                  "/services/%2e%2e/user/mallory", "/hub/services/kie-class"])
def test_the_hub_token_goes_to_no_other_path_on_the_hub(shell, server, proxy, monkeypatch,
                                                         path):
    # On a hub without subdomains, /user/NAME/proxy/PORT is another user's server: only the
    # hub's services/ get the hub login unasked.
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", HUB_TOKEN)
    monkeypatch.setenv("JUPYTERHUB_PUBLIC_URL", proxy.url + "/")
    prompts = ask(monkeypatch, TOKEN)
    try:
        run(shell, f"%kie4o class {proxy.url}{path}")
    except UsageError:
        pass  # a path the stand-in does not serve: refused, which is fine here
    assert prompts == ["Class token (hidden): "]
    assert all(auth != f"Bearer {HUB_TOKEN}" for _, auth in proxy.seen)
    run(shell, "%kie4o class off")


def test_a_hub_with_a_base_url_has_its_services_under_it(monkeypatch):
    from kie_jupyter.notebook.classjoin import on_the_hub

    monkeypatch.setenv("JUPYTERHUB_PUBLIC_URL", "https://hub.example.edu/")
    monkeypatch.setenv("JUPYTERHUB_BASE_URL", "/jhub/")
    assert on_the_hub("https://hub.example.edu/jhub/services/kie-class")
    assert not on_the_hub("https://hub.example.edu/services/kie-class")
    assert not on_the_hub("https://hub.example.edu/jhub/user/mallory/services/x")
    monkeypatch.delenv("JUPYTERHUB_BASE_URL")
    assert on_the_hub("https://HUB.example.edu:443/services/kie-class/")
    assert not on_the_hub("http://hub.example.edu/services/kie-class")


@pytest.mark.parametrize("hub", ["https://hub.example.edu/", "http://localhost:{port}/",
                                 "http://127.0.0.1:1{port}/", "https://127.0.0.1:{port}/"])
def test_the_hub_token_is_not_sent_to_another_address(shell, server, proxy, monkeypatch, hub):
    port = proxy.url.rsplit(":", 1)[1]
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", HUB_TOKEN)
    monkeypatch.setenv("JUPYTERHUB_PUBLIC_URL", hub.format(port=port))
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://10.0.0.1:8081/hub/api")
    prompts = ask(monkeypatch, TOKEN)
    cap = run(shell, f"%kie4o class {proxy.url}")
    assert "as alice" in cap.stdout and prompts == ["Class token (hidden): "]
    assert [auth for _, auth in proxy.seen] == [f"Bearer {TOKEN}"]  # never the hub token
    assert HUB_TOKEN not in all_text(cap)
    run(shell, "%kie4o class off")


def test_hub_token_sends_it_to_a_class_elsewhere_when_asked(shell, server, proxy, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKEN)
    prompts = ask(monkeypatch, "never asked")
    assert "as alice" in run(shell, f"%kie4o class {proxy.url} --hub-token").stdout
    assert prompts == [] and [auth for _, auth in proxy.seen] == [f"Bearer {TOKEN}"]
    run(shell, "%kie4o class off")
    # Asked for by name, a refusal is final: no prompt.
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", HUB_TOKEN)
    with pytest.raises(UsageError) as info:
        run(shell, f"%kie4o class {proxy.url} --hub-token")
    assert str(info.value) == (f"%kie4o class: the class at {proxy.url} refused the token: "
                               f"{UNKNOWN_MSG}; nothing changed")
    assert prompts == [] and HUB_TOKEN not in str(info.value)


def test_a_class_on_the_hub_that_refuses_the_hub_token_asks_once(shell, server, proxy,
                                                                 monkeypatch):
    # A roster proxy on the hub's address: it knows class tokens, not hub logins.
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", HUB_TOKEN)
    monkeypatch.setenv("JUPYTERHUB_PUBLIC_URL", proxy.url + "/")
    prompts = ask(monkeypatch, TOKEN)
    url = proxy.service_url
    cap = run(shell, f"%kie4o class {url}")
    assert cap.stdout.splitlines() == [
        f"kie4o: the class at {url} does not take your hub login; give your class token",
        f"kie4o: connected to the class at {url} as alice — 17 of 20 images left. "
        "`%kie4o class off` to leave."]
    assert prompts == ["Class token (hidden): "]
    assert [auth for _, auth in proxy.seen] == [f"Bearer {HUB_TOKEN}", f"Bearer {TOKEN}"]
    assert HUB_TOKEN not in all_text(cap) and TOKEN not in all_text(cap)
    run(shell, "%kie4o class off")
    # A second refusal is final.
    prompts = ask(monkeypatch, REVOKED)
    with pytest.raises(UsageError) as info:
        run(shell, f"%kie4o class {url}")
    assert str(info.value).endswith(f"refused the token: {REVOKED_MSG}; nothing changed")
    assert prompts == ["Class token (hidden): "]


def test_a_refused_token_says_why_and_changes_nothing(shell, server, proxy, monkeypatch):
    before = settings(shell)
    ask(monkeypatch, REVOKED)
    with pytest.raises(UsageError) as info:
        run(shell, f"%kie4o class {proxy.url}")
    assert str(info.value) == (f"%kie4o class: the class at {proxy.url} refused the token: "
                               f"{REVOKED_MSG}; nothing changed")
    assert REVOKED not in str(info.value)
    assert settings(shell) == before
    assert "not in a class" in run(shell, "%kie4o class off").stdout


@pytest.mark.parametrize(("line", "message"), [
    ("class", "%kie4o class: give the class's URL (`%kie4o class https://…`) or `off`"),
    ("class ftp://class.example.org", "%kie4o class: 'ftp://class.example.org' is not an "
     "http(s) URL with a host, e.g. `%kie4o class https://class.example.org`"),
    ("class class.example.org", "%kie4o class: 'class.example.org' is not an http(s) URL "
     "with a host, e.g. `%kie4o class https://class.example.org`"),
    ("class http://class.example.org", "%kie4o class: base URL: refusing to send the API key "
     "over plain http to class.example.org; use https (plain http is allowed only for "
     "127.0.0.1/localhost); nothing changed"),
    ("class https://class.example.org --token-env NO_SUCH_VAR",
     "%kie4o class --token-env: $NO_SUCH_VAR is not set; nothing changed"),
    ("class off --token-env X", "%kie4o class off takes no --token-env or --hub-token"),
    ("class off --hub-token", "%kie4o class off takes no --token-env or --hub-token"),
    ("class https://class.example.org --hub-token --token-env X",
     "%kie4o class: --token-env and --hub-token both name the token; give one"),
    ("class https://class.example.org --hub-token",
     "%kie4o class --hub-token: $JUPYTERHUB_API_TOKEN is not set (this server is not on a "
     "JupyterHub); nothing changed"),
])
def test_bad_input_is_one_line_and_sends_nothing(shell, server, monkeypatch, line, message):
    ask(monkeypatch, TOKEN)
    before = settings(shell)
    with pytest.raises(UsageError) as info:
        run(shell, f"%kie4o {line}")
    assert str(info.value) == message
    assert settings(shell) == before
    assert not server.requests


def test_an_empty_token_or_no_class_there_changes_nothing(shell, server, proxy, monkeypatch):
    ask(monkeypatch, "  ")
    with pytest.raises(UsageError, match=r"^%kie4o class: no token entered; nothing changed$"):
        run(shell, f"%kie4o class {proxy.url}")
    ask(monkeypatch, TOKEN)
    with pytest.raises(UsageError) as info:
        run(shell, f"%kie4o class {proxy.url}/elsewhere")
    assert str(info.value).startswith(f"%kie4o class: no class answered at {proxy.url}/"
                                      "elsewhere (")
    assert "\n" not in str(info.value)


def test_joining_a_class_leaves_demo_mode(shell, server, proxy, monkeypatch):
    run(shell, "%kie4o demo")
    ask(monkeypatch, TOKEN)
    text = run(shell, f"%kie4o class {proxy.url}").stdout
    assert text.splitlines() == [
        "kie4o: demo mode off: the class is this kernel's endpoint now",
        f"kie4o: connected to the class at {proxy.url} as alice — 17 of 20 images left. "
        "`%kie4o class off` to leave."]
    assert "(demo)" not in settings(shell)
    run(shell, "%kie4o class off")


def test_login_in_a_class_leaves_it_first(shell, server, proxy, monkeypatch):
    before = settings(shell)
    ask(monkeypatch, TOKEN)
    run(shell, f"%kie4o class {proxy.url}")
    ask(monkeypatch, KEY)  # the student's own KIE key
    cap = run(shell, "%kie4o login")
    assert cap.stdout.strip() == (f"kie4o: left the class at {proxy.url}; key kept in memory "
                                  f"for this session (never written to disk); endpoint "
                                  f"{server.url}.")
    assert KEY not in all_text(cap) and TOKEN not in all_text(cap)
    assert settings(shell) == before  # the endpoint of before, no class row
    run(shell, "%%kie4o -o t\na fox after login")
    assert server.requests_to("generate")[-1].headers["Authorization"] == f"Bearer {KEY}"
    assert [path for path, _ in proxy.seen] == ["/class/me"]  # the key never went to the class
    # `class off` has nothing to undo: the login stays.
    assert "not in a class" in run(shell, "%kie4o class off").stdout
    assert "left the class" not in run(shell, "%kie4o login").stdout


def test_a_login_that_fails_stays_in_the_class(shell, server, proxy, monkeypatch):
    ask(monkeypatch, TOKEN)
    run(shell, f"%kie4o class {proxy.url}")
    ask(monkeypatch, "")
    with pytest.raises(UsageError, match="^%kie4o login: no key entered$"):
        run(shell, "%kie4o login")
    assert f"class            {proxy.url}" in settings(shell)
    run(shell, "%kie4o class off")


def test_demo_mode_refuses_while_in_a_class(shell, server, proxy, monkeypatch):
    assert joined_class() is None
    ask(monkeypatch, TOKEN)
    run(shell, f"%kie4o class {proxy.url}")
    assert joined_class() == joined_class(shell) == proxy.url  # what a notebook cell can ask
    before = settings(shell)
    with pytest.raises(UsageError) as info:
        run(shell, "%kie4o demo")
    assert str(info.value) == (f"%kie4o demo: you are in the class at {proxy.url}; "
                               "`%kie4o class off` first")
    assert settings(shell) == before and "(demo)" not in before
    run(shell, "%kie4o class off")
    assert joined_class() is None
    assert "demo mode" in run(shell, "%kie4o demo").stdout  # out of the class, it works
    run(shell, "%kie4o demo off")


def test_run_all_of_the_teaching_notebook_keeps_the_class(shell, server, proxy, monkeypatch,
                                                          tmp_path):
    # Its second cell turns demo mode on when there is no key, but not in a joined kernel.
    notebook = Path(__file__).resolve().parents[2] / "notebooks" / "teaching.ipynb"
    demo_cell = nbformat.read(notebook, as_version=4).cells[2].source
    assert "%kie4o demo" in demo_cell
    monkeypatch.delenv("KIE_API_KEY")
    monkeypatch.chdir(tmp_path)  # no lesson.kiepack here
    ask(monkeypatch, TOKEN)
    run(shell, f"%kie4o class {proxy.url}")
    before = settings(shell)
    assert run(shell, demo_cell).stdout == ""
    assert settings(shell) == before and "(demo)" not in before
    run(shell, "%kie4o class off")
    try:
        assert "kie4o demo mode" in run(shell, demo_cell).stdout  # out of a class: demo mode
        assert "(demo)" in settings(shell)
    finally:
        run(shell, "%kie4o demo off")
