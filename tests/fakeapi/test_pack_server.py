"""Replay packs on the fake server: reading a pack, and answering matching prompts with it.

Exercised with plain ``requests`` against the server, like ``test_mock_server.py``; packs are
built here with ``zipfile`` so the reader is tested apart from the exporter.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from kie_jupyter.fakeapi.demo import DemoServer, env_pack
from kie_jupyter.fakeapi.images import render_png
from kie_jupyter.fakeapi.packs import PackError, ReplayPack, load_pack, normalise_prompt
from kie_jupyter.testing import MockKieServer

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
TIMEOUT = 5


def png(colour: tuple[int, int, int], size: tuple[int, int] = (48, 32)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


FOX = png((200, 80, 20))
FOX_2 = png((180, 60, 10))
OWL = png((90, 90, 120), (32, 32))


def write_pack(path: Path, tasks: list[dict[str, Any]] | None = None,
               images: dict[str, bytes] | None = None, **manifest: Any) -> Path:
    if tasks is None:
        tasks = [
            {"task_id": "a" * 32, "prompt": "A red fox in the snow.", "model": "4o",
             "match_models": ["4o"], "size": "3:2", "images": ["images/fox_0.png",
                                                               "images/fox_1.png"]},
            {"task_id": "b" * 32, "prompt": "an owl at night", "model": "nano-banana-pro",
             "match_models": ["nano-banana-pro"], "size": "1:1",
             "images": ["images/owl_0.png"]},
        ]
    if images is None:
        images = {"images/fox_0.png": FOX, "images/fox_1.png": FOX_2,
                  "images/owl_0.png": OWL}
    body = {"format": "kiepack", "version": 1, "title": "test lesson", "tasks": tasks}
    body.update(manifest)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", json.dumps(body))
        for name, data in images.items():
            zf.writestr(name, data)
    return path


@pytest.fixture
def pack_file(tmp_path: Path) -> Path:
    return write_pack(tmp_path / "lesson.kiepack")


def generate(server: MockKieServer, prompt: str, size: str = "3:2", n: int = 1) -> list[str]:
    """Create a 4o task (the server's tasks end at once) and return its result URLs."""
    answer = requests.post(server.url + "/api/v1/gpt4o-image/generate", headers=AUTH,
                           json={"prompt": prompt, "size": size, "nVariants": n},
                           timeout=TIMEOUT).json()
    task_id = answer["data"]["taskId"]
    record = requests.get(server.url + "/api/v1/gpt4o-image/record-info", headers=AUTH,
                          params={"taskId": task_id}, timeout=TIMEOUT).json()["data"]
    return record["response"]["resultUrls"]


def fetch(url: str) -> bytes:
    answer = requests.get(url, timeout=TIMEOUT)
    assert answer.status_code == 200, url
    return answer.content


# -- the prompt rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), [
    ("A red fox in the snow.", "a red fox in the snow"),
    ("a red   fox\nin the snow", "A RED FOX IN THE SNOW!"),
    ("  a red fox…  ", "a red fox"),
    ("Straße", "STRASSE"),
])
def test_prompts_match_after_normalising(a, b):
    assert normalise_prompt(a) == normalise_prompt(b)


def test_words_still_count():
    assert normalise_prompt("a red fox") != normalise_prompt("a red fox cub")
    assert normalise_prompt("a red, fox") != normalise_prompt("a red fox")  # inside: kept


# -- reading a pack ----------------------------------------------------------------------------


def test_a_pack_loads_with_its_tasks_and_images(pack_file):
    pack = load_pack(pack_file)
    assert isinstance(pack, ReplayPack)
    assert pack.name == "lesson.kiepack" and pack.title == "test lesson"
    assert [t.prompt for t in pack.tasks] == ["A red fox in the snow.", "an owl at night"]
    assert pack.image_count == 3
    assert pack.image("images/fox_0.png") == (FOX, "image/png")
    assert pack.match("a red FOX in the snow", "4o", "3:2") == ["images/fox_0.png",
                                                                 "images/fox_1.png"]
    assert pack.match("a red fox in the snow", "4o", "1:1") == []  # another size
    assert pack.match("a red fox in the snow", "nano-banana-pro", "3:2") == []  # another model


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p, "no such file"),
    (lambda p: (p.write_text("hello"), p)[1], "not a replay pack (not a zip file"),
    (lambda p: (zipfile.ZipFile(p, "w").close(), p)[1], "not a replay pack (no manifest.json"),
    (lambda p: write_pack(p, format="zip"), "is not a kiepack manifest"),
    (lambda p: write_pack(p, version=2), "format version 2, this kie-jupyter reads version 1; "
                                         "upgrade kie-jupyter"),
    (lambda p: write_pack(p, tasks=[]), "the replay pack holds no task"),
    (lambda p: write_pack(p, images={"images/fox_0.png": FOX}),
     "names images/fox_1.png, which is not in the zip"),
    (lambda p: write_pack(p, images={"images/fox_0.png": FOX, "images/fox_1.png": b"text",
                                     "images/owl_0.png": OWL}),
     "images/fox_1.png in the pack is not an image"),
    (lambda p: write_pack(p, tasks=[{"prompt": " ", "images": ["x.png"]}]), "has no prompt"),
])
def test_a_bad_pack_is_one_line_naming_the_file(tmp_path, make, message):
    path = make(tmp_path / "bad.kiepack")
    with pytest.raises(PackError) as info:
        load_pack(path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(str(tmp_path / "bad.kiepack") + ": ")
    assert message in text


# -- serving a pack ----------------------------------------------------------------------------


def test_matching_prompts_get_the_recorded_images(pack_file):
    with MockKieServer(api_key=KEY, duration=0, null_polls=0, pack=pack_file) as server:
        urls = generate(server, "a red fox   in the SNOW", n=2)
        assert all("/files/pack/" in u for u in urls)  # the file names say where they come from
        assert [fetch(u) for u in urls] == [FOX, FOX_2]


def test_more_variants_than_recorded_are_synthetic_and_labelled(pack_file):
    with MockKieServer(api_key=KEY, duration=0, null_polls=0, pack=pack_file) as server:
        urls = generate(server, "A red fox in the snow.", n=4)
        assert ["/files/pack/" in u for u in urls] == [True, True, False, False]
        synthetic = fetch(urls[2])
        plain = render_png("A red fox in the snow.", "3:2", 2)
        with Image.open(io.BytesIO(synthetic)) as im, Image.open(io.BytesIO(plain)) as ref:
            assert im.size == ref.size
            # The picture is the usual one except for the label across its foot.
            assert im.convert("RGB").crop((0, 0, im.width, im.height // 2)).tobytes() == \
                ref.convert("RGB").crop((0, 0, im.width, im.height // 2)).tobytes()
            assert im.convert("RGB").tobytes() != ref.convert("RGB").tobytes()


def test_other_prompts_sizes_and_models_are_synthetic(pack_file):
    with MockKieServer(api_key=KEY, duration=0, null_polls=0, pack=pack_file) as server:
        for prompt, size in (("a red fox in the rain", "3:2"), ("a red fox in the snow", "1:1")):
            (url,) = generate(server, prompt, size)
            assert "/files/results/" in url
            assert fetch(url) not in (FOX, FOX_2)
        # A Market model matches by its API model id and aspect ratio.
        body = {"model": "nano-banana-pro", "input": {"prompt": "An owl at night",
                                                      "aspect_ratio": "1:1"}}
        task_id = requests.post(server.url + "/api/v1/jobs/createTask", headers=AUTH,
                                json=body, timeout=TIMEOUT).json()["data"]["taskId"]
        assert server.tasks[task_id]["resultUrls"][0].endswith(f"pack/{task_id}_0.png")
        assert fetch(server.tasks[task_id]["resultUrls"][0]) == OWL
        body["model"] = "nano-banana-2"
        task_id = requests.post(server.url + "/api/v1/jobs/createTask", headers=AUTH,
                                json=body, timeout=TIMEOUT).json()["data"]["taskId"]
        assert "/files/results/" in server.tasks[task_id]["resultUrls"][0]


def test_a_recorded_image_is_served_only_once_its_task_is_done(pack_file):
    with MockKieServer(api_key=KEY, duration=3600, null_polls=0, pack=pack_file) as server:
        answer = requests.post(server.url + "/api/v1/gpt4o-image/generate", headers=AUTH,
                               json={"prompt": "a red fox in the snow", "size": "3:2"},
                               timeout=TIMEOUT).json()
        (url,) = server.tasks[answer["data"]["taskId"]]["resultUrls"]
        assert requests.get(url, timeout=TIMEOUT).status_code == 404


def test_without_a_pack_nothing_changes():
    with MockKieServer(api_key=KEY, duration=0, null_polls=0) as server:
        (url,) = generate(server, "A red fox in the snow.")
        assert fetch(url) == render_png("A red fox in the snow.", "3:2", 0)


def test_a_pack_can_be_loaded_and_dropped_while_running(pack_file):
    with MockKieServer(api_key=KEY, duration=0, null_polls=0) as server:
        server.load_pack(pack_file)
        (url,) = generate(server, "A red fox in the snow.")
        assert fetch(url) == FOX
        server.load_pack(None)
        (url,) = generate(server, "A red fox in the snow.")
        assert "/files/results/" in url


def test_an_edit_matches_only_an_edit_and_a_text_prompt_only_a_text_task(tmp_path):
    prompt = "Make it a watercolor painting"
    tasks = [
        {"task_id": "t" * 32, "prompt": prompt, "model": "4o", "match_models": ["4o"],
         "size": "1:1", "edit": False, "images": ["images/text.png"]},
        {"task_id": "e" * 32, "prompt": prompt, "model": "4o", "match_models": ["4o"],
         "size": "1:1", "edit": True, "images": ["images/edit.png"]},
        {"task_id": "n" * 32, "prompt": prompt, "model": "nano-banana-pro",
         "match_models": ["nano-banana-pro"], "size": "1:1", "edit": True,
         "images": ["images/nano.png"]},
        {"task_id": "k" * 32, "prompt": prompt, "model": "flux-kontext-pro",
         "match_models": ["flux-kontext-pro"], "size": "1:1", "edit": True,
         "images": ["images/kontext.png"]},
    ]
    path = write_pack(tmp_path / "edits.kiepack", tasks,
                      {"images/text.png": FOX, "images/edit.png": OWL,
                       "images/nano.png": FOX_2, "images/kontext.png": OWL})
    pack = load_pack(path)
    assert [t.edit for t in pack.tasks] == [False, True, True, True]
    assert pack.match(prompt, "4o", "1:1") == ["images/text.png"]
    assert pack.match(prompt, "4o", "1:1", edit=True) == ["images/edit.png"]
    photo = "https://example.org/my-own-photo.png"  # a student's picture
    with MockKieServer(api_key=KEY, duration=0, null_polls=0, pack=path) as server:
        def made(endpoint: str, body: dict[str, Any]) -> bytes:
            answer = requests.post(server.url + endpoint, headers=AUTH, json=body,
                                   timeout=TIMEOUT).json()
            return fetch(server.tasks[answer["data"]["taskId"]]["resultUrls"][0])

        four_o = "/api/v1/gpt4o-image/generate"
        assert made(four_o, {"prompt": prompt, "size": "1:1"}) == FOX
        assert made(four_o, {"prompt": prompt, "size": "1:1", "filesUrl": [photo]}) == OWL
        market = "/api/v1/jobs/createTask"
        text = {"prompt": prompt, "aspect_ratio": "1:1"}
        assert made(market, {"model": "nano-banana-pro", "input": {
            **text, "image_input": [photo]}}) == FOX_2
        assert made(market, {"model": "nano-banana-pro", "input": text}) not in (FOX, FOX_2,
                                                                                 OWL)
        kontext = "/api/v1/flux/kontext/generate"
        assert made(kontext, {"prompt": prompt, "aspectRatio": "1:1",
                              "inputImage": photo}) == OWL
        assert made(kontext, {"prompt": prompt, "aspectRatio": "1:1"}) not in (FOX, FOX_2, OWL)


def test_a_pack_without_edit_marks_holds_text_to_image_tasks(pack_file):
    # Packs written before `edit` was recorded: every task is taken as text-to-image.
    pack = load_pack(pack_file)
    assert not any(t.edit for t in pack.tasks)
    assert pack.match("A red fox in the snow.", "4o", "3:2", edit=True) == []
    with MockKieServer(api_key=KEY, duration=0, null_polls=0, pack=pack_file) as server:
        answer = requests.post(server.url + "/api/v1/gpt4o-image/generate", headers=AUTH,
                               json={"prompt": "A red fox in the snow.", "size": "3:2",
                                     "filesUrl": ["https://example.org/me.png"]},
                               timeout=TIMEOUT).json()
        (url,) = server.tasks[answer["data"]["taskId"]]["resultUrls"]
        assert "/files/results/" in url


def test_an_edit_mark_that_is_not_true_or_false_is_refused(tmp_path):
    path = write_pack(tmp_path / "bad.kiepack", [
        {"prompt": "a fox", "images": ["images/fox_0.png"], "edit": "yes"}],
        {"images/fox_0.png": FOX})
    with pytest.raises(PackError, match=r"task 1 of the manifest: edit must be true or false$"):
        load_pack(path)


# -- demo mode's server ------------------------------------------------------------------------


def test_demo_server_reads_the_pack_from_the_environment(pack_file, monkeypatch):
    monkeypatch.setenv("KIE_DEMO_PACK", str(pack_file))
    demo = DemoServer()
    try:
        demo.start()
        assert demo.pack is not None and demo.pack.name == "lesson.kiepack"
    finally:
        demo.stop()
    assert demo.pack is None


def test_a_bad_pack_in_the_environment_still_starts_demo_mode(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("KIE_DEMO_PACK", str(tmp_path / "gone.kiepack"))
    with pytest.raises(PackError, match=r"^KIE_DEMO_PACK=.*gone.kiepack: no such file$"):
        env_pack()
    demo = DemoServer()
    try:
        with caplog.at_level("WARNING", logger="kie_jupyter"):
            demo.start()  # %load_ext with KIE_DEMO=1 must not fail for it
        assert demo.running and demo.pack is None
        assert "gone.kiepack: no such file; demo mode serves synthetic images only" in caplog.text
    finally:
        demo.stop()
