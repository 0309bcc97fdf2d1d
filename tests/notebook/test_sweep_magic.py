"""Sweeps and models through the magic: one grid, labels, confirm, dry run, %%kie."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from kie_jupyter import Sweep, TaskStatus

from magic_helpers import cell, sent


def html(cap) -> str:
    return "\n".join(o.data.get("text/html", "") for o in cap.outputs)


def test_a_sweep_is_one_labelled_grid(shell, server):
    cap = cell(shell, "%%kie4o -s 1:1,3:2 -o sw\na {red|blue} fox")
    sw = shell.user_ns["sw"]
    assert isinstance(sw, Sweep) and shell.user_ns["_kie4o"] is sw
    assert len(sent(server, "generate")) == 4 and sw.done
    assert sw["blue", "3:2"].status is TaskStatus.SUCCESS
    assert sw["blue", "3:2"].prompt == "a blue fox"
    page = html(cap)
    assert page.count("kie4o-sweep-head") >= 1 and "4 of 4 done" in page
    for label in ("red", "blue", "1:1", "3:2"):
        assert f">{label}</div>" in page
    assert "sw[&#x27;blue&#x27;, &#x27;3:2&#x27;][0]" in page  # how to pick each image
    assert "application/vnd.jupyter.widget-view+json" not in str(
        [o.data for o in cap.outputs])


def test_a_big_sweep_needs_yes(shell, server):
    with pytest.raises(UsageError, match=r"9 tasks, 9 images, ≈ 54 credits.*--yes"):
        cell(shell, "%%kie4o -s 1:1,3:2,2:3\n{a|b|c} fox")
    assert not server.requests
    cell(shell, "%%kie4o -s 1:1,3:2,2:3 --yes --no-wait -o big\n{a|b|c} fox")
    shell.user_ns["big"].wait(60)
    assert len(sent(server, "generate")) == 9


def test_dry_run_lists_every_request(shell, server):
    cap = cell(shell, "%%kie4o --dry-run --model 4o,gpt-image-1.5\na {cat|dog}")
    text = "\n".join(o.data["text/plain"] for o in cap.outputs)
    assert "(dry run: 4 requests, 4 images, ≈ 20 credits (≈ $0.10); nothing was sent)" in text
    assert text.count("/api/v1/gpt4o-image/generate") == 2
    assert text.count("/api/v1/jobs/createTask") == 2
    assert "# gpt-image-1.5 / dog" in text or "# dog / gpt-image-1.5" in text
    assert not server.requests


def test_models_in_the_magic_and_under_kie(shell, server):
    cell(shell, "%%kie --model nano-banana-pro -s 16:9 -o lh\na lighthouse")
    lh = shell.user_ns["lh"]
    assert lh.status is TaskStatus.SUCCESS and lh.model == "nano-banana-pro"
    body = sent(server, "createTask")[0].json
    assert body["model"] == "nano-banana-pro" and body["input"]["aspect_ratio"] == "16:9"
    cap = cell(shell, "%%kie4o --model 4o,gpt-image-1.5,seedream-4.5 -o cmp\na red fox")
    cmp = shell.user_ns["cmp"]
    assert [a.name for a in cmp.axes] == ["model"] and cmp.counts()["succeeded"] == 3
    assert "seedream-4.5" in html(cap)


@pytest.mark.parametrize("line, message", [
    ("--model nope", "nope"),
    ("--model gpt-image-1.5 -s 16:9", "1:1, 2:3, 3:2"),
    ("--model gpt-image-1.5 -e", "--enhance"),
    ("--quality high", "4o"),
    ("-n 3", "--variants"),
])
def test_bad_model_options_are_one_line_before_sending(shell, server, line, message):
    with pytest.raises(UsageError, match=message):
        cell(shell, f"%%kie4o {line}\nx")
    assert not server.requests


@pytest.mark.parametrize("demo", [False, True], ids=["live", "demo"])
def test_ctrl_c_on_a_sweep_names_the_tasks_that_go_on(shell, server, monkeypatch, demo):
    import time

    from kie_jupyter.engine import sweep as sweep_module

    server.duration = 30
    if demo:  # demo tasks go on at the demo server in this kernel, never "at KIE.AI"
        monkeypatch.setenv("KIE_DEMO_DURATION", "30")
        cell(shell, "%kie4o demo")
    real = sweep_module.Sweep.counts

    raised = []

    def interrupted(self):
        if raised:  # once, as a person presses Ctrl-C once
            return real(self)
        deadline = time.monotonic() + 20
        while not all(t.task_id for t in self.tasks) and time.monotonic() < deadline:
            time.sleep(0.05)
        raised.append(True)
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_module.Sweep, "counts", interrupted)
    with capture_output() as cap, pytest.raises(UsageError, match="Run All stops"):
        shell.run_cell("%%kie4o -o sw\na {red|blue} fox")  # the cell ends in error
    monkeypatch.setattr(sweep_module.Sweep, "counts", real)
    tasks = shell.user_ns["sw"].tasks
    where = "the demo server" if demo else "KIE.AI"
    assert f"they go on at {where}" in cap.stdout, cap.stdout
    assert all(t.task_id in cap.stdout for t in tasks)
    assert all(t.demo is demo for t in tasks)
    if demo:
        assert "KIE.AI" not in cap.stdout
        with pytest.raises(Exception, match="goes on at the demo server"):
            tasks[0].images  # noqa: B018
        cell(shell, "%kie4o demo off")


def test_4o_takes_its_documented_params(shell, server):
    cell(shell, "%%kie4o --param upload_cn=true\na fox")
    assert sent(server, "generate")[0].json["uploadCn"] is True
    with pytest.raises(UsageError, match="4o takes"):
        cell(shell, "%%kie4o --param seed=3\na fox")


def test_errors_name_the_model_the_option_and_refuse_repeats(shell, server, tmp_path):
    with pytest.raises(UsageError, match=r"--size: '16:9' is not allowed for 4o"):
        cell(shell, "%%kie4o --model 4o,seedream-4.5 -s 16:9\nx")
    for line, flag in (("--model 4o --model seedream-4.5", "--model"),
                       ("-s 3:2 -s 2:3", "--size"), ("-s3:2 --size=2:3", "--size"),
                       ("--timeout 5 --timeout 9", "--timeout"),
                       ("--model 4o --mod seedream-4.5", "--model"),  # argparse's prefixes
                       ("-s 3:2 --si 2:3", "--size")):
        with pytest.raises(UsageError, match=rf"^{flag}: given twice; give it once"):
            cell(shell, f"%%kie4o {line}\nx")
    folder = tmp_path / "out"
    folder.mkdir()
    shell.user_ns["out"] = str(folder)
    with pytest.raises(UsageError, match=r"^--image: .*out: is a directory"):
        cell(shell, "%%kie4o -i $out\nx")
    with pytest.raises(UsageError, match=r"^--image: model: no such file"):
        cell(shell, "%%kie4o -i model\nx")
    with pytest.raises(UsageError, match=r"^-n 16 \(seedream-4.5 makes one image per task\) "
                                         r"makes 16 tasks"):
        cell(shell, "%%kie4o -n 16 --model seedream-4.5\nx")
    with pytest.raises(UsageError, match=r"cannot hold another \(\{ink\|chalk\} inside"):
        cell(shell, "%%kie4o\n{oil|{ink|chalk}}")
    assert not server.requests


def test_a_one_image_per_task_sweep_is_picked_by_position_and_feeds_an_edit(shell, server):
    cap = cell(shell, "%%kie4o -n 2 --model seedream-4.5 -o sdn\na fox")
    page = html(cap)
    sdn = shell.user_ns["sdn"]
    assert "sdn[0][0]" in page and "sdn[1][0]" in page and "sdn['1']" not in page
    assert sdn[1] is sdn.tasks[1]
    # A sweep is an input like a task: all its images.
    cell(shell, "%%kie4o --model seedream-4.5 -o edit --yes -i $sdn\nthe same, at night")
    edit = shell.user_ns["edit"]
    assert edit.status is TaskStatus.SUCCESS, edit.error
    (body,) = [r.json for r in sent(server, "createTask")][-1:]
    assert len(body["input"]["image_urls"]) == 2


def test_the_default_size_reaches_every_model_that_takes_it(shell, server):
    cell(shell, '%config Kie4o.default_size = "3:2"')
    try:
        cap = cell(shell, "%%kie4o --dry-run --model seedream-4.5,flux-2-pro,gpt-image-1.5,"
                          "nano-banana-2,flux-kontext-pro\na lighthouse")
        text = "\n".join(o.data["text/plain"] for o in cap.outputs)
        assert text.count('"aspect_ratio": "3:2"') == 4, text
        assert '"aspectRatio"' not in text  # Kontext has no 3:2: its own default
        assert ("kie4o: flux-kontext-pro takes no 3:2 (%config Kie4o.default_size): its own "
                "default size is used") in cap.stdout
    finally:
        cell(shell, '%config Kie4o.default_size = "1:1"')
    # Chosen, even as the value it already had (a fresh kernel's %config, a profile): 1:1
    # reaches the Market models too.
    shell.run_line_magic("reload_ext", "kie_jupyter")
    cap = cell(shell, "%%kie4o --dry-run --model nano-banana-2,qwen-image\na lighthouse")
    text = "\n".join(o.data["text/plain"] for o in cap.outputs)
    assert '"aspect_ratio": "1:1"' in text and '"image_size": "square_hd"' in text, text
    # Not chosen: each model keeps its own default, as before.
    shell.config.Kie4o.pop("default_size", None)
    shell.run_line_magic("reload_ext", "kie_jupyter")
    cap = cell(shell, "%%kie4o --dry-run --model nano-banana-2\na lighthouse")
    assert "aspect_ratio" not in "\n".join(o.data["text/plain"] for o in cap.outputs)


def test_stopped_tasks_count_as_stopped_and_the_gallery_leaves_them_out(shell, server):
    import time

    from kie_jupyter.notebook.cards import sweep_bundle

    server.duration = 30.0  # still running when stopped
    cell(shell, "%%kie4o -s 1:1,3:2 --no-wait -o sw\na fox")
    sw = shell.user_ns["sw"]
    deadline = time.monotonic() + 20
    while not all(t.task_id for t in sw.tasks) and time.monotonic() < deadline:
        time.sleep(0.05)
    sw.stop()
    sw.wait(10)
    counts = sw.counts()
    assert (counts["stopped"], counts["failed"], counts["succeeded"]) == (2, 0, 0)
    assert "(0 succeeded, 0 failed, 2 stopped)" in sweep_bundle(sw)["text/html"]
    def gallery(line: str) -> str:
        with capture_output():
            return repr(shell.run_cell(line).result)

    assert gallery("%kie4o gallery").startswith("kie4o gallery — 0 task(s)")
    assert gallery("%kie4o gallery --all").startswith("kie4o gallery — 2 task(s)")


def test_param_values_are_typed_by_the_models_page_and_the_rest_said_in_the_dry_run(
        shell, server):
    cap = cell(shell, "%%kie4o --dry-run --model qwen-image -i https://img.example/a.png "
                      "--param num_images=2 --param guidance_scale=3.5 --param flavour=7\n"
                      "a fox")
    text = "\n".join(o.data["text/plain"] for o in cap.outputs)
    # qwen/image-edit's page: num_images is a string '1'-'4', guidance_scale a number.
    assert '"num_images": "2"' in text and '"guidance_scale": 3.5' in text, text
    assert '"flavour": "7"' in text  # unknown to the registry: sent as written, and said so
    assert "# --param flavour: not a field the registry knows for qwen-image; sent as " \
           'given ("7")' in text
    with pytest.raises(UsageError, match=r"^--param num_images: '5' is not allowed for "
                                         r"qwen-image; use one of 1, 2, 3, 4"):
        cell(shell, "%%kie4o --dry-run --model qwen-image -i https://img.example/a.png "
                    "--param num_images=5\na fox")


def test_seeds_and_negative_prompts_sweep_record_and_rerun(shell, server):
    cell(shell, "%%kie4o --yes --model qwen-image --seed 1,2 --negative 'blurry, text' -o sw\n"
                "a fox")
    bodies = [r.json["input"] for r in sent(server, "createTask")]
    assert sorted((b["seed"], b["negative_prompt"]) for b in bodies) == [
        (1, "blurry, text"), (2, "blurry, text")]
    sw = shell.user_ns["sw"]
    assert sorted(t.params["seed"] for t in sw.tasks) == [1, 2]
    assert all(t.params["negative"] == "blurry, text" for t in sw.tasks)
    second = next(t for t in sw.tasks if t.params["seed"] == 2)
    from kie_jupyter.notebook.cards import card_bundle

    card = card_bundle(second)["text/html"]
    assert "seed 2" in card and "not: blurry, text" in card, card[:3000]
    from kie_jupyter.notebook.workbench import rerun_cell

    again = rerun_cell(second.params, second.prompt, model=second.model)
    assert "--seed=2" in again and "'--negative=blurry, text'" in again, again
    cell(shell, again.replace("%%kie4o", "%%kie4o --yes -o again", 1))  # it runs as it reads
    assert sent(server, "createTask")[-1].json["input"]["seed"] == 2
    from kie_jupyter.engine.history import HistoryStore

    entry = HistoryStore().get(sw.tasks[0].task_id)
    assert entry is not None
    assert entry.params["seed"] == 1 and entry.params["negative"] == "blurry, text"
    with pytest.raises(UsageError, match=r"^--seed: 4o takes no seed; these do: qwen-image"):
        cell(shell, "%%kie4o --seed 3\na fox")
    with pytest.raises(UsageError, match=r"^--negative: gpt-image-1.5 takes no negative "
                                         r"prompt"):
        cell(shell, "%%kie4o --model gpt-image-1.5 --negative blur\na fox")


def test_a_tool_runs_on_an_image_with_no_prompt_and_its_page_limits_come_first(
        shell, server, tmp_path):
    from PIL import Image

    cell(shell, "%%kie4o -s 3:2 -o fox\nA red fox")
    cell(shell, "%%kie4o --yes --model topaz-upscale -i $fox --param upscale_factor=4 -o big\n")
    body = sent(server, "createTask")[-1].json
    assert body == {"model": "topaz/image-upscale",
                    "input": {"upscale_factor": "4", "image_url": shell.user_ns["fox"].urls[0]}}
    assert shell.user_ns["big"].status is TaskStatus.SUCCESS
    with pytest.raises(UsageError, match=r"^prompt: topaz-upscale takes no prompt"):
        cell(shell, "%%kie4o --yes --model topaz-upscale -i $fox\nmake it sharp")
    # Recraft's page: ≤ 4096 px a side, ≥ 256. Refused before anything is uploaded or paid.
    huge = tmp_path / "huge.png"
    Image.new("RGB", (5000, 300), "white").save(huge)
    before = len(server.requests)
    with pytest.raises(UsageError, match=r"^--image: .*huge.png is 5000×300; "
                                         r"recraft-remove-background takes .*sides ≤ 4096 px"):
        cell(shell, f"%%kie4o --yes --model recraft-remove-background -i {huge}\n")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (100, 100), "white").save(tiny)
    with pytest.raises(UsageError, match=r"needs sides of at least 256 px"):
        cell(shell, f"%%kie4o --yes --model recraft-remove-background -i {tiny}\n")
    assert len(server.requests) == before  # nothing sent, nothing uploaded
