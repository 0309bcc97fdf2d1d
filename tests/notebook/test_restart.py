"""A task survives a kernel restart: start it, kill the kernel, resume it from history."""

from __future__ import annotations

import os

import pytest
from jupyter_client.manager import start_new_kernel

from kie_jupyter.testing import MockKieServer

KEY = "sk-RESTART-0123456789"


def execute(client, code: str) -> str:
    """Run code in the kernel; return its stdout and text results; raise on an error."""
    chunks: list[str] = []

    def hook(msg):
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            chunks.append(content["text"])
        elif kind in ("execute_result", "display_data"):
            chunks.append(content["data"].get("text/plain", ""))
        elif kind == "error":
            chunks.append("ERROR " + content["ename"] + ": " + content["evalue"])

    reply = client.execute_interactive(code, output_hook=hook, timeout=60)
    text = "".join(chunks)
    assert reply["content"]["status"] == "ok", text
    return text


@pytest.fixture()
def kernel_env(tmp_path):
    with MockKieServer(api_key=KEY, duration=4.0) as server:
        env = dict(os.environ, KIE_API_KEY=KEY, KIE_BASE_URL=server.url,
                   KIE_UPLOAD_URL=server.url, KIE_OUTPUT_DIR=str(tmp_path / "kie"))
        env.pop("KIE_DEMO", None)
        yield server, env


@pytest.mark.parametrize(("options", "submit", "images"), [
    ("-n 2", "generate", "2"),
    ("--model nano-banana-pro -s 16:9", "createTask", "1"),  # a Market task: its own API
], ids=["4o", "market"])
def test_resume_after_kernel_restart(kernel_env, options, submit, images):
    server, env = kernel_env
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        execute(kc, "%load_ext kie_jupyter")
        execute(kc, f"%%kie4o --no-wait {options} -o t\nA lighthouse before the storm")
        task_id = execute(
            kc, "import time\nwhile not t.task_id: time.sleep(0.05)\nprint(t.task_id)"
        ).strip()
        assert execute(kc, "print(t.done)").strip() == "False"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)  # the kernel dies with the task still running

    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        execute(kc, "%load_ext kie_jupyter")
        listed = execute(kc, "%kie4o history")
        assert task_id in listed and "A lighthouse before the storm" in listed
        execute(kc, f"%kie4o resume {task_id}")
        out = execute(kc, "print(_kie4o.task_id, _kie4o.status.value, len(_kie4o.images))")
        assert out.split() == [task_id, "success", images]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert len(server.requests_to(submit)) == 1
