"""Shared test helpers: a home of its own for every test, a fake clock, a recording sleep."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Configuration the tests' tools only read (pip's index, git's identity): still found from a
#: temporary HOME. Each maps the variable naming a file to where it lives in the real home.
_READ_ONLY_CONFIG = {
    "PIP_CONFIG_FILE": (".config/pip/pip.conf", ".pip/pip.conf"),
    "GIT_CONFIG_GLOBAL": (".gitconfig",),
}
#: Folders that, when set under the real home, would still send writes there.
_HOME_DIRS = ("IPYTHONDIR", "JUPYTER_RUNTIME_DIR", "MPLCONFIGDIR", "XDG_CACHE_HOME",
              "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Give every test a temporary HOME and ``KIE_OUTPUT_DIR``: no test writes to the real home.

    Set in ``os.environ``, so kernels and subprocesses started by a test inherit them too.
    IPython makes its profile in the temporary home; kernelspecs still come from
    ``sys.prefix`` and ``JUPYTER_PATH``. A test may still set its own ``KIE_OUTPUT_DIR``.
    """
    real_home = Path.home()
    base = tmp_path_factory.mktemp("isolated")
    home = base / "home"
    home.mkdir()
    for variable, candidates in _READ_ONLY_CONFIG.items():
        found = [real_home / c for c in candidates if (real_home / c).is_file()]
        if found and variable not in os.environ:
            monkeypatch.setenv(variable, str(found[0]))
    for variable in _HOME_DIRS:
        if Path(os.environ.get(variable) or "/").resolve().is_relative_to(real_home.resolve()):
            monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KIE_OUTPUT_DIR", str(base / "kie_output"))
    yield home


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


#: The poll schedule every test gets (unless marked ``real_schedule``): the fake server
#: answers in milliseconds, so waiting the real schedule's 0.4 s and 1 s only slows the suite.
FAST_SCHEDULE = {"min_interval": 0.02, "max_interval": 0.25, "first": 0.02, "unknown": 0.05,
                 "target_delay": 0.05}


@pytest.fixture(autouse=True)
def _fresh_engine_state(request: pytest.FixtureRequest,
                        monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fresh process-wide state for every test, and a fast poll schedule.

    The submit limiter, the poll budget and the duration book are shared by every task of a
    process: a test must not inherit another's submissions, polls or learned durations (under
    pytest-xdist a worker runs many tests in turn). Tests that measure the real schedule are
    marked ``real_schedule``; kernels and subprocesses keep the real one.
    """
    from dataclasses import fields

    from kie_jupyter.api import client as client_module
    from kie_jupyter.api import ratelimit
    from kie_jupyter.engine import poller

    fresh_limiter = ratelimit.SlidingWindowLimiter(ratelimit.submit_limiter.max_calls,
                                                   ratelimit.submit_limiter.period)
    monkeypatch.setattr(ratelimit, "submit_limiter", fresh_limiter)
    if hasattr(client_module, "submit_limiter"):
        monkeypatch.setattr(client_module, "submit_limiter", fresh_limiter)
    budget = poller.poll_budget
    fresh_budget = ratelimit.SlidingWindowLimiter(budget.max_calls, budget.period)
    monkeypatch.setattr(poller, "poll_budget", fresh_budget)
    monkeypatch.setitem(poller.poll_task.__kwdefaults__, "budget", fresh_budget)
    poller.durations.clear()
    if request.node.get_closest_marker("real_schedule") is None:
        init = poller.PollSchedule.__init__
        real = {f.name: f.default for f in fields(poller.PollSchedule)}
        monkeypatch.setattr(init, "__defaults__",
                            tuple({**real, **FAST_SCHEDULE}[name] for name in real))
    yield
    poller.durations.clear()


#: Test files whose tests each run a kernel or a whole notebook (seconds each).
_KERNEL_FILES = ("test_notebooks.py", "test_kernel_output.py", "test_restart.py",
                 "test_teaching_pack.py")


@pytest.hookimpl(trylast=True)  # after ``-m`` has deselected: spread what will run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long tests — the slow tier, then those that start kernels — spread evenly through
    the run, longest first: pytest-xdist (``--dist worksteal``) gives each worker an equal
    block of the list, so each starts with a share of the long ones and the short ones fill
    in around them, instead of one worker holding them all while the others sit idle."""
    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("slow") is not None:
            return 0
        return 1 if Path(str(item.path)).name in _KERNEL_FILES else 2

    long = sorted((i for i in items if rank(i) < 2), key=rank)
    short = [i for i in items if rank(i) == 2]
    if not long:
        return
    step = len(short) / len(long)
    spread: list[pytest.Item] = []
    for n, item in enumerate(long):
        spread.extend(short[round((n - 1) * step) if n else 0:round(n * step)])
        spread.append(item)
    spread.extend(short[round((len(long) - 1) * step):])
    assert len(spread) == len(items)
    items[:] = spread
