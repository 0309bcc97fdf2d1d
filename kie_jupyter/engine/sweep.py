"""Sweeps: one prompt expanded into every combination of its choices, run as parallel tasks.

``{a|b|c}`` in a prompt is a group of choices (a ``|`` inside braces; ``{name}`` without one
is left for the namespace fill, and ``{{``/``}}`` are literal braces), and an option given as
a list (``size=["1:1", "3:2"]``, ``-s 1:1,3:2``) is another dimension. :func:`expand` gives
every combination with its labels; a :class:`Sweep` holds the tasks, looked up by label
(``sw["oil"]``, ``sw["oil", "3:2"]``). The tasks are submitted in parallel; the client's
process-wide limiter keeps them within the account's rate (those waiting say "Queued").
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..api.errors import KieUsageError
from ..api.prices import Cost
from .spend import sum_costs
from .task import Task

__all__ = ["Axis", "Combination", "Sweep", "expand", "prompt_axes", "option_axis"]


@dataclass(frozen=True)
class Axis:
    """One dimension of a sweep: its name (``prompt``, ``size``…) and its values."""

    name: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Combination:
    """One cell of a sweep: the prompt text and option values it uses, and its labels."""

    prompt: str
    options: Mapping[str, str]
    labels: tuple[str, ...]


def _groups(text: str) -> Iterator[tuple[int, int, list[str]]]:
    """(start, end, choices) of each ``{a|b}`` group; ``{{`` / ``}}`` are skipped."""
    i = 0
    while i < len(text):
        if text.startswith("{{", i) or text.startswith("}}", i):
            i += 2
            continue
        if text[i] == "{":
            end = text.find("}", i + 1)
            if end == -1:
                return
            inner = text[i + 1:end]
            if "{" in inner and "|" in text[i + 1:text.find("{", i + 1)]:
                nested = inner[inner.index("{"):] + "}"
                raise KieUsageError(
                    f"prompt: a {{a|b}} group cannot hold another ({nested} inside "
                    f"{{{inner[:inner.index('{')]}…}}); write the choices in one group, e.g. "
                    "{oil|ink|chalk}")
            if "|" in inner and "{" not in inner:
                choices = [c.strip() for c in inner.split("|")]
                yield i, end + 1, choices
            i = end + 1
            continue
        i += 1


def prompt_axes(text: str) -> tuple[list[Axis], list[tuple[int, int]]]:
    """The prompt's choice groups as axes (``prompt``, or ``prompt 1``, ``prompt 2``…) and
    where each group sits in the text."""
    found = list(_groups(text))
    axes: list[Axis] = []
    spans: list[tuple[int, int]] = []
    for n, (start, end, choices) in enumerate(found, 1):
        if any(not c for c in choices):
            raise KieUsageError(
                f"prompt: the group {text[start:end]!r} has an empty choice"
            )
        if len(choices) != len(set(choices)):
            raise KieUsageError(
                f"prompt: the group {text[start:end]!r} repeats a choice (each would be a "
                "task of its own, paid twice)"
            )
        name = "prompt" if len(found) == 1 else f"prompt {n}"
        axes.append(Axis(name, tuple(choices)))
        spans.append((start, end))
    return axes, spans


def option_axis(name: str, value: Any) -> Axis | None:
    """An option given as a list (or a comma-separated text) of several values, else None."""
    if isinstance(value, str):
        values = [v.strip() for v in value.split(",")] if "," in value else [value]
    elif isinstance(value, (list, tuple)):
        values = [str(v).strip() for v in value]
    else:
        return None
    if any(not v for v in values):
        raise KieUsageError(f"{name}: an empty value in {value!r}")
    if len(values) != len(set(values)):
        raise KieUsageError(f"{name}: a value is repeated in {value!r}")
    return Axis(name, tuple(values)) if len(values) > 1 else None


def expand(text: str, options: Mapping[str, Any]) -> tuple[list[Axis], list[Combination]]:
    """Every combination of the prompt's groups and the options given as lists.

    Options with one value are passed through as they are; the axes (the varying dimensions,
    prompt groups first) label each combination in order.
    """
    axes, spans = prompt_axes(text)
    fixed: dict[str, Any] = {}
    for name, value in options.items():
        axis = option_axis(name, value)
        if axis is None:
            fixed[name] = value[0] if isinstance(value, (list, tuple)) and value else value
        else:
            axes.append(axis)
    n_prompt = len(spans)
    combos: list[Combination] = []
    for choice in itertools.product(*(a.values for a in axes)):
        prompt = text
        for (start, end), value in reversed(list(zip(spans, choice[:n_prompt], strict=True))):
            prompt = prompt[:start] + value + prompt[end:]
        opts = dict(fixed)
        opts.update({a.name: v for a, v in zip(axes[n_prompt:], choice[n_prompt:], strict=True)})
        combos.append(Combination(prompt, opts, tuple(choice)))
    return axes, combos


def _in_order(wanted: Sequence[str], labels: Sequence[str]) -> bool:
    """Whether each of ``wanted`` is the label of a different dimension, in any order
    (``sw["red", "red"]`` with a red car and a red house is one task, not any red one)."""
    def place(k: int, used: frozenset[int]) -> bool:
        if k == len(wanted):
            return True
        return any(label == wanted[k] and i not in used and place(k + 1, used | {i})
                   for i, label in enumerate(labels))

    return place(0, frozenset())


class Sweep:
    """The tasks of one sweep, by label. ``sw["oil"]`` is the task (or a smaller sweep when
    the label leaves other dimensions open), ``sw["oil", "3:2"]`` one task."""

    def __init__(self, axes: Sequence[Axis], cells: Sequence[tuple[tuple[str, ...], Task]],
                 *, embed: str = "thumb") -> None:
        self.axes = tuple(axes)
        self.cells = tuple(cells)
        self.embed = embed
        #: The text that made it, where a front end keeps it (the ``%%kie4o`` cell), for
        #: ``%kie4o rerun``.
        self.source: str | None = None
        #: The prompt as written (``a {red|blue} fox``), where known.
        self.template: str | None = None

    @property
    def tasks(self) -> list[Task]:
        return [task for _, task in self.cells]

    def __len__(self) -> int:
        return len(self.cells)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __getitem__(self, key: str | tuple[str, ...] | int) -> Task | Sweep:
        if isinstance(key, int):
            return self.cells[key][1]
        wanted = (key,) if isinstance(key, str) else tuple(key)
        matches = [(labels, task) for labels, task in self.cells
                   if _in_order(wanted, labels)]
        if not matches:
            known = "; ".join(f"{a.name}: {', '.join(a.values)}" for a in self.axes)
            raise KeyError(f"no task of this sweep has {', '.join(map(repr, wanted))} "
                           f"(labels — {known})")
        if len(matches) == 1:
            return matches[0][1]
        return self._part(matches)

    def _part(self, cells: Sequence[tuple[tuple[str, ...], Task]]) -> Sweep:
        """A smaller sweep of some of these cells (each axis keeps the values they have),
        made from the same prompt and cell."""
        axes = [Axis(a.name, tuple(v for v in a.values if any(labels[i] == v
                                                              for labels, _ in cells)))
                for i, a in enumerate(self.axes)]
        part = Sweep(axes, cells, embed=self.embed)
        part.template, part.source = self.template, self.source
        return part

    @property
    def done(self) -> bool:
        return all(task.done for task in self.tasks)

    @property
    def cost(self) -> Cost:
        """What the sweep's tasks cost together (None if any price is unknown)."""
        return sum_costs([t.cost for t in self.tasks])

    def counts(self) -> dict[str, int]:
        """How many tasks are done, and of those how many succeeded, failed or were stopped
        (a stopped task did not fail: it may still go on at KIE.AI)."""
        done = [t for t in self.tasks if t.done]
        ok = sum(1 for t in done if t.status.value == "success")
        stopped = sum(1 for t in done if t.status.value == "stopped")
        return {"total": len(self.cells), "done": len(done), "succeeded": ok,
                "failed": len(done) - ok - stopped, "stopped": stopped}

    @property
    def images(self) -> list[bytes]:
        """Every image of every task that succeeded, in the sweep's order."""
        out: list[bytes] = []
        for task in self.tasks:
            if task.status.value == "success":
                out.extend(task.images)
        return out

    def wait(self, timeout: float | None = None) -> Sweep:
        """Block until every task ends (or ``timeout`` seconds pass in all)."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        for task in self.tasks:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            task.wait(left)
        return self

    def stop(self) -> None:
        """Stop every task of the sweep (those already sent go on at KIE.AI)."""
        for task in self.tasks:
            task.stop()

    def save(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Save every succeeded task's images (and sidecars) into ``directory``."""
        paths: list[Path] = []
        for task in self.tasks:
            if task.status.value == "success":
                paths.extend(task.save(directory))
        return paths

    def label(self, task: Task) -> tuple[str, ...]:
        """The labels of ``task`` in this sweep."""
        for labels, t in self.cells:
            if t is task:
                return labels
        raise KeyError("this task is not part of the sweep")

    def __repr__(self) -> str:
        c = self.counts()
        dims = " × ".join(f"{a.name} ({len(a.values)})" for a in self.axes)
        return f"<kie4o Sweep {dims}: {c['done']} of {c['total']} done>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        # A notebook shows the grid: ``%load_ext`` registers it with IPython's formatter.
        return {"text/plain": repr(self)}
