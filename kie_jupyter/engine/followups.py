"""One-step follow-ups on a picked image: upscale, remove the background, vary, reframe.

Each verb is a :class:`~kie_jupyter.engine.plan.Wanted` like any cell's: the model that does
the step (from the registry's ``steps``, or the one asked for), the image as its input and the
step's own options in the model's fields. The plan then checks it as it checks every request
(the tool's file limits before upload, the price before paying), and the task it makes is a
task like any other, its parent recorded from the input image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..api.errors import KieUsageError
from ..api.registry import MODELS, ModelSpec, model_spec
from .inputs import resolve_images
from .plan import Wanted

__all__ = ["VERBS", "SUMMARIES", "FollowUp", "models_for", "wanted_for"]

#: The verbs, in the order help lists them.
VERBS = ("upscale", "remove-bg", "vary", "reframe")

#: What each verb does, for help and errors.
SUMMARIES = {
    "upscale": "a larger copy of the image",
    "remove-bg": "the image with its background removed",
    "vary": "variations: the image's own prompt with the image as input",
    "reframe": "the image extended to a new frame (-s 16:9)",
}

#: The field a tool's page documents for the upscale factor.
_FACTOR_FIELD = "upscale_factor"


@dataclass(frozen=True)
class FollowUp:
    """A verb on one image, in our option names (``None``: the verb's default)."""

    verb: str
    image: Any
    model: str | None = None
    factor: int | str | None = None
    variants: int | None = None
    size: str | None = None
    prompt: str | None = None


def models_for(verb: str) -> list[ModelSpec]:
    """The registered models that can do ``verb``, the default first."""
    if verb == "vary":
        return [s for s in MODELS.values() if _takes_image_and_prompt(s)]
    return [s for s in MODELS.values() if verb in s.steps]


def _takes_image_and_prompt(spec: ModelSpec) -> bool:
    return spec.edit is not None and spec.edit.prompt and spec.kind != "tool"


def _names(specs: list[ModelSpec]) -> str:
    return ", ".join(s.name for s in specs)


def _one_image(source: Any, verb: str, option: str) -> Any:
    """The one image the verb works on (a task with one image counts as it)."""
    found = resolve_images([source], option)
    if len(found) != 1:
        count = len(found)
        picks = " … ".join(f"[{n}]" for n in (0, count - 1)) if count else ""
        raise KieUsageError(f"{verb}: {option} is {count} images; pick one"
                            + (f" ({picks})" if picks else ""))
    images = getattr(source, "images", None)
    if isinstance(images, list) and len(images) == 1 and hasattr(source, "__getitem__"):
        return source[0]  # a task of one image: that image (its prompt, its parent)
    return source


def _model(step: FollowUp, verb: str, option: str) -> tuple[ModelSpec, str | None]:
    """The model for the step, and a line saying why it was chosen where that is not plain."""
    able = models_for(verb)
    if step.model is not None:
        spec = model_spec(step.model)
        if spec not in able:
            listed = _names(able) if verb != "vary" else "a generator or editor (`%kie4o " \
                "models` lists them)"
            raise KieUsageError(f"{verb}: {spec.name} cannot {_infinitive(verb)}; "
                                + (f"use {listed}" if able else "no registered model can"))
        return spec, None
    if not able:
        raise KieUsageError(f"{verb}: no registered model does this step "
                            "(`%kie4o models --all` lists KIE's models and why)")
    if verb != "vary":
        return able[0], None
    parent = getattr(getattr(step.image, "task", None), "model", None)
    own = MODELS.get(str(parent)) if parent else None
    if own is not None and own in able:
        return own, None
    fallback = MODELS["4o"]
    if parent:
        return fallback, (f"vary: {parent} takes no input image, so {fallback.name} makes the "
                          "variations (--model to choose another; `%kie4o models` lists "
                          "the editors)")
    return fallback, None


def _infinitive(verb: str) -> str:
    return {"remove-bg": "remove a background", "vary": "vary an image (it takes no input "
            "image and prompt)"}.get(verb, verb)


def _prompt(step: FollowUp, verb: str, names: Mapping[str, str]) -> str:
    if step.prompt is not None:
        if not str(step.prompt).strip():
            raise KieUsageError(f"{verb}: {names.get('prompt', '--prompt')} is empty")
        return str(step.prompt)
    task = getattr(step.image, "task", None)
    prompt = str(getattr(task, "prompt", "") or "").strip()
    if not prompt:
        made = getattr(task, "model", None)
        spec = MODELS.get(str(made)) if made else None
        why = (f" (it was made by {made}, which takes none)"
               if spec is not None and spec.kind == "tool" else "")
        raise KieUsageError(f"{verb}: the image has no prompt to vary{why}; give one with "
                            f"{names.get('prompt', '--prompt')}")
    return prompt


def _factor(step: FollowUp, spec: ModelSpec, names: Mapping[str, str]) -> dict[str, Any]:
    field = spec.edit.fields.get(_FACTOR_FIELD) if spec.edit is not None else None
    if step.factor is None:
        return {}
    flag = names.get("factor", "--factor")
    if field is None:
        others = [s.name for s in models_for("upscale") if s.edit is not None
                  and _FACTOR_FIELD in s.edit.fields]
        raise KieUsageError(f"upscale: {spec.name} takes no {flag} (its page documents none)"
                            + (f"; {', '.join(others)} does" if others else ""))
    text = str(step.factor).strip()
    if field.enum and text not in field.enum:
        raise KieUsageError(f"upscale: {flag} {text}: {spec.name} takes "
                            f"{', '.join(field.enum[:-1])} or {field.enum[-1]}")
    return {_FACTOR_FIELD: text}


def wanted_for(step: FollowUp, *, names: Mapping[str, str]) -> tuple[Wanted, str | None]:
    """The :class:`~kie_jupyter.engine.plan.Wanted` that does ``step``, and a note to show
    (why a model was chosen), or a one-line :class:`KieUsageError` before anything is sent.

    ``names`` are how the front end calls the options (``--factor`` or ``factor``…).
    """
    verb = step.verb
    if verb not in VERBS:
        raise KieUsageError(f"{verb!r} is not a follow-up; use one of {', '.join(VERBS)}")
    option = names.get("image", "IMAGE")
    image = _one_image(step.image, verb, option)
    step = FollowUp(verb, image, step.model, step.factor, step.variants, step.size,
                    step.prompt)
    spec, note = _model(step, verb, option)
    if verb != "upscale" and step.factor is not None:
        raise KieUsageError(f"{verb}: {names.get('factor', '--factor')} is for upscale")
    if verb != "vary":
        if step.variants not in (None, 1):
            raise KieUsageError(f"{verb}: {spec.name} makes one image per input "
                                f"({names.get('variants', '-n')} is for vary)")
        if step.prompt is not None:
            raise KieUsageError(f"{verb}: {spec.name} takes no prompt")
    if verb == "reframe" and not step.size:
        sizes = ", ".join(spec.aspect_ratios)
        raise KieUsageError(f"reframe: give the new frame with {names.get('size', '-s')} "
                            f"({sizes})")
    if verb in ("upscale", "remove-bg") and step.size:
        raise KieUsageError(f"{verb}: {spec.name} keeps the image's frame "
                            f"({names.get('size', '-s')} is for reframe)")
    prompt = _prompt(step, verb, names) if verb == "vary" else ""
    params = _factor(step, spec, names) if verb == "upscale" else {}
    # Braces escaped: the prompt is sent as it was, never read as a {a|b} sweep (a model that
    # makes one image per task still gets its -n tasks as a variant dimension).
    wanted = Wanted(
        prompt.replace("{", "{{").replace("}", "}}"), model=spec.name, size=step.size,
        variants=1 if step.variants is None else step.variants, images=[image],
        params=params or None,
        names={"image": option, "mask": "mask", "input": option,
               "variants": names.get("variants", "-n")})
    return wanted, note
