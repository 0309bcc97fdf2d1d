"""The class's rules beyond the image quota: credit budgets, allowed models, a reset period,
token expiry dates — plain values and checks, kept in the ledger's settings.

A :class:`ClassPolicy` is what ``kie4o class serve`` was started with (``--class-credits``,
``--credits``, ``--models``, ``--reset``). Per-student values (their own budget, models and
expiry date) live on the student's row and win over the class's defaults.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from ..api.prices import format_credits
from ..api.registry import MODELS

__all__ = ["ClassPolicy", "RESETS", "period_key", "parse_models", "parse_date",
           "parse_credits", "utc_day", "shown", "EPSILON"]

#: The reset periods: used credits and images go back to 0 at each boundary (UTC).
RESETS = ("daily", "weekly")
#: Slack when comparing sums of credits (6.5 + 6.5 + …) with a budget.
EPSILON = 1e-9


@dataclass(frozen=True)
class ClassPolicy:
    """The class-wide rules: a credit budget for the class, a default budget per student,
    the models allowed (None: every image model the extension offers), a reset period."""

    class_credits: float | None = None
    student_credits: float | None = None
    models: tuple[str, ...] | None = None
    reset: str | None = None

    @property
    def has_budget(self) -> bool:
        return self.class_credits is not None or self.student_credits is not None

    def to_json(self) -> str:
        return json.dumps({"class_credits": self.class_credits,
                           "student_credits": self.student_credits,
                           "models": list(self.models) if self.models is not None else None,
                           "reset": self.reset})

    @classmethod
    def from_json(cls, text: str | None) -> ClassPolicy:
        """The stored policy (the default one for a ledger that has none, or a bad value)."""
        try:
            raw: Any = json.loads(text) if text else {}
        except ValueError:
            raw = {}
        if not isinstance(raw, Mapping):
            raw = {}
        models = raw.get("models")
        return cls(_number(raw.get("class_credits")), _number(raw.get("student_credits")),
                   tuple(str(m) for m in models) if isinstance(models, list) else None,
                   raw.get("reset") if raw.get("reset") in RESETS else None)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value) or value < 0:
        return None
    return float(value)


def parse_credits(value: Any, what: str = "credits") -> float:
    """A number of credits ≥ 0 (ValueError naming ``what`` otherwise)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: {value!r} is not a number of credits") from None
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise ValueError(f"{what}: {value!r} is not a number of credits ≥ 0")
    return number


def parse_models(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"4o, nano-banana-2-lite"`` → our model names, checked (ValueError naming the
    unknown one and the known ones)."""
    names = text.split(",") if isinstance(text, str) else list(text)
    clean = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not clean:
        raise ValueError("models: give at least one model name")
    for name in clean:
        if name not in MODELS:
            raise ValueError(f"models: {name!r} is not one of {', '.join(MODELS)}")
    return clean


def parse_date(text: str) -> str:
    """``2027-01-31`` → the same, checked (ValueError otherwise)."""
    try:
        return date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise ValueError(f"expires: {text!r} is not a date like 2027-01-31") from None


def utc_day(when: float) -> date:
    return datetime.fromtimestamp(when, tz=timezone.utc).date()


def period_key(reset: str | None, when: float) -> str:
    """The period ``when`` falls in: its UTC day (daily), the Monday of its UTC week
    (weekly), or ``""`` (no reset)."""
    if reset not in RESETS:
        return ""
    day = utc_day(when)
    if reset == "weekly":
        day -= timedelta(days=day.weekday())
    return day.isoformat()


def shown(credits: float) -> str:
    """Credits as people write them, ASCII only (for headers too): ``1,240``, ``6.5``."""
    return format_credits(round(credits, 2))
