"""Every registered model, against the fake server that knows each model's page as KIE
documents it (required fields, allowed values, string vs number, no prompt for the tools):
a text-to-image (or tool) request and, where the model edits, an edit — each body checked
field by field against the registry's entry, then accepted by the fake server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kie_jupyter.api.client import KieClient
from kie_jupyter.api.errors import KieUsageError
from kie_jupyter.api.market import MarketBackend, MarketRequest
from kie_jupyter.api.ratelimit import SlidingWindowLimiter
from kie_jupyter.api.registry import MARKET_NAMES, MODELS, Mode, ModelSpec, build_request
from kie_jupyter.api.retry import RetryPolicy
from kie_jupyter.fakeapi._models import MARKET_MODELS
from kie_jupyter.testing import MockKieServer

KEY = "sk-every-model"
IMAGE = "https://example.com/source.png"
MARKET = [spec for spec in MODELS.values() if spec.family == "market"]


@pytest.fixture(scope="module")
def kie() -> Iterator[MockKieServer]:
    with MockKieServer(api_key=KEY, duration=0.1, null_polls=0, rate_limit=None) as server:
        yield server


@pytest.fixture(scope="module")
def backend(kie: MockKieServer) -> Iterator[MarketBackend]:
    client = KieClient(KEY, base_url=kie.url, upload_url=kie.url,
                       retry=RetryPolicy(max_retries=0), read_timeout=5.0,
                       limiter=SlidingWindowLimiter(10_000, 10.0))
    yield MarketBackend(client, names=MARKET_NAMES)
    client.close()


def _first(choice: Any) -> tuple[str, str] | tuple[None, None]:
    """One of our values of a choice that is not its default (so it is surely sent)."""
    if choice is None:
        return None, None
    ours = [v for v in choice.values if v != choice.default] or list(choice.values)
    return ours[0], choice.values[ours[0]]


def _request(spec: ModelSpec, mode: Mode, **extra: Any) -> tuple[MarketRequest, dict[str, Any]]:
    """A request using every option the mode has, and the API fields it must send."""
    given: dict[str, Any] = {}
    expected: dict[str, Any] = {}
    for option, choice in mode.choices().items():
        ours, api = _first(choice)
        if ours is not None and choice is not None:
            given[option] = ours
            expected[choice.field] = api
    images = [IMAGE] if mode is spec.edit and mode is not spec.text else []
    if mode.image_field and images:
        expected[mode.image_field] = images if mode.image_list else images[0]
    prompt = "a red fox in the snow" if mode.prompt else ""
    if mode.prompt:
        expected["prompt"] = prompt
    expected.update(mode.defaults)
    request = build_request(spec.name, prompt=prompt, images=images, **given, **extra)
    assert isinstance(request, MarketRequest)
    return request, expected


def _modes(spec: ModelSpec) -> list[Mode]:
    return [m for m in (spec.text, spec.edit) if m is not None and
            (m is not spec.edit or spec.edit is not spec.text)]


@pytest.mark.parametrize("spec", MARKET, ids=lambda s: s.name)
def test_each_mode_sends_exactly_its_documented_fields(
        spec: ModelSpec, backend: MarketBackend, kie: MockKieServer) -> None:
    for mode in _modes(spec):
        request, expected = _request(spec, mode)
        body = request.to_body()
        assert body["model"] == mode.model_id
        assert body["input"] == expected, (spec.name, mode.model_id)
        # The fake server knows the page: every field documented, of its type.
        page = MARKET_MODELS[mode.model_id]
        assert set(body["input"]) <= set(page.types), set(body["input"]) - set(page.types)
        assert ("prompt" in body["input"]) is page.prompt
        task_id = backend.submit(request)
        assert task_id.startswith("task_")
        assert kie.requests_to("createTask")[-1].json == body


@pytest.mark.parametrize("spec", [s for s in MARKET if s.takes_seed or s.takes_negative],
                         ids=lambda s: s.name)
def test_seed_and_negative_go_to_each_models_own_field_as_its_page_types_them(
        spec: ModelSpec, backend: MarketBackend) -> None:
    for mode in _modes(spec):
        extra: dict[str, Any] = {}
        if mode.seed_field:
            extra["seed"] = "42"
        if mode.negative_field:
            extra["negative"] = "blurry, text"
        if not extra:
            continue
        request, expected = _request(spec, mode, **extra)
        body = request.to_body()
        if mode.seed_field:
            kind = MARKET_MODELS[mode.model_id].types[mode.seed_field]
            assert body["input"][mode.seed_field] == ("42" if kind == "string" else 42)
            assert request.to_dict()["seed"] == body["input"][mode.seed_field]
        if mode.negative_field:
            assert body["input"][mode.negative_field] == "blurry, text"
        backend.submit(request)  # the fake server takes it


def test_a_model_without_a_seed_or_negative_prompt_refuses_it_naming_those_that_take_it():
    with pytest.raises(KieUsageError, match=r"^seed: seedream-4.5 takes no seed; these do: "
                                            r".*qwen-image.*imagen-4"):
        build_request("seedream-4.5", prompt="x", seed=3)
    with pytest.raises(KieUsageError, match=r"^negative: 4o takes no negative prompt"):
        build_request("4o", prompt="x", negative="blur")
    with pytest.raises(KieUsageError, match=r"^seed: 'x1' is not a number"):
        build_request("qwen-image", prompt="x", seed="x1")


@pytest.mark.parametrize("name", [s.name for s in MARKET if s.kind == "tool"])
def test_a_tool_takes_an_image_and_no_prompt(name: str) -> None:
    with pytest.raises(KieUsageError, match=f"^prompt: {name} takes no prompt"):
        build_request(name, prompt="make it sharper", images=[IMAGE])
    with pytest.raises(KieUsageError, match=f"^images: {name} needs at least one input"):
        build_request(name, prompt="")
    assert "prompt" not in build_request(name, images=[IMAGE]).to_body()["input"]


def test_every_registered_market_id_has_a_page_in_the_fake_server():
    ids = {mid for spec in MARKET for mid in spec.model_ids}
    assert ids <= set(MARKET_MODELS), ids - set(MARKET_MODELS)


def test_the_fake_server_refuses_what_a_page_does_not_document(kie: MockKieServer) -> None:
    import requests

    def create(body: dict[str, Any]) -> dict[str, Any]:
        return requests.post(kie.url + "/api/v1/jobs/createTask", json=body, timeout=5,
                             headers={"Authorization": f"Bearer {KEY}"}).json()

    number = create({"model": "topaz/image-upscale",
                     "input": {"image_url": IMAGE, "upscale_factor": 2}})
    assert number["code"] == 422 and "upscale_factor must be a string" in number["msg"]
    prompt = create({"model": "recraft/remove-background",
                     "input": {"prompt": "x", "image": IMAGE}})
    assert prompt["code"] == 422 and "takes no prompt" in prompt["msg"]
    typo = create({"model": "qwen/text-to-image", "input": {"prompt": "x", "seeds": 3}})
    assert typo["code"] == 422 and "input.seeds is not a field" in typo["msg"]


def test_an_id_with_no_history_is_looked_up_family_by_family(
        kie: MockKieServer, backend: MarketBackend) -> None:
    # KIE's own examples break the id's shape both ways: a 4o quickstart id starts with
    # task_, a Market page's is bare hex. Without a model, each API is asked (free).
    from kie_jupyter.api.errors import TaskNotFoundError
    from kie_jupyter.api.fouro import FourOBackend
    from kie_jupyter.api.models import GenerationRequest
    from kie_jupyter.api.registry import find_task_backend

    client = backend.client
    kie.script_next_task(task_id="task_4o_abc123")
    fouro = FourOBackend(client).submit(GenerationRequest(prompt="a fox"))
    kie.script_next_task(task_id="b31f0a77d507" * 2)
    market = backend.submit(build_request("seedream-4.5", prompt="a fox"))
    assert (fouro, market) == ("task_4o_abc123", "b31f0a77d507" * 2)
    found, said = find_task_backend(fouro, client)
    assert isinstance(found, FourOBackend)
    assert said == ("task task_4o_abc123: found by the 4o Image API "
                    "(the Market API did not know it)")
    found, said = find_task_backend(market, client)
    assert isinstance(found, MarketBackend) and said is not None
    assert "found by the Market API (the 4o Image API did not know it)" in said
    with pytest.raises(TaskNotFoundError, match="asked the 4o Image API, the Market API, "
                                                "the Flux Kontext API"):
        find_task_backend("0" * 32, client)
    # The model recorded in history decides without asking.
    before = len(kie.requests)
    found, said = find_task_backend(market, client, model="seedream-4.5")
    assert isinstance(found, MarketBackend) and said is None and len(kie.requests) == before


@pytest.mark.parametrize("fault", [{"code": 500}, {"code": 429}, {"drop": True}],
                         ids=["server error", "rate limited", "dropped"])
def test_the_lookup_asks_the_next_api_when_one_does_not_answer(
        kie: MockKieServer, backend: MarketBackend, fault: dict[str, Any]) -> None:
    from kie_jupyter.api.registry import resume_backend

    kie.script_next_task(task_id="c0ffee" * 5)
    market = backend.submit(build_request("seedream-4.5", prompt="a fox"))
    kie.add_fault("record-info", **fault)  # the 4o API, asked first, does not answer
    found, said = resume_backend(market, backend.client)
    assert isinstance(found, MarketBackend) and said is not None
    assert "found by the Market API (the 4o Image API (no answer) did not know it)" in said


def test_numbers_stay_exact_and_whole_numbers_stay_whole() -> None:
    big = build_request("qwen-image", prompt="x", seed="18446744073709551615").to_body()
    assert big["input"]["seed"] == 18446744073709551615  # a 64-bit seed, not via a float
    reframe = build_request("ideogram-reframe", images=[IMAGE], seed="7").to_body()
    assert reframe["input"]["seed"] == 7 and isinstance(reframe["input"]["seed"], int)
    steps = build_request("seedream-4.0", prompt="x", params={"max_images": "3"}).to_body()
    assert steps["input"]["max_images"] == 3
    kontext = build_request("flux-kontext-pro", prompt="x",
                            params={"safetyTolerance": "2", "promptUpsampling": "true"})
    assert kontext.to_body()["safetyTolerance"] == 2
    assert kontext.to_body()["promptUpsampling"] is True
    with pytest.raises(KieUsageError, match=r"^--param seed: qwen-image sets seed from its "
                                            r"own options; use --seed N"):
        build_request("qwen-image", prompt="x", params={"seed": "5"})
    with pytest.raises(KieUsageError, match="^negative: one line"):
        build_request("qwen-image", prompt="x", negative="a\nb")


@pytest.mark.parametrize("name", [s.name for s in MARKET if s.kind == "tool"])
def test_a_tool_makes_one_image_per_input(name: str) -> None:
    with pytest.raises(KieUsageError, match=f"^variants: 3 is not allowed for {name}"):
        build_request(name, images=[IMAGE], variants=3)


def test_the_downscale_hint_meets_every_limit() -> None:
    import io

    from PIL import Image

    from kie_jupyter.engine.inputs import InputImage, check_limits

    limits = MODELS["recraft-remove-background"].edit.limits  # type: ignore[union-attr]

    def image(w: int, h: int) -> InputImage:
        out = io.BytesIO()
        Image.new("L", (w, h)).save(out, "PNG")
        return InputImage(label="x.png", data=out.getvalue())

    with pytest.raises(KieUsageError, match=r"is 4096×4096; .*image.thumbnail\(\(4000, 4000\)\)"):
        check_limits([image(4096, 4096)], limits, "recraft-remove-background")
    with pytest.raises(KieUsageError, match="no downscale fits its sides; crop it first"):
        check_limits([image(5000, 100)], limits, "recraft-remove-background")
    check_limits([image(4000, 4000)], limits, "recraft-remove-background")  # fits
