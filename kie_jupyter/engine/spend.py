"""What tasks cost and what has been spent: one rule for a task, a history entry and a session.

A task's cost is what KIE reported it consumed (``creditsConsumed`` on the record, where KIE
reports it), else our estimate from the price table, marked as an estimate — a task KIE failed
too (whether a failure is charged is not documented; kie.ai/logs says). A task KIE never
created (stopped before it was sent, or refused before it was made) cost nothing. A demo task
shows what it would have cost and is never counted as spent.

:class:`SessionSpend` adds up what a kernel session sent, for ``%config Kie4o.budget``;
:func:`spend_report` sums a history for ``%kie4o spend``.
"""

from __future__ import annotations

import threading
import weakref
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from ..api.errors import KieUsageError
from ..api.models import TaskStatus
from ..api.prices import Cost, active_prices, format_credits, usd_of

if TYPE_CHECKING:
    from .history import HistoryEntry


class Task(Protocol):
    """What a cost is read from (the task module's ``Task``; no import cycle)."""

    params: dict[str, Any]
    status: TaskStatus
    error: Any
    reported_credits: float | None

    @property
    def demo(self) -> bool: ...

    @property
    def done(self) -> bool: ...

    @property
    def never_created(self) -> bool: ...

    @property
    def estimated_cost(self) -> Cost: ...

    @property
    def cost(self) -> Cost: ...

    def subscribe(self, listener: Any) -> None: ...

    def unsubscribe(self, listener: Any) -> None: ...


__all__ = ["task_cost", "entry_cost", "estimate_params", "SessionSpend", "SpendRow",
           "spend_report", "spend_text", "sum_costs", "costs_text", "REPORTED_SOURCE"]

REPORTED_SOURCE = "reported by KIE (creditsConsumed on the task's record)"
_NEVER_SENT = "KIE made no task: nothing charged"
_FAILED = ("; KIE failed the task, and whether a failure is charged is not documented "
           "(kie.ai/logs shows what was)")


def estimate_params(params: Mapping[str, Any], *, demo: bool = False) -> Cost:
    """The table's estimate for ``params``; a bad price file makes it unknown, saying why."""
    try:
        return active_prices().estimate(params, demo=demo)
    except KieUsageError as exc:
        return Cost(None, source=str(exc), demo=demo)


def _cost(params: Mapping[str, Any], *, demo: bool, reported: float | None, failed_at_kie: bool,
          never_created: bool, estimate: Cost | None = None) -> Cost:
    if never_created:
        return Cost(0.0, "estimate", _NEVER_SENT, demo, 0.0)
    if reported is not None and not demo:
        return Cost(reported, "reported", REPORTED_SOURCE, False, usd_of(reported))
    cost = estimate if estimate is not None else estimate_params(params, demo=demo)
    if failed_at_kie and not demo:
        return replace(cost, source=cost.source + _FAILED)
    return cost


def task_cost(task: Task) -> Cost:
    """What ``task`` costs (see the module's rule)."""
    return _cost(task.params, demo=task.demo, reported=task.reported_credits,
                 failed_at_kie=(task.status is TaskStatus.FAILED
                                and getattr(task.error, "source", None) == "kie"),
                 never_created=task.never_created, estimate=task.estimated_cost)


def entry_cost(entry: HistoryEntry) -> Cost:
    """What a history entry cost: the cost recorded with it, else estimated now (an entry
    written before costs were recorded)."""
    recorded = Cost.from_dict(entry.cost)
    if recorded is not None:
        return recorded
    params = {"model": entry.model, **entry.params} if entry.model else dict(entry.params)
    return _cost(params, demo=bool(entry.demo), reported=None,
                 failed_at_kie=entry.status == "failed" and entry.error_source == "kie",
                 never_created=False)


class SessionSpend:
    """What a kernel session sent, in credits, for its budget.

    :meth:`add` checks the budget and holds each task's estimate in one step (so two cells
    cannot both spend the last credits); a task is settled when its final status is heard
    (KIE's reported figure where it reports one, 0 when KIE made no task). A task dropped
    before it ended (never started) gives its estimate back. Demo tasks are never added.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settled = 0.0
        self._open: dict[int, float] = {}

    def add(self, tasks: Sequence[Task], *, budget: float | None = None,
            setting: str = "budget") -> None:
        """Hold the estimates of ``tasks`` (about to be started); with a ``budget``, first
        refuse in one line — nothing held — if they do not fit in what is left."""
        paid = [t for t in tasks if not t.demo]
        need = [t.cost.value or 0.0 for t in paid]
        with self._lock:
            if budget is not None and paid:
                left = budget - self._settled - sum(self._open.values())
                if sum(need) > left + 1e-9:
                    raise KieUsageError(
                        f"{setting}: {format_credits(max(left, 0.0))} credits left; this "
                        f"needs ≈ {format_credits(sum(need))} credits (nothing was sent)")
            for task, value in zip(paid, need, strict=True):
                self._open[id(task)] = value
        for task in paid:
            self._follow(task)

    def _follow(self, task: Task) -> None:
        key = id(task)

        def settle(t: Task) -> None:
            # The status, not ``done``: listeners hear the final status a moment before
            # the task is marked done, and hear nothing after.
            if not t.status.finished:
                return
            try:
                value = t.cost.value or 0.0
            except Exception:  # a cost that cannot be worked out keeps the estimate held
                return
            with self._lock:
                if self._open.pop(key, None) is not None:
                    self._settled += value
            t.unsubscribe(settle)

        # Dropped without ending (made, never started): give the estimate back.
        weakref.finalize(task, self._drop, key)
        task.subscribe(settle)
        settle(task)

    def _drop(self, key: int) -> None:
        with self._lock:
            self._open.pop(key, None)

    @property
    def spent(self) -> float:
        """Credits spent or held by running tasks."""
        with self._lock:
            return self._settled + sum(self._open.values())


@dataclass(frozen=True)
class SpendRow:
    """One line of ``%kie4o spend``: a group (model or day), its tasks and credits."""

    key: str
    tasks: int
    credits: float
    estimated: int
    unknown: int


def _day(iso: str | None) -> str:
    if not iso:
        return "unknown day"
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return "unknown day"
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).date().isoformat()


def spend_report(entries: Sequence[HistoryEntry], *, since: datetime | None = None,
                 by: str = "model", demo: bool = False) -> tuple[list[SpendRow], SpendRow]:
    """What the history's live tasks (``demo=True``: its demo tasks) spent, grouped ``by``
    model or day, and the total; tasks created before ``since`` are left out."""
    if by not in ("model", "day"):
        raise KieUsageError(f"--by: {by!r}: use model or day")
    groups: dict[str, list[Cost]] = defaultdict(list)
    for entry in entries:
        if bool(entry.demo) != demo or not entry.created:
            continue
        if since is not None and _created(entry.created) < since:
            continue
        key = (entry.model or "4o") if by == "model" else _day(entry.created)
        groups[key].append(entry_cost(entry))
    rows = [_row(key, costs) for key, costs in sorted(groups.items())]
    all_costs = [c for costs in groups.values() for c in costs]
    return rows, _row("total", all_costs)


def _created(iso: str) -> datetime:
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _row(key: str, costs: Sequence[Cost]) -> SpendRow:
    return SpendRow(key, len(costs), sum(c.value or 0.0 for c in costs),
                    sum(1 for c in costs if c.known and c.estimated),
                    sum(1 for c in costs if not c.known))


def spend_text(row: SpendRow) -> str:
    """``≈ 96 credits (12 tasks)``; ``≈ 90 credits + unknown (12 tasks; 2 of unknown
    price)``; ``unknown`` when no part is known. ``≈`` while any part is an estimate."""
    plural = "s" if row.tasks != 1 else ""
    unknown = f"; {row.unknown} of unknown price" if row.unknown else ""
    counts = f"({row.tasks} task{plural}{unknown})"
    if row.unknown == row.tasks and row.tasks:
        return f"unknown {counts}"
    approx = "≈ " if row.estimated or row.unknown else ""
    more = " + unknown" if row.unknown else ""
    return f"{approx}{format_credits(row.credits)} credits{more} {counts}"


def sum_costs(costs: Sequence[Cost]) -> Cost:
    """The cost of several tasks (a sweep): None if any is unknown, ``reported`` only if
    every part is, ``demo`` if every part is."""
    costs = list(costs)
    if any(not c.known for c in costs):
        unknown = sum(1 for c in costs if not c.known)
        return Cost(None, source=f"{unknown} of {len(costs)} tasks of unknown price",
                    demo=bool(costs) and all(c.demo for c in costs))
    value = sum(c.value or 0.0 for c in costs)
    reported = bool(costs) and all(not c.estimated for c in costs)
    usd = [c.usd for c in costs]
    return Cost(value, "reported" if reported else "estimate",
                f"the sum of {len(costs)} tasks", bool(costs) and all(c.demo for c in costs),
                None if any(u is None for u in usd) else sum(u or 0.0 for u in usd))


def costs_text(costs: Sequence[Cost]) -> str:
    """A group's cost in words: ``≈ 96 credits``; ``≈ 90 credits + unknown (1 task)``."""
    whole = sum_costs(costs)
    if whole.known or not any(c.known for c in costs):
        return whole.short()
    part = replace(sum_costs([c for c in costs if c.known]), demo=False)
    unknown = sum(1 for c in costs if not c.known)
    demo = " (demo: not charged)" if whole.demo else ""
    return f"{part.short()} + unknown ({unknown} task{'s' if unknown != 1 else ''}){demo}"
