"""The request of one task, from our option names, for any model: the one builder the magic,
the CLI and the Python API share.

4o gets its own :class:`~kie_jupyter.api.models.GenerationRequest` (with ``--param`` fields
it documents, such as ``upload_cn``); every other model the registry's request. Everything is
checked here, before anything is sent; messages name the field (``mask: …``), and a front end
turns that into its own option's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..api.errors import KieUsageError
from ..api.registry import build_request, fouro_extras, model_spec, refuse_seed_negative
from .inputs import PENDING_UPLOAD, InputImage, check_limits, request_with_inputs

__all__ = ["request_for"]


def request_for(model: str, prompt: str, images: tuple[InputImage, ...], mask: Any, *,
                size: str | None, variants: int, enhance: bool = False,
                fallback: bool = False, fallback_model: str | None = None,
                callback_url: str | None = None, resolution: str | None = None,
                quality: str | None = None, output_format: str | None = None,
                params: Mapping[str, Any] | None = None, default_size: str = "1:1",
                seed: Any = None, negative: str | None = None) -> Any:
    """One checked request for ``model``.

    ``mask`` is the resolved mask for 4o; for another model any mask given is refused (only
    4o takes one), as are ``enhance`` and ``fallback``.
    """
    spec = model_spec(model)
    given = dict(params) if params else None
    if spec.family == "4o":
        # --param upload_cn=true, …; --resolution and the like are refused here.
        extra = fouro_extras(resolution=resolution, quality=quality,
                             output_format=output_format, params=given)
        refuse_seed_negative(spec, seed, negative)
        check_limits([*images, *([mask] if isinstance(mask, InputImage) else [])],
                     spec.edit.limits if spec.edit else None, "4o", option="images")
        try:
            return request_with_inputs(
                prompt, images, mask, size=size or default_size, variants=variants,
                enhance=enhance, fallback=fallback, fallback_model=fallback_model,
                callback_url=callback_url, upload_cn=extra.get("upload_cn", False))
        except KieUsageError as exc:  # name the model, as the other models' messages do
            text = str(exc)
            if " is not allowed; " in text:
                raise KieUsageError(text.replace(" is not allowed; ",
                                                 " is not allowed for 4o; ", 1)) from None
            raise
    for field, value in (("enhance", enhance), ("fallback", fallback)):
        if value:
            raise KieUsageError(f"{field}: {model} does not take it (only 4o does)")
    if images and spec.edit is not None:
        check_limits(images, spec.edit.limits, spec.name, option="images")
    return build_request(model, prompt=prompt, size=size,
                         images=[i.url or PENDING_UPLOAD for i in images],
                         mask=None if mask is None else PENDING_UPLOAD, variants=variants,
                         callback_url=callback_url, resolution=resolution, quality=quality,
                         output_format=output_format, params=given, seed=seed,
                         negative=negative)
