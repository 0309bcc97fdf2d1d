"""The one generation plan: what every front end builds before anything is sent."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from kie_jupyter.api.errors import KieUsageError
from kie_jupyter.engine.inputs import InputImage
from kie_jupyter.engine.plan import Wanted, make_plan, resolve_inputs


def png(path, size=(64, 64)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, "white").save(buf, format="PNG")
    path.write_bytes(buf.getvalue())
    return str(path)


def test_prompt_groups_and_option_lists_make_every_combination():
    plan = make_plan(Wanted("a {red|blue} fox", size="1:1,3:2"))
    assert [(t.labels, t.request.prompt, t.request.size) for t in plan.tasks] == [
        (("red", "1:1"), "a red fox", "1:1"), (("red", "3:2"), "a red fox", "3:2"),
        (("blue", "1:1"), "a blue fox", "1:1"), (("blue", "3:2"), "a blue fox", "3:2")]
    assert [a.name for a in plan.axes] == ["prompt", "size"]
    assert plan.is_sweep and plan.task_count == 4 and plan.image_count == 4


def test_variants_are_one_task_for_4o_and_a_dimension_for_a_one_image_model():
    assert [t.request.variants for t in make_plan(Wanted("a fox", variants=4)).tasks] == [4]
    plan = make_plan(Wanted("a fox", model="nano-banana-2", variants=3))
    assert [t.labels for t in plan.tasks] == [("1",), ("2",), ("3",)]
    assert plan.axes[-1].name == "variant" and plan.image_count == 3
    with pytest.raises(KieUsageError, match="makes one image per task"):
        make_plan(Wanted("a fox", model="nano-banana-2", variants=3, sweep=False))


def test_one_task_as_given_when_not_a_sweep():
    plan = make_plan(Wanted("a {red|blue} fox {{x}}", sweep=False, fill=lambda t: t))
    assert [t.request.prompt for t in plan.tasks] == ["a {red|blue} fox {{x}}"]
    assert not plan.is_sweep
    with pytest.raises(KieUsageError, match="size: expected one value"):
        make_plan(Wanted("a fox", size=["1:1", "3:2"], sweep=False))


@pytest.mark.parametrize("name", ["model", "size", "resolution", "quality"])
def test_an_empty_list_is_refused_not_taken_for_the_default(name):
    with pytest.raises(KieUsageError, match=f"{name}: no value given"):
        make_plan(Wanted("a fox", **{name: []}))


def test_the_confirm_gate_counts_tasks_and_images():
    plan = make_plan(Wanted("a {a|b|c} fox", size="1:1,3:2,2:3", variants=2))
    with pytest.raises(KieUsageError, match=r"9 tasks, 18 images, more than S = 8: go"):
        plan.confirm(8, False, setting="S", how="go")
    plan.confirm(8, True, setting="S", how="go")
    plan.confirm(9, False, setting="S", how="go")


def test_images_are_read_once_and_each_model_keeps_its_limits(tmp_path):
    paths = [png(tmp_path / f"{n}.png") for n in range(6)]
    images, mask = resolve_inputs(Wanted("", model="4o,nano-banana-2", images=paths))
    assert len(images) == 6 and all(isinstance(i, InputImage) for i in images) and mask is None
    # 4o takes five: in a sweep with a model that takes more, it is still refused.
    with pytest.raises(KieUsageError, match="at most 5 are allowed for 4o"):
        make_plan(Wanted("a fox", model="4o,nano-banana-2", images=images))
    plan = make_plan(Wanted("a fox", model="nano-banana-2", images=images))
    assert plan.images == images  # taken as they are, not read again


def test_a_mask_goes_with_4o_only(tmp_path):
    image, mask = png(tmp_path / "i.png"), png(tmp_path / "m.png")
    plan = make_plan(Wanted("edit", images=[image], mask=mask))
    assert plan.mask is not None and plan.tasks[0].request.mask
    with pytest.raises(KieUsageError, match="mask"):
        make_plan(Wanted("edit", model="nano-banana-2", images=[image], mask=mask))
    small = png(tmp_path / "s.png", (32, 32))
    with pytest.raises(KieUsageError, match="does not match"):
        make_plan(Wanted("edit", images=[image], mask=small))


def test_the_notebook_fill_runs_on_each_expanded_prompt():
    seen = []
    plan = make_plan(Wanted("a {red|blue} {thing}", fill=lambda t: seen.append(t) or t.upper()))
    assert seen == ["a red {thing}", "a blue {thing}"]
    assert [t.request.prompt for t in plan.tasks] == ["A RED {THING}", "A BLUE {THING}"]
