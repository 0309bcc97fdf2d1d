"""Shared fixtures and helpers for the tests that drive the magics through a real shell."""

from __future__ import annotations

import struct

import pytest
from IPython.utils.capture import capture_output

from kie_jupyter.testing import MockKieServer
from kie_jupyter.testing.shell import TestingShell

KEY = "sk-TESTKEY-0123456789abcdef"


@pytest.fixture()
def server(monkeypatch, tmp_path):
    with MockKieServer(api_key=KEY, duration=0.6) as srv:
        monkeypatch.setenv("KIE_API_KEY", KEY)
        monkeypatch.setenv("KIE_BASE_URL", srv.url)
        monkeypatch.setenv("KIE_UPLOAD_URL", srv.url)
        monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "kie"))
        monkeypatch.delenv("KIE_DEMO", raising=False)
        yield srv


@pytest.fixture()
def shell(server):
    sh = TestingShell.instance()
    sh.config.pop("Kie4o", None)  # `%config Kie4o...` of an earlier test must not carry over
    with capture_output():
        sh.run_cell("%load_ext kie_jupyter")
    yield sh
    with capture_output():
        sh.run_cell("%unload_ext kie_jupyter")
    for name in ("_kie4o", "t", "first", "second"):
        sh.user_ns.pop(name, None)


def run(sh, cell):
    with capture_output() as cap:
        sh.run_cell(cell)
    return cap


def cell(sh, text: str):
    """Run one cell; raise the error it ends with, else return what it printed and showed."""
    with capture_output() as cap:
        result = sh.run_cell(text)
    if result.error_in_exec is not None:
        raise result.error_in_exec
    return cap


def all_text(cap) -> str:
    parts = [cap.stdout, cap.stderr]
    for out in cap.outputs:
        parts.extend(str(v) for v in out.data.values())
    return "\n".join(parts)


def png_size(data: bytes) -> tuple[int, int]:
    return struct.unpack(">II", data[16:24])


def sent(server, endpoint):
    return server.requests_to(endpoint)
