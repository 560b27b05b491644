"""E2E fixtures: Debian's chromium driven by Playwright (async API), a real cmp server on
a free port, and a second origin that serves the test pages.

Everything runs in the session's event loop: the cmp server (aiohttp's TestServer, a
real socket), the page server and Playwright's driver connection. The pages come from
another origin than the API, as on a customer's site, and each test makes its own site
whose `origins` list that page origin.

Without chromium (or Playwright) the tests skip with the reason; with `CI=true` they fail
instead, so CI can never go green by not running them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest
from aiohttp import web

from cmp.config import Settings
from tests.e2e.harness import CmpServer, E2ESite, Pages, make_e2e_site
from tests.e2e.pageutil import Browsing

if TYPE_CHECKING:
    from playwright.async_api import Browser

CHROMIUM = Path(os.environ.get("CMP_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Third-party banners from npm (tests/e2e/package.json; `npm ci --prefix tests/e2e`).
NODE_MODULES = Path(__file__).resolve().parent / "node_modules"


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        unavailable(f"no chromium at {CHROMIUM}: `apt-get install chromium` (or set CMP_CHROMIUM)")
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        unavailable("playwright is not installed: pip install -e '.[test]'")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture(scope="session")
def vendor() -> Path:
    """The npm packages the third-party banner tests load into their pages."""
    wanted = ["vanilla-cookieconsent/dist/cookieconsent.umd.js", "klaro/dist/klaro.js"]
    missing = [name for name in wanted if not (NODE_MODULES / name).exists()]
    if missing:
        unavailable(f"npm packages missing ({', '.join(missing)}): npm ci --prefix tests/e2e")
    return NODE_MODULES


# --- the page origin ------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def pages() -> AsyncIterator[Pages]:
    served = Pages()
    app = web.Application()
    app.router.add_get("/p/{name}", served.page)
    app.router.add_get("/ext-tag.js", served.tag)
    if NODE_MODULES.is_dir():
        app.router.add_static("/vendor/", NODE_MODULES)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    served.origin = f"http://127.0.0.1:{port}"
    yield served
    await runner.cleanup()


# --- the cmp server -------------------------------------------------------------------------


@pytest.fixture
async def cmp(settings: Settings, db_dsn: str) -> AsyncIterator[CmpServer]:
    server = CmpServer(settings, db_dsn)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def demo_cmp(settings: Settings, db_dsn: str) -> AsyncIterator[CmpServer]:
    server = CmpServer(settings.model_copy(update={"demo": True}), db_dsn)
    await server.start()
    yield server
    await server.stop()


# --- a test site ----------------------------------------------------------------------------


@pytest.fixture
async def site(cmp: CmpServer, pages: Pages) -> E2ESite:
    return await make_e2e_site(cmp, pages.origin)


# --- the browser side -----------------------------------------------------------------------


@pytest.fixture
async def browsing(browser: Browser) -> AsyncIterator[Browsing]:
    context = await browser.new_context(viewport={"width": 1024, "height": 720})
    seen = Browsing(context)
    yield seen
    await context.close()
    assert seen.errors == [], f"uncaught errors in the page: {seen.errors}"
