"""The one retry rule (:func:`is_transient`) and its pure helpers: backoff and ``Retry-After``.

Sends, polls and image downloads all ask :func:`is_transient` whether an error is worth
another try; how long to wait comes from :func:`backoff_delay` under a :class:`RetryPolicy`.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass
from datetime import timezone
from typing import Literal

from .errors import (
    DownloadError,
    KieAPIError,
    KieConnectionError,
    KieError,
    MalformedResponseError,
    RateLimitError,
)

__all__ = ["RetryPolicy", "backoff_delay", "is_transient", "parse_retry_after"]

#: 5xx codes that are final all the same: the request was understood and refused.
_FINAL_5XX = frozenset({501, 505})


def is_transient(err: KieError, kind: Literal["read", "submit"]) -> bool:
    """Whether ``err`` is worth another try: the retry rule, in one place.

    ``kind="read"`` (record-info, credit, download URLs, uploads, image downloads): timeouts,
    connection errors, malformed answers, 429, 455 and 5xx except 501 and 505 are retried; a
    :class:`DownloadError` says itself (its ``transient``).

    ``kind="submit"`` (generate): only when the server surely did not take the request, so a
    task is never started (and charged) twice: a 429 (the API drops, not queues, such
    requests) or a connection that was never made (``refused``: refused, unresolvable, or a
    connect timeout). Never a read timeout, a dropped answer or a server error: the request
    may have arrived.
    """
    if kind == "submit":
        if isinstance(err, RateLimitError):
            return True
        return isinstance(err, KieConnectionError) and err.refused
    if isinstance(err, DownloadError):
        return err.transient
    if isinstance(err, (KieConnectionError, MalformedResponseError)):
        return True
    if isinstance(err, KieAPIError):
        return err.code in (429, 455) or (500 <= err.code < 600 and err.code not in _FINAL_5XX)
    return False


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
