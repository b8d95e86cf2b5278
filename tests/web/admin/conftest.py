"""The admin page over HTTP (the bridge's app on loopback with an admin and a workforce token), and in a real
browser against the demo."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from bridge.config import Config
from bridge.demo import DemoRun, running_demo


@pytest.fixture
def config(config: Config, request: pytest.FixtureRequest) -> Config:
    """tests/web's configuration (an admin and a workforce token) reached over plain HTTP, as the test client does:
    the session cookie is not Secure then, so the client sends it back. Parametrized indirectly: another public_url."""
    return dataclasses.replace(config, public_url=getattr(request, "param", "http://127.0.0.1:8080"))


# -- in a real browser ---------------------------------------------------------------------------------------------
#
# Debian's chromium, driven by Playwright; nothing is downloaded (Playwright's own browser builds are not used).
# The browser and the demo (bridge/demo.py, which the screenshots show) run on one event loop for the whole
# session (the tests are marked `pytest.mark.asyncio(loop_scope="session")`), so one browser and one demo serve
# every browser test; each test gets a fresh browser context (no cookies) and works on mailboxes of its own.

CHROMIUM = Path("/usr/bin/chromium")
# `UPDATE_SCREENSHOTS=1` writes the pages' screenshots into docs/img/ (docs/admin.md shows them); otherwise they go
# to a temporary folder, so that a test run leaves the work tree as it was.
DOCS_IMG = Path(__file__).parents[3] / "docs" / "img"
IN_BROWSER = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def demo(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DemoRun]:
    async with running_demo(tmp_path_factory.mktemp("demo"), datetime.now(UTC).date()) as running:
        yield running


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing and could not be installed (make test runs `apt-get install chromium`)")
    return CHROMIUM


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium))
        yield launched
        await launched.close()


@pytest_asyncio.fixture(loop_scope="session")
async def anonymous_page(browser: Browser) -> AsyncIterator[Page]:
    """A page in a fresh browser context: no cookie, nobody signed in."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def sign_in_page(page: Page, demo: DemoRun, token: str) -> None:
    await page.goto(f"{demo.service.url}/admin/")
    await page.get_by_label("Admin API token").fill(token)
    await page.get_by_role("button", name="Sign in").click()


@pytest_asyncio.fixture(loop_scope="session")
async def admin_page(anonymous_page: Page, demo: DemoRun) -> Page:
    """A page signed in to the demo's admin page with its admin token, showing the Overview."""
    await sign_in_page(anonymous_page, demo, demo.admin_token)
    await expect(anonymous_page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    return anonymous_page


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return DOCS_IMG if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path_factory.mktemp("screenshots")
