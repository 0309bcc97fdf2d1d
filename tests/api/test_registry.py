"""The model registry: exact bodies per model, refusals before sending, the fake server agrees."""

from __future__ import annotations

from typing import Any

import pytest

from kie_jupyter.api.client import KieClient
from kie_jupyter.api.errors import KieUsageError
from kie_jupyter.api.fouro import FourOBackend
from kie_jupyter.api.kontext import KontextBackend, KontextRequest
from kie_jupyter.api.market import MarketBackend, MarketRequest
from kie_jupyter.api.models import GenerationRequest
from kie_jupyter.api.registry import (
    MODELS,
    backend_for,
    backend_for_task_id,
    build_request,
    describe,
    parse_param,
)
from kie_jupyter.fakeapi import _models as fake

A = "https://img.example/a.png"
B = "https://img.example/b.png"

# (model, options, exact body) — text-to-image, then edit, for every registered model.
BODIES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("gpt-image-1.5", {},
     {"model": "gpt-image/1.5-text-to-image",
      "input": {"prompt": "p", "aspect_ratio": "1:1", "quality": "medium"}}),
    ("gpt-image-1.5", {"images": [A, B], "quality": "high"},
     {"model": "gpt-image/1.5-image-to-image",
      "input": {"prompt": "p", "aspect_ratio": "3:2", "quality": "high",
                "input_urls": [A, B]}}),
    ("nano-banana-2", {"size": "16:9", "resolution": "2K", "output_format": "png"},
     {"model": "nano-banana-2",
      "input": {"prompt": "p", "aspect_ratio": "16:9", "resolution": "2K",
                "output_format": "png"}}),
    ("nano-banana-2", {"images": [A]},
     {"model": "nano-banana-2", "input": {"prompt": "p", "image_input": [A]}}),
    ("nano-banana-2-lite", {},
     {"model": "nano-banana-2-lite", "input": {"prompt": "p", "aspect_ratio": "auto"}}),
    ("nano-banana-2-lite", {"images": [A], "size": "4:5"},
     {"model": "nano-banana-2-lite",
      "input": {"prompt": "p", "aspect_ratio": "4:5", "image_urls": [A]}}),
    ("nano-banana-pro", {"size": "21:9", "resolution": "4K"},
     {"model": "nano-banana-pro",
      "input": {"prompt": "p", "aspect_ratio": "21:9", "resolution": "4K"}}),
    ("nano-banana-pro", {"images": [A, B], "output_format": "jpeg"},
     {"model": "nano-banana-pro",
      "input": {"prompt": "p", "output_format": "jpg", "image_input": [A, B]}}),
    ("seedream-4.5", {"size": "9:16"},
     {"model": "seedream/4.5-text-to-image",
      "input": {"prompt": "p", "aspect_ratio": "9:16", "quality": "basic"}}),
    ("seedream-4.5", {"images": [A], "quality": "high"},
     {"model": "seedream/4.5-edit",
      "input": {"prompt": "p", "aspect_ratio": "1:1", "quality": "high", "image_urls": [A]}}),
    ("qwen-image", {"size": "16:9", "seed": 7, "params": {"guidance_scale": "3.5"}},
     {"model": "qwen/text-to-image",
      "input": {"prompt": "p", "image_size": "landscape_16_9", "seed": 7,
                "guidance_scale": 3.5}}),
    ("qwen-image", {"images": [A], "output_format": "jpg"},
     {"model": "qwen/image-edit",
      "input": {"prompt": "p", "output_format": "jpeg", "image_url": A}}),
    ("flux-2-pro", {"prompt": "a fox"},
     {"model": "flux-2/pro-text-to-image",
      "input": {"prompt": "a fox", "aspect_ratio": "1:1", "resolution": "1K"}}),
    ("flux-kontext-pro", {"size": "16:9", "output_format": "png"},
     {"prompt": "p", "model": "flux-kontext-pro", "aspectRatio": "16:9",
      "outputFormat": "png"}),
    ("flux-kontext-max", {"images": [A], "params": {"safetyTolerance": 1}},
     {"prompt": "p", "model": "flux-kontext-max", "safetyTolerance": 1, "inputImage": A}),
]


@pytest.mark.parametrize(("model", "options", "body"), BODIES,
                         ids=[f"{m}-{'edit' if o.get('images') else 't2i'}"
                              for m, o, _ in BODIES])
def test_the_exact_body_per_model(model: str, options: dict[str, Any],
                                  body: dict[str, Any]) -> None:
    options = {"prompt": "p", **options}
    request = build_request(model, **options)
    assert request.to_body() == body
    # ...and the fake server, which has its own table, accepts it.
    if MODELS[model].family == "market":
        assert fake.validate_market(body) is None
    else:
        assert fake.validate_kontext(body) is None


def test_every_registered_model_has_a_body_test_and_a_doc_page() -> None:
    # The Market models each have their own in test_every_model (every mode, every option).
    tested = {m for m, _, _ in BODIES} | {"4o"} | {
        n for n, s in MODELS.items() if s.family == "market"}
    assert tested == set(MODELS)
    for spec in MODELS.values():
        assert spec.doc and all(not p.startswith("http") for p in spec.doc.split(", "))


def test_4o_builds_the_4o_request() -> None:
    request = build_request("4o", prompt="p", size="3:2", variants=2, images=[A],
                            params={"enhance": True})
    assert isinstance(request, GenerationRequest)
    assert request.to_body() == {"size": "3:2", "nVariants": 2, "prompt": "p",
                                 "filesUrl": [A], "isEnhance": True}


@pytest.mark.parametrize(("model", "options", "message"), [
    ("gpt-image-1.5", {"size": "16:9"},
     "size: '16:9' is not allowed for gpt-image-1.5; use one of 1:1, 2:3, 3:2"),
    ("nano-banana-pro", {"resolution": "8K"},
     "resolution: '8K' is not allowed for nano-banana-pro; use one of 1K, 2K, 4K"),
    ("seedream-4.5", {"quality": "medium"},
     "quality: 'medium' is not allowed for seedream-4.5; use one of basic, high"),
    ("flux-kontext-pro", {"output_format": "webp"},
     "output_format: 'webp' is not allowed for flux-kontext-pro; use one of jpeg, png"),
    ("nano-banana-2", {"size": "8:1", "resolution": "4K"},
     "size: 8:1 works only at resolution 1K on nano-banana-2"),
    ("nano-banana-pro", {"images": [A] * 9},
     "images: 9 given; nano-banana-pro takes at most 8"),
    ("qwen-image", {"images": [A, B]}, "images: 2 given; qwen-image takes at most 1"),
    ("seedream-4.5", {"prompt": "x" * 3001},
     "prompt: 3001 characters; seedream-4.5 takes at most 3000"),
    ("qwen-image", {"prompt": "x" * 2001, "images": [A]},
     "prompt: 2001 characters; qwen-image takes at most 2000"),
    ("flux-2-pro", {"prompt": "ab"}, "prompt: flux-2-pro needs at least 3 characters"),
    ("gpt-image-1.5", {"prompt": "  "}, "prompt: gpt-image-1.5 needs a prompt"),
    ("gpt-image-1.5", {"mask": A}, "mask: gpt-image-1.5 takes no mask (only 4o does)"),
    ("gpt-image-1.5", {"images": ["not a url"]},
     "images: 'not a url' is not an http(s) URL with a host"),
    ("gpt-image-1.5", {"variants": 9},
     "variants: 9 is not allowed for gpt-image-1.5; use one of 1, 2, 3, 4"),
    ("4o", {"variants": 3}, "variants: 3 is not allowed for 4o; use one of 1, 2, 4"),
    ("nope", {}, "model: 'nope' is not a model; use one of 4o, gpt-image-1.5"),
])
def test_bad_values_are_refused_in_one_line_with_the_allowed_values(
        model: str, options: dict[str, Any], message: str) -> None:
    options.setdefault("prompt", "p")
    with pytest.raises(KieUsageError) as info:
        build_request(model, **options)
    text = str(info.value)
    assert text.startswith(message)
    assert "\n" not in text


@pytest.mark.parametrize(("model", "option"), [
    ("gpt-image-1.5", "resolution"), ("seedream-4.5", "output_format"),
    ("nano-banana-2-lite", "quality"), ("4o", "resolution")])
def test_an_option_the_model_lacks_names_its_options(model: str, option: str) -> None:
    with pytest.raises(KieUsageError, match=f"^{option}: {model} has no {option} option"):
        build_request(model, prompt="p", **{option: "x"})


def test_modes_without_images_or_without_text_are_refused() -> None:
    with pytest.raises(KieUsageError, match="seedream-3.0 takes no input images"):
        build_request("seedream-3.0", prompt="a fox", images=[A])
    with pytest.raises(KieUsageError, match="qwen-image-to-image needs at least one input"):
        build_request("qwen-image-to-image", prompt="a fox")


def test_params_pass_documented_fields_but_not_ones_the_registry_sets() -> None:
    request = build_request("nano-banana-2", prompt="p", params={"google_search": True})
    assert request.to_body()["input"]["google_search"] is True
    for key in ("aspect_ratio", "image_input", "prompt", "model"):
        with pytest.raises(KieUsageError, match=f"--param {key}: nano-banana-2 sets"):
            build_request("nano-banana-2", prompt="p", params={key: "x"})
    with pytest.raises(KieUsageError, match="--param tags: set is not JSON"):
        build_request("nano-banana-2", prompt="p", params={"tags": {1}})
    # The text as written: the model's documented field types it (see the --param tests).
    assert parse_param("seed=42") == ("seed", "42")
    assert parse_param("google_search=true") == ("google_search", "true")
    assert parse_param("negative_prompt=blurry, dark") == ("negative_prompt", "blurry, dark")
    with pytest.raises(KieUsageError):
        parse_param("no equals sign")


def test_market_request_is_what_the_runner_needs() -> None:
    pending = "https://upload.pending/local-file"
    request = build_request("seedream-4.5", prompt="p", images=[pending, A], size="4:3",
                            callback_url="https://me.example/cb")
    assert isinstance(request, MarketRequest) and request.mask is None
    uploaded = request.with_files(("https://up.example/1.png", A), None)
    assert uploaded.to_body() == {
        "model": "seedream/4.5-edit", "callBackUrl": "https://me.example/cb",
        "input": {"prompt": "p", "aspect_ratio": "4:3", "quality": "basic",
                  "image_urls": ["https://up.example/1.png", A]}}
    assert uploaded.to_dict() == {
        "model": "seedream-4.5", "api_model": "seedream/4.5-edit", "prompt": "p",
        "size": "4:3", "quality": "basic", "files": ["https://up.example/1.png", A],
        "mask": None, "callback_url": "https://me.example/cb"}
    with pytest.raises(KieUsageError, match="takes no mask"):
        request.with_files((A, A), A)
    kontext = build_request("flux-kontext-pro", prompt="p", images=[pending])
    assert isinstance(kontext, KontextRequest)
    assert kontext.with_files((B,), None).to_body()["inputImage"] == B


def test_backends_by_model_and_by_task_id() -> None:
    client = KieClient("sk-registry-test", base_url="http://127.0.0.1:9")
    assert isinstance(backend_for("4o", client), FourOBackend)
    market = backend_for("qwen-image", client)
    assert isinstance(market, MarketBackend) and market.family == "market"
    assert isinstance(backend_for("flux-kontext-max", client), KontextBackend)
    assert isinstance(backend_for_task_id("task_gpt-image_1765968190655", client),
                      MarketBackend)
    assert isinstance(backend_for_task_id("3f2a" * 8, client), FourOBackend)
    # History's model wins: a Kontext id looks like a 4o id, a new Market id may be bare hex.
    assert isinstance(backend_for_task_id("3f2a" * 8, client, "flux-kontext-pro"),
                      KontextBackend)
    assert isinstance(backend_for_task_id("3f2a" * 8, client, "nano-banana-pro"),
                      MarketBackend)
    assert isinstance(backend_for_task_id("task_x_1", client, "4o"), FourOBackend)


def test_describe_lists_each_model_s_options() -> None:
    line = describe(MODELS["nano-banana-pro"])
    assert line.startswith("nano-banana-pro (Nano Banana Pro): size 1:1/")
    assert "resolution 1K/2K/4K" in line and "images ≤ 8" in line


# -- the fake server's own table agrees with the registry --------------------------------------


def test_the_fake_server_table_agrees_with_the_registry() -> None:
    seen: set[str] = set()
    for spec in MODELS.values():
        if spec.family != "market":
            continue
        for mode in spec.modes():
            seen.add(mode.model_id)
            entry = fake.MARKET_MODELS[mode.model_id]
            # The pages read on 2026-12-05 list values (and fields) we do not offer as
            # options (Imagen's "auto", Ideogram's style…): ours are among the page's.
            hand = mode.model_id in fake._KNOWN
            for choice in mode.choices().values():
                if choice is None:
                    continue
                assert set(choice.values.values()) <= set(entry.enums[choice.field]), (
                    mode.model_id, choice.field)
                if hand:
                    assert set(entry.enums[choice.field]) <= set(choice.values.values()), (
                        mode.model_id, choice.field)
                if choice.field in entry.required:
                    assert choice.default is not None, (mode.model_id, choice.field)
            enum_fields = {c.field for c in mode.choices().values() if c}
            assert enum_fields <= set(entry.enums), mode.model_id
            for name, kind in mode.fields.items():  # --param types agree with the page
                assert entry.types.get(name) == kind.type, (mode.model_id, name)
                if kind.enum is not None:
                    assert set(kind.enum) == set(entry.enums[name]), (mode.model_id, name)
            assert entry.image_field == mode.image_field, mode.model_id
            assert entry.max_images == mode.max_images, mode.model_id
            assert entry.image_list == mode.image_list, mode.model_id
            assert entry.prompt_max == mode.prompt_max, mode.model_id
            assert entry.prompt_min == mode.prompt_min, mode.model_id
    assert seen == set(fake.MARKET_MODELS)
    kontext = [s for s in MODELS.values() if s.family == "kontext"]
    assert {s.text.model_id for s in kontext if s.text} == set(fake.KONTEXT_MODELS)
    assert set(kontext[0].aspect_ratios) == set(fake.KONTEXT_RATIOS)
    assert set(kontext[0].output_formats) == set(fake.KONTEXT_FORMATS)


# -- the front ends' use of the registry (Python API, %kie4o models, status/resume) ----------


def test_generate_and_resume_with_a_market_model(tmp_path, monkeypatch):
    import kie_jupyter
    from kie_jupyter import KieClient, TaskStatus
    from kie_jupyter.engine.history import HistoryStore
    from kie_jupyter.testing import MockKieServer

    monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "h"))
    with MockKieServer(api_key="sk-reg-0123456789", duration=0.3) as srv:
        client = KieClient("sk-reg-0123456789", base_url=srv.url, upload_url=srv.url)
        task = kie_jupyter.generate("a lighthouse", model="nano-banana-pro", size="16:9",
                                    resolution="2K", client=client)
        assert task.status is TaskStatus.SUCCESS, task.error
        body = srv.requests_to("createTask")[0].json
        assert body["model"] == "nano-banana-pro"
        assert body["input"]["aspect_ratio"] == "16:9" and body["input"]["resolution"] == "2K"
        assert task.model == "nano-banana-pro"
        assert HistoryStore(tmp_path / "h").get(task.task_id).model == "nano-banana-pro"
        again = kie_jupyter.resume(task.task_id, client=client)
        assert again.status is TaskStatus.SUCCESS and len(again.images) == 1
        with pytest.raises(kie_jupyter.KieUsageError, match="16:9"):
            kie_jupyter.generate("x", model="gpt-image-1.5", size="16:9", client=client)
        with pytest.raises(kie_jupyter.KieUsageError, match="sweep"):
            kie_jupyter.generate("x", model="gpt-image-1.5", variants=2, client=client)
        with pytest.raises(kie_jupyter.KieUsageError, match="4o"):
            kie_jupyter.generate("x", quality="high", client=client)
        assert len(srv.requests_to("createTask")) == 1


def test_a_sweep_across_models_with_variants_as_tasks(tmp_path, monkeypatch):
    import kie_jupyter
    from kie_jupyter import KieClient
    from kie_jupyter.testing import MockKieServer

    monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "h"))
    with MockKieServer(api_key="sk-reg-0123456789", duration=0.3) as srv:
        client = KieClient("sk-reg-0123456789", base_url=srv.url, upload_url=srv.url)
        sw = kie_jupyter.sweep("a red fox", model=["4o", "gpt-image-1.5", "seedream-4.5"],
                               client=client)
        assert [a.name for a in sw.axes] == ["model"]
        assert sw.counts()["succeeded"] == 3
        assert sw["gpt-image-1.5"].model == "gpt-image-1.5"
        two = kie_jupyter.sweep("a cat", model="gpt-image-1.5", variants=2, client=client)
        assert [a.name for a in two.axes] == ["variant"] and len(two) == 2
