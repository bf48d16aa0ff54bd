"""Browser tests of the dev UI: Debian's Chromium driven by Playwright against a
real control plane and a real worker of the shop app (tests/browser/apps/shop.py),
shared by the tests of a module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from tests.browser.cluster import ShopCluster

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}


class Shoot(Protocol):
    def __call__(self, page: Page, name: str, *, full_page: bool = True) -> Path: ...


expect.set_options(timeout=10_000)


@contextmanager
def running(cluster: ShopCluster, request: pytest.FixtureRequest) -> Iterator[ShopCluster]:
    """Start ``cluster`` and seed it; stop it after, printing its logs if a test failed."""
    cluster.start()
    failed_before = request.session.testsfailed
    try:
        cluster.seed()
        yield cluster
    finally:
        if request.session.testsfailed > failed_before:
            print(cluster.logs())
        cluster.stop()


@pytest.fixture(scope="module")
def shop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ShopCluster]:
    """A control plane with HTTP and a shop worker, with a few runs already made."""
    with running(ShopCluster(tmp_path_factory.mktemp("shop")), request) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium. "
            "Install it with: sudo apt-get install chromium",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, shop: ShopCluster) -> Iterator[Page]:
    """A fresh tab on the UI (1280x800) that fails the test on any script error."""
    context = browser.new_context(viewport=VIEWPORT, base_url=shop.url)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console {message.type}: {message.text}")
            if message.type in ("error", "warning")
            # A 4xx the test provoked on purpose: the UI shows it, the console logs it.
            and not message.text.startswith("Failed to load resource")
            else None
        ),
    )
    yield page
    context.close()
    assert not problems, "the page logged problems:\n" + "\n".join(problems)


@pytest.fixture
def shoot(tmp_path: Path) -> Shoot:
    """Save a full-page screenshot as NAME.png into $TETHER_SCREENSHOT_DIR, else
    the test's tmp dir."""
    directory = Path(os.environ.get("TETHER_SCREENSHOT_DIR") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)

    def save(page: Page, name: str, *, full_page: bool = True) -> Path:
        """``full_page=False`` for a modal dialog (its backdrop covers the viewport)."""
        path = directory / f"{name}.png"
        # The sidebar is fixed: from the top, a full-page shot shows it where it belongs.
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        return path

    return save
