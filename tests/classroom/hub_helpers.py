"""A real JupyterHub for the tests: the hub, its configurable-http-proxy and the class proxy as
a hub-managed service (``kie4o class serve --hub``), all on free ports of 127.0.0.1, all in a
temporary folder, torn down to the last process.

No single-user server is ever started: users and their API tokens are made through the hub's
REST API with an admin service's token, as a hub admin's script would.

``configurable-http-proxy`` is looked for in ``$KIE_CHP``, on ``PATH``, in ``./node_modules``
and in ``./.hub-node`` (where ``scripts/hub-deps.sh`` installs it). Without it, or without the
``jupyterhub`` package, the tests skip — or fail when ``CI=true`` or ``KIE_REQUIRE_HUB=1``.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
#: Where scripts/hub-deps.sh installs configurable-http-proxy (npm --prefix).
HUB_NODE = REPO / ".hub-node"
#: The class proxy's name on the hub: students reach it at /services/kie-class/.
SERVICE = "kie-class"
#: A service of the hub's own with an admin's scopes on users and tokens (the tests' hand).
ADMIN_SERVICE = "kie-test-admin"


def require_hub() -> bool:
    """Whether a missing hub must fail the run (CI, or asked for) instead of skipping."""
    return (os.environ.get("CI", "").lower() == "true"
            or os.environ.get("KIE_REQUIRE_HUB", "") not in ("", "0"))


def find_chp() -> str | None:
    """The configurable-http-proxy executable, or None."""
    candidates = [os.environ.get("KIE_CHP"), shutil.which("configurable-http-proxy")]
    for base in (REPO / "node_modules", HUB_NODE / "node_modules"):
        candidates.append(str(base / ".bin" / "configurable-http-proxy"))
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def missing() -> str | None:
    """Why a real hub cannot run here, or None when it can."""
    if importlib.util.find_spec("jupyterhub") is None:
        return "the jupyterhub package is not installed (pip install -e '.[test]')"
    if find_chp() is None:
        return ("configurable-http-proxy is not installed (bash scripts/hub-deps.sh puts it in "
                f"{HUB_NODE.name}/)")
    if shutil.which("node") is None:
        return "node is not on PATH (configurable-http-proxy runs on it)"
    return None


def skip_or_fail_without_hub() -> None:
    reason = missing()
    if reason is None:
        return
    if require_hub():
        pytest.fail(f"a real JupyterHub is required (CI / KIE_REQUIRE_HUB=1): {reason}",
                    pytrace=False)
    pytest.skip(reason)


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (held open together while picked)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# -- processes -----------------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name (in parentheses) may hold spaces: the fields after its ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, their children, …)."""
    tree = _children()
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rfind(")") + 2:].split()[0] != "Z"  # a zombie is gone but unreaped


def kill_tree(pids: set[int]) -> None:
    """SIGKILL each process's group (the hub, its proxy and its services each have their own
    session) and the process itself; never the test run's own group."""
    own = os.getpgrp()
    for pid in pids:
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            continue
        if group != own:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# -- the hub -------------------------------------------------------------------------------------


CONFIG = """\
# Written by tests/classroom/hub_helpers.py: a throwaway hub on 127.0.0.1.
c = get_config()  # noqa: F821
c.JupyterHub.bind_url = {public_url!r}
c.JupyterHub.hub_bind_url = {hub_url!r}
c.JupyterHub.db_url = {db_url!r}
c.JupyterHub.cookie_secret_file = {cookie_secret!r}
c.JupyterHub.pid_file = {hub_pid!r}
c.JupyterHub.log_level = "INFO"
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allow_all = True
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.api_url = {proxy_api_url!r}
c.ConfigurableHTTPProxy.auth_token = {proxy_token!r}
c.ConfigurableHTTPProxy.pid_file = {proxy_pid!r}
c.JupyterHub.services = {services!r}
c.JupyterHub.load_roles = [
    {{
        "name": "kie-test-admin",
        "scopes": ["admin:users", "tokens", "list:users", "read:users"],
        "services": [{admin_service!r}],
    }},
]
"""


class RealHub:
    """A running JupyterHub with the class proxy as its managed service(s): ``services`` are
    their names (each its own ``kie4o class serve --hub`` process, ledger and port)."""

    def __init__(self, workdir: Path, *, upstream: str, api_key: str, quota: int,
                 services: tuple[str, ...] = (SERVICE,)) -> None:
        self.workdir = workdir
        self.home = workdir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        (workdir / "runtime").mkdir(mode=0o700, exist_ok=True)
        self.log_path = workdir / "jupyterhub.log"
        self.admin_token = secrets.token_hex(24)  # a configured token: any 8-64 characters
        self.upstream = upstream
        self.api_key = api_key
        self.quota = quota
        self.proc: subprocess.Popen[bytes] | None = None
        self._seen: set[int] = set()
        public, hub, proxy_api, *ports = free_ports(3 + len(services))
        self.public_url = f"http://127.0.0.1:{public}"
        self.hub_url = f"http://127.0.0.1:{hub}"
        self.proxy_api_url = f"http://127.0.0.1:{proxy_api}"
        self.ports = dict(zip(services, ports, strict=True))
        self.api = httpx.Client(base_url=f"{self.public_url}/hub/api", timeout=30,
                                headers={"Authorization": f"token {self.admin_token}"})

    def url(self, service: str = SERVICE) -> str:
        """The class proxy as students reach it: through the hub's proxy, under its prefix."""
        return f"{self.public_url}/services/{service}"

    def db(self, service: str = SERVICE) -> Path:
        return self.workdir / f"{service}.db"

    # -- start / stop --------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "VIRTUAL_ENV", "PYTHONPATH", "TMPDIR", "SYSTEMROOT")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / ".config"),
                   XDG_CACHE_HOME=str(self.home / ".cache"),
                   XDG_DATA_HOME=str(self.home / ".local/share"),
                   XDG_RUNTIME_DIR=str(self.workdir / "runtime"),
                   JUPYTER_RUNTIME_DIR=str(self.workdir / "runtime"),
                   KIE_OUTPUT_DIR=str(self.workdir / "kie_output"))
        # node must be found by the proxy's `#!/usr/bin/env node`.
        node = shutil.which("node")
        if node:
            env["PATH"] = os.pathsep.join([os.path.dirname(node), env.get("PATH", "")])
        return env

    def _service(self, name: str) -> dict[str, Any]:
        port = self.ports[name]
        return {
            "name": name,
            "url": f"http://127.0.0.1:{port}",
            # As docs/class-proxy.md has it; the hub passes JUPYTERHUB_API_URL and
            # JUPYTERHUB_SERVICE_PREFIX (/services/NAME/).
            "command": [sys.executable, "-m", "kie_jupyter.cli", "class", "serve", "--hub",
                        "--host", "127.0.0.1", "--port", str(port), "--db", str(self.db(name)),
                        "--quota", str(self.quota), "--upstream", self.upstream,
                        "--upload-upstream", self.upstream, "--log-level", "warning"],
            "environment": {"KIE_API_KEY": self.api_key, "HOME": str(self.home),
                            "KIE_OUTPUT_DIR": str(self.workdir / "kie_output")},
            "cwd": str(self.workdir),
        }

    def write_config(self) -> Path:
        chp = find_chp()
        assert chp is not None
        services = [{"name": ADMIN_SERVICE, "api_token": self.admin_token},
                    *(self._service(name) for name in self.ports)]
        text = CONFIG.format(
            public_url=self.public_url + "/", hub_url=self.hub_url + "/",
            db_url=f"sqlite:///{self.workdir / 'jupyterhub.sqlite'}",
            cookie_secret=str(self.workdir / "jupyterhub_cookie_secret"),
            hub_pid=str(self.workdir / "jupyterhub.pid"),
            password=secrets.token_urlsafe(16), chp=chp, proxy_api_url=self.proxy_api_url,
            proxy_token=secrets.token_hex(32), proxy_pid=str(self.workdir / "proxy.pid"),
            services=services, admin_service=ADMIN_SERVICE)
        path = self.workdir / "jupyterhub_config.py"
        path.write_text(text)
        return path

    def start(self, timeout: float = 90.0) -> RealHub:
        config = self.write_config()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(config)],
                cwd=self.workdir, env=self._environment(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_up(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_up(self, timeout: float) -> None:
        """Until the hub answers its API and every class proxy answers through the hub's
        proxy at /services/NAME/ (as students reach it)."""
        deadline = time.monotonic() + timeout
        ready = False
        waiting = list(self.ports)
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyterhub exited with {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            self._seen |= descendants(self.proc.pid)
            try:
                if not ready:
                    ready = self.api.get("/").status_code == 200
                while ready and waiting:
                    index = httpx.get(f"{self.url(waiting[0])}/", timeout=5)
                    if index.status_code != 200 or "class proxy" not in index.text:
                        break
                    waiting.pop(0)
                if ready and not waiting:
                    self._seen |= descendants(self.proc.pid)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the hub or its class-proxy services ({', '.join(waiting)}) did "
                           f"not come up in {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def processes(self) -> set[int]:
        """The hub and everything it started (seen at any point), still alive."""
        if self.proc is None:
            return set()
        if alive(self.proc.pid):
            self._seen |= descendants(self.proc.pid)
        return {p for p in self._seen | {self.proc.pid} if alive(p)}

    def stop(self) -> None:
        """SIGTERM the hub (it stops its proxy and services), then SIGKILL whatever is left of
        the hub, its proxy and the services, process group and all."""
        self.api.close()
        if self.proc is None:
            return
        pids = self.processes()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            # The hub stops a service with SIGINT, then SIGTERM 10 s later, then SIGKILL 5 s
            # later, one service after the other; uvicorn waits for the requests in flight (a
            # flood's wrong tokens, paced) to be answered first. A service still running
            # after 2 s is killed here instead (its ledger is SQLite, safe to kill).
            services = {p for p in pids if "kie_jupyter.cli" in _cmdline(p)}
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and any(alive(p) for p in services):
                time.sleep(0.05)
            kill_tree({p for p in services if alive(p)})
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in pids - {self.proc.pid}):
            time.sleep(0.1)
        running = {self.proc.pid} if self.proc.poll() is None else set()
        kill_tree({p for p in pids if alive(p)} | running)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        # The hub's own children are reaped by the hub; any it left are init's now.
        leftover = {p for p in pids if alive(p)}
        assert not leftover, f"processes left after the hub stopped: {sorted(leftover)}"

    # -- the hub's REST API, as its admin service --------------------------------------------

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        answer = self.api.request(method, path, **kwargs)
        if answer.status_code >= 400:
            raise AssertionError(f"hub API {method} {path}: {answer.status_code} "
                                 f"{answer.text[:300]}")
        return answer

    def add_user(self, name: str) -> str:
        """Make hub user ``name``; return a new API token of theirs."""
        self.call("POST", f"/users/{name}")
        return self.new_token(name)

    def new_token(self, name: str, note: str = "kie-test") -> str:
        """A new API token for hub user ``name`` (the hub's own format)."""
        answer = self.call("POST", f"/users/{name}/tokens", json={"note": note})
        token = answer.json()["token"]
        assert isinstance(token, str) and token
        return token

    def delete_user(self, name: str) -> None:
        self.call("DELETE", f"/users/{name}")
