"""One-step follow-ups on a picked image (#25): `%kie4o upscale | remove-bg | vary | reframe`
and `fox[1].upscale()`… — each verb's request body at the fake server, the parent recorded,
the refusals before anything is sent, the demo's tools working on the image itself."""

from __future__ import annotations

import io

import pytest
from IPython.core.error import UsageError
from PIL import Image

import kie_jupyter
from kie_jupyter.api.errors import KieUsageError
from kie_jupyter.engine.followups import FollowUp, models_for, wanted_for
from kie_jupyter.engine.sweep import Sweep
from kie_jupyter.engine.task import Task

from magic_helpers import all_text, cell, png_size, sent, server, shell  # noqa: F401

FOX = "%%kie4o -s 3:2 -o fox\nA red fox in the snow"


def _fox(shell):
    cell(shell, FOX)
    return shell.user_ns["fox"]


def _created(server):
    return [r.json for r in sent(server, "createTask")]


def test_upscale_sends_topaz_with_the_factor_and_the_image_url(shell, server):
    fox = _fox(shell)
    cell(shell, "%kie4o upscale $fox[0] --factor 4 --yes -o big")
    (body,) = _created(server)
    assert body["model"] == "topaz/image-upscale"
    assert body["input"] == {"image_url": fox.urls[0], "upscale_factor": "4"}
    big = shell.user_ns["big"]
    assert big.model == "topaz-upscale" and big.parents == [fox.task_id]
    # The demo's tool works on the image itself: 4 × the source's size.
    w, h = png_size(fox[0].data)
    assert png_size(big[0].data) == (4 * w, 4 * h)
    from kie_jupyter.session import active
    entry = active().history().get(big.task_id)
    assert entry is not None and entry.parents == [fox.task_id]


def test_upscale_default_factor_is_the_pages_and_crisp_takes_none(shell, server):
    _fox(shell)
    cell(shell, "%kie4o upscale $fox[0] --yes")
    assert _created(server)[0]["input"]["upscale_factor"] == "2"
    with pytest.raises(UsageError, match=r"recraft-crisp-upscale takes no --factor.*"
                                         r"topaz-upscale does"):
        cell(shell, "%kie4o upscale $fox[0] --model recraft-crisp-upscale --factor 2")
    with pytest.raises(UsageError, match=r"--factor 3: topaz-upscale takes 1, 2, 4 or 8"):
        cell(shell, "%kie4o upscale $fox[0] --factor 3")
    with pytest.raises(UsageError, match=r"4o cannot upscale; use topaz-upscale, "
                                         r"recraft-crisp-upscale"):
        cell(shell, "%kie4o upscale $fox[0] --model 4o")
    assert len(_created(server)) == 1  # nothing more was sent


def test_remove_bg_sends_recraft_and_makes_a_transparent_background(shell, server):
    fox = _fox(shell)
    cell(shell, "%kie4o remove-bg $fox[0] -o cut")
    (body,) = _created(server)
    assert body == {"model": "recraft/remove-background", "input": {"image": fox.urls[0]}}
    with Image.open(io.BytesIO(shell.user_ns["cut"][0].data)) as im:
        assert im.mode == "RGBA" and im.getextrema()[3][0] == 0  # some of it is transparent
        assert im.size == png_size(fox[0].data)


def test_vary_keeps_the_prompt_and_shape_with_the_image_as_input(shell, server):
    fox = _fox(shell)
    cell(shell, "%kie4o vary $fox[0] -n 2 --yes -o v")
    (body,) = sent(server, "generate")[1:]  # the fox was the first
    assert body.json["prompt"] == "A red fox in the snow"
    assert body.json["filesUrl"] == [fox.urls[0]] and body.json["nVariants"] == 2
    assert body.json["size"] == "3:2"  # an edit keeps its source's shape
    assert shell.user_ns["v"].parents == [fox.task_id]


def test_vary_on_a_market_model_makes_one_task_per_variation(shell, server):
    cell(shell, "%%kie4o --model seedream-4.5 -o s\nA {{curly}} owl")
    cell(shell, "%kie4o vary $s[0] -n 2 -o v")
    sw = shell.user_ns["v"]
    assert isinstance(sw, Sweep) and len(sw.tasks) == 2
    bodies = _created(server)[1:]
    assert [b["model"] for b in bodies] == ["seedream/4.5-edit"] * 2
    # The prompt is sent as it was: braces are not a {a|b} sweep.
    assert all(b["input"]["prompt"] == "A {curly} owl" for b in bodies)


def test_vary_of_a_model_that_takes_no_image_falls_back_and_says_so(shell, server):
    cell(shell, "%%kie4o --model imagen-4 --yes -o i\nA dog")
    cap = cell(shell, "%kie4o vary $i[0] --yes -o v")
    assert "imagen-4 takes no input image, so 4o makes the variations" in all_text(cap)
    assert shell.user_ns["v"].model == "4o"


def test_vary_of_a_tool_result_needs_a_prompt(shell, server):
    _fox(shell)
    cell(shell, "%kie4o upscale $fox[0] --yes -o big")
    with pytest.raises(UsageError, match=r"no prompt to vary \(it was made by topaz-upscale"):
        cell(shell, "%kie4o vary $big[0]")
    cell(shell, '%kie4o vary $big[0] --prompt "a fox, sharper" --yes')
    assert sent(server, "generate")[-1].json["prompt"] == "a fox, sharper"


def test_reframe_sends_the_image_size_preset_and_needs_a_frame(shell, server):
    fox = _fox(shell)
    with pytest.raises(UsageError, match=r"^%kie4o reframe: give the new frame with -s"):
        cell(shell, "%kie4o reframe $fox[0]")
    cell(shell, "%kie4o reframe $fox[0] -s 16:9 --yes -o r")
    (body,) = _created(server)
    assert body["model"] == "ideogram/v3-reframe"
    assert body["input"]["image_url"] == fox.urls[0]
    assert body["input"]["image_size"] == "landscape_16_9"
    w, h = png_size(shell.user_ns["r"][0].data)
    assert abs(w / h - 16 / 9) < 0.02


def test_refusals_before_anything_is_sent(shell, server, tmp_path):
    cell(shell, "%%kie4o -n 2 -o two\nTwo foxes")
    before = len(sent(server, "generate"))
    for line, message in (
        ("%kie4o upscale $two", r"IMAGE is 2 images; pick one"),
        ("%kie4o upscale $two[0] -n 2", r"unrecognized arguments"),
        ("%kie4o remove-bg $two[0] -s 16:9", r"unrecognized arguments"),
        ("%kie4o vary $two[0] --model topaz-upscale", r"topaz-upscale cannot vary"),
        ("%kie4o upscale nothere.png", r"nothere.png: no such file"),
        ("%kie4o upscale $two[0] -o 1x", r"not a valid Python name"),
    ):
        with pytest.raises(UsageError, match=message):
            cell(shell, line)
    # A tool's file limits, before upload: Recraft takes sides of at least 256 px.
    small = tmp_path / "small.png"
    Image.new("RGB", (200, 150), "white").save(small)
    with pytest.raises(UsageError, match=r"recraft-remove-background needs sides of at least "
                                         r"256 px"):
        cell(shell, f"%kie4o remove-bg {small}")
    assert len(sent(server, "generate")) == before
    from kie_jupyter.fakeapi._state import UPLOAD_ENDPOINTS
    assert _created(server) == [] and not any(sent(server, e) for e in UPLOAD_ENDPOINTS)


def test_dry_run_shows_the_body_and_sends_nothing(shell, server):
    _fox(shell)
    cap = cell(shell, "%kie4o upscale $fox[0] --factor 8 --dry-run")
    text = all_text(cap)
    assert '"upscale_factor": "8"' in text and "topaz/image-upscale" in text
    assert "nothing was sent" in text and _created(server) == []


def test_unknown_price_needs_yes_on_a_paid_account(shell, server):
    _fox(shell)
    with pytest.raises(UsageError, match=r"price of topaz-upscale.*unknown.*add --yes"):
        cell(shell, "%kie4o upscale $fox[0]")
    assert _created(server) == []


def test_compare_parent_shows_before_and_after(shell, server):
    fox = _fox(shell)
    cell(shell, "%kie4o upscale $fox[0] --yes -o big")
    shell.user_ns["big"].wait()
    with pytest.raises(UsageError, match=r"made from no earlier task"):
        cell(shell, "%kie4o compare $fox --parent")
    from IPython.utils.capture import capture_output
    with capture_output():
        result = shell.run_cell("%kie4o compare $big --parent")
    bundle = result.result._repr_mimebundle_()
    html = bundle["text/html"]
    assert html.index(fox.task_id) < html.index(shell.user_ns["big"].task_id)


def test_python_api_follow_ups(shell, server):
    fox = _fox(shell)
    big = fox[0].upscale(2, yes=True)
    assert isinstance(big, Task) and big.parents == [fox.task_id]
    cut = kie_jupyter.remove_bg(fox[0])
    assert cut.model == "recraft-remove-background"
    v = fox[0].vary(yes=True)
    assert v.prompt == fox.prompt and v.parents == [fox.task_id]
    r = fox[0].reframe("1:1", yes=True)
    assert _created(server)[-1]["input"]["image_size"] == "square_hd"
    assert r.parents == [fox.task_id]
    with pytest.raises(KieUsageError, match=r"factor 3: topaz-upscale takes"):
        fox[0].upscale(3)
    with pytest.raises(KieUsageError, match=r"n is for vary"):
        kie_jupyter.upscale(fox[0], variants=2)


def test_every_step_has_a_registered_model():
    for verb in ("upscale", "remove-bg", "reframe", "vary"):
        assert models_for(verb), verb
    with pytest.raises(KieUsageError, match=r"'sharpen' is not a follow-up"):
        wanted_for(FollowUp("sharpen", b""), names={})


def test_review_vary_counts_are_checked_like_a_sweep(shell, server):
    cell(shell, "%%kie4o --model seedream-4.5 -o s\nAn owl")
    before = len(_created(server))
    s = shell.user_ns["s"]
    with pytest.raises(KieUsageError, match=r"more than confirm_over = 8"):
        s[0].vary(12)
    for bad in ("%kie4o vary $s[0] -n 0", "%kie4o vary $s[0] -n -2"):
        with pytest.raises(UsageError, match=r"variants: -?\d+ is not allowed"):
            cell(shell, bad)
    with pytest.raises(KieUsageError, match=r"variants: 0 is not allowed"):
        s[0].vary(0)
    for value in ("nan", "inf", "-5"):
        with pytest.raises(UsageError, match=r"--max-credits"):
            cell(shell, f"%kie4o vary $s[0] --max-credits {value}")
    assert len(_created(server)) == before


def test_review_demo_tool_reads_an_upload_whose_name_is_encoded(shell, server, tmp_path):
    from kie_jupyter.fakeapi.images import render_png

    odd = tmp_path / "my photo é.png"
    odd.write_bytes(render_png("a fox", "3:2", 0, 300))
    cell(shell, f'%kie4o upscale "{odd}" --factor 2 --yes -o big')
    assert png_size(shell.user_ns["big"][0].data) == (600, 400)


def test_review_follow_up_without_the_python_api_says_what_to_do(monkeypatch):
    from kie_jupyter.engine import stephook

    monkeypatch.setattr(stephook, "_runner", None)
    with pytest.raises(KieUsageError, match=r"`import kie_jupyter`"):
        stephook.run("upscale", object())
