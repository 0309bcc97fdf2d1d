"""The key never leaks; everything shown as HTML is escaped; result URLs must be http(s)."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import ipywidgets
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from kie_jupyter import KieClient
from kie_jupyter.api.errors import KieConfigError
from kie_jupyter.fakeapi.images import render_png

from magic_helpers import KEY, all_text, run, server, shell  # isort: skip

XSS = ['<script>alert("x")</script>', '<img src=x onerror="alert(1)">']


def widget_states() -> str:
    from ipywidgets.widgets.widget import _instances

    return "\n".join(repr(w.get_state()) for w in list(_instances.values()))


def run_quiet(sh, cell):
    """Run a cell; return its outputs and the text of any exception, traceback included."""
    with capture_output() as cap:
        try:
            sh.run_cell(cell)
        except BaseException as exc:  # noqa: BLE001 - the point is to read it
            return all_text(cap) + "".join(traceback.format_exception(exc))
    return all_text(cap)


def test_full_session_never_shows_the_key(shell, server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    image = tmp_path / "in.png"
    image.write_bytes(render_png("in"))
    texts = []
    for cell in [
        "%xmode Verbose",
        "%config Kie4o.frontend = 'widget'",
        f"%%kie4o -n 2 -o t --save {tmp_path / 'saved'}\na fox",
        f"%%kie4o -i {image} -o t2\nedit it",
        "%%kie4o --dry-run -e --fallback\na fox",
        "%%kie4o --no-wait -o bg\nbackground",
        "bg.wait(10)",
        "%kie4o config",
        "%kie4o history",
        "%kie4o credits",
        "%kie4o status {t.task_id}",
        "%%kie4o -o bad\n[mock:fail] refused",
        "bad.images",
        "t.download_url(9)",
        "%kie4o status no-such-task",
        "%%kie4o -s 9:9\nbad size",
        "%kie4o login extra",
        "t, t.client, t.request, bg",
        "print(repr(t.__dict__))",
        "%xmode Context",
    ]:
        texts.append(run_quiet(shell, cell))
    server.add_fault("credit", code=401, times=10)
    texts.append(run_quiet(shell, "%kie4o credits"))
    server.add_fault("record-info", code=500, times=100)
    texts.append(run_quiet(shell, "%%kie4o --timeout 1.5 -o slow\nslow"))
    joined = "\n".join(texts)
    assert "a fox" in joined and "Traceback" in joined  # the session really ran
    haystacks = {
        "outputs": joined,
        "widget state": widget_states(),
        "log records": "\n".join(r.getMessage() for r in caplog.records),
    }
    for path in list(Path(tmp_path).rglob("*")):
        if path.is_file():
            haystacks[str(path)] = path.read_bytes().decode("latin-1")
    for where, text in haystacks.items():
        assert KEY not in text, f"the key leaked into {where}"
        assert KEY[-12:] not in text, f"part of the key leaked into {where}"


def test_key_goes_only_to_the_api_and_upload_hosts(server):
    client = KieClient(KEY, base_url=server.url, upload_url=server.url)
    assert "Authorization" in client._headers(server.url + "/api/v1/chat/credit")
    for url in ("https://cdn.example/a.png", "http://127.0.0.2:9/x", server.url.replace(
            "127.0.0.1", "localhost") + "/x"):
        assert "Authorization" not in client._headers(url)


@pytest.mark.parametrize("url", ["http://api.example.com", "http://10.0.0.5:8080"])
def test_plain_http_refused_except_loopback(url, shell, server):
    with pytest.raises(KieConfigError, match="plain http"):
        KieClient(KEY, base_url=url)
    with pytest.raises(KieConfigError, match="plain http"):
        KieClient(KEY, upload_url=url)
    run(shell, f"%config Kie4o.base_url = '{url}'")
    try:
        with pytest.raises(UsageError, match="plain http"):
            run(shell, "%%kie4o\nx")
    finally:
        run(shell, "%config Kie4o.base_url = None")
    assert not server.requests
    for ok in ("http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9", "https://x.ai"):
        KieClient(KEY, base_url=ok, upload_url=ok)


@pytest.mark.parametrize("payload", XSS)
def test_prompts_and_server_text_are_escaped_everywhere(shell, server, payload):
    from kie_jupyter.notebook import panel as panel_module
    from kie_jupyter.notebook.cards import static_bundle

    made = []
    original = panel_module.TaskPanel.__init__

    def spy(self, *a, **k):
        original(self, *a, **k)
        made.append(self)

    server.script_next_task(success_flag=2, error_code=400, error_message=payload)
    run(shell, "%config Kie4o.frontend = 'widget'")
    panel_module.TaskPanel.__init__ = spy
    try:
        cap = run(shell, f"%%kie4o -o t\n{payload}")
        run(shell, "%%kie4o -o ok\n" + payload)
    finally:
        panel_module.TaskPanel.__init__ = original
    task, ok = shell.user_ns["t"], shell.user_ns["ok"]
    html_texts = [
        made[0].prompt.value, made[0].status.value, made[1].prompt.value,
        static_bundle(task)["text/html"], static_bundle(ok)["text/html"],
        shell.run_line_magic("kie4o", "history")._repr_mimebundle_()["text/html"],
        shell.run_line_magic("kie4o", f"status {task.task_id}")._repr_mimebundle_()["text/html"],
        *(o.data.get("text/html", "") for o in cap.outputs),
    ]
    from kie_jupyter.notebook.viewer import script_tag

    for markup in html_texts:
        # The one script is the full-size viewer's own, the same static text every time.
        markup = markup.replace(script_tag(), "")
        assert payload not in markup
        assert "<script" not in markup and "<img src=x" not in markup
    assert any("&lt;script&gt;" in m or "onerror=&quot;" in m for m in html_texts)
