"""banner.js delivery: an event the server did not acknowledge stays in the localStorage
outbox and arrives later with the same event_id — on the next page load after an
outage, or after a delay when the server answered 503."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from tests.e2e.harness import CmpServer, E2ESite, Pages, open_site_page, state, stored_events
from tests.e2e.pageutil import Browsing, consent_cookie, queue

if TYPE_CHECKING:
    from playwright.async_api import Route

ACCEPT = "#cmp-root [data-cmp-layer='1'] [data-cmp-act=accept_all]"


async def test_an_event_posted_while_the_server_is_down_is_delivered_on_the_next_load(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite, db_dsn: str
) -> None:
    page = await open_site_page(browsing, pages, cmp, site)
    await cmp.stop()
    await page.click(ACCEPT)
    # The visitor's choice takes effect at once, delivered or not.
    await page.wait_for_function("() => window.statsRuns === 1")
    chosen = await consent_cookie(browsing.context)
    await page.wait_for_function(
        "() => JSON.parse(localStorage.getItem('cmp_queue') || '[]').some(i => i.n >= 1)"
    )
    queued = await queue(page)
    assert [item["id"] for item in queued] == [chosen["e"]]
    assert json.loads(queued[0]["body"])["event_id"] == chosen["e"]
    assert await stored_events(db_dsn, site.id) == []

    await cmp.start()
    await page.reload()
    await page.wait_for_function("() => localStorage.getItem('cmp_queue') === null")
    stored = await stored_events(db_dsn, site.id)
    assert [e["event_id"] for e in stored] == [chosen["e"]]
    got = await state(cmp, site, json.loads(queued[0]["body"])["subject_id"])
    assert got["status"] == "valid" and got["event_id"] == chosen["e"]


async def test_a_503_is_retried_after_a_delay_with_the_same_body(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite, db_dsn: str
) -> None:
    page = await open_site_page(browsing, pages, cmp, site)
    bodies: list[str] = []

    async def flaky(route: Route) -> None:
        if route.request.method != "POST":
            await route.continue_()
            return
        bodies.append(route.request.post_data or "")
        if len(bodies) == 1:
            await route.fulfill(
                status=503,
                headers={"Retry-After": "1", "Access-Control-Allow-Origin": pages.origin},
                content_type="application/problem+json",
                body='{"status": 503}',
            )
        else:
            await route.continue_()

    await page.route("**/events", flaky)
    await page.click(ACCEPT)
    await page.wait_for_function("() => localStorage.getItem('cmp_queue') !== null")
    # The banner retries by itself (first after 5 s), without a reload.
    await page.wait_for_function("() => localStorage.getItem('cmp_queue') === null", timeout=15_000)
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    event_id = json.loads(bodies[0])["event_id"]
    assert [e["event_id"] for e in await stored_events(db_dsn, site.id)] == [event_id]


async def test_an_unacknowledged_event_resent_on_the_next_load_is_a_harmless_duplicate(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite, db_dsn: str
) -> None:
    page = await open_site_page(browsing, pages, cmp, site)
    answered_lost = asyncio.Event()

    async def lost_answer(route: Route) -> None:
        # The server stores the event but the answer never reaches the page (the banner's
        # sendBeacon fallback after that failure is lost too).
        if route.request.method != "POST":
            await route.continue_()
        elif answered_lost.is_set():
            await route.abort("connectionreset")
        else:
            await route.fetch()
            await route.abort("connectionreset")
            answered_lost.set()

    await page.route("**/events", lost_answer)
    await page.click(ACCEPT)
    await asyncio.wait_for(answered_lost.wait(), 10)
    assert len(await stored_events(db_dsn, site.id)) == 1
    await page.wait_for_timeout(300)  # let the fallback beacon meet the route too
    assert len(await queue(page)) == 1
    await page.unroute("**/events")
    async with page.expect_response(lambda r: r.url.endswith("/events")) as info:
        await page.reload()
    response = await info.value
    assert response.status == 201 and await response.json() == {"accepted": 0, "duplicates": 1}
    await page.wait_for_function("() => localStorage.getItem('cmp_queue') === null")
    assert len(await stored_events(db_dsn, site.id)) == 1
