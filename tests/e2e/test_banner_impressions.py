"""banner.js sends impressions (docs/banner.md, Impressions and variants): one per showing
of the first layer, the settings layer and a re-prompt, through the same outbox as events,
with the subject's variant (the same FNV-1a assignment as the server) and its texts; the
decision names the showing it answers; a visitor who decided and sees no banner sends
none. Checked in what the server stored: the impressions table and the event export."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from cmp.variants import assign
from tests.e2e.harness import CmpServer, E2ESite, Pages, page_html
from tests.e2e.pageutil import TIMEOUT_MS, Browsing, banner_visible, choose, cookies
from tests.e2e.policy import e2e_policy
from tests.factories import ADMIN, make_key

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Response

# Playwright's headless user agent says "HeadlessChrome", which the crawler list matches:
# the server would answer such impressions without counting them.
DESKTOP_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
WEIGHTS = {"a": 0.5, "b": 0.5}


def variant_policy(material: bool = True) -> dict[str, Any]:
    """The e2e policy with two variants of its texts; b's titles say which it is."""
    body = e2e_policy(material)
    variants = {}
    for name, weight in WEIGHTS.items():
        texts = copy.deepcopy(body["texts"])
        for t in texts.values():
            t["title"] = f"{t['title']} ({name})"
            t.pop("policy_text", None)
        variants[name] = {"weight": weight, "texts": texts}
    return {**body, "variants": variants}


@pytest.fixture
async def visitor(browser: Browser) -> AsyncIterator[Browsing]:
    context = await browser.new_context(
        viewport={"width": 1024, "height": 720}, user_agent=DESKTOP_UA
    )
    seen = Browsing(context)
    yield seen
    await context.close()
    assert seen.errors == [], f"uncaught errors in the page: {seen.errors}"


@pytest.fixture
async def variant_site(cmp: CmpServer, site: E2ESite) -> E2ESite:
    r = await cmp.client.post(f"/v1/sites/{site.id}/policies", json=variant_policy(), headers=ADMIN)
    assert r.status == 201, await r.text()
    site.policy = variant_policy()
    return site


def is_impression(response: Response) -> bool:
    return response.url.endswith("/impressions") and response.request.method == "POST"


def body_of(response: Response) -> dict[str, Any]:
    return json.loads(response.request.post_data or "{}")  # type: ignore[no-any-return]


async def load(visitor: Browsing, url: str) -> tuple[Page, dict[str, Any]]:
    """A page load that shows the banner: the page and the impression it posted."""
    page = await visitor.context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("pageerror", lambda exc: visitor.errors.append(str(exc)))
    async with page.expect_response(is_impression) as info:
        await page.goto(url)
    response = await info.value
    assert response.status == 202, await response.text()
    assert (await response.json())["counted"] == 1
    return page, body_of(response)


async def impressions(db_dsn: str, site_id: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(db_dsn)
    try:
        rows = await conn.fetch(
            "SELECT impression_id::text, surface, variant, policy_version, visitor "
            "FROM impressions WHERE site_id = $1 ORDER BY received_at",
            site_id,
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


async def exported(cmp: CmpServer, site_id: str) -> list[dict[str, Any]]:
    audit = await make_key(cmp.client, site_id, "audit")
    r = await cmp.client.get(f"/v1/sites/{site_id}/events?format=jsonl", headers=audit)
    assert r.status == 200, await r.text()
    return [json.loads(line) for line in (await r.text()).splitlines() if line]


async def test_banner_then_settings_then_save_is_two_impressions_and_a_decision_naming_one(
    visitor: Browsing, pages: Pages, cmp: CmpServer, variant_site: E2ESite, db_dsn: str
) -> None:
    url = pages.add(page_html(cmp.url, variant_site.id, "nb"))
    page, shown = await load(visitor, url)
    sid = (await cookies(visitor.context))["cmp_sid"]["value"]
    variant = assign(sid, WEIGHTS)
    assert shown["subject_id"] == sid and shown["surface"] == "banner"
    assert shown["variant"] == variant and shown["policy_version"] == 2
    # The variant's texts are the ones shown.
    title = variant_site.policy["variants"][variant]["texts"]["nb"]["title"]
    assert await page.text_content("#cmp-title") == title

    async with page.expect_response(is_impression) as info:
        await page.click("#cmp-root [data-cmp-act=settings]")
    settings = body_of(await info.value)
    assert settings["surface"] == "settings" and settings["variant"] == variant
    await page.click("#cmp-p-statistics")
    sent = await choose(page, "#cmp-root [data-cmp-act=save]")
    assert sent["impression_id"] == settings["impression_id"] and sent["variant"] == variant

    stored = await impressions(db_dsn, variant_site.id)
    assert [(i["impression_id"], i["surface"], i["variant"]) for i in stored] == [
        (shown["impression_id"], "banner", variant),
        (settings["impression_id"], "settings", variant),
    ]
    [record] = await exported(cmp, variant_site.id)
    assert record["impression_id"] == settings["impression_id"] and record["variant"] == variant

    # Decided, no banner: no impression. The same variant on every page meanwhile.
    posts: list[str] = []
    again = await visitor.context.new_page()
    again.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    await again.goto(url)
    await again.wait_for_function("() => !!window.cmp")
    await again.wait_for_timeout(300)
    assert posts == [] and not await banner_visible(again)
    assert len(await impressions(db_dsn, variant_site.id)) == 2

    # A new material version asks again: a re-prompt.
    r = await cmp.client.post(
        f"/v1/sites/{variant_site.id}/policies", json=variant_policy(), headers=ADMIN
    )
    assert r.status == 201
    # A later visit with the same cookies (a fresh context: the old banner.js is cached).
    later = Browsing(
        await visitor.context.browser.new_context(  # type: ignore[union-attr]
            storage_state=await visitor.context.storage_state(), user_agent=DESKTOP_UA
        )
    )
    try:
        _, reprompt = await load(later, url)
        assert reprompt["surface"] == "reprompt" and reprompt["variant"] == variant
        assert reprompt["subject_id"] == sid
    finally:
        await later.context.close()


async def test_a_visitor_who_never_decides_is_three_impressions_and_one_visitor(
    visitor: Browsing, pages: Pages, cmp: CmpServer, variant_site: E2ESite, db_dsn: str
) -> None:
    seen = []
    for _ in range(3):
        page, shown = await load(visitor, pages.add(page_html(cmp.url, variant_site.id, "sv")))
        seen.append(shown)
        await page.close()
    assert len({s["impression_id"] for s in seen}) == 3
    assert len({s["subject_id"] for s in seen}) == 1 and len({s["variant"] for s in seen}) == 1
    stored = await impressions(db_dsn, variant_site.id)
    assert [i["surface"] for i in stored] == ["banner"] * 3
    assert len({i["visitor"] for i in stored}) == 1


async def test_impressions_wait_in_the_outbox_and_are_dropped_after_a_day(
    visitor: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite, db_dsn: str
) -> None:
    url = pages.add(page_html(cmp.url, site.id, "en"))
    stale = {"impression_id": "0b7c1a55-7e53-4b5e-9d1a-8f4d3c2b1a00", "subject_id": "s-old",
             "policy_version": 1, "surface": "banner"}  # fmt: skip
    seeded = [
        {"id": stale["impression_id"], "url": f"{cmp.url}/v1/sites/{site.id}/impressions",
         "body": json.dumps(stale), "n": 0, "i": 1, "t": (time.time() - 2 * 86400) * 1000}
    ]  # fmt: skip
    await visitor.context.add_init_script(
        "if (!sessionStorage.getItem('seeded')) { sessionStorage.setItem('seeded', '1');"
        f" localStorage.setItem('cmp_queue', {json.dumps(json.dumps(seeded))}); }}"
    )
    # The network fails the impressions: the new showing waits in the outbox.
    await visitor.context.route("**/impressions", lambda route: route.abort())
    page = await visitor.context.new_page()
    await page.goto(url)
    await page.wait_for_function("() => !!window.cmp")
    await page.wait_for_function(
        "() => (localStorage.getItem('cmp_queue') || '').indexOf('banner') > 0"
    )
    [queued] = json.loads(await page.evaluate("() => localStorage.getItem('cmp_queue')"))
    assert queued["i"] == 1 and json.loads(queued["body"])["surface"] == "banner"
    assert queued["id"] != stale["impression_id"]  # the day-old one was dropped, not sent
    await visitor.context.unroute("**/impressions")
    await page.evaluate("() => window.dispatchEvent(new Event('online'))")
    await page.wait_for_function("() => localStorage.getItem('cmp_queue') === null")
    stored = await impressions(db_dsn, site.id)
    assert [i["impression_id"] for i in stored] == [queued["id"]]
