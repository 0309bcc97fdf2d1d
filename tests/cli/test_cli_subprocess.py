"""``kie4o`` as a user runs it: a real process against a mock server, Ctrl-C included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kie_jupyter.testing import MockKieServer

KIE4O = Path(sys.executable).with_name("kie4o")


@pytest.fixture
def server():
    """A mock whose "quick" prompts take 0.3 s and every other one a minute."""
    def duration(body: dict) -> float:
        return 0.3 if "quick" in body.get("prompt", "") else 60.0

    with MockKieServer(api_key="test-key", duration=duration) as mock:
        yield mock


def env_for(server: MockKieServer, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIE_")}
    env.update(KIE_API_KEY="test-key", KIE_BASE_URL=server.url, KIE_UPLOAD_URL=server.url,
               KIE_OUTPUT_DIR=str(tmp_path / "kie_home"), PYTHONUNBUFFERED="1")
    return env


def wait_for(condition, what: str, limit: float = 30.0) -> None:
    """Wait until ``condition()`` holds (a generous limit: only a hang fails)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def _default_sigint() -> None:
    # A shell's background job may inherit SIGINT ignored; a user's terminal never does.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_reports_each_task_honestly(server, tmp_path):
    batch = tmp_path / "prompts.txt"
    batch.write_text("quick one\nslow two\nslow three\nslow four\nslow five\n")
    out_dir = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kie_jupyter.cli", "--batch", str(batch), "--concurrency", "2",
         "--save", str(out_dir)],
        env=env_for(server, tmp_path), cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint,
    )
    try:
        # "quick one" ends and is saved; then "slow three" takes its place.
        wait_for(lambda: len(server.requests_to("generate")) >= 3, "three generates")
        wait_for(lambda: list(out_dir.glob("*.png")), "the quick task's image")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    ids = {tid: task["params"].get("prompt", "") for tid, task in server.tasks.items()}
    quick = next(i for i, p in ids.items() if "quick" in p)
    slow = [i for i, p in ids.items() if "slow" in p]
    assert len(slow) == 2
    lines = err.splitlines()
    assert lines[0] == "kie4o: interrupted"
    quick_line = next(line for line in lines if quick in line)
    assert "Done" in quick_line and "goes on" not in quick_line and str(out_dir) in quick_line
    for task_id in slow:
        line = next(line for line in lines if task_id in line)
        assert "goes on at KIE.AI" in line and f"`kie4o --resume {task_id}`" in line
    assert "2 prompt(s) never submitted: nothing charged" in err
    assert "%kie4o" not in err and "%kie4o" not in out
    assert len(server.requests_to("generate")) == 3  # nothing more was sent after Ctrl-C


def test_kie4o_script_refuses_a_binary_batch_in_one_line(server, tmp_path):
    png = tmp_path / "some.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(128, 256)))
    done = subprocess.run([str(KIE4O), "--batch", str(png)], env=env_for(server, tmp_path),
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"kie4o: --batch: {png} is not a text file "
                                        "(expected UTF-8, one prompt per line)"]
    assert not server.requests


def test_kie4o_script_bad_timeout_sends_nothing(server, tmp_path):
    done = subprocess.run([str(KIE4O), "a fox", "--timeout", "nan"],
                          env=env_for(server, tmp_path), cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and "--timeout" in done.stderr
    assert not server.requests
    assert not (tmp_path / "kie4o_images").exists()
