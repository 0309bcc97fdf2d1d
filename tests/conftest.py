"""Shared test helpers: a fake clock whose sleep advances it, and a recording sleep."""

from __future__ import annotations

import pytest


class FakeClock:
    """A monotonic clock that only moves when ``sleep`` is called (records every sleep)."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, f"negative sleep {seconds}"
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_clock() -> FakeClock:
    """A fresh :class:`FakeClock` at t = 0."""
    return FakeClock()


@pytest.fixture
def sleeps() -> list[float]:
    """A list to pass as ``sleep=sleeps.append``: records the delays instead of sleeping."""
    return []
