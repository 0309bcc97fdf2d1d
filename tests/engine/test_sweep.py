"""Sweeps: expansion, labels, the confirm threshold, parallel tasks, failures, lookups."""

from __future__ import annotations

import pytest

import kie_jupyter
from kie_jupyter import KieClient, KieUsageError, TaskStatus
from kie_jupyter.engine.sweep import Axis, expand
from kie_jupyter.testing import MockKieServer

KEY = "sk-sweep-test-0123456789"


def test_groups_expand_to_every_combination_in_order():
    axes, combos = expand("a {red|blue} fox in {snow|rain}", {})
    assert axes == [Axis("prompt 1", ("red", "blue")), Axis("prompt 2", ("snow", "rain"))]
    assert [c.prompt for c in combos] == [
        "a red fox in snow", "a red fox in rain", "a blue fox in snow", "a blue fox in rain"]
    assert combos[1].labels == ("red", "rain")


def test_names_and_escapes_are_left_alone():
    axes, combos = expand("{{literal|braces}} {name} and {oil painting | watercolor}", {})
    assert axes == [Axis("prompt", ("oil painting", "watercolor"))]
    assert combos[0].prompt == "{{literal|braces}} {name} and oil painting"


def test_option_lists_are_dimensions_and_single_values_pass_through():
    axes, combos = expand("a {cat|dog}", {"size": "1:1,3:2", "model": "4o"})
    assert [a.name for a in axes] == ["prompt", "size"]
    assert len(combos) == 4
    assert combos[3].options == {"size": "3:2", "model": "4o"}
    assert combos[3].labels == ("dog", "3:2")
    _, same = expand("a {cat|dog}", {"size": ["1:1", "3:2"], "model": ["4o"]})
    assert [c.options for c in same] == [c.options for c in combos]


@pytest.mark.parametrize("text, options, message", [
    ("a {cat|} fox", {}, "empty choice"),
    ("a fox", {"size": "1:1,,3:2"}, "empty value"),
    ("a fox", {"size": "1:1,1:1"}, "repeated"),
])
def test_bad_sweeps_are_one_line(text, options, message):
    with pytest.raises(KieUsageError, match=message):
        expand(text, options)


@pytest.fixture()
def server(monkeypatch, tmp_path):
    monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "hist"))
    with MockKieServer(api_key=KEY, duration=0.3) as srv:
        yield srv


def _client(srv):
    return KieClient(KEY, base_url=srv.url, upload_url=srv.url)


def test_a_big_sweep_needs_yes_and_sends_nothing_before(server):
    with pytest.raises(KieUsageError, match=r"9 tasks, 18 images, ≈ 108 credits.*yes=True"):
        kie_jupyter.sweep("{a|b|c} fox", size=["1:1", "3:2", "2:3"], variants=2,
                          client=_client(server))
    assert not server.requests


def test_a_bad_combination_refuses_the_whole_sweep_before_sending(server):
    with pytest.raises(KieUsageError, match="size"):
        kie_jupyter.sweep("a fox", size=["1:1", "7:5"], client=_client(server))
    assert not server.requests


def test_a_sweep_runs_in_parallel_and_is_looked_up_by_label(server, tmp_path):
    sw = kie_jupyter.sweep("a {red|blue} fox, [mock:{ok|fail}]", size=["1:1", "3:2"],
                           client=_client(server))
    assert len(sw) == 8 and sw.done
    assert len(server.requests_to("generate")) == 8
    assert sw.counts() == {"total": 8, "done": 8, "succeeded": 4, "failed": 4, "stopped": 0}
    one = sw["blue", "ok", "3:2"]
    assert one.status is TaskStatus.SUCCESS and one.prompt == "a blue fox, [mock:ok]"
    assert sw["red", "fail", "1:1"].status is TaskStatus.FAILED
    sub = sw["blue"]
    assert len(sub) == 4 and all("blue" in t.prompt for t in sub)
    assert len(sw.images) == 4
    assert len([p for p in sw.save(tmp_path / "out") if p.suffix == ".png"]) == 4
    with pytest.raises(KeyError, match="green"):
        sw["green"]
    assert "Sweep prompt 1 (2) × prompt 2 (2) × size (2): 8 of 8 done" in repr(sw)


def test_the_sweep_keeps_within_the_account_rate(monkeypatch, tmp_path):
    # 24 tasks: the 21st may leave only when the first has left the 10 s window.
    monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "hist"))
    with MockKieServer(api_key=KEY, duration=0.1) as srv:
        sw = kie_jupyter.sweep("{a|b|c|d|e|f} {1|2|3|4}", yes=True, client=_client(srv),
                               wait=False)
        sw.wait(60)
        assert sw.counts()["succeeded"] == 24
        times = sorted(r.time for r in srv.requests_to("generate"))
        assert len(times) == 24
        assert all(times[i + 20] - times[i] >= 10.0 for i in range(len(times) - 20))


def test_stopping_a_sweep_stops_every_task(server):
    server.duration = 30
    sw = kie_jupyter.sweep("a {x|y|z}", client=_client(server), wait=False)
    sw.stop()
    sw.wait(10)
    assert all(t.status is TaskStatus.STOPPED for t in sw)


def test_a_repeated_choice_is_refused_not_paid_twice():
    with pytest.raises(KieUsageError, match="repeats"):
        expand("a {oil|oil} fox", {})


def test_labels_are_looked_up_dimension_by_dimension(server):
    sw = kie_jupyter.sweep("a {red|blue} car, {red|green} house", client=_client(server))
    task = sw["red", "red"]
    assert task.prompt == "a red car, red house"
    assert sw["blue", "red"].prompt == "a blue car, red house"
    assert len(sw["red"]) == 3  # every task with red in any dimension


def test_every_task_of_a_sweep_gets_the_images_of_a_generator(server):
    url = server.url + "/files/none.png"
    sw = kie_jupyter.sweep("{a|b} fox", images=(u for u in [url]), yes=True, client=_client(server),
                           wait=False)
    sw.stop()
    assert [t.params["files"] for t in sw] == [[url], [url]]


def test_double_braces_reach_the_api_as_single_ones(server):
    sw = kie_jupyter.sweep("a {{curly}} {oil|ink} fox", client=_client(server))
    assert sorted(r.json["prompt"] for r in server.requests_to("generate")) == [
        "a {curly} ink fox", "a {curly} oil fox"]
    assert sw["oil"].prompt == "a {curly} oil fox"


def test_labels_may_be_given_in_any_order(server):
    sw = kie_jupyter.sweep("a {oil|ink} fox", size=["1:1", "3:2"], client=_client(server))
    assert sw["3:2", "oil"] is sw["oil", "3:2"]
