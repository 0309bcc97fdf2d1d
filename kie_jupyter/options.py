"""The ``%%kie4o`` options, declared once, and their parsing into a checked request.

``declare`` puts the options on the magic with IPython's ``magic_arguments`` (so ``%%kie4o?``
is the help); :func:`parse_cell` turns a magic line and cell body into :class:`CellOptions`,
raising a one-line ``UsageError`` for any bad input before anything is sent.
"""

from __future__ import annotations

import keyword
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .errors import KieUsageError
from .inputs import InputImage, request_with_inputs, resolve_images, resolve_mask
from .models import VARIANTS, FallbackModel, GenerationRequest, Size

__all__ = ["declare", "parse_cell", "CellOptions", "fill_prompt"]

_SIZES = [s.value for s in Size]
_MODELS = [m.value for m in FallbackModel]


def declare(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate the magic with every ``%%kie4o`` option (the one declaration)."""
    decorators = [
        magic_arguments(),
        argument("-s", "--size", choices=_SIZES, default=None,
                 help="aspect ratio: 1:1 (default), 3:2 or 2:3"),
        argument("-n", "--variants", type=int, choices=list(VARIANTS), default=1,
                 help="how many images: 1 (default), 2 or 4"),
        argument("-i", "--image", action="append", default=[], metavar="SRC",
                 help="input image (repeatable, ≤ 5): a local path (uploaded first), an "
                      "http(s) URL, or $name of a path, URL, bytes or earlier task"),
        argument("-m", "--mask", default=None, metavar="SRC",
                 help="mask for the one --image: black = edit, white = keep; same size"),
        argument("-e", "--enhance", action="store_true", help="prompt enhancement (isEnhance)"),
        argument("--fallback", nargs="?", const=FallbackModel.FLUX_MAX.value, default=None,
                 choices=_MODELS, metavar="MODEL",
                 help="fall back to another model if 4o is unavailable: FLUX_MAX (default) "
                      "or GPT_IMAGE_1"),
        argument("--callback", default=None, metavar="URL",
                 help="callBackUrl: the API POSTs the result there when the task ends"),
        argument("-o", "--out", default=None, metavar="NAME",
                 help="bind the task object to NAME (the last task is always _kie4o)"),
        argument("--save", default=None, metavar="DIR",
                 help="write the images as DIR/<taskId>_<n>.png (+ a JSON sidecar)"),
        argument("--no-wait", action="store_true",
                 help="return at once; the panel keeps updating and the kernel stays free"),
        argument("--timeout", type=float, default=None, metavar="S",
                 help="local give-up time in seconds (default 600); the task can be resumed"),
        argument("--dry-run", action="store_true",
                 help="show the request body that would be sent (key masked); send nothing"),
    ]
    for deco in reversed(decorators[1:]):
        func = deco(func)
    return decorators[0](func)


@dataclass(frozen=True)
class CellOptions:
    """A parsed, checked ``%%kie4o`` cell."""

    request: GenerationRequest
    images: tuple[InputImage, ...]
    mask: InputImage | None
    out: str | None
    save: str | None
    no_wait: bool
    timeout: float | None
    dry_run: bool


class _Formatter(string.Formatter):
    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        try:
            return super().get_field(field_name, args, kwargs)
        except (KeyError, IndexError):
            name = field_name.split(".")[0].split("[")[0]
            raise UsageError(
                f"prompt: {{{name}}} is not defined in the notebook "
                "(write {{ and }} for literal braces)"
            ) from None
        except AttributeError as exc:
            raise UsageError(f"prompt: {{{field_name}}}: {exc}") from None


def fill_prompt(body: str, namespace: Mapping[str, Any]) -> str:
    """Fill ``{name}`` from the namespace; ``{{`` and ``}}`` are literal braces."""
    try:
        return _Formatter().vformat(body, (), namespace)
    except ValueError as exc:
        raise UsageError(f"prompt: {exc} (write {{{{ and }}}} for literal braces)") from None


def _lookup(value: str, namespace: Mapping[str, Any], option: str) -> Any:
    """``$name`` takes a value from the notebook; anything else is taken as written."""
    if value.startswith("$"):
        name = value[1:].strip("{}")
        if name not in namespace:
            raise UsageError(f"{option}: ${name} is not defined in the notebook")
        return namespace[name]
    return value


def parse_cell(magic_func: Callable[..., Any], line: str, body: str,
               namespace: Mapping[str, Any], *, default_size: str) -> CellOptions:
    """Parse and check one ``%%kie4o`` cell; ``UsageError`` on any bad input."""
    args = parse_argstring(magic_func, line)
    if args.out is not None and (not args.out.isidentifier() or keyword.iskeyword(args.out)):
        raise UsageError(f"-o/--out: {args.out!r} is not a valid Python name")
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError(f"--timeout: {args.timeout:g} must be a positive number of seconds")
    if args.callback is not None and not args.callback.startswith(("http://", "https://")):
        raise UsageError(f"--callback: {args.callback!r} is not an http(s) URL")
    prompt = fill_prompt(body.strip(), namespace)
    try:
        images = resolve_images(_lookup(v, namespace, "--image") for v in args.image)
        mask = resolve_mask(
            None if args.mask is None else _lookup(args.mask, namespace, "--mask"), images
        )
        # URLs are known now; local files get their URL when the task uploads them.
        request = request_with_inputs(
            prompt, images, mask,
            size=args.size or default_size,
            variants=args.variants,
            enhance=args.enhance,
            fallback=args.fallback is not None,
            fallback_model=args.fallback,
            callback_url=args.callback,
        )
    except KieUsageError as exc:
        raise UsageError(str(exc)) from None
    return CellOptions(
        request=request, images=images, mask=mask, out=args.out, save=args.save,
        no_wait=args.no_wait, timeout=args.timeout, dry_run=args.dry_run,
    )

