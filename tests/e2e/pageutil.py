"""What the e2e tests do and read in a page: a visitor (one browser context), clicking a
banner control and waiting for its event, the dataLayer, cookies, the outbox."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, ConsoleMessage, Page, Response

TIMEOUT_MS = 10_000


@dataclass
class Browsing:
    """One browser context (a fresh visitor) with what its pages reported."""

    context: BrowserContext
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    async def visit(self, url: str, ready: str = "() => !!window.cmp") -> Page:
        page = await self.context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", self._console)
        await page.goto(url)
        await page.wait_for_function(ready)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.console.append(message.text)


def is_event_post(response: Response) -> bool:
    return response.url.endswith("/events") and response.request.method == "POST"


async def choose(page: Page, selector: str) -> dict[str, Any]:
    """Click a banner control and wait for the event it posts; returns the posted body."""
    async with page.expect_response(is_event_post) as info:
        await page.click(selector)
    response = await info.value
    assert response.status == 201, await response.text()
    body = response.request.post_data
    assert body is not None
    return json.loads(body)  # type: ignore[no-any-return]


async def data_layer(page: Page) -> list[Any]:
    """The dataLayer with gtag's `arguments` objects turned into lists."""
    return await page.evaluate(  # type: ignore[no-any-return]
        """() => window.dataLayer.map(e => (e && typeof e === "object" && !Array.isArray(e)
              && typeof e.length === "number") ? Array.from(e) : e)"""
    )


async def cookies(context: BrowserContext) -> dict[str, dict[str, Any]]:
    return {c["name"]: dict(c) for c in await context.cookies()}


async def consent_cookie(context: BrowserContext) -> dict[str, Any]:
    found = (await cookies(context)).get("cmp_consent")
    assert found is not None, "no cmp_consent cookie"
    return json.loads(unquote(found["value"]))  # type: ignore[no-any-return]


async def banner_visible(page: Page) -> bool:
    return await page.evaluate(  # type: ignore[no-any-return]
        """() => { const r = document.getElementById("cmp-root");
                   return !!r && !r.hidden && r.getClientRects().length > 0; }"""
    )


async def queue(page: Page) -> list[dict[str, Any]]:
    raw = await page.evaluate("() => localStorage.getItem('cmp_queue')")
    return json.loads(raw) if raw else []
