"""Browser tests: a real Jupyter server (demo mode) driven by headless Chromium via Playwright.

Needs Debian's ``chromium`` (``/usr/bin/chromium``, or ``$KIE_CHROMIUM``) and the ``playwright``
Python package — ``scripts/browser-deps.sh`` installs both; Playwright's own browser download is
never used. Without them every test here is skipped with the reason, unless
``KIE_REQUIRE_BROWSER=1`` (as in CI), which turns the skip into an error.

Screenshots of each state go to ``test-artifacts/browser/<frontend>-<state>.png``.
``KIE_UPDATE_DOCS_SCREENSHOT=1`` also refreshes ``docs/card.png``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("KIE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-quic",
    "--metrics-recording-only",
    "--password-store=basic",
]
VIEWPORT = {"width": 1280, "height": 900}
#: Seconds a demo task takes (KIE_DEMO_DURATION in the kernel): long enough to see progress.
DEMO_DURATION = 4.0


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _missing() -> list[str]:
    problems = []
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        problems.append(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    for mod in ("playwright", "jupyterlab", "notebook", "ipykernel", "ipywidgets"):
        if not _installed(mod):
            problems.append(f"the {mod} Python package is not installed")
    return problems


MISSING = _missing()
HOW = "run `bash scripts/browser-deps.sh <venv>`"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mine = [item for item in items if HERE in Path(str(item.path)).resolve().parents]
    if not mine:
        return
    # The browser tests run last. Playwright's sync API keeps an asyncio loop marked as
    # running on the main thread until the session ends; any later test would inherit it
    # (asyncio.run refuses, and code that looks for a running loop would see a kernel-like
    # thread that is not one).
    mine_ids = {id(item) for item in mine}
    items[:] = [item for item in items if id(item) not in mine_ids] + mine
    if not MISSING:
        return
    if os.environ.get("KIE_REQUIRE_BROWSER", "") not in ("", "0"):
        raise pytest.UsageError(
            f"KIE_REQUIRE_BROWSER is set, but the browser tests cannot run: "
            f"{'; '.join(MISSING)} — {HOW}")
    skip = pytest.mark.skip(reason=f"browser tests skipped: {'; '.join(MISSING)} — {HOW}")
    for item in mine:
        item.add_marker(skip)


# -- the server and the browser ---------------------------------------------------------------


@pytest.fixture(scope="session")
def jupyter() -> Iterator[Any]:
    """One ``jupyter lab`` for the session: loopback, random token, tmp dirs, KIE_DEMO=1."""
    from browser_server import start_jupyter

    base = Path(tempfile.mkdtemp(prefix="kie4o-browser-"))
    server = start_jupyter(base, demo_duration=DEMO_DURATION, python=sys.executable)
    try:
        yield server
    finally:
        server.stop()
        if os.environ.get("KIE_KEEP_BROWSER_TMP"):
            print(f"\nbrowser test files kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(params=["lab", "notebook"])
def frontend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_FAILED] = report.failed


@pytest.fixture
def new_page(request: pytest.FixtureRequest, browser: Any, jupyter: Any, artifacts: Path) -> Any:
    """``new_page()``: a page in a fresh browser context (no shared cookies or storage).

    On failure each page's screenshot goes to ``test-artifacts/browser/FAILED-<test>-<n>.png``
    and the server log's tail is printed. The kernels the test started are shut down after it.
    """
    contexts: list[Any] = []
    before = {s["id"] for s in jupyter.sessions()}

    def make() -> Any:
        ctx = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
        ctx.set_default_timeout(30_000)
        contexts.append(ctx)
        page = ctx.new_page()
        page.console_messages_seen = []  # type: ignore[attr-defined]
        page.on("console", lambda m: page.console_messages_seen.append(  # type: ignore[attr-defined]
            f"{m.type}: {m.text[:300]}"))
        page.on("pageerror", lambda e: page.console_messages_seen.append(  # type: ignore[attr-defined]
            f"pageerror: {str(e)[:300]}"))
        return page

    yield make

    if request.node.stash.get(_FAILED, False):
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in request.node.name)
        for n, ctx in enumerate(contexts):
            for page in ctx.pages:
                try:
                    page.screenshot(path=str(artifacts / f"FAILED-{safe}-{n}.png"),
                                    full_page=True)
                    print(f"\n--- console of page {n} ---\n"
                          + "\n".join(page.console_messages_seen[-30:]))  # type: ignore[attr-defined]
                except Exception as exc:  # noqa: BLE001
                    print(f"(no screenshot of page {n}: {exc})")
        print(f"\n--- jupyter log ---\n{jupyter.log_tail(3000)}")
    for ctx in contexts:
        ctx.close()
    for s in jupyter.sessions():
        if s["id"] not in before:
            try:
                jupyter.api("DELETE", f"/api/sessions/{s['id']}")
            except Exception:  # noqa: BLE001 - already gone
                pass
