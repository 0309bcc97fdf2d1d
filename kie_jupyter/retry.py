"""Pure helpers for the client's one retry policy: backoff delays and ``Retry-After``."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

__all__ = ["RetryPolicy", "backoff_delay", "parse_retry_after"]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long reads (and rate-limited submits) are retried."""

    max_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 20.0
    #: A ``Retry-After`` larger than this is not waited for: the error is raised instead.
    max_retry_after: float = 60.0


def backoff_delay(
    attempt: int,
    policy: RetryPolicy,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based).

    Exponential backoff with "equal jitter" (half fixed, half random) so that many tasks
    failing at once do not retry in lockstep; a server's ``Retry-After`` wins when present.
    """
    if retry_after is not None:
        return min(max(retry_after, 0.0), policy.max_retry_after)
    ceiling = min(policy.max_delay, policy.base_delay * (2**attempt))
    r = (rng or random).random()
    return ceiling / 2 + r * ceiling / 2


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header (delta seconds or an HTTP date) into seconds."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)
