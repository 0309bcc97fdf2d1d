"""One session per kernel: the magic's settings, its key and demo mode reach the Python API,
and a config set before the load (or before a reload) is the session's from the start."""

from __future__ import annotations

import getpass

from IPython.utils.capture import capture_output

import kie_jupyter
from kie_jupyter.engine.history import HistoryStore
from kie_jupyter.session import active
from kie_jupyter.testing.shell import TestingShell

from magic_helpers import KEY, run


def magics(sh: TestingShell):
    return sh.magics_manager.registry["Kie4o"]


def test_a_config_set_before_the_load_and_kept_over_a_reload(server, tmp_path):
    sh = TestingShell.instance()
    folder = str(tmp_path / "configured")
    sh.config.pop("Kie4o", None)
    try:
        with capture_output():
            sh.run_cell(f"%config Kie4o.output_dir = {folder!r}")
            sh.run_cell("%load_ext kie_jupyter")
        assert magics(sh).session.output_dir == folder
        run(sh, "%reload_ext kie_jupyter")  # %config wrote into the shell's config
        assert magics(sh).session.output_dir == folder
        cap = run(sh, "%%kie4o -o t\na fox after a reload")
        assert "Error" not in cap.stdout + cap.stderr
        task = sh.user_ns["t"]
        assert HistoryStore(folder).get(task.task_id) is not None
    finally:
        with capture_output():
            sh.run_cell("%unload_ext kie_jupyter")
        sh.config.pop("Kie4o", None)
        sh.user_ns.pop("t", None)


def test_a_setting_changed_after_the_load_reaches_the_session(shell, tmp_path):
    folder = str(tmp_path / "later")
    run(shell, f"%config Kie4o.output_dir = {folder!r}")
    assert magics(shell).session.output_dir == folder
    assert active() is magics(shell).session


def test_the_python_api_uses_the_notebooks_key_and_history(shell, server, tmp_path,
                                                           monkeypatch):
    folder = str(tmp_path / "notebook_history")
    run(shell, f"%config Kie4o.output_dir = {folder!r}")
    monkeypatch.delenv("KIE_API_KEY")
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": KEY)
    run(shell, "%kie4o login")
    task = kie_jupyter.generate("a fox from Python")  # no client given: the notebook's
    assert task.status.value == "success"
    assert server.requests_to("generate")[-1].headers["Authorization"] == f"Bearer {KEY}"
    assert HistoryStore(folder).get(task.task_id) is not None


def test_the_python_api_follows_demo_mode_and_unload_lets_go(shell, server, monkeypatch):
    run(shell, "%kie4o demo")
    task = kie_jupyter.generate("a demo fox")
    assert task.client.demo and task.status.value == "success"
    assert server.requests_to("generate") == []  # the demo server, not the live one
    run(shell, "%unload_ext kie_jupyter")
    assert active() is None
    run(shell, "%load_ext kie_jupyter")  # (the shell fixture unloads it again)


def test_a_task_shows_as_its_card_once_loaded(shell, server):
    run(shell, "%%kie4o -o t\na fox")
    data, _ = shell.display_formatter.format(shell.user_ns["t"])
    assert "kie4o-card" in data["text/html"]
    sweep = kie_jupyter.sweep("a {red|blue} fox")
    data, _ = shell.display_formatter.format(sweep)
    assert "kie4o-grid" in data["text/html"] or "kie4o" in data["text/html"]
