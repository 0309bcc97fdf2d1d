"""One generation plan for every front end: what a cell, a call or a command line will send.

The magic, the Python API and the ``kie4o`` command describe what they want with
:class:`Wanted` (our option names; a list or a comma text is a sweep dimension, and ``{a|b}``
in the prompt another) and :func:`make_plan` turns it into a :class:`Plan`: every task's
checked request, its labels, the input images and mask resolved once. Nothing is sent or
uploaded here, so any mistake is one :class:`KieUsageError` that costs nothing.

The plan then answers what every front end asks before paying — how many tasks and images
(:meth:`Plan.confirm`), the exact requests (:meth:`Plan.dry_run`) — makes the tasks
(:meth:`Plan.new_tasks`, :meth:`Plan.sweep_of`), and after a Ctrl-C says where each stands
(:func:`interrupt_report`). The front ends only word it their own way.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api.client import KieClient
from ..api.errors import KieUsageError
from ..api.models import MAX_FILES, TaskStatus
from ..api.prices import Cost, active_prices, format_credits
from ..api.registry import ModelSpec, backend_for, model_spec
from .history import HistoryStore
from .inputs import PENDING_UPLOAD, InputImage, resolve_images, resolve_mask
from .poller import PollSchedule
from .requests import request_for
from .sweep import Axis, Combination, Sweep, expand
from .task import Task

__all__ = ["Wanted", "PlannedTask", "Plan", "PlanCost", "make_plan", "resolve_inputs",
           "unescape_braces", "InterruptReport", "interrupt_report", "SWEEPABLE"]

#: Where a notebook user sees the price table (each front end may say its own way).
PRICES_HINT = "`%kie4o prices` shows the table"

#: The options that may be given as several values (a sweep dimension), in axis order.
SWEEPABLE = ("model", "size", "resolution", "quality", "seed")


def unescape_braces(prompt: str) -> str:
    """``{{`` and ``}}`` are literal braces: the API gets single ones."""
    return prompt.replace("{{", "{").replace("}}", "}")


@dataclass(frozen=True)
class Wanted:
    """What a front end asks for, in our option names (before any check).

    ``model``, ``size``, ``resolution`` and ``quality`` may be several values (a list, or a
    comma text); ``variants`` is images per prompt: one task for a model that makes several
    (4o), else one task per image (a ``variant`` dimension). ``fill`` turns each expanded
    prompt into the text sent (the notebook fills ``{name}`` from its namespace).
    ``names`` are how errors call the image and mask options (``--image`` or ``images``).
    ``sweep=False`` takes the prompt and every option as they are (one task).
    """

    prompt: str
    model: str | Sequence[str] | None = None
    size: str | Sequence[str] | None = None
    resolution: str | Sequence[str] | None = None
    quality: str | Sequence[str] | None = None
    #: The model's seed (``--seed 1,2,3`` sweeps); ``negative`` its negative prompt.
    seed: int | str | Sequence[int | str] | None = None
    negative: str | None = None
    variants: int = 1
    images: Sequence[Any] = ()
    mask: Any = None
    enhance: bool = False
    fallback: bool = False
    fallback_model: str | None = None
    callback_url: str | None = None
    output_format: str | None = None
    params: Mapping[str, Any] | None = None
    default_model: str = "4o"
    default_size: str = "1:1"
    #: The default size was chosen (``%config Kie4o.default_size``): every model that takes
    #: that ratio gets it, not only 4o (the others keep their own default).
    default_size_everywhere: bool = False
    fill: Callable[[str], str] = unescape_braces
    sweep: bool = True
    names: Mapping[str, str] = field(default_factory=lambda: {
        "image": "--image", "mask": "--mask", "input": "--image"})


@dataclass(frozen=True)
class PlannedTask:
    """One task of a plan: its labels in the sweep (none for a single task), the model's
    name and the checked request."""

    labels: tuple[str, ...]
    model: str
    request: Any

    @property
    def image_count(self) -> int:
        return int(getattr(self.request, "variants", 1) or 1)


@dataclass(frozen=True)
class Plan:
    """Every task a front end will start, checked; nothing sent yet."""

    axes: tuple[Axis, ...]
    tasks: tuple[PlannedTask, ...]
    images: tuple[InputImage, ...]
    mask: InputImage | None
    #: The prompt as written, ``{a|b}`` groups and all.
    prompt: str = ""
    #: Models that do not take the chosen default size (they keep their own).
    own_size: tuple[str, ...] = ()

    @property
    def is_sweep(self) -> bool:
        """True when it makes more than one task (or varies anything)."""
        return len(self.tasks) > 1 or bool(self.axes)

    @property
    def task_count(self) -> int:
        return len(self.tasks)

    @property
    def image_count(self) -> int:
        """How many images it asks for in all."""
        return sum(t.image_count for t in self.tasks)

    def estimate(self, *, demo: bool = False) -> PlanCost:
        """What each task and the whole plan would cost, from the price table in use (a bad
        price file is one :class:`KieUsageError`, before anything is sent)."""
        table = active_prices()
        costs = tuple(table.estimate({"model": t.model, **t.request.to_dict()}, demo=demo)
                      for t in self.tasks)
        return PlanCost(costs, tuple(t.model for t in self.tasks), self.image_count,
                        table.usd_per_credit, demo)

    def confirm(self, over: int, yes: bool, *, setting: str, how: str,
                cost: PlanCost | None = None, over_credits: float | None = None,
                credits_setting: str = "confirm_over_credits", credits: bool = True,
                table: str = PRICES_HINT) -> None:
        """Refuse, unless ``yes``, a sweep of more than ``over`` tasks, then (given its
        ``cost``, unless ``credits`` is False) what :meth:`PlanCost.confirm` refuses: one
        line with the figures, saying how to confirm (``how``: ``add --yes``…) and that
        nothing was sent."""
        if yes:
            return
        if self.is_sweep and self.task_count > over:
            counts = cost.counts() if cost is not None else _counts(self.task_count,
                                                                     self.image_count)
            # -n alone on a model that makes one image per task: no sweep was written.
            what = ("this sweep" if any(a.name != "variant" for a in self.axes)
                    else f"-n {self.task_count} ({self.tasks[0].model} makes one image per "
                         "task)")
            raise KieUsageError(f"{what} makes {counts}, more than {setting} = {over}: "
                                f"{how} to send them (nothing was sent)")
        if cost is not None and credits:
            cost.confirm(yes, how=how, over_credits=over_credits,
                         credits_setting=credits_setting, table=table)

    def dry_run(self, client: KieClient) -> str:
        """Every request it would send (uploads named, the key masked) with its estimated
        cost, then the count and the total."""
        local = [i.label for i in self.images if i.url is None]
        cost = self.estimate(demo=bool(getattr(client, "demo", False)))
        blocks = []
        for task, each in zip(self.tasks, cost.costs, strict=True):
            path = getattr(backend_for(task.model, client), "submit_path", "")
            text = json.dumps(task.request.to_body(), indent=2, ensure_ascii=False)
            names = iter(local)
            # Only local files are uploads; a URL is sent as it is (and shown as such).
            while f'"{PENDING_UPLOAD}"' in text:
                label = next(names, None) or (self.mask.label if self.mask else "file")
                text = text.replace(f'"{PENDING_UPLOAD}"', json.dumps(f"<upload of {label}>"),
                                    1)
            where = f"# {' / '.join(task.labels)}\n" if task.labels else ""
            price = f"# {each.with_usd()}" + (f" — {each.source}" if not each.known else "")
            price += "".join(f"\n# {note}" for note in getattr(task.request, "notes", ()))
            blocks.append(f"{where}{price}\nPOST {client.base_url}{path}\n"
                          f"Authorization: Bearer {client.masked_key()}\n"
                          f"Content-Type: application/json\n\n{text}")
        count = f"{len(blocks)} requests" if len(blocks) > 1 else "1 request"
        images = f"{self.image_count} image{'s' if self.image_count != 1 else ''}"
        return "\n\n".join(blocks) + (f"\n\n(dry run: {count}, {images}, {cost.text()}; "
                                       "nothing was sent)")

    def new_tasks(self, client: KieClient, *, timeout: float,
                  save_dir: str | os.PathLike[str] | Path | None = None,
                  history: HistoryStore | None = None, schedule: PollSchedule | None = None,
                  embed: str = "thumb",
                  labels: Callable[[PlannedTask], dict[str, str] | None] | None = None,
                  ) -> list[Task]:
        """A task (not started) for each planned one, on its model's API family.

        ``labels`` gives each task's history tags; by default its place in the sweep."""
        def tags(planned: PlannedTask) -> dict[str, str] | None:
            if labels is not None:
                return labels(planned)
            return {"sweep": " / ".join(planned.labels)} if planned.labels else None

        return [Task(p.request, client=client, backend=backend_for(p.model, client),
                     inputs=self.images,
                     mask=self.mask if model_spec(p.model).family == "4o" else None,
                     timeout=timeout, schedule=schedule, save_dir=save_dir, embed=embed,
                     history=history, labels=tags(p))
                for p in self.tasks]

    def sweep_of(self, tasks: Sequence[Task], embed: str = "thumb") -> Sweep:
        """The :class:`Sweep` of tasks made by :meth:`new_tasks` (labels in order)."""
        sweep = Sweep(self.axes, [(p.labels, t) for p, t in zip(self.tasks, tasks, strict=True)],
                      embed=embed)
        sweep.template = self.prompt
        return sweep


def _num(value: float | None) -> str:
    return "?" if value is None else format_credits(max(value, 0.0))


def _counts(tasks: int, images: int) -> str:
    return (f"{tasks} task{'s' if tasks != 1 else ''}, "
            f"{images} image{'s' if images != 1 else ''}")


@dataclass(frozen=True)
class PlanCost:
    """The estimate of what will be sent: each task's :class:`Cost` (in order), the models
    and the images asked; it says what it costs and refuses what must not be sent."""

    costs: tuple[Cost, ...]
    models: tuple[str, ...]
    images: int
    usd_per_credit: float | None = None
    demo: bool = False

    @property
    def total(self) -> float:
        """The sum of the known prices (see :attr:`unknown`)."""
        return sum(c.value for c in self.costs if c.value is not None)

    @property
    def unknown(self) -> tuple[str, ...]:
        """What (once each: ``4o edit``, ``qwen-image``) has an unknown price here."""
        return tuple(dict.fromkeys(c.what or m for m, c in zip(self.models, self.costs,
                                                               strict=True)
                                   if c.value is None))

    def unknown_text(self) -> str:
        return ", ".join(self.unknown)

    def text(self) -> str:
        """``≈ 96 credits (≈ $0.48)``; ``≈ 90 credits + unknown (qwen-image)``."""
        demo = " — demo: not charged" if self.demo else ""
        if self.unknown:
            known = ("cost unknown" if not any(c.known for c in self.costs)
                     else f"≈ {format_credits(self.total)} credits + unknown")
            return f"{known} ({self.unknown_text()}){demo}"
        usd = (f" (≈ ${self.total * self.usd_per_credit:,.2f})"
               if self.usd_per_credit is not None and not self.demo else "")
        return f"≈ {format_credits(self.total)} credits{usd}{demo}"

    def _why(self) -> str:
        """Why the first unknown price is unknown, in the table's words (without its page)."""
        first = next(c for c in self.costs if c.value is None)
        return first.source.split(" (")[0]

    def counts(self) -> str:
        """``12 tasks, 24 images, ≈ 96 credits (≈ $0.48)``."""
        return f"{_counts(len(self.costs), self.images)}, {self.text()}"

    def confirm(self, yes: bool, *, how: str, over_credits: float | None = None,
                credits_setting: str = "confirm_over_credits",
                table: str = PRICES_HINT) -> None:
        """Refuse, unless ``yes``, a paid plan holding an unknown price or estimated over
        ``over_credits``: one line with the figures (demo plans are never refused)."""
        if yes or self.demo or not self.costs:
            return
        if self.unknown:
            raise KieUsageError(
                f"{_counts(len(self.costs), self.images)}: the price of "
                f"{self.unknown_text()} is unknown ({self._why()}): {how} to send anyway "
                f"(nothing was sent; {table})")
        if over_credits is not None and self.total > over_credits:
            raise KieUsageError(
                f"{self.counts()}, more than {credits_setting} = "
                f"{format_credits(over_credits)} credits: {how} to send (nothing was sent)")

    def hold_to(self, *, max_credits: float | None = None, left: float | None = None,
                budget: str = "budget") -> None:
        """Refuse a paid plan over ``max_credits`` (``--max-credits``) or over the ``left``
        credits of a budget — or whose price is unknown while either applies; ``--yes``
        does not lift these. One line with the figures; nothing is sent."""
        if self.demo or not self.costs:
            return
        for limit, what in ((max_credits, f"--max-credits {_num(max_credits)}"),
                            (left, f"{budget}: {_num(left)} credits left")):
            if limit is None:
                continue
            if self.unknown:
                raise KieUsageError(
                    f"{what}; the price of {self.unknown_text()} is unknown, so this cannot "
                    "be held to it (nothing was sent)")
            if self.total > limit + 1e-9:
                raise KieUsageError(f"{what}; this needs {self.counts()} (nothing was sent)")


def nearest_ratio(image: InputImage, ratios: Sequence[str]) -> str | None:
    """The ratio of ``ratios`` nearest the image's own shape (None when its pixels are not
    at hand: a URL), so that an edit keeps its source's shape unless ``-s`` says otherwise."""
    if image.data is None:
        return None
    from ..api.imagedata import sniff_image

    info = sniff_image(image.data)
    if info is None or not info.width or not info.height:
        return None
    shape = math.log(info.width / info.height)
    best: tuple[float, str] | None = None
    for ratio in ratios:
        w, _, h = ratio.partition(":")
        if not (w.isdigit() and h.isdigit()) or not int(h) or not int(w):
            continue  # auto, Qwen's presets
        off = abs(shape - math.log(int(w) / int(h)))
        if best is None or off < best[0] - 1e-9:
            best = (off, ratio)
    return best[1] if best else None


def make_plan(wanted: Wanted) -> Plan:
    """Expand and check everything ``wanted`` asks for; :class:`KieUsageError` on any mistake.

    Every combination of the prompt's ``{a|b}`` groups and the options given as several
    values is a task; a model that makes one image per task runs ``variants`` tasks (a
    ``variant`` dimension). Images and the mask are resolved once, for every task, and each
    model's own limits are checked against them.
    """
    if not isinstance(wanted.prompt, str):
        raise KieUsageError(f"prompt: expected text, not {type(wanted.prompt).__name__}")
    if isinstance(wanted.variants, bool) or not isinstance(wanted.variants, int):
        raise KieUsageError(f"variants: expected a whole number, not {wanted.variants!r}")
    chosen = _chosen(wanted)
    text = wanted.prompt.strip() if wanted.sweep else wanted.prompt
    axes, combos = _combinations(text, chosen, wanted.sweep)
    spec_of = _specs(combos)
    one_each = wanted.variants > 1 and any(s.variants != "native" for s in spec_of.values())
    if one_each and not wanted.sweep:
        name = next(n for n, s in spec_of.items() if s.variants != "native")
        raise KieUsageError(
            f"variants: {name} makes one image per task; kie_jupyter.sweep(..., "
            f"variants={wanted.variants}) runs {wanted.variants} tasks")
    if one_each:
        # Those models make one image per task: one task per variant, a sweep dimension.
        axes, combos = expand(text, {
            **chosen, "variant": [str(n) for n in range(1, wanted.variants + 1)]})
    images, mask = _inputs(wanted, spec_of)
    tasks = []
    for combo in combos:
        name = combo.options["model"].strip()
        spec = spec_of[name]
        if spec.family == "4o" and len(images) > MAX_FILES:
            # The images were resolved for the most generous model of the sweep.
            raise KieUsageError(f"{wanted.names['image']}: {len(images)} images given; at "
                                f"most {MAX_FILES} are allowed for 4o")
        size = combo.options.get("size")
        if size is None and images:  # an edit keeps its source's shape
            size = nearest_ratio(images[0], spec.aspect_ratios)
        if size is None and wanted.default_size_everywhere \
                and wanted.default_size in spec.aspect_ratios:
            size = wanted.default_size
        request = request_for(  # each model's own limits are checked here
            name, wanted.fill(combo.prompt), images,
            mask if spec.family == "4o" else wanted.mask,
            size=size,
            variants=1 if one_each else wanted.variants, enhance=wanted.enhance,
            fallback=wanted.fallback, fallback_model=wanted.fallback_model,
            callback_url=wanted.callback_url, resolution=combo.options.get("resolution"),
            quality=combo.options.get("quality"), output_format=wanted.output_format,
            params=dict(wanted.params) if wanted.params else None,
            default_size=wanted.default_size, seed=combo.options.get("seed"),
            negative=wanted.negative)
        tasks.append(PlannedTask(combo.labels, name, request))
    return Plan(tuple(axes), tuple(tasks), images, mask, text,
                tuple(dict.fromkeys(
                    n for n, sp in spec_of.items()
                    if wanted.default_size_everywhere and "size" not in chosen
                    and wanted.default_size not in sp.aspect_ratios)))


def resolve_inputs(wanted: Wanted) -> tuple[tuple[InputImage, ...], InputImage | None]:
    """The images and mask of ``wanted``, read and checked once (for the models it names):
    a batch resolves them before its first line, then plans every line with them."""
    _, combos = _combinations("", _chosen(wanted), wanted.sweep)
    return _inputs(wanted, _specs(combos))


def _chosen(wanted: Wanted) -> dict[str, Any]:
    """The sweepable options given, checked for their type (a text, or a list of texts)."""
    model = wanted.model if wanted.model not in (None, "") else wanted.default_model
    chosen: dict[str, Any] = {"model": model}
    for name in SWEEPABLE[1:]:
        value = getattr(wanted, name)
        if name == "seed" and value is not None:
            value = _seed_text(value)
        if value is not None:
            chosen[name] = value
    for name, value in chosen.items():
        if not isinstance(value, (str, list, tuple)):
            raise KieUsageError(f"{name}: expected text or a list of texts, "
                                f"not {type(value).__name__}")
        if isinstance(value, (list, tuple)) and not value:
            raise KieUsageError(f"{name}: no value given (the list is empty)")
    return chosen


def _seed_text(value: Any) -> Any:
    """A seed or several as our option text (``--seed 1,2,3``; ``seed=[1, 2]``); anything
    else as it is, for :func:`_chosen`'s type check."""
    if isinstance(value, bool):
        raise KieUsageError(f"seed: expected a whole number, not {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v
                for v in value]
    return value


def _combinations(text: str, chosen: dict[str, Any],
                  sweep: bool) -> tuple[list[Axis], list[Combination]]:
    if sweep:
        return expand(text, chosen)
    for name, value in chosen.items():
        if not isinstance(value, str):
            what = "a model name" if name == "model" else "one value"
            raise KieUsageError(f"{name}: expected {what}, not {type(value).__name__}")
    return [], [Combination(text, chosen, ())]


def _specs(combos: Sequence[Combination]) -> dict[str, ModelSpec]:
    """Each model the combinations use (an unknown name is one line listing the models)."""
    names = dict.fromkeys(c.options["model"] for c in combos)
    for name in names:
        if not isinstance(name, str):
            raise KieUsageError(f"model: expected a model name, not {type(name).__name__}")
    return {name.strip(): model_spec(name.strip()) for name in names}


def _inputs(wanted: Wanted, spec_of: Mapping[str, ModelSpec],
            ) -> tuple[tuple[InputImage, ...], InputImage | None]:
    """The images (for the most generous of the models) and, where a model takes one, the
    mask; sources an earlier plan resolved are taken as they are."""
    sources = _as_list(wanted.images)
    if sources and all(isinstance(i, InputImage) for i in sources):
        images: tuple[InputImage, ...] = tuple(sources)
    else:
        most = max(max(s.max_images for s in spec_of.values()), MAX_FILES)
        images = resolve_images(sources, wanted.names["image"], max_images=most)
    if isinstance(wanted.mask, InputImage):
        return images, wanted.mask
    if any(s.family == "4o" for s in spec_of.values()):
        return images, resolve_mask(wanted.mask, images, wanted.names["mask"],
                                    wanted.names["input"])
    return images, None


def _as_list(images: Any) -> list[Any]:
    """``images`` as a list of sources: one source alone, or the items of a collection."""
    if images is None:
        return []
    if isinstance(images, (list, tuple, set, frozenset)):
        return list(images)
    if hasattr(images, "__next__"):  # a generator of paths
        return list(images)
    return [images]  # one path, URL, bytes, task or task image; anything else is refused


@dataclass(frozen=True)
class InterruptReport:
    """Where the tasks of an interrupted run stand: ``sent`` (ids that go on at KIE.AI),
    ``doubtful`` (were being sent: may have arrived), ``never`` (never sent: nothing
    charged), ``ended`` (finished on their own)."""

    sent: tuple[str, ...]
    doubtful: tuple[Task, ...]
    never: tuple[Task, ...]
    ended: tuple[Task, ...]
    #: Where sent tasks run: "KIE.AI", or the demo server in demo mode.
    runs_at: str = "KIE.AI"

    def lines(self, resume: str) -> list[str]:
        """What to tell the user of a stopped sweep; ``resume`` is how the front end resumes
        an id (``%kie4o resume ID``)."""
        out = []
        if self.doubtful:
            check = " — check your KIE.AI dashboard" if self.runs_at == "KIE.AI" else ""
            out.append(f"kie4o: {len(self.doubtful)} task(s) of the sweep were being sent when "
                       f"stopped: they may have reached {self.runs_at}{check}")
        if self.sent:
            out.append(f"kie4o: stopped following {len(self.sent)} task(s) of the sweep; they go "
                       f"on at {self.runs_at} — {resume} for each: {', '.join(self.sent)}")
        return out


def interrupt_report(tasks: Sequence[Task], settle: float = 5.0) -> InterruptReport:
    """Stop following ``tasks`` (after a Ctrl-C), give them ``settle`` seconds to learn their
    ids, and say where each stands."""
    running = [t for t in tasks if not t.done]
    for task in running:
        task.stop()
    deadline = time.monotonic() + settle
    for task in running:
        task.wait(max(deadline - time.monotonic(), 0.0))
    sent = tuple(t.task_id for t in running
                 if t.task_id and (t.status is TaskStatus.STOPPED or not t.done))
    doubtful = tuple(t for t in running if not t.task_id and not t.stopped_before_sent)
    never = tuple(t for t in running if not t.task_id and t.stopped_before_sent)
    ids = set(map(id, running))
    ended = tuple(t for t in tasks if id(t) not in ids)
    return InterruptReport(sent, doubtful, never, ended,
                           runs_at=tasks[0].runs_at if tasks else "KIE.AI")
