"""``kie4o --batch`` killed half-way and run again: every prompt done once, nothing paid twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_subprocess import env_for, wait_for

from kie_jupyter.engine.history import HistoryStore
from kie_jupyter.testing import MockKieServer

N = 30


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "kie_jupyter.cli", *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _recorded_ids(history: Path) -> set[str]:
    return {e.task_id for e in HistoryStore(history).entries()}


@pytest.mark.slow
def test_a_killed_batch_resumes_without_paying_twice(tmp_path):
    batch = tmp_path / "prompts.txt"
    batch.write_text("".join(f"prompt number {i}\n" for i in range(N)))
    out = tmp_path / "out"
    args = ["--batch", str(batch), "--save", str(out), "--concurrency", "10"]
    # No server-side limit: a 429 would be logged (and safely re-sent), blurring the count.
    with MockKieServer(api_key="test-key", duration=4.0, rate_limit=None) as server:
        env = env_for(server, tmp_path)
        history = Path(env["KIE_OUTPUT_DIR"])
        first = _run(args, env, tmp_path)
        try:
            # Ten tasks are sent at once and take 4 s: kill the run once all ten are recorded.
            wait_for(lambda: len(server.requests_to("generate")) == 10
                     and len(_recorded_ids(history)) == 10, "ten submitted tasks recorded")
        finally:
            first.kill()
            first.communicate(timeout=30)
        assert not list(out.glob("*.png"))  # killed before any finished

        second = _run(args, env, tmp_path)
        stdout, stderr = second.communicate(timeout=180)
        assert second.returncode == 0, stderr
        assert f"{N} done, 0 failed, 0 skipped (already done), 10 resumed" in stdout
        # Each prompt was sent exactly once over both runs, and each has its image.
        prompts = [r.json["prompt"] for r in server.requests_to("generate")]
        assert sorted(prompts) == sorted(f"prompt number {i}" for i in range(N))
        assert len(list(out.glob("*.png"))) == N

        third = _run(args, env, tmp_path)
        stdout, _ = third.communicate(timeout=60)
        assert third.returncode == 0
        assert f"0 done, 0 failed, {N} skipped (already done), 0 resumed" in stdout
        assert len(server.requests_to("generate")) == N

        fresh = _run([*args[:2], "--save", str(out), "--fresh"], env, tmp_path)
        fresh.communicate(timeout=180)
        assert len(server.requests_to("generate")) == 2 * N


def _wait_done(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=180)
    return proc.returncode, out, err


@pytest.mark.slow
def test_identical_lines_of_a_market_model_each_resume_their_own_task(tmp_path):
    # Two identical lines are two paid tasks: each must find its own on the re-run, and a
    # Market task must be followed on the Market API.
    batch = tmp_path / "prompts.txt"
    batch.write_text("a red fox\na red fox\n")
    out = tmp_path / "out"
    args = ["--batch", str(batch), "--save", str(out), "--model", "nano-banana-2"]
    with MockKieServer(api_key="test-key", duration=3.0, rate_limit=None) as server:
        env = env_for(server, tmp_path)
        code, _, _ = _wait_done(_run([*args, "--timeout", "1"], env, tmp_path))
        assert code == 1  # both timed out locally; both were paid
        assert len(server.requests_to("createTask")) == 2
        code, stdout, stderr = _wait_done(_run(args, env, tmp_path))
        assert code == 0, stderr
        assert "2 done, 0 failed, 0 skipped (already done), 2 resumed" in stdout
        assert len(server.requests_to("createTask")) == 2  # nothing paid twice
        assert not server.requests_to("record-info")  # never polled on the 4o API
        assert len(list(out.glob("*.png"))) == 2  # one image per task, none shared


@pytest.mark.slow
def test_a_task_whose_download_failed_is_followed_again_not_paid_again(tmp_path):
    batch = tmp_path / "prompts.txt"
    batch.write_text("a lighthouse\n")
    out = tmp_path / "out"
    args = ["--batch", str(batch), "--save", str(out)]
    with MockKieServer(api_key="test-key", duration=0.3, rate_limit=None) as server:
        env = env_for(server, tmp_path)
        server.add_fault("file", http_status=404, times=50)
        code, stdout, _ = _wait_done(_run(args, env, tmp_path))
        assert code == 1 and "could not be downloaded" in stdout
        assert len(server.requests_to("generate")) == 1
        server.reset()  # the CDN is back (and the request log starts anew)
        code, stdout, stderr = _wait_done(_run(args, env, tmp_path))
        assert code == 0, stderr
        assert "1 done, 0 failed, 0 skipped (already done), 1 resumed" in stdout
        assert not server.requests_to("generate")  # followed again, not paid again
        assert len(list(out.glob("*.png"))) == 1


def test_a_demo_batch_run_again_skips_what_it_made(tmp_path):
    # The demo server takes a new port each run: the lines' keys must not depend on it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIE_")}
    env.update(KIE_OUTPUT_DIR=str(tmp_path / "kie_home"), KIE_DEMO_DURATION="0.2")
    batch = tmp_path / "b.txt"
    batch.write_text("a fox\nan owl\n")
    kie4o = str(Path(sys.executable).with_name("kie4o"))
    args = [kie4o, "--demo", "--batch", str(batch), "--save", str(tmp_path / "out")]
    first = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert first.returncode == 0, first.stderr
    again = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    assert "0 done, 0 failed, 2 skipped (already done), 0 resumed" in again.stdout
    assert len(list((tmp_path / "out").glob("*.png"))) == 2
