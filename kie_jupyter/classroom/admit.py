"""Whether a student's submit may go, and what it is charged: the model allowed, its price
known where a budget needs it, the reservation refused in words — plus what a student is told
about their credits (``/class/me``, ``credit``, the 80 % notice).

Everything here is decided before anything reaches KIE; a refusal reserves nothing. The words
are the student's: one line, with the figures and who can help ("ask your teacher").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..api.prices import Cost
from .budget import EPSILON, ClassPolicy, shown
from .costs import describe, estimate_submit, model_of
from .ledger import Ledger, Student

__all__ = ["Charge", "Refused", "charge_for", "why_not_reserved", "expired", "notice",
           "me_data", "credit_data", "NOTICE_HEADER"]

#: The header a successful submit carries once the student has used 80 % of their budget.
NOTICE_HEADER = "X-Kie-Class-Notice"
_WARN_AT = 0.8


@dataclass(frozen=True)
class Charge:
    """What a submit reserves: images, the estimated credits (None: unknown price, not
    counted), and our model name."""

    images: int
    credits: float | None
    model: str
    cost: Cost
    #: The budget period the reservation was taken in (set once reserved).
    period: str | None = None


@dataclass(frozen=True)
class Refused:
    """A refusal to send: the HTTP status and the student's one line."""

    code: int
    msg: str


def _has_budget(student: Student, policy: ClassPolicy) -> bool:
    return student.budget(policy) is not None or policy.class_credits is not None


def charge_for(ledger: Ledger, student: Student, path: str, data: Mapping[str, Any],
               images: int) -> Charge | Refused:
    """The charge for a checked submit, or why it may not go (a model not allowed; an
    unknown price where the class or the student has a credit budget)."""
    policy = ledger.policy()
    model = model_of(path, data)
    allowed = student.allowed_models(policy)
    if allowed is not None and model not in allowed:
        return Refused(403, f"{model} is not allowed in this class (allowed: "
                            f"{', '.join(allowed)}) — ask your teacher (nothing was charged)")
    cost = estimate_submit(path, data)
    if cost.value is None and _has_budget(student, policy):
        whose = "your class budget" if student.budget(policy) is not None else \
            "the class's budget"
        return Refused(402, f"{whose} is in credits and the price of "
                            f"{describe(path, data)} is unknown — ask your teacher")
    return Charge(images, cost.value, model, cost)


def why_not_reserved(ledger: Ledger, student: Student, charge: Charge) -> Refused:
    """Why :meth:`Ledger.reserve` said no, read from the ledger as it is now."""
    now = ledger.student(student.id) or student
    if now.revoked:
        return Refused(401, "this class token was revoked — ask your teacher")
    if now.used + charge.images > now.quota:
        if now.remaining:
            return Refused(402, f"class quota: {now.remaining} of {now.quota} images left, "
                                f"this asks for {charge.images} — ask your teacher")
        return Refused(402, f"class quota used: {now.used} of {now.quota} images — ask your "
                            "teacher")
    policy = ledger.policy()
    needs = f"this request needs ≈ {shown(charge.credits or 0)} credits"
    budget, left = now.budget(policy), now.credits_left(policy)
    if budget is not None and left is not None and (charge.credits or 0) > left + EPSILON:
        return Refused(402, f"class budget: {needs}; you have {shown(left)} of {shown(budget)} "
                            "left — ask your teacher")
    if policy.class_credits is not None:
        class_left = max(policy.class_credits - ledger.class_credits_used(), 0.0)
        return Refused(402, f"class budget: {needs}; the class has {shown(class_left)} of "
                            f"{shown(policy.class_credits)} left — ask your teacher")
    return Refused(402, "class quota: this request does not fit — ask your teacher")


def expired(ledger: Ledger, student: Student) -> Refused | None:
    """The refusal for a token past its last day (UTC), else None."""
    if student.expired_on(ledger.today()):
        return Refused(401, f"this class token expired on {student.expires} — ask your "
                            "teacher")
    return None


def notice(ledger: Ledger, student_id: str) -> str | None:
    """``you have used 160 of 200 credits`` once a student (else the class) has used 80 % of
    its credit budget; ASCII only (it goes in a header)."""
    student = ledger.student(student_id)
    policy = ledger.policy()
    budget = student.budget(policy) if student else None
    if student is not None and budget and student.credits_used >= _WARN_AT * budget - EPSILON:
        return f"you have used {shown(student.credits_used)} of {shown(budget)} credits"
    if policy.class_credits:
        used = ledger.class_credits_used()
        if used >= _WARN_AT * policy.class_credits - EPSILON:
            return (f"the class has used {shown(used)} of {shown(policy.class_credits)} "
                    "credits")
    return None


def _credits_left(ledger: Ledger, student: Student, policy: ClassPolicy) -> float | None:
    """What the student may still spend: the smaller of their budget's and the class's."""
    lefts = [v for v in (student.credits_left(policy),
                         None if policy.class_credits is None
                         else max(policy.class_credits - ledger.class_credits_used(), 0.0))
             if v is not None]
    return round(min(lefts), 2) if lefts else None


def me_data(ledger: Ledger, student: Student) -> dict[str, Any]:
    """``/class/me``'s ``data``: the image fields as before, then credits and rules."""
    policy = ledger.policy()
    return {
        "student": student.name, "quota": student.quota, "used": student.used,
        "remaining": student.remaining, "paused": ledger.paused,
        "credits": student.budget(policy), "creditsUsed": round(student.credits_used, 2),
        "creditsRemaining": _credits_left(ledger, student, policy),
        "classCredits": policy.class_credits,
        "classCreditsUsed": (round(ledger.class_credits_used(), 2)
                             if policy.class_credits is not None else None),
        "models": list(m) if (m := student.allowed_models(policy)) is not None else None,
        "expires": student.expires, "reset": policy.reset,
    }


def credit_data(ledger: Ledger, student: Student) -> Any:
    """``credit``'s ``data``: the images left (as before) when no credit budget applies;
    else ``{"credits": left, "images": left, "unit": "class credits", …}`` (the
    extension's client reads ``credits``)."""
    policy = ledger.policy()
    if not _has_budget(student, policy):
        return student.remaining
    return {"credits": _credits_left(ledger, student, policy), "images": student.remaining,
            "budget": student.budget(policy), "used": round(student.credits_used, 2),
            "unit": "class credits"}
