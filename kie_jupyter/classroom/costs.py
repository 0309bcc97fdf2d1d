"""What a submit costs: a raw submit body → our model and parameters → an estimate in KIE
credits from the price table in use (:func:`kie_jupyter.api.prices.active_prices`).

The body is one the proxy has already checked (:func:`.endpoints.images_asked`): its model is
one the extension offers. Each API family names the priced fields its own way; they are read
back into our names (``size``, ``resolution``, ``quality``, ``variants``, ``files``) through
the registry's entry for the API model id, so a Qwen ``image_size`` or a Kontext
``aspectRatio`` counts as a ``size``. A field left out is the value the extension would send
for it (the entry's default), else "not given".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..api.errors import KieUsageError
from ..api.fouro import GENERATE_PATH
from ..api.market import CREATE_TASK_PATH
from ..api.prices import Cost, active_prices
from ..api.registry import MARKET_NAMES, MODELS, Choice, Mode, ModelSpec

__all__ = ["model_of", "params_of", "estimate_submit", "describe"]

#: The fields by which a Market or Kontext body passes input images (an edit).
_IMAGE_FIELDS = ("image_input", "image_urls", "input_urls", "image_url", "inputImage")
#: Where a field is not in the model's entry, the name most models use for it.
_FALLBACK_FIELDS = {"size": "aspect_ratio", "resolution": "resolution", "quality": "quality"}


def _modes() -> dict[str, tuple[ModelSpec, Mode]]:
    out: dict[str, tuple[ModelSpec, Mode]] = {}
    for spec in MODELS.values():
        for mode in spec.modes():
            if spec.family != "4o":
                out.setdefault(mode.model_id, (spec, mode))
    return out


#: API model id → (our entry, its mode), for Market and Kontext bodies.
_MODES = _modes()


def model_of(path: str, body: Mapping[str, Any]) -> str:
    """Our name for the model a submit asks for (``4o``, ``nano-banana-2``…)."""
    if path == GENERATE_PATH:
        return "4o"
    model = str(body.get("model") or "")
    if path == CREATE_TASK_PATH:
        return MARKET_NAMES.get(model, model)
    return model  # Flux Kontext's API ids are our names


def _files(given: Mapping[str, Any], fields: tuple[str, ...]) -> list[str]:
    files: list[str] = []
    for name in fields:
        value = given.get(name)
        if isinstance(value, str) and value.strip():
            files.append(value)
        elif isinstance(value, (list, tuple)):
            files.extend(str(v) for v in value if v)
    return files


def _ours(choice: Choice | None, given: Mapping[str, Any], option: str) -> str | None:
    """The value of ``option`` in our words: the API's value mapped back, else as given."""
    value = given.get(choice.field if choice else _FALLBACK_FIELDS[option])
    if value in (None, ""):
        return choice.default if choice else None
    if choice is None:
        return str(value)
    back: dict[str, str] = {}
    for ours, api in choice.values.items():
        back.setdefault(api, ours)
    return back.get(str(value), str(value))


def params_of(path: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Our parameters for a checked submit body (what :meth:`PriceTable.estimate` reads)."""
    if path == GENERATE_PATH:
        variants = body.get("nVariants", 1)
        # images_asked checked it is one of 1, 2, 4 (4.0 included): price what is sent.
        count = int(variants) if isinstance(variants, (int, float)) \
            and not isinstance(variants, bool) else 1
        return {"model": "4o", "size": body.get("size") or "1:1", "variants": count,
                "files": _files(body, ("filesUrl", "fileUrl", "maskUrl")),
                "fallback": body.get("enableFallback") is True}
    model = model_of(path, body)
    given = body.get("input") if path == CREATE_TASK_PATH else body
    if not isinstance(given, Mapping):
        given = {}
    found = _MODES.get(str(body.get("model") or ""))
    mode = found[1] if found else None
    fields = tuple(dict.fromkeys(
        _IMAGE_FIELDS + ((mode.image_field,) if mode and mode.image_field else ())))
    files = _files(given, fields)
    if not files and found and found[0].edit is mode and found[0].text is not mode:
        files = ["(an edit model)"]  # an image-to-image id is priced as an edit
    params: dict[str, Any] = {"model": model, "files": files}
    choices = mode.choices() if mode else {}
    for option in ("size", "resolution", "quality"):
        params[option] = _ours(choices.get(option), given, option)
    return params


def estimate_submit(path: str, body: Mapping[str, Any]) -> Cost:
    """The estimated cost of a checked submit (``Cost.value`` None: the price is unknown,
    or the price file in use cannot be read)."""
    try:
        table = active_prices()
    except KieUsageError as exc:
        return Cost(None, source=str(exc))
    return table.estimate(params_of(path, body))


def describe(path: str, body: Mapping[str, Any]) -> str:
    """``qwen-image``, ``4o (edit)``, ``4o (with fallback)``: the model a price is asked
    for, in one phrase."""
    params = params_of(path, body)
    extra = [w for w, on in (("edit", params.get("files")),
                             ("with fallback", params.get("fallback"))) if on]
    return f"{params['model']} ({', '.join(extra)})" if extra else str(params["model"])
