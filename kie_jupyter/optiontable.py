"""The generation options, declared once for both front ends: ``%%kie4o`` and ``kie4o``.

Each :class:`Option` holds its flags, ``dest``, type and choices, default, metavar and help.
The notebook's ``magics._declare`` makes the magic's ``@argument`` decorators from
:data:`OPTIONS` (so ``%%kie4o?`` documents them) and the CLI adds the same options to its
parser with :func:`add_options`; a front end that needs another default says so in one
override, next to the reason. Options that only make sense in a notebook (``-o``,
``--no-wait``) are marked ``notebook_only`` and the CLI leaves them out.

This module sits beside :mod:`kie_jupyter.hints`, below both front ends, and never imports
IPython: the CLI must run without the notebook stack (an import-linter contract holds it).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .api.models import FallbackModel, Size

__all__ = ["Option", "OPTIONS", "SIZES", "MODELS", "FRONT_ENDS", "options_for", "add_options",
           "BY_DEST", "BY_LONG", "LONG_NAMES", "OBJECT_FLAGS", "name_the_flag",
           "credits_limit", "repeated_option", "given_twice"]

SIZES = tuple(s.value for s in Size)
MODELS = tuple(m.value for m in FallbackModel)
FRONT_ENDS = ("notebook", "cli")

# Keyword arguments an ``add_argument`` may leave out when they are None (default is kept:
# ``default=None`` is meaningful).
_OPTIONAL_KWARGS = ("type", "choices", "metavar", "nargs", "const")


@dataclass(frozen=True)
class Option:
    """One option of a generation: everything argparse needs, plus which front ends take it."""

    flags: tuple[str, ...]
    dest: str
    help: str
    action: str = "store"
    type: Callable[[str], Any] | None = None
    choices: tuple[Any, ...] | None = None
    default: Any = None
    metavar: str | None = None
    nargs: str | None = None
    const: Any = None
    #: Appended to ``help`` in the notebook, where values can come from ``$name``/``{expr}``.
    notebook_help: str = ""
    #: In the notebook the value may be any object of the namespace (a task, bytes, an image).
    notebook_objects: bool = False
    #: The CLI leaves it out: it binds a notebook name, or frees a kernel, or is a notebook aid.
    notebook_only: bool = False

    @property
    def long(self) -> str:
        """The long flag, for error messages (``--image`` for ``-i``)."""
        return self.flags[-1]

    def kwargs(self, front_end: str, **overrides: Any) -> dict[str, Any]:
        """``add_argument`` keyword arguments for ``front_end``; ``overrides`` replace any.

        An override of None drops the keyword (``choices=None``: argparse checks nothing).
        """
        if front_end not in FRONT_ENDS:
            raise ValueError(f"front_end must be one of {FRONT_ENDS}, not {front_end!r}")
        unknown = set(overrides) - {"help", "default", "action", *_OPTIONAL_KWARGS}
        if unknown:
            raise TypeError(f"{self.long}: cannot override {', '.join(sorted(unknown))}")
        help_text = self.help + (self.notebook_help if front_end == "notebook" else "")
        # A fresh list each time: argparse hands the default itself to every parse.
        default = list(self.default) if isinstance(self.default, list) else self.default
        kw: dict[str, Any] = {"dest": self.dest, "action": self.action, "default": default,
                              "help": help_text}
        for name in _OPTIONAL_KWARGS:
            kw[name] = getattr(self, name)
        kw.update(overrides)
        if isinstance(kw.get("choices"), tuple):
            kw["choices"] = list(kw["choices"])
        return {k: v for k, v in kw.items() if v is not None or k == "default"}


def credits_limit(text: str) -> float:
    """``--max-credits``'s value: a number of credits ≥ 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of credits") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of credits ≥ 0")
    return value


#: Every generation option, in the order the help lists them.
OPTIONS: tuple[Option, ...] = (
    Option(("--model",), "model", metavar="NAME",
           help="the model: 4o (default, or %%config Kie4o.model), gpt-image-1.5, "
                "nano-banana-pro, seedream-4.5… (`%%kie4o models` lists them and their "
                "options)",
           notebook_help="; a comma list runs the prompt on each (a sweep)"),
    Option(("-s", "--size"), "size",
           help="aspect ratio: 1:1 (default), 3:2 or 2:3 for 4o; other models take their "
                "own (16:9, 4:3…)",
           notebook_help="; a comma list (-s 1:1,3:2) sweeps"),
    Option(("-n", "--variants"), "variants", type=int, default=1,
           help="how many images: 1 (default); 4o makes 1, 2 or 4 in one task, other "
                "models one task per image"),
    Option(("-i", "--image"), "image", action="append", default=[], metavar="SRC",
           notebook_objects=True,
           help="input image (repeatable, ≤ 5): a local path (uploaded first) or an "
                "http(s) URL",
           notebook_help="; or $name / {expression} of a path, URL, bytes, an earlier task "
                         "(all its images) or one of its images ($fox[1])"),
    Option(("-m", "--mask"), "mask", metavar="SRC", notebook_objects=True,
           help="mask for the one --image: black = edit, white = keep; same size"),
    Option(("-e", "--enhance"), "enhance", action="store_true",
           help="prompt enhancement (isEnhance)"),
    Option(("--fallback",), "fallback", nargs="?", const=FallbackModel.FLUX_MAX.value,
           choices=MODELS, metavar="MODEL",
           help="fall back to another model if 4o is unavailable: FLUX_MAX (default) "
                "or GPT_IMAGE_1"),
    Option(("--resolution",), "resolution", metavar="R",
           help="the model's resolution (e.g. 1K, 2K, 4K), where it has one",
           notebook_help="; a comma list sweeps"),
    Option(("--quality",), "quality", metavar="Q",
           help="the model's quality (e.g. medium, high), where it has one",
           notebook_help="; a comma list sweeps"),
    Option(("--seed",), "seed", metavar="N",
           help="the model's seed, where its page documents one (qwen-image, seedream, "
                "imagen-4…); the same seed and prompt give a repeatable image",
           notebook_help="; a comma list (--seed 1,2,3) sweeps"),
    Option(("--negative",), "negative", metavar="TEXT",
           help="a negative prompt (what to leave out), where the model's page documents "
                "one (qwen-image, imagen-4, ideogram-character)"),
    Option(("--format",), "output_format", metavar="F",
           help="the model's output format (e.g. png, jpg), where it has one"),
    Option(("--param",), "param", action="append", default=[], metavar="KEY=VALUE",
           help="a documented input field the registry does not name yet (repeatable)"),
    Option(("--callback",), "callback", metavar="URL",
           help="callBackUrl: the API POSTs the result there when the task ends"),
    Option(("-o", "--out"), "out", metavar="NAME", notebook_only=True,
           help="bind the task object to NAME (the last task is always _kie4o)"),
    Option(("--save",), "save", metavar="DIR",
           help="write the images as DIR/<taskId>_<n>.png (+ a JSON sidecar); the folder "
                "is checked (created, writable) before anything is sent"),
    Option(("--no-wait",), "no_wait", action="store_true", notebook_only=True,
           help="return at once; the panel keeps updating and the kernel stays free"),
    Option(("--timeout",), "timeout", type=float, metavar="S",
           help="local give-up time in seconds (default 600); the task can be resumed"),
    Option(("--dry-run",), "dry_run", action="store_true",
           help="show every request that would be sent (key masked); send nothing"),
    Option(("--yes",), "yes", action="store_true",
           help="confirm a sweep of more tasks than %%config Kie4o.confirm_over (8), an "
                "estimate over confirm_over_credits (200), or an unknown price"),
    Option(("--max-credits",), "max_credits", type=credits_limit,
           metavar="N",
           help="refuse to send (before anything is paid) if the estimate is over N credits "
                "or unknown"),
)


#: Each option by its ``dest``.
BY_DEST: Mapping[str, Option] = {o.dest: o for o in OPTIONS}
#: The long name of each flag, for error messages (``-i`` → ``--image``).
LONG_NAMES: Mapping[str, str] = {flag: o.long for o in OPTIONS for flag in o.flags}
#: Each option by its long flag.
BY_LONG: Mapping[str, Option] = {o.long: o for o in OPTIONS}
#: The flags whose notebook value may be an object of the namespace.
OBJECT_FLAGS = frozenset(flag for o in OPTIONS if o.notebook_objects for flag in o.flags)


def name_the_flag(message: str) -> str:
    """A checked request's message in the option's words: ``size: …`` → ``--size: …`` (the
    request names its fields; the user typed flags)."""
    field, sep, rest = message.partition(": ")
    aliases = {"images": "image", "callback_url": "callback", "params": "param"}
    option = BY_DEST.get(aliases.get(field, field))
    if sep and option is not None:
        return f"{option.long}: {rest}"
    return message


def repeated_option(words: Sequence[str]) -> str | None:
    """The long name of an option given twice that takes one value (``--model 4o --model
    seedream-4.5``, ``-s 3:2 -s 2:3``: argparse would keep the last silently), else None."""
    seen: set[str] = set()
    for word in words:
        if word == "--":
            break
        flag = word.split("=", 1)[0]
        if flag.startswith("-") and not flag.startswith("--") and len(flag) > 2:
            flag = flag[:2]  # -s3:2
        name = LONG_NAMES.get(flag) or _abbreviated(flag)
        if name is None or BY_LONG[name].action != "store":
            continue
        if name in seen:
            return name
        seen.add(name)
    return None


def _abbreviated(flag: str) -> str | None:
    """The long option a unique prefix stands for (argparse takes ``--mod`` for
    ``--model``), else None."""
    if not flag.startswith("--") or len(flag) < 3:
        return None
    found = {long for long in BY_LONG if long.startswith(flag)}
    return found.pop() if len(found) == 1 else None


def given_twice(name: str) -> str:
    """The one line for an option given twice (see :func:`repeated_option`)."""
    sweeps = name in ("--model", "--size", "--resolution", "--quality", "--seed")
    return (f"{name}: given twice; give it once"
            + (f" (a comma list runs each: {name} a,b)" if sweeps else ""))


def options_for(front_end: str) -> Iterator[Option]:
    """The options ``front_end`` takes, in table order."""
    if front_end not in FRONT_ENDS:
        raise ValueError(f"front_end must be one of {FRONT_ENDS}, not {front_end!r}")
    return (o for o in OPTIONS if front_end == "notebook" or not o.notebook_only)


def add_options(parser: argparse.ArgumentParser, front_end: str,
                overrides: Mapping[str, Mapping[str, Any]] | None = None,
                only: Collection[str] | None = None) -> None:
    """Add the table's options for ``front_end`` to ``parser`` (``only``: just those dests).

    ``overrides`` maps a ``dest`` to keyword arguments that replace the table's for this front
    end only (e.g. the CLI's own ``--save`` default).
    """
    overrides = dict(overrides or {})
    for option in options_for(front_end):
        if only is not None and option.dest not in only:
            continue
        parser.add_argument(*option.flags,
                            **option.kwargs(front_end, **overrides.pop(option.dest, {})))
    if overrides:
        raise KeyError(f"no {front_end} option with dest {', '.join(sorted(overrides))}")
