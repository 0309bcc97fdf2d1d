"""Pure helpers: backoff delays, Retry-After, the sliding-window limiter, image sniffing."""

from __future__ import annotations

import email.utils
import random
import struct
import threading
import time
import zlib
from typing import TYPE_CHECKING

import pytest

from kie_jupyter.api.imagedata import ImageInfo, sniff_image
from kie_jupyter.api.ratelimit import SlidingWindowLimiter, submit_limiter
from kie_jupyter.api.retry import RetryPolicy, backoff_delay, parse_retry_after

if TYPE_CHECKING:
    from conftest import FakeClock


class FixedRandom(random.Random):
    """An rng whose ``random()`` is always ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


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


# -- sniff_image ----------------------------------------------------------------------------


def png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def jpeg_header(width: int, height: int, sof: int = 0xC0, before: bytes = b"") -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof_body = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    segment = bytes([0xFF, sof]) + struct.pack(">H", len(sof_body) + 2) + sof_body
    return b"\xff\xd8" + app0 + before + segment + b"\xff\xda\x00\x08rest"


def dht() -> bytes:
    body = b"\x00" + b"\x00" * 16
    return b"\xff\xc4" + struct.pack(">H", len(body) + 2) + body


def riff(chunk: bytes, payload: bytes) -> bytes:
    data = b"WEBP" + chunk + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(data)) + data


def webp_vp8x(width: int, height: int) -> bytes:
    payload = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (
        height - 1).to_bytes(3, "little")
    return riff(b"VP8X", payload)


def webp_vp8(width: int, height: int, scale: int = 0) -> bytes:
    size = struct.pack("<HH", width | scale << 14, height | scale << 14)  # top 2 bits: scaling
    payload = b"\x9d\x01\x00" + b"\x9d\x01\x2a" + size + b"\0" * 4
    return riff(b"VP8 ", payload)


def webp_vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    return riff(b"VP8L", b"\x2f" + bits.to_bytes(4, "little") + b"\0" * 4)


@pytest.mark.parametrize(
    "data, expected",
    [
        (png_header(640, 480), ImageInfo("png", 640, 480)),
        (png_header(1, 1) + b"IDAT...", ImageInfo("png", 1, 1)),
        (b"\x89PNG\r\n\x1a\n", ImageInfo("png", None, None)),
        (jpeg_header(1024, 768), ImageInfo("jpeg", 1024, 768)),
        (jpeg_header(300, 200, sof=0xC2), ImageInfo("jpeg", 300, 200)),  # progressive
        (jpeg_header(300, 200, before=dht()), ImageInfo("jpeg", 300, 200)),  # DHT is no SOF
        (b"\xff\xd8\xff\xe0\x00", ImageInfo("jpeg", None, None)),  # truncated header
        (webp_vp8x(1536, 1024), ImageInfo("webp", 1536, 1024)),
        (webp_vp8(320, 240), ImageInfo("webp", 320, 240)),
        (webp_vp8(320, 240, scale=3), ImageInfo("webp", 320, 240)),
        (webp_vp8l(800, 600), ImageInfo("webp", 800, 600)),
        (riff(b"ALPH", b"\0" * 20), ImageInfo("webp", None, None)),
        (b"GIF89a" + struct.pack("<HH", 32, 16) + b"\0" * 4, ImageInfo("gif", 32, 16)),
        (b"GIF87a" + struct.pack("<HH", 5, 7), ImageInfo("gif", 5, 7)),
    ],
    ids=["png", "png-more", "png-signature-only", "jpeg", "jpeg-progressive", "jpeg-dht",
         "jpeg-truncated", "webp-vp8x", "webp-vp8", "webp-vp8-scaled", "webp-vp8l",
         "webp-unknown-chunk", "gif89a", "gif87a"],
)
def test_sniff_image(data: bytes, expected: ImageInfo) -> None:
    assert sniff_image(data) == expected


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world", b"<html><body>nope</body></html>", b'{"code": 200}', b"GIF8",
     b"GIF89a\x01", b"RIFF\x00\x00\x00\x00WAVEfmt ", b"\x89PNG", b"\xff\xd8", b"%PDF-1.7",
     b"\x00" * 64],
)
def test_sniff_garbage(data: bytes) -> None:
    assert sniff_image(data) is None


@pytest.mark.parametrize(
    "fmt, mime", [("png", "image/png"), ("jpeg", "image/jpeg"), ("webp", "image/webp"),
                  ("gif", "image/gif")],
)
def test_mime_types(fmt: str, mime: str) -> None:
    assert ImageInfo(fmt, 1, 1).mime_type == mime


def test_sniff_a_real_rendered_png() -> None:
    from kie_jupyter.fakeapi.images import image_dimensions, render_png

    data = render_png("a fox", "3:2", 0, 96)
    assert sniff_image(data) == ImageInfo("png", *image_dimensions("3:2", 96))
