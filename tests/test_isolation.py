"""No test writes to the real home: conftest.py gives each test its own HOME and KIE_OUTPUT_DIR."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kie_jupyter.engine.history import HistoryStore, default_output_dir

pwd = pytest.importorskip("pwd", reason="the real home is looked up in the POSIX user database")
REAL_HOME = Path(pwd.getpwuid(os.getuid()).pw_dir).resolve()


def test_history_goes_to_a_temporary_folder(tmp_path_factory):
    base = tmp_path_factory.getbasetemp().resolve()
    here = default_output_dir().resolve()
    assert here.is_relative_to(base) and not here.is_relative_to(REAL_HOME)
    store = HistoryStore()
    store.append({"task_id": "isolated-1", "prompt": "x"})
    assert store.path.resolve().is_relative_to(base) and store.path.is_file()


def test_the_default_home_folder_is_temporary_too(tmp_path_factory, monkeypatch):
    monkeypatch.delenv("KIE_OUTPUT_DIR")  # the ~/.kie_jupyter default
    base = tmp_path_factory.getbasetemp().resolve()
    assert Path.home().resolve().is_relative_to(base)
    assert default_output_dir().resolve().is_relative_to(base)


def test_subprocesses_inherit_the_temporary_folders(tmp_path_factory):
    code = ("from pathlib import Path; from kie_jupyter.engine.history import default_output_dir; "
            "print(default_output_dir().resolve()); print(Path.home().resolve())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    base = tmp_path_factory.getbasetemp().resolve()
    assert Path(out[0]) == default_output_dir().resolve()
    assert Path(out[1]).is_relative_to(base)
