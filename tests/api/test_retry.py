"""The retry rule and pure helpers: backoff, Retry-After, the sliding-window limiter."""

from __future__ import annotations

import email.utils
import random
import struct
import threading
import time
import zlib
from typing import TYPE_CHECKING

import pytest
import requests
import urllib3

from kie_jupyter.api.client import _connection_refused
from kie_jupyter.api.errors import (
    DownloadError,
    KieConfigError,
    KieConnectionError,
    KieError,
    KieTimeoutError,
    KieUsageError,
    MalformedResponseError,
    SubmissionCancelled,
    TaskFailedError,
    TaskTimeoutError,
    api_error_for,
)
from kie_jupyter.api.ratelimit import SlidingWindowLimiter, submit_limiter
from kie_jupyter.api.retry import RetryPolicy, backoff_delay, is_transient, parse_retry_after

if TYPE_CHECKING:
    from conftest import FakeClock


class FixedRandom(random.Random):
    """An rng whose ``random()`` is always ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


# -- is_transient: the one retry rule ---------------------------------------------------------


def api(code: int, msg: str = "", endpoint: str = "credit") -> KieError:
    return api_error_for(code, msg, endpoint)


#: error -> (retried as a read, retried as a submit). A submit is retried only when the server
#: surely did not take it: a 429 (dropped, not queued) or a connection never made.
RULE: dict[str, tuple[KieError, bool, bool]] = {
    "read-timeout": (KieTimeoutError("slow", "x", refused=False), True, False),
    "connect-timeout": (KieTimeoutError("no connect", "x", refused=True), True, True),
    "dropped": (KieConnectionError("lost", "x"), True, False),
    "refused": (KieConnectionError("refused", "x", refused=True), True, True),
    "malformed": (MalformedResponseError("x", "junk"), True, False),
    "429": (api(429), True, True),
    "455": (api(455), True, False),
    "500": (api(500), True, False),
    "502": (api(502), True, False),
    "503": (api(503), True, False),
    "550": (api(550), True, False),
    "599": (api(599), True, False),
    "501": (api(501), False, False),
    "505": (api(505), False, False),
    "400": (api(400), False, False),
    "401": (api(401), False, False),
    "402": (api(402), False, False),
    "404": (api(404), False, False),
    "422": (api(422), False, False),
    "451": (api(451), False, False),
    "task-not-found": (api(422, "record is null", "record-info"), False, False),
    "unknown-4xx": (api(418), False, False),
    "download-transient": (DownloadError("u", "HTTP 503", transient=True), True, False),
    "download-final": (DownloadError("u", "not an image"), False, False),
    "usage": (KieUsageError("bad"), False, False),
    "config": (KieConfigError("no key"), False, False),
    "cancelled": (SubmissionCancelled(), False, False),
    "task-failed": (TaskFailedError("t", 400, "policy"), False, False),
    "task-timeout": (TaskTimeoutError("t", 1.0), False, False),
}


@pytest.mark.parametrize("err, read, submit", RULE.values(), ids=RULE.keys())
def test_the_retry_rule(err: KieError, read: bool, submit: bool) -> None:
    assert is_transient(err, "read") is read
    assert is_transient(err, "submit") is submit


@pytest.mark.parametrize("err", [KieTimeoutError("slow", "generate"),
                                 KieTimeoutError("slow", "generate", refused=False)])
def test_a_timeout_on_submit_is_never_retried(err: KieError) -> None:
    """The request may have reached the server: a retry could start (and charge) it twice."""
    assert is_transient(err, "read")
    assert not is_transient(err, "submit")


def test_download_error_transient_is_a_keyword_defaulting_to_false() -> None:
    assert DownloadError("u", "r").transient is False
    assert DownloadError("u", "r", transient=True).transient is True


# -- _connection_refused: "never connected" by exception type ---------------------------------


def wrapped(reason: BaseException) -> requests.exceptions.ConnectionError:
    """What requests raises: a ConnectionError around urllib3's MaxRetryError(reason)."""
    return requests.exceptions.ConnectionError(
        urllib3.exceptions.MaxRetryError(None, "/x", reason))  # type: ignore[arg-type]


def with_cause(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


class NewConnectionError(Exception):
    """Not urllib3's: only the name is the same."""


NEVER_CONNECTED = {
    "connect-timeout": requests.exceptions.ConnectTimeout(),
    "new-connection": wrapped(urllib3.exceptions.NewConnectionError(None, "refused")),
    "name-resolution": wrapped(urllib3.exceptions.NameResolutionError("nowhere", None, "x")),
    "refused-as-cause": wrapped(with_cause(
        urllib3.exceptions.ProtocolError("x"), ConnectionRefusedError(111, "refused"))),
    "refused-in-args": requests.exceptions.ConnectionError(ConnectionRefusedError(111, "no")),
}

MAYBE_ARRIVED = {
    "remote-disconnected": requests.exceptions.ConnectionError(
        urllib3.exceptions.ProtocolError("Connection aborted.",
                                         ConnectionResetError(104, "reset"))),
    "protocol-error": wrapped(urllib3.exceptions.ProtocolError("aborted")),
    "bare": requests.exceptions.ConnectionError("lost"),
    "same-name-other-class": wrapped(NewConnectionError("refused")),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("exc", NEVER_CONNECTED.values(), ids=NEVER_CONNECTED.keys())
def test_connection_never_made(exc: requests.exceptions.ConnectionError) -> None:
    assert _connection_refused(exc)


@pytest.mark.parametrize("exc", MAYBE_ARRIVED.values(), ids=MAYBE_ARRIVED.keys())
def test_connection_that_may_have_carried_the_request(
    exc: requests.exceptions.ConnectionError,
) -> None:
    assert not _connection_refused(exc)


def test_a_cyclic_cause_chain_ends() -> None:
    a = urllib3.exceptions.ProtocolError("a")
    b = urllib3.exceptions.ProtocolError("b")
    a.__context__, b.__context__ = b, a
    assert not _connection_refused(wrapped(a))


# -- backoff_delay ------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt, ceiling", [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0),
                                              (6, 20.0), (30, 20.0)])
def test_backoff_bounds(attempt: int, ceiling: float) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=20.0)
    assert backoff_delay(attempt, policy, rng=FixedRandom(0.0)) == pytest.approx(ceiling / 2)
    assert backoff_delay(attempt, policy, rng=FixedRandom(0.999999)) == pytest.approx(
        ceiling, rel=1e-5)
    rng = random.Random(attempt)
    for _ in range(200):
        assert ceiling / 2 <= backoff_delay(attempt, policy, rng=rng) <= ceiling


def test_backoff_has_jitter() -> None:
    rng = random.Random(7)
    delays = {round(backoff_delay(3, RetryPolicy(), rng=rng), 9) for _ in range(50)}
    assert len(delays) > 40  # many tasks failing at once do not retry in lockstep


def test_backoff_without_rng_uses_the_module_random() -> None:
    for _ in range(50):
        assert 0.25 <= backoff_delay(0, RetryPolicy(base_delay=0.5)) <= 0.5


def test_backoff_grows_then_stays_capped() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    lows = [backoff_delay(a, policy, rng=FixedRandom(0.0)) for a in range(6)]
    assert lows == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_backoff_for_a_huge_attempt_does_not_overflow() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=20.0)
    assert 10.0 <= backoff_delay(5000, policy) <= 20.0


@pytest.mark.parametrize(
    "retry_after, expected", [(3.0, 3.0), (0.0, 0.0), (-5.0, 0.0), (60.0, 60.0), (500.0, 60.0)]
)
def test_retry_after_wins_and_is_clamped(retry_after: float, expected: float) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=20.0, max_retry_after=60.0)
    for attempt in (0, 3, 10):
        assert backoff_delay(attempt, policy, retry_after, FixedRandom(0.5)) == expected


def test_default_policy_is_bounded() -> None:
    policy = RetryPolicy()
    assert policy.max_retries == 4
    total = sum(backoff_delay(a, policy, rng=FixedRandom(0.999999)) for a in range(4))
    assert total < 10.0  # reads give up within seconds, not minutes


# -- parse_retry_after ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [("120", 120.0), ("0", 0.0), (" 5 ", 5.0), ("1.5", 1.5), ("-3", 0.0)],
)
def test_retry_after_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value) == expected


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", "soon", "nan", "NaN", "inf", "-inf", "1e999", "Wed, 32 Oct 2015 07:28:00 GMT",
     "Mon, 99 Foo 2015", "12 apples"],
)
def test_retry_after_junk_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    later = email.utils.formatdate(now + 90, usegmt=True)
    assert parse_retry_after(later, now=now) == pytest.approx(90.0)
    earlier = email.utils.formatdate(now - 90, usegmt=True)
    assert parse_retry_after(earlier, now=now) == 0.0


def test_retry_after_http_date_against_the_real_clock() -> None:
    value = email.utils.formatdate(time.time() + 30, usegmt=True)
    delay = parse_retry_after(value)
    assert delay is not None and 28.0 <= delay <= 30.0


def test_retry_after_minus_zero_zone_is_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    """A "-0000" date parses as a naive datetime; it must not be read as local time."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        now = 1_445_412_420.0  # Wed, 21 Oct 2015 07:27:00 UTC
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 -0000", now=now) == pytest.approx(60)
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == pytest.approx(60)
    finally:
        monkeypatch.undo()
        time.tzset()


# -- SlidingWindowLimiter --------------------------------------------------------------------


def test_limiter_20_per_10_seconds(fake_clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(20, 10.0, clock=fake_clock, sleep=fake_clock.sleep)
    waits = [limiter.acquire() for _ in range(20)]
    assert waits == [0.0] * 20 and fake_clock.sleeps == []
    assert limiter.acquire() == 10.0  # the 21st waits for the first to leave the window
    assert fake_clock() == 10.0
    # At t=10 the first 20 have left: 19 more go at once, the next waits again.
    assert [limiter.acquire() for _ in range(19)] == [0.0] * 19
    assert limiter.acquire() == 10.0
    assert fake_clock() == 20.0


def test_limiter_never_more_than_n_in_any_window(fake_clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(20, 10.0, clock=fake_clock, sleep=fake_clock.sleep)
    rng = random.Random(3)
    starts = []
    for _ in range(300):
        fake_clock.advance(rng.choice([0.0, 0.0, 0.01, 0.1, 0.7, 3.0]))
        limiter.acquire()
        starts.append(fake_clock())
    assert starts == sorted(starts)
    for i, t in enumerate(starts):
        in_window = [u for u in starts[i:] if u < t + 10.0]
        assert len(in_window) <= 20, (t, len(in_window))
    assert fake_clock.sleeps  # the burst really was held back


def test_limiter_frees_slots_as_time_passes(fake_clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(2, 1.0, clock=fake_clock, sleep=fake_clock.sleep)
    assert limiter.acquire() == 0.0
    fake_clock.advance(0.6)
    assert limiter.acquire() == 0.0
    assert limiter.acquire() == pytest.approx(0.4)  # the first call leaves at t=1.0
    assert limiter.acquire() == pytest.approx(0.6)  # the second at t=1.6


def test_limiter_reserve_queues_future_slots(fake_clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(2, 10.0, clock=fake_clock, sleep=fake_clock.sleep)
    assert [limiter.reserve() for _ in range(6)] == [0, 0, 10, 10, 20, 20]
    assert fake_clock.sleeps == []  # reserve never sleeps


def test_limiter_is_thread_safe(fake_clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(20, 10.0, clock=fake_clock, sleep=fake_clock.sleep)
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            wait = limiter.reserve()
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits) == [0.0] * 20 + [10.0] * 20 + [20.0] * 20 + [30.0] * 20


def test_the_shared_submit_limiter_keeps_the_api_limit() -> None:
    # 20 generate requests per 10 s: the shared limiter may be stricter, never looser.
    assert submit_limiter.max_calls <= 20 and submit_limiter.period >= 10.0
    assert submit_limiter.max_calls >= 1
