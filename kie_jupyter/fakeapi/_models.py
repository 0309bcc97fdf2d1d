"""What the fake server accepts per model: its own table (it may not import the client's).

One entry per Market model id and one for Flux Kontext, written from the same doc pages as
the client's registry (``docs/market-models.md``); ``tests/api/test_registry.py`` checks that
the two agree. Validation answers the live API's way: a 422 naming the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

__all__ = ["MarketModel", "MARKET_MODELS", "KONTEXT_MODELS", "KONTEXT_RATIOS",
           "KONTEXT_FORMATS", "validate_market", "validate_kontext", "QWEN_SIZES"]


@dataclass(frozen=True)
class MarketModel:
    """One Market model id: enum fields (``None``: any value), required fields, images."""

    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    required: tuple[str, ...] = ("prompt",)
    image_field: str | None = None
    min_images: int = 0
    max_images: int = 0
    image_list: bool = True
    prompt_max: int | None = None
    prompt_min: int = 1
    #: The ratio drawn when the body gives none (or ``auto``).
    default_ratio: str = "1:1"
    #: Every documented input field and its JSON type; any other field is refused (so a
    #: misspelt field in the client's registry fails a test). Empty: not checked.
    types: dict[str, str] = field(default_factory=dict)
    #: False for a tool: its page has no prompt, and one sent is refused.
    prompt: bool = True
    #: Documented ranges of numbers and longest texts.
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    lengths: dict[str, int] = field(default_factory=dict)
    #: Each input image's largest size in bytes (checked on files uploaded here).
    max_bytes: int | None = None


def _e(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _types(strings: str, **others: str) -> dict[str, str]:
    """Documented fields: the names in ``strings`` are text, ``others`` say their type."""
    return {**dict.fromkeys(strings.split(), "string"), **others}


_MB = 2**20
_GPT = {"aspect_ratio": _e("1:1 2:3 3:2"), "quality": _e("medium high")}
_GPT_TYPES = _types("prompt aspect_ratio quality")
_QWEN_TYPES = _types("prompt image_size output_format acceleration negative_prompt",
                     num_inference_steps="number", guidance_scale="number", seed="integer",
                     enable_safety_checker="boolean")
_QWEN_RANGES: dict[str, tuple[float | None, float | None]] = {
    "num_inference_steps": (2, 250), "guidance_scale": (0, 20)}
_NB = "1:1 2:3 3:2 3:4 4:3 4:5 5:4 9:16 16:9 21:9"
_SEEDREAM = {"aspect_ratio": _e("1:1 4:3 3:4 16:9 9:16 2:3 3:2 21:9"),
             "quality": _e("basic high")}
#: Qwen's ``image_size`` names and the ratio each is drawn at.
QWEN_SIZES = {"square": "1:1", "square_hd": "1:1", "portrait_4_3": "3:4",
              "portrait_16_9": "9:16", "landscape_4_3": "4:3", "landscape_16_9": "16:9"}

_KNOWN: dict[str, MarketModel] = {
    "gpt-image/1.5-text-to-image": MarketModel(
        _GPT, required=("prompt", "aspect_ratio", "quality"), types=_GPT_TYPES),
    "gpt-image/1.5-image-to-image": MarketModel(
        _GPT, required=("prompt", "aspect_ratio", "quality", "input_urls"),
        image_field="input_urls", min_images=1, max_images=16, default_ratio="3:2",
        types={**_GPT_TYPES, "input_urls": "array"}, max_bytes=10 * _MB),
    "nano-banana-2": MarketModel(
        {"aspect_ratio": _e(f"{_NB} 1:4 4:1 1:8 8:1 auto"), "resolution": _e("1K 2K 4K"),
         "output_format": _e("png jpg")},
        image_field="image_input", max_images=14, prompt_max=20000, max_bytes=30 * _MB,
        types=_types("prompt aspect_ratio resolution output_format", image_input="array",
                     google_search="boolean")),
    "nano-banana-2-lite": MarketModel(
        {"aspect_ratio": _e(f"{_NB} 1:4 1:8 4:1 8:1 auto")},
        image_field="image_urls", max_images=10, prompt_max=20000,
        types=_types("prompt aspect_ratio", image_urls="array")),
    "nano-banana-pro": MarketModel(
        {"aspect_ratio": _e(f"{_NB} auto"), "resolution": _e("1K 2K 4K"),
         "output_format": _e("png jpg")},
        image_field="image_input", max_images=8, prompt_max=10000, max_bytes=30 * _MB,
        types=_types("prompt aspect_ratio resolution output_format", image_input="array")),
    "seedream/4.5-text-to-image": MarketModel(
        _SEEDREAM, required=("prompt", "aspect_ratio", "quality"), prompt_max=3000,
        types=_types("prompt aspect_ratio quality")),
    "seedream/4.5-edit": MarketModel(
        _SEEDREAM, required=("prompt", "aspect_ratio", "quality", "image_urls"),
        image_field="image_urls", min_images=1, max_images=14, prompt_max=3000,
        types=_types("prompt aspect_ratio quality", image_urls="array"), max_bytes=10 * _MB),
    "qwen/text-to-image": MarketModel(
        {"image_size": tuple(QWEN_SIZES), "output_format": _e("png jpeg"),
         "acceleration": _e("none regular high")}, prompt_max=5000,
        types=_QWEN_TYPES, ranges=_QWEN_RANGES, lengths={"negative_prompt": 500}),
    "qwen/image-edit": MarketModel(
        {"image_size": tuple(QWEN_SIZES), "output_format": _e("jpeg png"),
         "acceleration": _e("none regular high"), "num_images": _e("1 2 3 4")},
        required=("prompt", "image_url"), image_field="image_url", min_images=1,
        max_images=1, image_list=False, prompt_max=2000, default_ratio="4:3",
        types={**_QWEN_TYPES, "image_url": "string", "sync_mode": "boolean",
               "num_images": "string"},
        ranges={**_QWEN_RANGES, "num_inference_steps": (2, 49)},
        lengths={"negative_prompt": 500}, max_bytes=10 * _MB),
    "flux-2/pro-text-to-image": MarketModel(
        {"aspect_ratio": _e("1:1 4:3 3:4 16:9 9:16 3:2 2:3"), "resolution": _e("1K 2K")},
        required=("prompt", "aspect_ratio", "resolution"), prompt_max=5000, prompt_min=3,
        types={"prompt": "string", "aspect_ratio": "string", "resolution": "string",
               "nsfw_checker": "boolean"}),
}

def _read_pages() -> dict[str, MarketModel]:
    """The models whose pages were transcribed field by field (``market_pages.json``: each
    with its doc page, the verbatim export it was read from and the date)."""
    text = resources.files(__package__).joinpath("market_pages.json").read_text("utf-8")
    out = {}
    for page in json.loads(text)["pages"]:
        ranges = {k: (v[0], v[1]) for k, v in page.get("ranges", {}).items()}
        out[page["model"]] = MarketModel(
            enums={k: tuple(v) for k, v in page.get("enums", {}).items()},
            required=tuple(page.get("required", ())), image_field=page.get("image_field"),
            min_images=page.get("min_images", 0), max_images=page.get("max_images", 0),
            image_list=page.get("image_list", True), prompt_max=page.get("prompt_max"),
            prompt_min=page.get("prompt_min", 1), default_ratio=page.get("default_ratio", "1:1"),
            types=dict(page["types"]), prompt=page.get("prompt", True), ranges=ranges,
            lengths=dict(page.get("lengths", {})), max_bytes=page.get("max_bytes"))
    return out


MARKET_MODELS: dict[str, MarketModel] = {**_KNOWN, **_read_pages()}

KONTEXT_MODELS = ("flux-kontext-pro", "flux-kontext-max")
KONTEXT_RATIOS = _e("21:9 16:9 4:3 1:1 3:4 9:16")
KONTEXT_FORMATS = _e("jpeg png")


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def validate_market(body: Any) -> str | None:
    """The 422 message for a createTask body (naming the field), or None."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    model_id = body.get("model")
    if not isinstance(model_id, str) or not model_id:
        return "model is required"
    model = MARKET_MODELS.get(model_id)
    if model is None:
        return f"model {model_id!r} is not supported"
    fields = body.get("input")
    if not isinstance(fields, dict):
        return "input is required"
    for name in model.required:
        if fields.get(name) in (None, "", []):
            return f"input.{name} is required"
    if not model.prompt:
        if "prompt" in fields:
            return f"input.prompt is not a field of {model_id} (it takes no prompt)"
    else:
        prompt = fields.get("prompt", "")
        if not isinstance(prompt, str) or len(prompt.strip()) < model.prompt_min:
            return "input.prompt must be a non-empty string"
        if model.prompt_max is not None and len(prompt) > model.prompt_max:
            return f"input.prompt exceeds {model.prompt_max} characters"
    problem = _validate_types(model, model_id, fields)
    if problem:
        return problem
    for name, allowed in model.enums.items():
        value = fields.get(name)
        if value is not None and value not in allowed:
            return f"input.{name} must be one of {', '.join(allowed)} (got {value!r})"
    if (fields.get("aspect_ratio") in ("1:4", "4:1", "1:8", "8:1")
            and fields.get("resolution") not in (None, "1K") and model_id == "nano-banana-2"):
        return "input.aspect_ratio 1:4, 4:1, 1:8 and 8:1 are supported at 1K only"
    return _validate_images(model, fields)


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "array": (list,)}


def _validate_types(model: MarketModel, model_id: str, fields: dict[str, Any]) -> str | None:
    """Every field documented, of its documented type, in its range and length."""
    if not model.types:
        return None
    for name, value in fields.items():
        kind = model.types.get(name)
        if kind is None:
            return f"input.{name} is not a field of {model_id}"
        wanted = _JSON_TYPES[kind]
        if not isinstance(value, wanted) or (isinstance(value, bool) and kind != "boolean"):
            return f"input.{name} must be a {kind} (got {type(value).__name__})"
        low, high = model.ranges.get(name, (None, None))
        if isinstance(value, (int, float)) and (
                (low is not None and value < low) or (high is not None and value > high)):
            return f"input.{name} must be between {low} and {high}"
        longest = model.lengths.get(name)
        if longest is not None and isinstance(value, str) and len(value) > longest:
            return f"input.{name} exceeds {longest} characters"
    return None


def _validate_images(model: MarketModel, fields: dict[str, Any]) -> str | None:
    if model.image_field is None:
        return None
    name = model.image_field
    value = fields.get(name)
    if value is None:
        urls: list[Any] = []
    elif model.image_list:
        if not isinstance(value, list):
            return f"input.{name} must be a list of URLs"
        urls = value
    else:
        if not isinstance(value, str):
            return f"input.{name} must be a URL"
        urls = [value]
    if not all(_is_url(u) for u in urls):
        return f"input.{name} must hold http(s) URLs"
    if len(urls) < model.min_images:
        return f"input.{name} needs at least {model.min_images} image(s)"
    if len(urls) > model.max_images:
        return f"input.{name} accepts at most {model.max_images} images (got {len(urls)})"
    return None


def validate_kontext(body: Any) -> tuple[int, str] | None:
    """``(code, message)`` for a bad Flux Kontext generate body, or None."""
    if not isinstance(body, dict):
        return 422, "the body must be a JSON object"
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return 422, "prompt is required"
    model = body.get("model")
    if model is not None and model not in KONTEXT_MODELS:
        return 422, f"model must be one of {', '.join(KONTEXT_MODELS)} (got {model!r})"
    ratio = body.get("aspectRatio")
    if ratio is not None and ratio not in KONTEXT_RATIOS:
        return 422, f"aspectRatio must be one of {', '.join(KONTEXT_RATIOS)} (got {ratio!r})"
    fmt = body.get("outputFormat")
    if fmt is not None and fmt not in KONTEXT_FORMATS:
        return 422, f"outputFormat must be one of {', '.join(KONTEXT_FORMATS)} (got {fmt!r})"
    image = body.get("inputImage")
    if image is not None and not _is_url(image):
        return 422, "inputImage must be a URL"
    tolerance = body.get("safetyTolerance")
    if tolerance is not None:
        top = 2 if image else 6
        if isinstance(tolerance, bool) or not isinstance(tolerance, int) or not (
                0 <= tolerance <= top):
            # The page says an out-of-range value is answered with code 500.
            return 500, f"safetyTolerance must be 0-{top}"
    return None
