"""Pure helpers for the client's one retry policy: backoff delays and ``Retry-After``."""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass
from datetime import timezone

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
    # Cap the exponent: 2**attempt as a float overflows past attempt 1023 (long polls).
    ceiling = min(policy.max_delay, policy.base_delay * (2.0 ** min(max(attempt, 0), 60)))
    r = (rng or random).random()
    return ceiling / 2 + r * ceiling / 2


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header (delta seconds or an HTTP date) into seconds."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "nan" and "inf" parse as floats but are junk: a NaN delay would crash sleep().
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        # "-0000" parses as a naive datetime; HTTP dates are always UTC, never local time.
        when = when.replace(tzinfo=timezone.utc)
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)
