"""Issue 11, the engine side: no credit spent by accident, no paid task lost, one-line mistakes.

Every test drives the public Python API (or the magic) against the fake KIE server and looks at
what a user sees: the task's state, its error, the files written and the requests the server got.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import kie_jupyter
from kie_jupyter import KieClient, KieError, KieUsageError, TaskImage, generate, pyapi, resume
from kie_jupyter.api.models import GenerationRequest, TaskStatus
from kie_jupyter.api.ratelimit import SlidingWindowLimiter
from kie_jupyter.api.retry import RetryPolicy
from kie_jupyter.engine.history import HistoryStore
from kie_jupyter.engine.task import Task
from kie_jupyter.fakeapi.images import render_png
from kie_jupyter.testing import MockKieServer
from kie_jupyter.testing.shell import TestingShell

KEY = "sk-TRUST-0123456789abcdef"
PNG = b"\x89PNG\r\n\x1a\n"



def same_pixels(a: bytes, b: bytes) -> bool:
    """The same picture (a saved PNG also carries its provenance chunks)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(a)) as x, Image.open(io.BytesIO(b)) as y:
        return x.size == y.size and x.tobytes() == y.tobytes()


@pytest.fixture()
def server(monkeypatch, tmp_path):
    with MockKieServer(api_key=KEY, duration=0.3) as srv:
        monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "kie"))
        monkeypatch.delenv("KIE_DEMO", raising=False)
        yield srv


def make_client(server, **kw) -> KieClient:
    kw.setdefault("limiter", SlidingWindowLimiter(20, 10.0))
    return KieClient(kw.pop("key", KEY), base_url=server.url, upload_url=server.url,
                     retry=RetryPolicy(max_retries=2, base_delay=0.02, max_delay=0.1), **kw)


@pytest.fixture()
def client(server):
    with make_client(server) as c:
        yield c


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


# -- 1. a paid task is never orphaned by a history or output folder ------------------------


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_unwritable_history_is_one_warning_and_the_task_is_still_followed(
        server, client, tmp_path, monkeypatch, caplog, where):
    if where == "under_a_file":
        (tmp_path / "plain").write_text("a file, not a folder")
        monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "plain" / "kie"))
    else:
        monkeypatch.setenv("KIE_OUTPUT_DIR", f"/proc/kie-trust-{tmp_path.name}")
    with caplog.at_level(logging.WARNING, logger="kie_jupyter"):
        task = generate("a fox", client=client, timeout=30)
    assert task.status is TaskStatus.SUCCESS, task.error
    assert task.images and task.images[0].startswith(PNG)
    assert server.requests_to("record-info"), "the paid task was not followed"
    warnings = [r for r in caplog.records if "could not write the history" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()


def test_unwritable_save_folder_met_during_the_run_keeps_the_images(server, client, tmp_path):
    target = tmp_path / "out"
    task = Task(GenerationRequest("a fox"), client=client, timeout=30, save_dir=target)
    target.write_text("became a file meanwhile")  # check_save_dir passed; then it broke
    task.start().wait(30)
    assert task.status is TaskStatus.SUCCESS and task.images
    assert task.save_error and "could not save" in task.save_error


# -- 2. validation before paying -------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0, -5, "5", None, float("nan"), float("inf"), True])
def test_generate_refuses_a_bad_timeout_before_sending(server, client, timeout):
    with pytest.raises(KieUsageError) as exc:
        generate("a fox", timeout=timeout, client=client)
    assert one_line(exc).startswith("timeout: ")
    assert server.requests == []


def test_resume_refuses_a_bad_timeout_before_sending(server, client):
    with pytest.raises(KieUsageError) as exc:
        resume("some-task", timeout=0, client=client)
    assert one_line(exc).startswith("timeout: ")
    assert server.requests == []


@pytest.mark.parametrize("kind", ["a_file", "under_a_file", "proc"])
def test_generate_refuses_a_save_folder_it_cannot_write(server, client, tmp_path, kind):
    (tmp_path / "f.txt").write_text("x")
    save = {"a_file": tmp_path / "f.txt", "under_a_file": tmp_path / "f.txt" / "sub",
            "proc": Path("/proc/kie-trust-save")}[kind]
    with pytest.raises(KieUsageError) as exc:
        generate("a fox", save=save, client=client)
    assert one_line(exc).startswith("save: ")
    assert server.requests == []


# -- 6. task[i] ------------------------------------------------------------------------------


def test_task_items_are_images_with_bytes_url_index_and_task(server, client, tmp_path):
    fox = generate("a fox", variants=2, client=client)
    first, last = fox[0], fox[-1]
    assert isinstance(first, TaskImage) and first.task is fox
    assert (first.index, last.index) == (0, 1)
    assert last.data == fox.images[1] and last.url == fox.urls[1]
    assert first._repr_png_() == first.data and first.data.startswith(PNG)
    assert fox.task_id in repr(last) and "[1]" in repr(last) and "\n" not in repr(last)
    assert [im.index for im in fox] == [0, 1]  # iteration ends at IndexError
    assert bool(fox) and fox[0:2][1].index == 1
    with pytest.raises(IndexError) as exc:
        fox[2]
    assert isinstance(exc.value, KieUsageError) and "2 image(s)" in one_line(exc)
    with pytest.raises(KieUsageError, match="int"):
        fox["a"]


def test_task_image_saves_into_a_folder_or_as_a_file(server, client, tmp_path):
    fox = generate("a fox", variants=2, client=client)
    inside = fox[1].save(tmp_path / "pick")
    assert inside == tmp_path / "pick" / f"{fox.task_id}_1.png"
    assert same_pixels(inside.read_bytes(), fox.images[1])
    assert sorted(p.name for p in (tmp_path / "pick").iterdir()) == [
        f"{fox.task_id}.json", f"{fox.task_id}_1.png"]
    exact = fox[0].save(tmp_path / "named" / "fox.png")
    assert same_pixels(exact.read_bytes(), fox.images[0])
    assert str(exact) in fox.saved_paths


def test_task_save_with_an_index_writes_only_that_image(server, client, tmp_path):
    fox = generate("a fox", variants=2, client=client)
    paths = fox.save(tmp_path / "one", index=-1)
    assert [p.name for p in paths] == [f"{fox.task_id}_1.png"]
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == [f"{fox.task_id}.json", f"{fox.task_id}_1.png"]
    sidecar = json.loads((tmp_path / "one" / f"{fox.task_id}.json").read_text())
    assert sidecar["files"] == [f"{fox.task_id}_1.png"]


def test_task_items_of_a_failed_task_raise_its_reason(server, client):
    server.script_next_task(success_flag=3, error_message="refused by moderation")
    task = generate("a fox", client=client)
    with pytest.raises(KieError, match="refused by moderation"):
        task[0]


def test_a_task_image_is_an_input_by_url_or_by_bytes(server, client):
    fox = generate("a fox", variants=2, client=client)
    generate("edit it", images=fox[1], yes=True, client=client)
    generate("both", images=[fox[0], fox[1]], yes=True, client=client)
    bodies = [r.json for r in server.requests_to("generate")]
    assert bodies[1]["filesUrl"] == [fox.urls[1]]
    assert bodies[2]["filesUrl"] == list(fox.urls)
    # Without a URL (e.g. a task image made locally) its bytes are uploaded.
    before = len(server.requests_to("file-stream-upload"))
    local = TaskImage(fox, 0, fox.images[0], None)
    edit = generate("edit the bytes", images=local, yes=True, client=client)
    assert edit.status is TaskStatus.SUCCESS
    assert len(server.requests_to("file-stream-upload")) == before + 1


# -- 8, 9. history keeps absolute paths; the sidecar keeps times and input sources ----------


def test_history_and_task_keep_absolute_saved_paths(server, client, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    task = generate("a fox", save="rel", client=client)
    assert task.saved_paths and all(Path(p).is_absolute() for p in task.saved_paths)
    monkeypatch.chdir("/")
    entry = HistoryStore().get(task.task_id)
    assert entry.saved_paths == task.saved_paths
    assert all(Path(p).exists() for p in entry.saved_paths)


def test_history_learns_of_files_saved_after_the_end(server, client, tmp_path):
    task = generate("a fox", client=client)
    task[0].save(tmp_path / "later")
    entry = HistoryStore().get(task.task_id)
    assert entry.saved_paths == [str(tmp_path / "later" / f"{task.task_id}_0.png")]


def test_sidecar_has_the_completion_time_and_the_input_sources(server, client, tmp_path,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("imgs").mkdir()
    Path("imgs/a.png").write_bytes(render_png("a", "1:1", long_side=64))
    Path("imgs/m.png").write_bytes(render_png("m", "1:1", long_side=64))
    task = generate("edit it", images="imgs/a.png", mask="imgs/m.png", save="out",
                    yes=True, client=client)
    assert task.status is TaskStatus.SUCCESS, task.error
    sidecar = json.loads((tmp_path / "out" / f"{task.task_id}.json").read_text())
    assert sidecar["completed"] and sidecar["completed"] == task.completed.isoformat()
    (inp,) = sidecar["inputs"]
    assert inp["source"] == str(tmp_path / "imgs" / "a.png")
    assert inp["url"] == task.params["files"][0] and inp["url"].startswith("http")
    assert sidecar["mask"] == {"source": str(tmp_path / "imgs" / "m.png"),
                               "url": task.params["mask"]}
    assert sidecar["demo"] is False


# -- 10. the Python API's arguments ----------------------------------------------------------


@pytest.mark.parametrize("task_id", [None, "", "   ", 5])
def test_resume_names_its_argument(server, client, task_id):
    with pytest.raises(KieUsageError) as exc:
        resume(task_id, client=client)
    assert one_line(exc) == "resume: task_id must be a non-empty string"
    assert server.requests == []


def test_generate_names_a_bad_images_type(server, client):
    with pytest.raises(KieUsageError) as exc:
        generate("x", images=5, yes=True, client=client)
    assert one_line(exc).startswith("images: expected") and one_line(exc).endswith("not int")
    assert server.requests == []


def test_download_url_needs_an_int(server, client):
    task = generate("a fox", client=client)
    with pytest.raises(KieUsageError) as exc:
        task.download_url("a")
    assert one_line(exc).startswith("download_url: n must be an int")


def test_url_schemes_are_case_insensitive_and_need_a_host(server, client):
    task = generate("edit", images="HTTPS://EXAMPLE.COM/A.PNG", yes=True, client=client)
    assert task.status is TaskStatus.SUCCESS, task.error
    (body,) = [r.json for r in server.requests_to("generate")]
    assert body["filesUrl"] == ["https://EXAMPLE.COM/A.PNG"]
    for bad in ("https://", "http:///a.png"):
        with pytest.raises(KieUsageError) as exc:
            generate("edit", images=bad, yes=True, client=client)
        assert one_line(exc).startswith("images: ")
    with pytest.raises(KieUsageError, match="callback"):
        generate("x", callback_url="https://", client=client)
    assert len(server.requests_to("generate")) == 1


@pytest.fixture()
def shell(server, monkeypatch):
    for name, value in (("KIE_API_KEY", KEY), ("KIE_BASE_URL", server.url),
                        ("KIE_UPLOAD_URL", server.url)):
        monkeypatch.setenv(name, value)
    sh = TestingShell.instance()
    sh.config.pop("Kie4o", None)
    with capture_output():
        sh.run_cell("%load_ext kie_jupyter")
    yield sh
    with capture_output():
        sh.run_cell("%unload_ext kie_jupyter")


def test_the_magic_takes_an_upper_case_scheme_and_refuses_a_url_without_host(server, shell):
    with capture_output() as cap:
        shell.run_cell("%%kie4o --yes --dry-run -i HTTPS://EXAMPLE.COM/A.PNG\nedit it")
    shown = cap.stdout + "".join(str(v) for out in cap.outputs for v in out.data.values())
    assert "https://EXAMPLE.COM/A.PNG" in shown
    with pytest.raises(UsageError, match="--image: 'https://' is not an http"), \
            capture_output():
        shell.run_cell("%%kie4o --yes -i https://\nedit it")
    assert server.requests == []


# -- 11. stopped tasks and the rate-limit queue ----------------------------------------------


def queued_task(server) -> tuple[Task, list[float | None], threading.Event]:
    """A task held by a full rate limiter (its one slot is taken), with what it reported."""
    limiter = SlidingWindowLimiter(1, 60.0)
    limiter.reserve()
    client = make_client(server, limiter=limiter)
    seen: list[float | None] = []
    queued = threading.Event()

    def listen(task: Task) -> None:
        if not seen or seen[-1] != task.queued_until:
            seen.append(task.queued_until)
        if task.queued_until is not None:
            queued.set()

    task = Task(GenerationRequest("a fox"), client=client, timeout=30)
    task.subscribe(listen)
    return task, seen, queued


def test_a_task_waiting_for_the_rate_limiter_is_queued_and_stops_uncharged(server):
    task, seen, queued = queued_task(server)
    task.start()
    assert queued.wait(10)
    assert task.queued_until is not None  # set while the limiter holds it
    assert task.status is TaskStatus.SUBMITTING
    task.stop()
    task.wait(10)
    assert task.status is TaskStatus.STOPPED and task.task_id is None
    assert task.queued_until is None and seen[-1] is None and seen[-2] is not None
    assert task.stopped_before_sent
    with pytest.raises(KieError) as exc:
        _ = task.images
    assert "stopped before it was sent; nothing was charged" in one_line(exc)
    assert "KIE.AI" not in str(exc.value) and getattr(exc.value, "fix", None) is None
    assert server.requests_to("generate") == []


def test_a_stop_while_the_request_may_have_arrived_never_claims_nothing_was_charged(
        server, client):
    # The server creates (and charges) the task, then hangs up after a while: meanwhile the
    # user stops it. The outcome is "stopped", but not "nothing was charged".
    server.add_fault("generate", after_processing=True, delay=0.5, drop=True)
    task = generate("a fox", client=client, wait=False)
    deadline = time.monotonic() + 10
    while not server.requests_to("generate") and time.monotonic() < deadline:
        time.sleep(0.02)
    task.stop()
    task.wait(10)
    assert task.status is TaskStatus.STOPPED and task.task_id is None
    assert not task.stopped_before_sent and len(server.tasks) == 1
    with pytest.raises(KieError) as exc:
        _ = task.images
    assert "may have reached KIE.AI" in one_line(exc) and "nothing was charged" not in str(
        exc.value)


def test_the_limiter_tells_how_long_a_caller_waits_and_when_it_is_over(fake_clock):
    limiter = SlidingWindowLimiter(1, 10.0, clock=fake_clock, sleep=fake_clock.sleep)
    told: list[float] = []
    limiter.acquire(on_wait=told.append)
    assert told == []  # a free slot: nothing to tell
    limiter.acquire(on_wait=told.append)
    assert told == [10.0, 0.0] and fake_clock.sleeps == [10.0]


def test_ctrl_c_before_sending_does_not_claim_the_task_goes_on(server, capsys):
    task, _, queued = queued_task(server)
    task.start()
    assert queued.wait(10)
    real_wait = task.wait
    calls = []

    def interrupted_wait(timeout=None):
        calls.append(timeout)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real_wait(timeout)

    task.wait = interrupted_wait  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        pyapi._wait(task)
    err = capsys.readouterr().err
    assert "nothing was charged" in err and "goes on at KIE.AI" not in err
    assert server.requests_to("generate") == []


def test_a_stopped_task_says_it_can_be_resumed(server, client):
    server.script_next_task(duration=30)
    task = generate("a slow fox", client=client, wait=False)
    deadline = time.monotonic() + 10
    while task.task_id is None and time.monotonic() < deadline:
        time.sleep(0.02)
    task.stop()
    task.wait(10)
    assert task.status is TaskStatus.STOPPED and task.task_id
    with pytest.raises(KieError) as exc:
        _ = task.images
    text = one_line(exc)
    assert "stopped" in text and "resumed" in text and ".wait()" not in text
    assert exc.value.fix == "resume"


# -- TaskError.fix ---------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "fix"), [(401, "key"), (402, "credits"), (422, "options")])
def test_a_failed_task_carries_what_to_do(server, client, code, fix):
    server.add_fault("generate", code=code)
    task = generate("a fox", client=client)
    assert task.status is TaskStatus.FAILED
    assert task.error.fix == fix and "%kie4o" not in str(task.error)
    with pytest.raises(KieError) as exc:
        _ = task.images
    assert exc.value.fix == fix


# -- 12. demo marks --------------------------------------------------------------------------


def test_demo_is_marked_on_client_task_and_history(server, client):
    with make_client(server, demo=True) as demo_client:
        assert demo_client.demo and not client.demo and "demo=True" in repr(demo_client)
        demo_task = generate("a demo fox", client=demo_client)
    live_task = generate("a live fox", client=client)
    assert demo_task.demo is True and live_task.demo is False
    store = HistoryStore()
    assert store.get(demo_task.task_id).demo is True
    assert store.get(live_task.task_id).demo is False


def test_the_default_demo_client_is_marked(monkeypatch):
    monkeypatch.setenv("KIE_DEMO", "1")
    try:
        assert pyapi._client(None).demo is True
        monkeypatch.delenv("KIE_DEMO")  # read at each call: live again
        assert pyapi._client(None).demo is False
    finally:
        pyapi._own.demo.stop()
        pyapi._own.clients.clear()
