"""What each front end tells a user to do about an error (its own commands, nobody else's).

Errors and task failures carry a neutral ``fix`` (``key``, ``credits``, ``options``,
``resume``); the front end that prints them turns it into its own words with :func:`hint`, so
a notebook user reads ``%kie4o login`` and a shell user ``kie4o --resume ID``.
"""

from __future__ import annotations

__all__ = ["hint", "with_hint", "FRONT_ENDS"]

_HINTS: dict[str, dict[str, str]] = {
    "notebook": {
        "key": "run `%kie4o login`, or `%kie4o demo` to try without a key",
        "credits": "`%kie4o credits` shows the balance",
        "options": "see `%%kie4o?` for the options",
        "resume": "`%kie4o resume {task_id}`",
    },
    "cli": {
        "key": "or run `kie4o --demo …` to try without a key",
        "credits": "`kie4o --credits` shows the balance",
        "options": "see `kie4o --help` for the options",
        "resume": "`kie4o --resume {task_id}`",
    },
    "python": {
        "key": "or pass client=KieClient(api_key=...)",
        "credits": "`KieClient().credits()` shows the balance",
        "options": "see help(kie_jupyter.generate)",
        "resume": "`kie_jupyter.resume({task_id!r})`",
    },
}

FRONT_ENDS = tuple(_HINTS)


def hint(fix: str | None, front_end: str, task_id: str | None = None) -> str:
    """The front end's words for ``fix`` ('' when there is nothing to add)."""
    if not fix:
        return ""
    text = _HINTS[front_end].get(fix, "")
    if "{task_id" in text:
        if not task_id:
            return ""
        text = text.format(task_id=task_id)
    return text


def with_hint(message: str, fix: str | None, front_end: str, task_id: str | None = None) -> str:
    """``message`` followed by the front end's hint, if any (never twice)."""
    extra = hint(fix, front_end, task_id)
    if not extra or extra in message:
        return message
    return f"{message} — {extra}"
