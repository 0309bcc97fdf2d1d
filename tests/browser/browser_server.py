"""A throw-away Jupyter server for the browser tests: loopback, random token, tmp dirs, offline.

One server serves both front ends: ``jupyter lab`` loads every enabled server extension, so
Notebook 7's ``/notebooks/…`` pages are there too.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Server options that keep it on loopback and off the network (no news feed, no update check,
#: no PyPI lookups by the extension manager, no browser).
SERVER_ARGS = (
    "--no-browser",
    "--ServerApp.open_browser=False",
    "--ServerApp.ip=127.0.0.1",
    "--ServerApp.allow_remote_access=False",
    "--ServerApp.port_retries=0",
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
    "--LabApp.extension_manager=readonly",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class JupyterServer:
    """A running ``jupyter lab`` process and how to reach it."""

    root: Path
    port: int
    token: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(repr=False, default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- REST ---------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.base}{path}", data=data, method=method,
            headers={"Authorization": f"token {self.token}",
                     "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def sessions(self) -> list[dict[str, Any]]:
        return list(self.api("GET", "/api/sessions"))

    def session_for(self, nb_name: str) -> dict[str, Any] | None:
        for s in self.sessions():
            if s.get("path") == nb_name or s.get("path", "").endswith("/" + nb_name):
                return s
        return None

    def shutdown_kernel_of(self, nb_name: str, timeout: float = 30) -> bool:
        """Delete the notebook's session (which shuts its kernel down); wait until it is gone."""
        s = self.session_for(nb_name)
        if s is None:
            return False
        kernel_id = s["kernel"]["id"]
        self.api("DELETE", f"/api/sessions/{s['id']}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ids = {k["id"] for k in self.api("GET", "/api/kernels")}
            if kernel_id not in ids:
                return True
            time.sleep(0.2)
        raise TimeoutError(f"kernel {kernel_id} of {nb_name} still running after {timeout} s")

    def read_notebook(self, nb_name: str) -> dict[str, Any]:
        return json.loads((self.root / nb_name).read_text(encoding="utf-8"))

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    # -- lifecycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_jupyter(base: Path, *, demo_duration: float = 4.0, ready_timeout: float = 90,
                  python: str = sys.executable) -> JupyterServer:
    """Start ``jupyter lab`` with its root, config, data and runtime dirs under ``base``."""
    root = base / "root"
    dirs = {name: base / name for name in ("config", "data", "runtime", "kie_output", "home")}
    for d in (root, *dirs.values()):
        d.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KIE_", "JUPYTER_", "JPY_"))}
    env.update(
        JUPYTER_CONFIG_DIR=str(dirs["config"]),
        JUPYTER_DATA_DIR=str(dirs["data"]),  # the python3 kernelspec still comes from sys.prefix
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
        JUPYTER_PLATFORM_DIRS="0",
        IPYTHONDIR=str(dirs["home"] / ".ipython"),
        KIE_DEMO="1",
        KIE_DEMO_DURATION=str(demo_duration),
        KIE_OUTPUT_DIR=str(dirs["kie_output"]),
        PYTHONUNBUFFERED="1",
        # No proxy for loopback (a CI proxy variable must not catch the kernel's mock calls).
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    # The kernel runs `python -m ipykernel_launcher` from the native kernelspec, i.e. this
    # interpreter: make sure its bin dir comes first so nothing else is picked up.
    env["PATH"] = str(Path(python).parent) + os.pathsep + env.get("PATH", "")
    # JupyterLab asks "Would you like to get notified about official Jupyter news?" in a toast
    # (whatever news_url says): answer "no" in the user settings so it neither asks nor fetches.
    _write_user_setting(dirs["config"], "@jupyterlab/apputils-extension", "notification",
                        {"fetchNews": "false", "checkForUpdates": False})
    token = secrets.token_hex(24)
    log_path = base / "jupyter-server.log"
    last_error: Exception | None = None
    for _attempt in range(3):  # a port taken between free_port() and bind(): try another
        port = free_port()
        cmd = [python, "-m", "jupyterlab", *SERVER_ARGS,
               f"--ServerApp.port={port}",
               f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers often run as root
            cmd.append("--allow-root")
        log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        server = JupyterServer(root=root, port=port, token=token, proc=proc,
                               log_path=log_path, env=env)
        try:
            _wait_ready(server, ready_timeout)
            return server
        except Exception as exc:  # noqa: BLE001
            last_error = exc
            server.stop()
            if "in use" not in server.log_tail(2000):
                break
        finally:
            log.close()
    raise RuntimeError(f"Jupyter server did not start: {last_error}\n--- log ---\n"
                       f"{(base / 'jupyter-server.log').read_text(errors='replace')[-4000:]}")


def _write_user_setting(config_dir: Path, plugin_pkg: str, plugin: str,
                        values: dict[str, Any]) -> None:
    folder = config_dir / "lab" / "user-settings" / plugin_pkg
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{plugin}.jupyterlab-settings").write_text(json.dumps(values), encoding="utf-8")


def _wait_ready(server: JupyterServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"jupyter exited with {server.proc.returncode}")
        try:
            status = server.api("GET", "/api/status", timeout=5)
            if isinstance(status, dict) and "started" in status:
                specs = server.api("GET", "/api/kernelspecs", timeout=5)
                if "python3" not in specs.get("kernelspecs", {}):
                    raise RuntimeError(f"no python3 kernelspec: {sorted(specs['kernelspecs'])}")
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"/api/status not ready after {timeout} s")


def write_notebook(root: Path, name: str, cells: list[str]) -> Path:
    """A notebook with the given code cells and the python3 kernel (so no kernel dialog)."""
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": f"cell-{i}",
             "metadata": {}, "outputs": [], "source": src}
            for i, src in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                           "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = root / name
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return path
