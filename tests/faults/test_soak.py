"""A bounded soak: 50 --no-wait tasks at once against a mock with random faults."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from IPython.utils.capture import capture_output

from kie_jupyter.api.models import TaskStatus
from kie_jupyter.testing import MockKieServer
from kie_jupyter.testing.shell import TestingShell

KEY = "sk-SOAK-0123456789abcdef"
N = 50


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


@pytest.mark.slow
def test_fifty_tasks_with_random_faults(monkeypatch, tmp_path):
    with MockKieServer(api_key=KEY, duration=lambda body: 0.5 + (len(body["prompt"]) % 7) / 5,
                       credits=10_000, seed=7) as server:
        server.add_random_fault("record-info", 0.05, http_status=500)
        server.add_random_fault("file", 0.05, delay=0.4)
        for k, v in {"KIE_API_KEY": KEY, "KIE_BASE_URL": server.url,
                     "KIE_UPLOAD_URL": server.url,
                     "KIE_OUTPUT_DIR": str(tmp_path / "kie")}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("KIE_DEMO", raising=False)
        sh = TestingShell.instance()
        sockets_before = open_sockets()
        threads_before = {t.ident for t in threading.enumerate()}
        with capture_output():
            sh.run_cell("%load_ext kie_jupyter")
            for n in range(N):
                sh.run_cell(f"%%kie4o --no-wait -o soak_{n}\nsoak task number {n} " + "x" * n)
        tasks = [sh.user_ns[f"soak_{n}"] for n in range(N)]
        deadline = time.monotonic() + 150
        for task in tasks:
            task.wait(max(deadline - time.monotonic(), 0.1))
        states = [t.status for t in tasks]
        assert states.count(TaskStatus.SUCCESS) == N, [str(t.error) for t in tasks if t.error]
        ids = [t.task_id for t in tasks]
        assert len(set(ids)) == N  # none lost, none duplicated
        generates = server.requests_to("generate")
        assert len(generates) == N and set(server.tasks) == set(ids)
        times = sorted(r.time for r in generates)
        # The submit limiter: never more than 20 generates in any 10 s window.
        assert all(times[i + 20] - times[i] >= 10.0 * 0.98 for i in range(len(times) - 20))
        from kie_jupyter.engine.history import HistoryStore

        entries = HistoryStore(tmp_path / "kie").entries()
        assert {e.task_id for e in entries} == set(ids)
        assert len(entries) == N and all(e.status == "success" for e in entries)
        with capture_output():
            sh.run_cell("%unload_ext kie_jupyter")
        for name in [f"soak_{n}" for n in range(N)] + ["_kie4o"]:
            sh.user_ns.pop(name, None)
        del tasks
        time.sleep(1.0)  # let the mock's handler threads see the closed connections
        leftover = [t.name for t in threading.enumerate()
                    if t.ident not in threads_before and not t.name.startswith("Thread-")]
        assert not leftover, leftover
        assert open_sockets() <= sockets_before
