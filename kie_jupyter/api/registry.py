"""The models we know: one entry each, its API ids and accepted inputs, checked before sending.

Every entry's fields were confirmed on the KIE doc page named in its ``doc`` (see
``docs/market-models.md``); a model or field we could not confirm is not here (a documented
field the registry does not name yet still goes through ``params``, the ``--param`` option).

Our option names stay the product's: ``size`` is ``size`` for 4o, ``aspect_ratio`` for most
Market models, ``image_size`` for Qwen and ``aspectRatio`` for Flux Kontext; the registry maps
and checks them per model. A front end needs two calls::

    request = build_request("seedream-4.5", prompt="a red fox", size="16:9")
    task = Task(request, client=client, backend=backend_for("seedream-4.5", client), ...)

**Telling a task id's family** (:func:`backend_for_task_id`): the model recorded in history
wins; else an id starting with ``task_`` is a Market task (``task_<family>_<millis>``); else
it is a 4o task. Flux Kontext ids look like 4o ids, so a Kontext task is resumed through its
history entry (or by naming the model).

Size: most of it is data (one entry per model, with its page); the checks read the entries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .backend import Backend
from .client import KieClient
from .errors import KieUsageError
from .fouro import FourOBackend
from .kontext import KontextBackend, KontextRequest
from .market import QWEN_IMAGE_SIZES, MarketBackend, MarketRequest
from .models import MAX_FILES, MAX_PROMPT_CHARS, VARIANTS, GenerationRequest, is_http_url

__all__ = [
    "fouro_extras",
    "Choice",
    "Mode",
    "ModelSpec",
    "MODELS",
    "model_spec",
    "build_request",
    "backend_for",
    "backend_for_task_id",
    "parse_param",
    "describe",
]

Family = Literal["4o", "market", "kontext"]
Variants = Literal["native", "one task each", "no"]
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: How many images one call may ask for where the engine runs one task per variant.
MAX_TASK_VARIANTS = 4


@dataclass(frozen=True)
class Choice:
    """One of our options on one model: the API field it fills and our values → the API's."""

    field: str
    values: Mapping[str, str]
    #: Our value sent when the option is not given (the field is required); else not sent.
    default: str | None = None

    def allowed(self) -> str:
        return ", ".join(self.values)


def _same(values: str, field_name: str, default: str | None = None) -> Choice:
    """A choice whose values are the API's own (space-separated)."""
    return Choice(field_name, {v: v for v in values.split()}, default)


@dataclass(frozen=True)
class Mode:
    """One API model id: text-to-image or edit (a model with one id uses it for both)."""

    model_id: str
    doc: str
    size: Choice | None = None
    resolution: Choice | None = None
    quality: Choice | None = None
    output_format: Choice | None = None
    image_field: str | None = None
    max_images: int = 0
    #: False where the API takes one image as a plain string, not a list.
    image_list: bool = True
    #: The longest prompt the page documents (None: none documented; ours applies).
    prompt_max: int | None = None
    prompt_min: int = 1
    #: size → the resolutions it allows, where the page restricts some ratios.
    ratio_limits: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def choices(self) -> dict[str, Choice | None]:
        return {"size": self.size, "resolution": self.resolution, "quality": self.quality,
                "output_format": self.output_format}


@dataclass(frozen=True)
class ModelSpec:
    """One model as we offer it (``--model NAME``)."""

    name: str
    family: Family
    title: str
    #: The text-to-image mode (None: the model needs input images).
    text: Mode | None
    #: The mode used when input images are given (None: no input images).
    edit: Mode | None
    #: ``native``: one task makes ``-n`` images; ``one task each``: the engine runs one task
    #: per image asked for; ``no``: one image only.
    variants: Variants = "one task each"
    variant_counts: tuple[int, ...] = ()
    mask: bool = False
    notes: str = ""

    def modes(self) -> list[Mode]:
        if self.text is self.edit or self.edit is None:
            return [self.text] if self.text is not None else []
        return [self.edit] if self.text is None else [self.text, self.edit]

    @property
    def model_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.model_id for m in self.modes()))

    @property
    def doc(self) -> str:
        """The doc page(s) the entry was confirmed on (docs.kie.ai paths)."""
        return ", ".join(dict.fromkeys(m.doc for m in self.modes()))

    def _union(self, option: str) -> tuple[str, ...]:
        out: dict[str, None] = {}
        for mode in self.modes():
            choice = mode.choices()[option]
            out.update(dict.fromkeys(choice.values if choice else ()))
        return tuple(out)

    @property
    def aspect_ratios(self) -> tuple[str, ...]:
        return self._union("size")

    @property
    def resolutions(self) -> tuple[str, ...]:
        return self._union("resolution")

    @property
    def qualities(self) -> tuple[str, ...]:
        return self._union("quality")

    @property
    def output_formats(self) -> tuple[str, ...]:
        return self._union("output_format")

    @property
    def max_images(self) -> int:
        return self.edit.max_images if self.edit else 0

    @property
    def image_field(self) -> str | None:
        return self.edit.image_field if self.edit else None

    @property
    def prompt_max(self) -> int:
        return min((m.prompt_max or MAX_PROMPT_CHARS) for m in self.modes())


# -- the entries ---------------------------------------------------------------------------

_4O = Mode("", "4o-image-api/generate-4-o-image", size=_same("1:1 3:2 2:3", "size", "1:1"),
           image_field="filesUrl", max_images=MAX_FILES, prompt_max=MAX_PROMPT_CHARS,
           prompt_min=0)
_GPT_RATIOS = "1:1 2:3 3:2"
_GPT_QUALITY = _same("medium high", "quality", "medium")
_NB_RATIOS = "1:1 2:3 3:2 3:4 4:3 4:5 5:4 9:16 16:9 21:9"
_NB2_RATIOS = f"{_NB_RATIOS} 1:4 4:1 1:8 8:1 auto"
_SEEDREAM_RATIOS = _same("1:1 4:3 3:4 16:9 9:16 2:3 3:2 21:9", "aspect_ratio", "1:1")
_SEEDREAM_QUALITY = _same("basic high", "quality", "basic")
_QWEN_SIZE = Choice("image_size", {**QWEN_IMAGE_SIZES, **{v: v for v in (
    "square", "square_hd", "portrait_4_3", "portrait_16_9", "landscape_4_3",
    "landscape_16_9")}})
_KONTEXT_RATIOS = _same("21:9 16:9 4:3 1:1 3:4 9:16", "aspectRatio")
_KONTEXT_FORMATS = _same("jpeg png", "outputFormat")
_KONTEXT_DOC = "flux-kontext-api/generate-or-edit-image"


def _nano_banana_2() -> Mode:
    extreme = {r: ("1K",) for r in ("1:4", "4:1", "1:8", "8:1")}
    return Mode("nano-banana-2", "market/google/nanobanana2",
                size=_same(_NB2_RATIOS, "aspect_ratio"),
                resolution=_same("1K 2K 4K", "resolution"),
                output_format=_same("png jpg", "output_format"),
                image_field="image_input", max_images=14, prompt_max=20000,
                ratio_limits=extreme)


def _entries() -> list[ModelSpec]:
    gpt_t2i = Mode("gpt-image/1.5-text-to-image", "market/gpt-image/1.5-text-to-image",
                   size=_same(_GPT_RATIOS, "aspect_ratio", "1:1"), quality=_GPT_QUALITY)
    gpt_i2i = Mode("gpt-image/1.5-image-to-image", "market/gpt-image/1.5-image-to-image",
                   size=_same(_GPT_RATIOS, "aspect_ratio", "3:2"), quality=_GPT_QUALITY,
                   image_field="input_urls", max_images=16)
    nb2 = _nano_banana_2()
    lite = Mode("nano-banana-2-lite", "market/google/nano-banana-2-lite",
                size=_same(f"{_NB_RATIOS} 1:4 1:8 4:1 8:1 auto", "aspect_ratio", "auto"),
                image_field="image_urls", max_images=10, prompt_max=20000)
    pro = Mode("nano-banana-pro", "market/google/pro-image-to-image",
               size=_same(f"{_NB_RATIOS} auto", "aspect_ratio"),
               resolution=_same("1K 2K 4K", "resolution"),
               output_format=_same("png jpg", "output_format"),
               image_field="image_input", max_images=8, prompt_max=10000)
    seedream_t2i = Mode("seedream/4.5-text-to-image", "market/seedream/4.5-text-to-image",
                        size=_SEEDREAM_RATIOS, quality=_SEEDREAM_QUALITY, prompt_max=3000)
    seedream_edit = Mode("seedream/4.5-edit", "market/seedream/4.5-edit",
                         size=_SEEDREAM_RATIOS, quality=_SEEDREAM_QUALITY, prompt_max=3000,
                         image_field="image_urls", max_images=14)
    qwen_t2i = Mode("qwen/text-to-image", "market/qwen/text-to-image", size=_QWEN_SIZE,
                    output_format=_same("png jpeg", "output_format"), prompt_max=5000)
    qwen_edit = Mode("qwen/image-edit", "market/qwen/image-edit", size=_QWEN_SIZE,
                     output_format=_same("jpeg png", "output_format"), prompt_max=2000,
                     image_field="image_url", max_images=1, image_list=False)
    flux2 = Mode("flux-2/pro-text-to-image", "market/flux2/pro-text-to-image",
                 size=_same("1:1 4:3 3:4 16:9 9:16 3:2 2:3", "aspect_ratio", "1:1"),
                 resolution=_same("1K 2K", "resolution", "1K"), prompt_max=5000, prompt_min=3)

    def kontext(model_id: str) -> Mode:
        return Mode(model_id, _KONTEXT_DOC, size=_KONTEXT_RATIOS,
                    output_format=_KONTEXT_FORMATS, image_field="inputImage", max_images=1,
                    image_list=False)

    return [
        ModelSpec("4o", "4o", "GPT-4o Image", _4O, _4O, variants="native",
                  variant_counts=VARIANTS, mask=True),
        ModelSpec("gpt-image-1.5", "market", "GPT Image 1.5", gpt_t2i, gpt_i2i),
        ModelSpec("nano-banana-2", "market", "Nano Banana 2", nb2, nb2,
                  notes="google_search (older page only) via params"),
        ModelSpec("nano-banana-2-lite", "market", "Nano Banana 2 Lite", lite, lite,
                  notes="prompt limit from a mirror of KIE's page"),
        ModelSpec("nano-banana-pro", "market", "Nano Banana Pro", pro, pro),
        ModelSpec("seedream-4.5", "market", "Seedream 4.5", seedream_t2i, seedream_edit),
        ModelSpec("qwen-image", "market", "Qwen Image", qwen_t2i, qwen_edit,
                  notes="edit is qwen/image-edit; seed, negative_prompt… via params"),
        ModelSpec("flux-2-pro", "market", "Flux-2 Pro", flux2, None,
                  notes="text-to-image only (image-to-image not confirmed on KIE's docs)"),
        ModelSpec("flux-kontext-pro", "kontext", "Flux Kontext Pro",
                  kontext("flux-kontext-pro"), kontext("flux-kontext-pro")),
        ModelSpec("flux-kontext-max", "kontext", "Flux Kontext Max",
                  kontext("flux-kontext-max"), kontext("flux-kontext-max")),
    ]


#: Every model by our name, in the order ``models`` lists them.
MODELS: Mapping[str, ModelSpec] = {spec.name: spec for spec in _entries()}
#: API model id → our name (Market models), for resumed tasks.
MARKET_NAMES: Mapping[str, str] = {
    mid: spec.name for spec in MODELS.values() if spec.family == "market"
    for mid in spec.model_ids}


def model_spec(name: str) -> ModelSpec:
    """The entry for our model ``name``; a one-line usage error listing the models if none."""
    spec = MODELS.get(str(name).strip()) if isinstance(name, str) else None
    if spec is None:
        raise KieUsageError(f"model: {name!r} is not a model; use one of {', '.join(MODELS)}")
    return spec


def describe(spec: ModelSpec) -> str:
    """One line of a model's options, e.g. for ``%kie4o models``."""
    return f"{spec.name} ({spec.title}): {_options(spec)}"


def _options(spec: ModelSpec) -> str:
    parts: list[str] = []
    for label, values in (("size", spec.aspect_ratios), ("resolution", spec.resolutions),
                          ("quality", spec.qualities), ("format", spec.output_formats)):
        if values:
            parts.append(f"{label} {'/'.join(values)}")
    parts.append(f"images ≤ {spec.max_images}" if spec.max_images else "no input images")
    parts.append("-n native" if spec.variants == "native" else f"-n: {spec.variants}")
    return "; ".join(parts)


# -- building a request ----------------------------------------------------------------------


def _pick(choice: Choice | None, option: str, value: Any, spec: ModelSpec) -> str | None:
    """The API value for our option ``value`` (or the choice's default), checked."""
    if value is None or value == "":
        return choice.values[choice.default] if choice and choice.default else None
    if choice is None:
        raise KieUsageError(f"{option}: {spec.name} has no {option} option ({_options(spec)})")
    text = str(value).strip()
    if text not in choice.values:
        alias = {"jpg": "jpeg", "jpeg": "jpg"}.get(text.lower())
        if option == "output_format" and alias is not None and alias in choice.values:
            text = alias
        elif text.upper() in choice.values:  # "2k" for "2K"
            text = text.upper()
        else:
            raise KieUsageError(f"{option}: {text!r} is not allowed for {spec.name}; use one "
                                f"of {choice.allowed()}")
    return choice.values[text]


def _check_prompt(prompt: Any, mode: Mode, spec: ModelSpec, images: int) -> str:
    if not isinstance(prompt, str):
        raise KieUsageError("prompt: must be text")
    limit = mode.prompt_max or MAX_PROMPT_CHARS
    if len(prompt) > limit:
        raise KieUsageError(f"prompt: {len(prompt)} characters; {spec.name} takes at most "
                            f"{limit}")
    if len(prompt.strip()) < mode.prompt_min and not (mode.prompt_min == 0 and images):
        need = "a prompt" if mode.prompt_min <= 1 else f"at least {mode.prompt_min} characters"
        raise KieUsageError(f"prompt: {spec.name} needs {need}")
    bad = _CONTROL.search(prompt)
    if bad:
        raise KieUsageError(f"prompt: control character U+{ord(bad.group()):04X} at position "
                            f"{bad.start() + 1}; remove it (newlines and tabs are fine)")
    return prompt


def _check_images(images: Any, spec: ModelSpec) -> tuple[str, ...]:
    urls = (images,) if isinstance(images, str) else tuple(images or ())
    for url in urls:
        if not is_http_url(url):
            raise KieUsageError(f"images: {url!r} is not an http(s) URL with a host")
    if urls and spec.edit is None:
        raise KieUsageError(f"images: {spec.name} takes no input images ({_options(spec)})")
    if not urls and spec.text is None:
        raise KieUsageError(f"images: {spec.name} needs at least one input image")
    if len(urls) > spec.max_images:
        raise KieUsageError(f"images: {len(urls)} given; {spec.name} takes at most "
                            f"{spec.max_images}")
    return urls


def _check_variants(variants: Any, spec: ModelSpec) -> None:
    allowed: Sequence[int] = (
        spec.variant_counts if spec.variants == "native"
        else range(1, MAX_TASK_VARIANTS + 1) if spec.variants == "one task each" else (1,))
    if isinstance(variants, bool) or not isinstance(variants, int) or variants not in allowed:
        raise KieUsageError(f"variants: {variants!r} is not allowed for {spec.name}; use one "
                            f"of {', '.join(str(n) for n in allowed)}")


def parse_param(text: str) -> tuple[str, Any]:
    """``key=value`` (the ``--param`` option) → ``(key, value)``; the value is JSON when it
    parses as JSON (``true``, ``42``, ``["a"]``), else the text as written."""
    key, sep, value = str(text).partition("=")
    key = key.strip()
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise KieUsageError(f"--param: {text!r} is not key=value (e.g. seed=42)")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _check_params(params: Mapping[str, Any] | None, owned: Iterable[str],
                  spec: ModelSpec) -> dict[str, Any]:
    out = dict(params or {})
    owned = set(owned)
    for key, value in out.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise KieUsageError(f"--param: {key!r} is not a field name")
        if key in owned:
            raise KieUsageError(f"--param {key}: {spec.name} sets {key} from its own options; "
                                f"use those: {_options(spec)}")
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise KieUsageError(f"--param {key}: {type(value).__name__} is not JSON") from None
    return out


_FOURO_PARAMS = ("enhance", "fallback", "fallback_model", "upload_cn")


def fouro_extras(*, resolution: str | None = None, quality: str | None = None,
                 output_format: str | None = None,
                 params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The 4o request fields given through ``--param`` (``upload_cn``…), checked; a
    ``--resolution``/``--quality``/``--format`` (which 4o has not) is one line."""
    spec = MODELS["4o"]
    for option, value in (("resolution", resolution), ("quality", quality),
                          ("output_format", output_format)):
        _pick(None, option, value, spec)
    # enhance and fallback have options of their own (-e, --fallback): a --param must not
    # quietly override what the option line says.
    extra = _check_params(params, ("enhance", "fallback", "fallback_model"), spec)
    unknown = sorted(set(extra) - set(_FOURO_PARAMS))
    if unknown:
        raise KieUsageError(f"--param {unknown[0]}: 4o takes upload_cn (and -e, --fallback "
                            "for the others)")
    if "upload_cn" in extra and not isinstance(extra["upload_cn"], bool):
        raise KieUsageError(f"--param upload_cn: {extra['upload_cn']!r} must be true or false")
    return extra


def build_request(model: str, *, prompt: str = "", size: str | None = None,
                  images: Sequence[str] | str = (), mask: str | None = None,
                  resolution: str | None = None, quality: str | None = None,
                  output_format: str | None = None, variants: int = 1,
                  params: Mapping[str, Any] | None = None,
                  callback_url: str | None = None,
                  ) -> GenerationRequest | MarketRequest | KontextRequest:
    """A checked request for our model ``model`` from our option names — before anything is
    sent; a bad value raises :class:`KieUsageError` in one line listing the allowed values.

    ``images`` are URLs (a local file's stand-in URL until the task uploads it); the mode
    (text-to-image or edit, and so the API model id) follows from whether any are given.
    ``variants`` is checked here; for ``variants: "one task each"`` models the caller runs
    one task per image. ``params`` passes documented fields the registry does not name.
    """
    spec = model_spec(model)
    urls = _check_images(images, spec)
    _check_variants(variants, spec)
    if callback_url is not None and not is_http_url(callback_url):
        raise KieUsageError(f"callback: {callback_url!r} is not an http(s) URL with a host")
    if mask is not None and not spec.mask:
        raise KieUsageError(f"mask: {spec.name} takes no mask (only 4o does)")
    if spec.family == "4o":
        for option, value in (("resolution", resolution), ("quality", quality),
                              ("output_format", output_format)):
            _pick(None, option, value, spec)
        extra = _check_params(params, (), spec)
        unknown = sorted(set(extra) - set(_FOURO_PARAMS))
        if unknown:
            raise KieUsageError(f"--param {unknown[0]}: 4o takes {', '.join(_FOURO_PARAMS)}")
        if size is not None:
            _pick(spec.text.size if spec.text else None, "size", size, spec)
        return GenerationRequest(prompt=prompt, size=size or "1:1", variants=variants,
                                 files=urls, mask=mask, callback_url=callback_url, **extra)
    mode = spec.edit if urls else spec.text
    assert mode is not None  # _check_images refused the missing mode
    text = _check_prompt(prompt, mode, spec, len(urls))
    given = {"size": size, "resolution": resolution, "quality": quality,
             "output_format": output_format}
    fields: dict[str, Any] = {}
    ours: dict[str, Any] = {}
    for option, choice in mode.choices().items():
        api_value = _pick(choice, option, given[option], spec)
        if api_value is not None and choice is not None:
            fields[choice.field] = api_value
            # Our value as sent ("jpeg" given, "jpg" sent → "jpg"); sizes keep our name
            # (Qwen sends "landscape_16_9" for "16:9").
            ours[option] = (api_value if option != "size" else
                            given[option] if given[option] not in (None, "") else choice.default)
    limit = mode.ratio_limits.get(str(ours.get("size")))
    if limit and ours.get("resolution") and str(fields.get("resolution")) not in limit:
        raise KieUsageError(f"size: {ours['size']} works only at resolution "
                            f"{', '.join(limit)} on {spec.name}")
    owned = {"prompt", "model", "callBackUrl", "input",
             *(c.field for c in mode.choices().values() if c),
             *(m.image_field for m in spec.modes() if m.image_field)}
    extra = _check_params(params, owned, spec)
    ours["params"] = extra
    if spec.family == "kontext":
        return KontextRequest(spec.name, mode.model_id, text, {**fields, **extra}, urls,
                              ours, callback_url)
    return MarketRequest(spec.name, mode.model_id, text, {**fields, **extra}, urls,
                         mode.image_field, mode.image_list, ours, callback_url)


# -- backends -------------------------------------------------------------------------------


def backend_for(model_name: str, client: KieClient) -> Backend:
    """The backend that runs our model ``model_name`` (its family's)."""
    family = model_spec(model_name).family
    if family == "market":
        return MarketBackend(client, names=MARKET_NAMES)
    if family == "kontext":
        return KontextBackend(client)
    return FourOBackend(client)


def backend_for_task_id(task_id: str, client: KieClient, model: str | None = None) -> Backend:
    """The backend to follow an existing task: the ``model`` recorded with it (history)
    wins; else ids starting with ``task_`` are Market tasks and any other id a 4o task."""
    if model and model in MODELS:
        return backend_for(model, client)
    if model in MARKET_NAMES or str(task_id).strip().startswith("task_"):
        return MarketBackend(client, names=MARKET_NAMES)
    return FourOBackend(client)
