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
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .backend import Backend
from .client import KieClient
from .errors import (
    AuthenticationError,
    ClassRefusalError,
    KieConfigError,
    KieError,
    KieUsageError,
    TaskNotFoundError,
)
from .fouro import FourOBackend
from .kontext import KontextBackend, KontextRequest
from .market import QWEN_IMAGE_SIZES, SEEDREAM4_IMAGE_SIZES, MarketBackend, MarketRequest
from .models import (
    MAX_FILES,
    MAX_IMAGE_BYTES,
    MAX_PROMPT_CHARS,
    VARIANTS,
    GenerationRequest,
    is_http_url,
)

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
    "find_task_backend",
    "resume_backend",
    "parse_param",
    "refuse_seed_negative",
    "Field",
    "FileLimits",
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


FieldType = Literal["string", "integer", "number", "boolean", "array"]


@dataclass(frozen=True)
class Field:
    """A documented input field's type (and allowed values or range), so that a ``--param``
    value, ``--seed`` or ``--negative`` is sent as the page defines it: ``"2"`` for a string
    field, ``2`` for a number."""

    type: FieldType
    enum: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    max_length: int | None = None

    def coerce(self, name: str, value: Any, model: str) -> Any:
        """``value`` (text from ``--param``, or a Python value) as this field's type; one
        line naming the field and the documented type when it cannot be."""
        text = value.strip() if isinstance(value, str) else None
        out: Any
        if self.type == "string":
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise KieUsageError(f"--param {name}: {model} takes text here, not "
                                    f"{type(value).__name__}")
            out = value if isinstance(value, str) else _number_text(value)
        elif self.type == "boolean":
            if isinstance(value, bool):
                out = value
            elif text is not None and text.lower() in ("true", "false"):
                out = text.lower() == "true"
            else:
                raise KieUsageError(f"--param {name}: {value!r} must be true or false")
        elif self.type in ("integer", "number"):
            out = _number(name, value, integer=self.type == "integer")
            if (self.min is not None and out < self.min) or (
                    self.max is not None and out > self.max):
                raise KieUsageError(f"--param {name}: {out} is out of range for {model} "
                                    f"({_num_text(self.min)}–{_num_text(self.max)})")
        else:  # array
            if isinstance(value, (list, tuple)):
                out = list(value)
            else:
                try:
                    out = json.loads(value) if isinstance(value, str) else None
                except ValueError:
                    out = None
                if not isinstance(out, list):
                    raise KieUsageError(f"--param {name}: {value!r} must be a JSON list")
        if self.enum is not None and str(out) not in self.enum:
            raise KieUsageError(f"--param {name}: {value!r} is not allowed for {model}; use "
                                f"one of {', '.join(self.enum)}")
        if self.max_length is not None and isinstance(out, str) and len(out) > self.max_length:
            raise KieUsageError(f"--param {name}: {len(out)} characters; {model} takes at "
                                f"most {self.max_length}")
        return out


def _number_text(value: int | float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _num_text(value: float | None) -> str:
    return "" if value is None else _number_text(value)


def _number(name: str, value: Any, *, integer: bool) -> int | float:
    if isinstance(value, bool):
        raise KieUsageError(f"--param {name}: {value!r} is not a number")
    if isinstance(value, (int, float)):
        number: int | float = value
    else:
        text = str(value).strip()
        try:  # a whole number stays exact (a 64-bit seed must not pass through a float)
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise KieUsageError(f"--param {name}: {value!r} is not a number") from None
    if isinstance(number, float) and number.is_integer() and abs(number) < 2**53:
        number = int(number)  # 7.0 is sent as 7
    if integer and not isinstance(number, int):
        raise KieUsageError(f"--param {name}: {value!r} must be a whole number")
    return number


@dataclass(frozen=True)
class FileLimits:
    """What a mode's page says of each input image (None: not documented)."""

    max_bytes: int | None = None
    #: ``jpeg``, ``png``, ``webp``… as :func:`~.imagedata.sniff_image` names them.
    formats: tuple[str, ...] | None = None
    max_pixels: int | None = None
    max_side: int | None = None
    min_side: int | None = None

    def describe(self) -> str:
        parts = []
        if self.max_bytes:
            parts.append(f"≤ {_megabytes(self.max_bytes)}")
        if self.formats:
            parts.append("/".join(f.upper() for f in self.formats))
        if self.max_pixels:
            parts.append(f"≤ {self.max_pixels / 1e6:g} MP")
        if self.max_side:
            parts.append(f"sides ≤ {self.max_side} px")
        if self.min_side:
            parts.append(f"sides ≥ {self.min_side} px")
        return ", ".join(parts)


def _megabytes(n: int) -> str:
    return f"{n / 2**20:g} MB"


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
    #: False for a tool (upscale, remove background…): its page has no prompt field.
    prompt: bool = True
    #: Other documented input fields, typed (``--param`` values are sent as these say).
    fields: Mapping[str, Field] = field(default_factory=dict)
    #: The fields ``--seed`` and ``--negative`` fill (None: the page documents none).
    seed_field: str | None = None
    negative_field: str | None = None
    #: What the page says of each input image (None: nothing beyond our general checks).
    limits: FileLimits | None = None
    #: Required fields that are none of our options, and what is sent when not given.
    defaults: Mapping[str, Any] = field(default_factory=dict)

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
    #: The one-step follow-ups it does (``upscale``, ``remove-bg``, ``reframe``): what the
    #: ``%kie4o upscale`` … verbs pick from.
    steps: tuple[str, ...] = ()

    @property
    def kind(self) -> Literal["generator", "editor", "tool"]:
        """``tool``: takes an image and no prompt (upscale, remove background…); ``editor``:
        needs input images; ``generator``: makes images from a prompt (and may edit)."""
        if not any(m.prompt for m in self.modes()):
            return "tool"
        return "editor" if self.text is None else "generator"

    @property
    def takes_seed(self) -> bool:
        return any(m.seed_field for m in self.modes())

    @property
    def takes_negative(self) -> bool:
        return any(m.negative_field for m in self.modes())

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
           prompt_min=0, limits=FileLimits(max_bytes=MAX_IMAGE_BYTES))
_GPT_RATIOS = "1:1 2:3 3:2"
_GPT_QUALITY = _same("medium high", "quality", "medium")
_NB_RATIOS = "1:1 2:3 3:2 3:4 4:3 4:5 5:4 9:16 16:9 21:9"
_NB2_RATIOS = f"{_NB_RATIOS} 1:4 4:1 1:8 8:1 auto"
_SEEDREAM_RATIOS = _same("1:1 4:3 3:4 16:9 9:16 2:3 3:2 21:9", "aspect_ratio", "1:1")
_SEEDREAM_QUALITY = _same("basic high", "quality", "basic")
_QWEN_SIZE = Choice("image_size", {**QWEN_IMAGE_SIZES, **{v: v for v in (
    "square", "square_hd", "portrait_4_3", "portrait_16_9", "landscape_4_3",
    "landscape_16_9")}})
_PRESETS = ("square", "square_hd", "portrait_4_3", "portrait_16_9", "landscape_4_3",
            "landscape_16_9")


def _presets(field_name: str, ours: Mapping[str, str], extra: Sequence[str] = (),
             default: str | None = None) -> Choice:
    """An ``image_size`` of named presets: our ratios map to them, and the names are taken
    as they are."""
    return Choice(field_name, {**ours, **{v: v for v in (*_PRESETS, *extra)}}, default)


#: Each page's limits on input images (MB on KIE's pages read as MiB).
_MB = 2**20
_WEB_FORMATS = ("jpeg", "png", "webp")
_10MB = FileLimits(max_bytes=10 * _MB, formats=_WEB_FORMATS)
_30MB = FileLimits(max_bytes=30 * _MB, formats=_WEB_FORMATS)
#: Qwen's extra fields, typed as its pages define them (text-to-image and image-to-image).
_QWEN_FIELDS = {
    "num_inference_steps": Field("number", min=2, max=250),
    "guidance_scale": Field("number", min=0, max=20),
    "acceleration": Field("string", enum=("none", "regular", "high")),
    "enable_safety_checker": Field("boolean"),
    "seed": Field("integer"),
    "negative_prompt": Field("string", max_length=500),
}
_SEED = {"seed": Field("integer")}
_NSFW = {"nsfw_checker": Field("boolean")}
_KONTEXT_RATIOS = _same("21:9 16:9 4:3 1:1 3:4 9:16", "aspectRatio")
_KONTEXT_FORMATS = _same("jpeg png", "outputFormat")
_KONTEXT_DOC = "flux-kontext-api/generate-or-edit-image"
_KONTEXT_FIELDS = {"safetyTolerance": Field("integer", min=0, max=6),
                   "enableTranslation": Field("boolean"), "promptUpsampling": Field("boolean"),
                   "uploadCn": Field("boolean"), "watermark": Field("string")}


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
    gpt_i2i = replace(gpt_i2i, limits=_10MB)
    nb2 = replace(_nano_banana_2(), limits=_30MB,
                  fields={"google_search": Field("boolean")})
    lite = Mode("nano-banana-2-lite", "market/google/nano-banana-2-lite",
                size=_same(f"{_NB_RATIOS} 1:4 1:8 4:1 8:1 auto", "aspect_ratio", "auto"),
                image_field="image_urls", max_images=10, prompt_max=20000)
    pro = Mode("nano-banana-pro", "market/google/pro-image-to-image",
               size=_same(f"{_NB_RATIOS} auto", "aspect_ratio"),
               resolution=_same("1K 2K 4K", "resolution"),
               output_format=_same("png jpg", "output_format"),
               image_field="image_input", max_images=8, prompt_max=10000, limits=_30MB)
    seedream_t2i = Mode("seedream/4.5-text-to-image", "market/seedream/4.5-text-to-image",
                        size=_SEEDREAM_RATIOS, quality=_SEEDREAM_QUALITY, prompt_max=3000)
    seedream_edit = Mode("seedream/4.5-edit", "market/seedream/4.5-edit",
                         size=_SEEDREAM_RATIOS, quality=_SEEDREAM_QUALITY, prompt_max=3000,
                         image_field="image_urls", max_images=14, limits=_10MB)
    qwen_t2i = Mode("qwen/text-to-image", "market/qwen/text-to-image", size=_QWEN_SIZE,
                    output_format=_same("png jpeg", "output_format"), prompt_max=5000,
                    fields=_QWEN_FIELDS, seed_field="seed", negative_field="negative_prompt")
    qwen_edit = Mode("qwen/image-edit", "market/qwen/image-edit", size=_QWEN_SIZE,
                     output_format=_same("jpeg png", "output_format"), prompt_max=2000,
                     image_field="image_url", max_images=1, image_list=False, limits=_10MB,
                     fields={**_QWEN_FIELDS, "num_inference_steps": Field("number", min=2,
                                                                          max=49),
                             "sync_mode": Field("boolean"),
                             "num_images": Field("string", enum=("1", "2", "3", "4"))},
                     seed_field="seed", negative_field="negative_prompt")
    qwen_i2i = Mode("qwen/image-to-image", "market/qwen/image-to-image",
                    output_format=_same("png jpeg", "output_format"), prompt_max=5000,
                    image_field="image_url", max_images=1, image_list=False, limits=_10MB,
                    fields={**_QWEN_FIELDS, **_NSFW, "strength": Field("number", min=0, max=1)},
                    seed_field="seed", negative_field="negative_prompt")
    flux2_ratios = "1:1 4:3 3:4 16:9 9:16 3:2 2:3"
    flux2_res = _same("1K 2K", "resolution", "1K")

    def flux2(model_id: str, edit: bool) -> Mode:
        mode = Mode(model_id, "market/flux2/" + model_id.split("/")[1],
                    size=_same(flux2_ratios + (" auto" if edit else ""), "aspect_ratio", "1:1"),
                    resolution=flux2_res, prompt_max=5000, prompt_min=3, fields=_NSFW)
        return replace(mode, image_field="input_urls", max_images=8, limits=_10MB) \
            if edit else mode

    seedream3 = Mode("bytedance/seedream", "market/seedream/seedream",
                     size=_presets("image_size", QWEN_IMAGE_SIZES), prompt_max=5000,
                     seed_field="seed",
                     fields={**_SEED, "guidance_scale": Field("number", min=1, max=10)})
    v4_sizes = _presets("image_size", SEEDREAM4_IMAGE_SIZES,
                        ("portrait_3_2", "landscape_3_2", "landscape_21_9"))
    v4_fields = {**_SEED, **_NSFW, "max_images": Field("number", min=1, max=6)}
    seedream4_t2i = Mode("bytedance/seedream-v4-text-to-image",
                         "market/seedream/seedream-v4-text-to-image", size=v4_sizes,
                         resolution=_same("1K 2K 4K", "image_resolution"), prompt_max=5000,
                         seed_field="seed", fields=v4_fields)
    seedream4_edit = replace(seedream4_t2i, model_id="bytedance/seedream-v4-edit",
                             doc="market/seedream/seedream-v4-edit", image_field="image_urls",
                             max_images=10, limits=_10MB)
    nb_ratios = _same("1:1 9:16 16:9 3:4 4:3 3:2 2:3 5:4 4:5 21:9 auto", "aspect_ratio")
    nb_formats = _same("png jpeg", "output_format")
    nano_banana = Mode("google/nano-banana", "market/google/nano-banana", size=nb_ratios,
                       output_format=nb_formats, prompt_max=5000)
    nano_banana_edit = Mode("google/nano-banana-edit", "market/google/nano-banana-edit",
                            size=nb_ratios, output_format=nb_formats, prompt_max=5000,
                            image_field="image_urls", max_images=10, limits=_10MB)
    z_image = Mode("z-image", "market/z-image/z-image",
                   size=_same("1:1 4:3 3:4 16:9 9:16", "aspect_ratio", "1:1"), prompt_max=1000,
                   fields=_NSFW)

    def imagen(model_id: str, seed: Field) -> Mode:
        return Mode(model_id, "market/google/" + model_id.split("/")[1],
                    size=_same("1:1 16:9 9:16 3:4 4:3", "aspect_ratio"), prompt_max=5000,
                    seed_field="seed", negative_field="negative_prompt",
                    fields={"seed": seed, "negative_prompt": Field("string", max_length=5000)})

    ideogram_style = {"rendering_speed": Field("string", enum=("TURBO", "BALANCED", "QUALITY")),
                      "num_images": Field("string", enum=("1", "2", "3", "4"))}
    character = Mode("ideogram/character", "market/ideogram/character",
                     size=_presets("image_size", QWEN_IMAGE_SIZES), prompt_max=5000,
                     image_field="reference_image_urls", max_images=1, limits=_10MB,
                     seed_field="seed", negative_field="negative_prompt",
                     fields={**ideogram_style, **_SEED,
                             "style": Field("string", enum=("AUTO", "REALISTIC", "FICTION")),
                             "expand_prompt": Field("boolean"),
                             "negative_prompt": Field("string", max_length=5000)})
    # The tools: an image in, no prompt.
    topaz = Mode("topaz/image-upscale", "market/topaz/image-upscale", prompt=False,
                 image_field="image_url", max_images=1, image_list=False, limits=_10MB,
                 fields={"upscale_factor": Field("string", enum=("1", "2", "4", "8"))},
                 defaults={"upscale_factor": "2"})
    remove_bg = Mode("recraft/remove-background", "market/recraft/remove-background",
                     prompt=False, image_field="image", max_images=1, image_list=False,
                     limits=FileLimits(max_bytes=5 * _MB, formats=_WEB_FORMATS,
                                       max_pixels=16_000_000, max_side=4096, min_side=256))
    crisp = Mode("recraft/crisp-upscale", "market/recraft/crisp-upscale", prompt=False,
                 image_field="image", max_images=1, image_list=False, limits=_10MB)
    reframe = Mode("ideogram/v3-reframe", "market/ideogram/v3-reframe", prompt=False,
                   size=_presets("image_size", QWEN_IMAGE_SIZES, default="1:1"),
                   image_field="image_url", max_images=1, image_list=False, limits=_10MB,
                   seed_field="seed",
                   fields={**ideogram_style, "seed": Field("number"),
                           "style": Field("string",
                                          enum=("AUTO", "GENERAL", "REALISTIC", "DESIGN"))})
    grok_t2i = Mode("grok-imagine/text-to-image", "market/grok-imagine/text-to-image",
                    size=_same("2:3 3:2 1:1 16:9 9:16", "aspect_ratio"), prompt_max=5000,
                    fields={**_NSFW, "enable_pro": Field("boolean")})
    grok_i2i = Mode("grok-imagine/image-to-image", "market/grok-imagine/image-to-image",
                    image_field="image_urls", max_images=1, limits=_10MB, fields=_NSFW,
                    prompt_min=0, prompt_max=390000)

    def kontext(model_id: str) -> Mode:
        return Mode(model_id, _KONTEXT_DOC, size=_KONTEXT_RATIOS,
                    output_format=_KONTEXT_FORMATS, image_field="inputImage", max_images=1,
                    image_list=False, fields=_KONTEXT_FIELDS)

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
                  notes="edit is qwen/image-edit"),
        ModelSpec("qwen-image-to-image", "market", "Qwen Image to Image", None, qwen_i2i,
                  notes="the image guides a new one (--param strength=0…1)"),
        ModelSpec("flux-2-pro", "market", "Flux-2 Pro",
                  flux2("flux-2/pro-text-to-image", False),
                  flux2("flux-2/pro-image-to-image", True)),
        ModelSpec("flux-2-flex", "market", "Flux-2 Flex",
                  flux2("flux-2/flex-text-to-image", False),
                  flux2("flux-2/flex-image-to-image", True)),
        ModelSpec("seedream-3.0", "market", "Seedream 3.0", seedream3, None),
        ModelSpec("seedream-4.0", "market", "Seedream 4.0", seedream4_t2i, seedream4_edit),
        ModelSpec("nano-banana", "market", "Nano Banana", nano_banana, nano_banana_edit,
                  notes="aspect_ratio (the newer pages; image_size is deprecated there)"),
        ModelSpec("z-image", "market", "Z-Image", z_image, None),
        ModelSpec("imagen-4", "market", "Imagen 4",
                  imagen("google/imagen4", Field("string", max_length=500)), None),
        ModelSpec("imagen-4-fast", "market", "Imagen 4 Fast",
                  imagen("google/imagen4-fast", Field("integer")), None),
        ModelSpec("imagen-4-ultra", "market", "Imagen 4 Ultra",
                  imagen("google/imagen4-ultra", Field("string", max_length=500)), None),
        ModelSpec("grok-imagine", "market", "Grok Imagine", grok_t2i, grok_i2i),
        ModelSpec("ideogram-character", "market", "Ideogram Character", None, character,
                  notes="the input image is the character's reference"),
        ModelSpec("topaz-upscale", "market", "Topaz Image Upscale", None, topaz, variants="no",
                  notes="--param upscale_factor=1|2|4|8 (default 2)", steps=("upscale",)),
        ModelSpec("recraft-remove-background", "market", "Recraft Remove Background", None,
                  remove_bg, variants="no", steps=("remove-bg",)),
        ModelSpec("recraft-crisp-upscale", "market", "Recraft Crisp Upscale", None, crisp,
                  variants="no", steps=("upscale",)),
        ModelSpec("ideogram-reframe", "market", "Ideogram V3 Reframe", None, reframe,
                  variants="no", steps=("reframe",),
                  notes="-s is the new frame"),
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
    limits = spec.edit.limits if spec.edit else None
    parts.append((f"images ≤ {spec.max_images}"
                  + (f" (each {limits.describe()})" if limits else ""))
                 if spec.max_images else "no input images")
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
    """``key=value`` (the ``--param`` option) → ``(key, value text)``. The text is typed by
    the model's documented field when the request is built (``num_images=2`` is ``"2"``
    where the page defines a string); a field the registry does not know is sent as text."""
    key, sep, value = str(text).partition("=")
    key = key.strip()
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise KieUsageError(f"--param: {text!r} is not key=value (e.g. guidance_scale=3.5)")
    return key, value


def _check_params(params: Mapping[str, Any] | None, owned: Iterable[str],
                  spec: ModelSpec) -> dict[str, Any]:
    out = dict(params or {})
    owned = set(owned)
    for key, value in out.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise KieUsageError(f"--param: {key!r} is not a field name")
        if key in owned:
            own = {m.seed_field: "--seed N" for m in spec.modes() if m.seed_field} | {
                m.negative_field: "--negative TEXT" for m in spec.modes() if m.negative_field}
            use = own.get(key) or f"those: {_options(spec)}"
            raise KieUsageError(f"--param {key}: {spec.name} sets {key} from its own options; "
                                f"use {use}")
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise KieUsageError(f"--param {key}: {type(value).__name__} is not JSON") from None
    return out


_FOURO_PARAMS = ("enhance", "fallback", "fallback_model", "upload_cn")
_FOURO_FIELDS = {"upload_cn": Field("boolean")}


def _typed(extra: Mapping[str, Any], mode: Mode | None, spec: ModelSpec,
           ) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``--param`` values as the page's types, and a note for each field the registry has
    no type for (sent as given)."""
    fields = dict(mode.fields) if mode else {}
    if spec.family == "4o":
        fields.update(_FOURO_FIELDS)
    out: dict[str, Any] = {}
    notes = []
    for key, value in extra.items():
        known = fields.get(key)
        if known is not None:
            out[key] = known.coerce(key, value, spec.name)
        else:
            out[key] = value
            notes.append(f"--param {key}: not a field the registry knows for {spec.name}; "
                         f"sent as given ({json.dumps(value, ensure_ascii=False)})")
    return out, tuple(notes)


def refuse_seed_negative(spec: ModelSpec, seed: Any, negative: Any) -> None:
    """One line if ``seed`` or ``negative`` is given to a model whose pages document neither
    (4o, Flux Kontext…), naming the models that take it."""
    mode = spec.text or spec.edit
    assert mode is not None
    _with_option(seed, None, mode, spec, "seed")
    _with_option(negative, None, mode, spec, "negative")


def _with_option(value: Any, field_name: str | None, mode: Mode, spec: ModelSpec,
                 option: str) -> dict[str, Any]:
    """``{field: value}`` for ``--seed``/``--negative`` (typed by the page), or one line
    naming the models that take it."""
    if value is None or value == "":
        return {}
    if field_name is None:
        takers = [m.name for m in MODELS.values()
                  if (m.takes_seed if option == "seed" else m.takes_negative)]
        what = "negative prompt" if option == "negative" else option
        raise KieUsageError(f"{option}: {spec.name} takes no {what}; "
                            + (f"these do: {', '.join(takers)}" if takers else
                               "no registered model does"))
    if option == "negative" and isinstance(value, str) and ("\n" in value or "\r" in value):
        raise KieUsageError("negative: one line of text, please (no line breaks)")
    kind = mode.fields.get(field_name) or Field("integer" if option == "seed" else "string")
    try:
        return {field_name: kind.coerce(field_name, value, spec.name)}
    except KieUsageError as exc:
        raise KieUsageError(str(exc).replace(f"--param {field_name}", option, 1)) from None


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
    return _typed(extra, None, spec)[0]


def build_request(model: str, *, prompt: str = "", size: str | None = None,
                  images: Sequence[str] | str = (), mask: str | None = None,
                  resolution: str | None = None, quality: str | None = None,
                  output_format: str | None = None, variants: int = 1,
                  params: Mapping[str, Any] | None = None,
                  callback_url: str | None = None, seed: Any = None,
                  negative: str | None = None,
                  ) -> GenerationRequest | MarketRequest | KontextRequest:
    """A checked request for our model ``model`` from our option names — before anything is
    sent; a bad value raises :class:`KieUsageError` in one line listing the allowed values.

    ``images`` are URLs (a local file's stand-in URL until the task uploads it); the mode
    (text-to-image or edit, and so the API model id) follows from whether any are given.
    ``variants`` is checked here; for ``variants: "one task each"`` models the caller runs
    one task per image. ``params`` passes documented fields the registry does not name.
    ``seed`` and ``negative`` fill the model's seed and negative-prompt fields (refused,
    with the models that take them, where its page documents none). A tool (upscale,
    remove background) takes no prompt.
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
        extra = _typed(extra, None, spec)[0]
        refuse_seed_negative(spec, seed, negative)
        if size is not None:
            _pick(spec.text.size if spec.text else None, "size", size, spec)
        return GenerationRequest(prompt=prompt, size=size or "1:1", variants=variants,
                                 files=urls, mask=mask, callback_url=callback_url, **extra)
    mode = spec.edit if urls else spec.text
    assert mode is not None  # _check_images refused the missing mode
    if not mode.prompt:
        if isinstance(prompt, str) and prompt.strip():
            raise KieUsageError(f"prompt: {spec.name} takes no prompt (it works on the input "
                                "image only); leave the prompt out")
        text = ""
    else:
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
             *(m.image_field for m in spec.modes() if m.image_field),
             *(f for m in spec.modes() for f in (m.seed_field, m.negative_field) if f)}
    extra, notes = _typed(_check_params(params, owned, spec), mode, spec)
    for key, value in mode.defaults.items():  # required, and none of our options
        extra.setdefault(key, value)
    fields.update(_with_option(seed, mode.seed_field, mode, spec, "seed"))
    fields.update(_with_option(negative, mode.negative_field, mode, spec, "negative"))
    if mode.seed_field in fields:
        ours["seed"] = fields[mode.seed_field]
    if mode.negative_field in fields:
        ours["negative"] = fields[mode.negative_field]
    ours["params"] = extra
    if spec.family == "kontext":
        return KontextRequest(spec.name, mode.model_id, text, {**fields, **extra}, urls,
                              ours, callback_url)
    return MarketRequest(spec.name, mode.model_id, text, {**fields, **extra}, urls,
                         mode.image_field, mode.image_list, ours, callback_url,
                         send_prompt=mode.prompt, notes=notes)


# -- backends -------------------------------------------------------------------------------


def backend_for(model_name: str, client: KieClient) -> Backend:
    """The backend that runs our model ``model_name`` (its family's)."""
    family = model_spec(model_name).family
    if family == "market":
        return MarketBackend(client, names=MARKET_NAMES)
    if family == "kontext":
        return KontextBackend(client)
    return FourOBackend(client)


def find_task_backend(task_id: str, client: KieClient,
                      model: str | None = None) -> tuple[Backend, str | None]:
    """The backend of an existing task, and a line saying how it was found (None when the
    model was known).

    The ``model`` recorded with it (history) decides. Without one the id's shape is no
    proof (KIE's own examples show ``task_4o_…`` 4o ids and bare-hex Market ids), so each
    family's record endpoint — free to ask — is asked in turn, the one the shape suggests
    first, and the first that knows the id answers. None knowing it raises the first
    family's :class:`~.errors.TaskNotFoundError`, saying which were asked.
    """
    if model and model in MODELS:
        return backend_for(model, client), None
    market: Backend = MarketBackend(client, names=MARKET_NAMES)
    families: list[tuple[str, Backend]] = [("the 4o Image API", FourOBackend(client)),
                                           ("the Market API", market),
                                           ("the Flux Kontext API", KontextBackend(client))]
    if model in MARKET_NAMES or str(task_id).strip().startswith("task_"):
        families.insert(0, families.pop(1))
    first: TaskNotFoundError | None = None
    asked: list[str] = []
    for name, backend in families:
        try:
            backend.poll(task_id)
        except TaskNotFoundError as exc:
            first = first or exc
            asked.append(name)
            continue
        except (AuthenticationError, ClassRefusalError, KieConfigError):
            raise
        except KieError:  # busy or unreachable just now: ask the next; the poller retries
            asked.append(f"{name} (no answer)")
            continue
        tried = f" ({', '.join(asked)} did not know it)" if asked else ""
        return backend, f"task {task_id}: found by {name}{tried}"
    if first is None:  # no API answered at all
        raise KieUsageError(f"task {task_id}: no API answered just now "
                            f"(asked {', '.join(asked)}); try again, or give the model")
    raise TaskNotFoundError(first.code, f"{first.msg} (asked {', '.join(asked)})",
                            first.endpoint, http_status=first.http_status)


def resume_backend(task_id: str, client: KieClient,
                   model: str | None = None) -> tuple[Backend, str | None]:
    """:func:`find_task_backend` for a task to follow: when no API knows the id, the id's
    shape decides, and the task fails at once saying its record is null."""
    try:
        return find_task_backend(task_id, client, model=model)
    except (AuthenticationError, ClassRefusalError, KieConfigError):
        raise
    except KieError:  # no API knew it, or none answered: the task's own polling says why
        return backend_for_task_id(task_id, client, model=model), None


def backend_for_task_id(task_id: str, client: KieClient, model: str | None = None) -> Backend:
    """The backend to follow an existing task: the ``model`` recorded with it (history)
    wins; else ids starting with ``task_`` are Market tasks and any other id a 4o task."""
    if model and model in MODELS:
        return backend_for(model, client)
    if model in MARKET_NAMES or str(task_id).strip().startswith("task_"):
        return MarketBackend(client, names=MARKET_NAMES)
    return FourOBackend(client)
