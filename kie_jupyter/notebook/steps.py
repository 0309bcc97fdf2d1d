"""``%kie4o upscale | remove-bg | vary | reframe IMAGE`` and ``%kie4o mask IMAGE -o NAME``.

A follow-up verb is a cell written for the user: the engine picks the model that does the step
(:mod:`kie_jupyter.engine.followups`) and the magic runs its plan as it runs any cell's — dry
run, price and budget check, then a panel that becomes the task's card (parent recorded). The
mask painter (:mod:`.painter`) binds a mask to a name for ``-m $m``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, Protocol

from IPython.core.error import UsageError

from ..api.errors import KieError
from ..engine.followups import SUMMARIES, VERBS, FollowUp, wanted_for
from ..engine.plan import make_plan
from ..hints import with_hint
from ..optiontable import add_options
from . import options
from .options import CellOptions, check_out_name

__all__ = ["VERB_NAMES", "add_parsers"]

#: The subcommands this module adds, in the order ``%kie4o -h`` lists them.
VERB_NAMES = ("mask", *VERBS)

#: How the verbs' errors name their options.
_NAMES = {"image": "IMAGE", "factor": "--factor", "variants": "-n", "size": "-s",
          "prompt": "--prompt"}


class StepHost(Protocol):
    """What a verb needs of the magic: the namespace and the way a cell's plan is run."""

    shell: Any

    def run_options(self, opts: CellOptions, source: str) -> None: ...


Add = Callable[..., argparse.ArgumentParser]


def add_parsers(add: Add) -> None:
    """Declare the verbs with ``add(name, handler, summary)`` (the ``%kie4o`` parser's)."""
    mask = add("mask", _mask, "paint a mask over an image (painted = will be changed, black "
               "in the mask KIE gets; the image's exact size): -m $NAME in an edit")
    mask.add_argument("image", metavar="IMAGE", help="the image to paint on ($fox[0], a file)")
    mask.add_argument("-o", "--out", metavar="NAME", help="bind the mask to NAME")
    for verb in VERBS:
        sp = add(verb, _step, f"{SUMMARIES[verb]}, as a new task with the image as its parent")
        sp.add_argument("image", metavar="IMAGE", help="the picked image ($fox[1], a file)")
        if verb == "upscale":
            sp.add_argument("--factor", metavar="N", help="how many times larger, where the "
                            "model documents it (topaz-upscale: 1, 2, 4, 8; default 2)")
        if verb == "vary":
            sp.add_argument("-n", "--variants", type=_count, metavar="N",
                            help="how many variations (default 1)")
            sp.add_argument("--prompt", metavar="TEXT",
                            help="another prompt (default: the image's own)")
        if verb == "reframe":
            sp.add_argument("-s", "--size", metavar="RATIO", help="the new frame (16:9, 1:1…)")
        sp.add_argument("--model", metavar="NAME", help="the model for the step (default: "
                        "the first registered one that does it)")
        add_options(sp, "notebook", only=_RUN_OPTIONS)


def _count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


#: The cell's options a verb takes too, declared once in the option table.
_RUN_OPTIONS = ("out", "save", "no_wait", "dry_run", "yes", "max_credits")


def _step(host: StepHost, args: argparse.Namespace) -> None:
    image = options.unmark(args.image, args.objects)
    out = check_out_name(args.out)
    try:
        wanted, note = wanted_for(
            FollowUp(args.sub, image, model=args.model, factor=getattr(args, "factor", None),
                     variants=getattr(args, "variants", None), size=getattr(args, "size", None),
                     prompt=getattr(args, "prompt", None)),
            names=_NAMES)
        plan = make_plan(wanted)
    except KieError as exc:
        raise UsageError(with_hint(_prefixed(args.sub, str(exc)), getattr(exc, "fix", None),
                                   "notebook")) from None
    if note:
        print(f"kie4o: {note}")
    opts = CellOptions(plan=plan, out=out, save=args.save, no_wait=args.no_wait, timeout=None,
                       dry_run=args.dry_run, yes=args.yes, max_credits=args.max_credits)
    host.run_options(opts, f"%kie4o {args.line.strip()}")


def _mask(host: StepHost, args: argparse.Namespace) -> Any:
    from . import painter  # anywidget is imported only when a mask is painted

    image = options.unmark(args.image, args.objects)
    out = check_out_name(args.out) or "_kie4o_mask"
    try:
        mask = painter.paint(image, name=out)
    except KieError as exc:
        raise UsageError(f"%kie4o mask: {exc}") from None
    host.shell.user_ns[out] = mask
    return None


def _prefixed(sub: str, message: str) -> str:
    """``%kie4o upscale: …`` once (the engine's messages may start with the verb)."""
    return f"%kie4o {message}" if message.startswith(f"{sub}:") else f"%kie4o {sub}: {message}"

