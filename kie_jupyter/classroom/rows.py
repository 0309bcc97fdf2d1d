"""The ledger's rows as values: a student, a task, the spend on one model."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from .budget import ClassPolicy

__all__ = ["Student", "TaskRow", "ModelSpend", "PendingRow", "AuditRow", "student_of",
           "task_of"]


@dataclass(frozen=True)
class Student:
    """One row of ``students`` (never the token)."""

    id: str
    name: str
    quota: int
    used: int
    revoked: bool
    hub: bool
    created: float
    #: The student's own credit budget (None: the class's default, if any).
    credits: float | None = None
    credits_used: float = 0.0
    #: The last UTC day the token works (``2027-01-31``; None: no end).
    expires: str | None = None
    #: The student's own allowed models (None: the class's).
    models: tuple[str, ...] | None = None

    @property
    def remaining(self) -> int:
        return max(self.quota - self.used, 0)

    def budget(self, policy: ClassPolicy) -> float | None:
        """The student's credit budget: their own, else the class's default (None: none)."""
        return self.credits if self.credits is not None else policy.student_credits

    def credits_left(self, policy: ClassPolicy) -> float | None:
        budget = self.budget(policy)
        return None if budget is None else max(budget - self.credits_used, 0.0)

    def allowed_models(self, policy: ClassPolicy) -> tuple[str, ...] | None:
        """The models the student may use: their own list, else the class's (None: all)."""
        return self.models if self.models is not None else policy.models

    def expired_on(self, today: str) -> bool:
        """Whether the token has expired by the UTC day ``today`` (ISO dates compare as
        text)."""
        return self.expires is not None and today > self.expires


@dataclass(frozen=True)
class TaskRow:
    """One row of ``tasks``."""

    task_id: str
    student_id: str
    endpoint: str
    images: int
    state: str
    prompt: str
    urls: tuple[str, ...]
    created: float
    finished: float | None
    #: Our model name (None in rows older than credit budgets, except 4o's).
    model: str | None = None
    #: Credits charged (None: the price was unknown and KIE reported none).
    credits: float | None = None
    #: ``estimate`` (from the price table) or ``reported`` (by KIE).
    credits_basis: str = "estimate"
    period: str = ""


@dataclass(frozen=True)
class ModelSpend:
    """What the class spent on one model (failed tasks cost nothing)."""

    model: str
    tasks: int
    images: int
    credits: float
    #: Tasks whose cost is unknown (no price, nothing reported).
    unknown: int
    #: Whether any of the credits is an estimate (not reported by KIE).
    estimated: bool


@dataclass(frozen=True)
class PendingRow:
    """Images (and credits) held for a submit KIE has not answered: ``waiting`` for a turn,
    ``sending``, or ``unsure`` (sent, no answer: KIE may have made the task)."""

    id: int
    student_id: str
    endpoint: str
    images: int
    credits: float | None
    period: str
    state: str
    created: float
    sent: float | None


@dataclass(frozen=True)
class AuditRow:
    """One thing the teacher did: when, who (``cli`` or ``page``), what, to whom, details."""

    at: float
    actor: str
    action: str
    student: str
    detail: str


def student_of(row: sqlite3.Row) -> Student:
    models = json.loads(row["models"]) if row["models"] else None
    return Student(row["id"], row["name"], row["quota"], row["used"], bool(row["revoked"]),
                   bool(row["hub"]), row["created"], row["credits"],
                   float(row["credits_used"] or 0), row["expires"],
                   tuple(models) if isinstance(models, list) else None)


def task_of(row: sqlite3.Row) -> TaskRow:
    return TaskRow(row["task_id"], row["student_id"], row["endpoint"], row["images"],
                   row["state"], row["prompt"], tuple(json.loads(row["urls"] or "[]")),
                   row["created"], row["finished"], row["model"], row["credits"],
                   row["credits_basis"] or "estimate", row["period"] or "")
