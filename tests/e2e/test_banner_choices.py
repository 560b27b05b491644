"""banner.js in a real browser: first visit, the three kinds of choice, gating, reload,
re-prompting, withdrawal — each checked on the page *and* in the server's consent state."""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING

from tests.e2e.harness import (
    CmpServer,
    E2ESite,
    Pages,
    open_site_page,
    publish,
    state,
    stored_events,
)
from tests.e2e.pageutil import Browsing, banner_visible, choose, consent_cookie, cookies, data_layer

if TYPE_CHECKING:
    from playwright.async_api import Page

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
DENIED = {
    "ad_storage": "denied",
    "ad_user_data": "denied",
    "ad_personalization": "denied",
    "analytics_storage": "denied",
    "functionality_storage": "denied",
    "personalization_storage": "denied",
    "security_storage": "granted",
}
GRANTED = dict.fromkeys(DENIED, "granted")
ALL = {"necessary": True, "preferences": True, "statistics": True, "marketing": True}
NONE = {"necessary": True, "preferences": False, "statistics": False, "marketing": False}
ACCEPT = "#cmp-root [data-cmp-layer='1'] [data-cmp-act=accept_all]"
REJECT = "#cmp-root [data-cmp-layer='1'] [data-cmp-act=reject_all]"
SETTINGS = "#cmp-root [data-cmp-act=settings]"
SAVE = "#cmp-root [data-cmp-act=save]"


async def test_first_visit_shows_the_banner_with_accept_and_reject_equally_prominent(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite
) -> None:
    page = await open_site_page(browsing, pages, cmp, site)
    assert await banner_visible(page)
    dialog = page.locator("#cmp-root [role=dialog]")
    assert await dialog.get_attribute("aria-modal") == "true"
    title = await page.text_content(f"#{await dialog.get_attribute('aria-labelledby')}")
    body = await page.text_content(f"#{await dialog.get_attribute('aria-describedby')}")
    assert title == site.texts["nb"]["title"] and body == site.texts["nb"]["body"]
    assert (
        await page.get_attribute("#cmp-root a[href]", "href") == "https://shop.example/personvern"
    )

    # Equal prominence: same element, same classes, same box, same computed look.
    look = """el => { const s = getComputedStyle(el), r = el.getBoundingClientRect();
        return {tag: el.tagName, cls: el.className, w: Math.round(r.width),
                h: Math.round(r.height), bg: s.backgroundColor, fg: s.color,
                font: s.fontSize + " " + s.fontWeight, border: s.border, pad: s.padding}; }"""
    accept = await page.eval_on_selector(ACCEPT, look)
    reject = await page.eval_on_selector(REJECT, look)
    assert accept["tag"] == reject["tag"] == "BUTTON"
    assert accept == reject
    assert await page.text_content(ACCEPT) == "Godta alle"
    assert await page.text_content(REJECT) == "Avvis alle"

    # Nothing decided yet: no cookie, no gated tag, Consent Mode denied by default.
    assert "cmp_consent" not in await cookies(browsing.context)
    assert await page.evaluate(
        "() => [window.statsRuns, window.extRuns, window.marketingRuns]"
    ) == [None, None, None]
    layer = await data_layer(page)
    assert layer[0] == ["consent", "default", {**DENIED, "wait_for_update": 500}]
    assert not any(isinstance(e, list) and e[:2] == ["consent", "update"] for e in layer)
    assert (await page.evaluate("() => cmp.getConsent()"))["status"] == "none"


async def test_accept_all_sets_the_cookie_records_the_event_and_runs_gated_tags_once(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite, db_dsn: str
) -> None:
    page = await open_site_page(browsing, pages, cmp, site)
    sent = await choose(page, ACCEPT)
    assert sent["action"] == "accept_all" and sent["source"] == "cmp-banner/1.0"
    assert sent["language"] == "nb" and sent["policy_version"] == 1
    assert sent["page_url"].startswith(pages.origin + "/p/") and "?" not in sent["page_url"]
    assert not await banner_visible(page)

    jar = await cookies(browsing.context)
    assert UUID4.match(jar["cmp_sid"]["value"])
    assert jar["cmp_consent"]["sameSite"] == "Lax" and not jar["cmp_consent"]["secure"]
    days = (jar["cmp_consent"]["expires"] - time.time()) / 86400
    assert 364.9 < days <= 365
    stored = await consent_cookie(browsing.context)
    assert stored["v"] == 1 and stored["p"] == ALL and stored["a"] == "accept_all"
    assert stored["e"] == sent["event_id"] and UUID4.match(stored["e"])

    got = await state(cmp, site, jar["cmp_sid"]["value"])
    assert got["status"] == "valid" and got["action"] == "accept_all"
    assert got["purposes"] == ALL and got["consent_mode"] == GRANTED
    assert got["event_id"] == sent["event_id"]

    layer = await data_layer(page)
    assert layer[0][:2] == ["consent", "default"]
    assert ["consent", "update", GRANTED] in layer
    assert {
        "event": "cmp_consent_update",
        "cmp": {"purposes": ALL, "policy_version": 1, "action": "accept_all"},
    } in layer
    await page.wait_for_function("() => window.extRuns === 1")
    assert await page.evaluate("() => [window.statsRuns, window.marketingRuns]") == [1, 1]
    await page.wait_for_function("() => localStorage.getItem('cmp_queue') === null")

    # Choosing again must not run a tag a second time.
    await page.evaluate("() => cmp.show()")
    await choose(page, ACCEPT)
    assert await page.evaluate("() => [window.statsRuns, window.extRuns]") == [1, 1]
    assert len(await stored_events(db_dsn, site.id)) == 2


async def test_reject_all_records_only_required_purposes_and_runs_no_gated_tag(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite
) -> None:
    page = await open_site_page(browsing, pages, cmp, site)
    sent = await choose(page, REJECT)
    assert sent["action"] == "reject_all" and "purposes" not in sent
    got = await state(cmp, site, sent["subject_id"])
    assert got["status"] == "valid" and got["action"] == "reject_all"
    assert got["purposes"] == NONE and got["consent_mode"] == DENIED
    assert ["consent", "update", DENIED] in await data_layer(page)
    await page.wait_for_timeout(200)  # an activated external tag would have loaded by now
    assert await page.evaluate(
        "() => [window.statsRuns, window.extRuns, window.marketingRuns]"
    ) == [None, None, None]


async def test_settings_layer_records_a_custom_choice_with_the_toggled_purposes(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite
) -> None:
    page = await open_site_page(browsing, pages, cmp, site)
    await page.click(SETTINGS)
    assert await page.is_hidden("#cmp-root [data-cmp-layer='1']")
    required = page.locator("#cmp-p-necessary")
    assert await required.is_checked() and await required.is_disabled()
    for key in ("preferences", "statistics", "marketing"):
        box = page.locator(f"#cmp-p-{key}")
        assert not await box.is_checked() and await box.is_enabled()
    services = await page.text_content("#cmp-root [data-cmp-layer='2']") or ""
    assert "Google Analytics" in services and "_ga, _ga_*" in services and "730 dager" in services
    assert "Facebook pixel" in services

    await page.check("#cmp-p-statistics")
    sent = await choose(page, SAVE)
    assert sent["action"] == "custom"
    assert sent["purposes"] == {"preferences": False, "statistics": True, "marketing": False}
    got = await state(cmp, site, sent["subject_id"])
    assert got["action"] == "custom"
    assert got["purposes"] == {**NONE, "statistics": True}
    assert got["consent_mode"] == {**DENIED, "analytics_storage": "granted"}
    assert got["services"]["google-analytics"] is True
    assert got["services"]["facebook-pixel"] is False
    await page.wait_for_function("() => window.extRuns === 1")
    assert await page.evaluate("() => [window.statsRuns, window.marketingRuns]") == [1, None]


async def test_reload_shows_no_banner_and_replays_the_stored_choice(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite, db_dsn: str
) -> None:
    page = await open_site_page(browsing, pages, cmp, site)
    sent = await choose(page, ACCEPT)
    await page.wait_for_function("() => localStorage.getItem('cmp_queue') === null")
    await page.reload()
    await page.wait_for_function("() => !!window.cmp")
    assert not await banner_visible(page)
    layer = await data_layer(page)
    assert layer[0][:2] == ["consent", "default"]
    assert layer[1] == ["consent", "update", GRANTED]
    assert layer[2] == {
        "event": "cmp_consent_update",
        "cmp": {"purposes": ALL, "policy_version": 1, "action": "accept_all"},
    }
    await page.wait_for_function("() => window.extRuns === 1")
    assert await page.evaluate("() => window.statsRuns") == 1
    consent = await page.evaluate("() => cmp.getConsent()")
    assert consent["status"] == "valid" and consent["event_id"] == sent["event_id"]
    assert (await state(cmp, site, sent["subject_id"]))["event_id"] == sent["event_id"]
    assert [e["event_id"] for e in await stored_events(db_dsn, site.id)] == [sent["event_id"]]


async def test_a_new_material_policy_version_prompts_again_and_a_minor_one_does_not(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite
) -> None:
    page = await open_site_page(browsing, pages, cmp, site)
    first = await choose(page, ACCEPT)
    # A returning visitor: same cookies, fresh HTTP cache (banner.js is cached 5 minutes).
    saved = await browsing.context.storage_state()

    async def return_visit() -> tuple[Browsing, Page]:
        assert browsing.context.browser is not None
        later = Browsing(await browsing.context.browser.new_context(storage_state=saved))
        return later, await open_site_page(later, pages, cmp, site)

    assert await publish(cmp, site.id, material=False) == 2
    later, again = await return_visit()
    assert not await banner_visible(again)
    await later.context.close()

    assert await publish(cmp, site.id, material=True) == 3
    later, again = await return_visit()
    try:
        assert await banner_visible(again)
        consent = await again.evaluate("() => cmp.getConsent()")
        assert consent["status"] == "stale" and consent["purposes"] == NONE
        assert await again.evaluate("() => window.statsRuns") is None
        assert (await state(cmp, site, first["subject_id"]))["status"] == "stale"
        sent = await choose(again, ACCEPT)
        assert sent["policy_version"] == 3 and sent["subject_id"] == first["subject_id"]
        got = await state(cmp, site, first["subject_id"])
        assert got["status"] == "valid" and got["policy_version"] == 3
    finally:
        await later.context.close()


async def test_a_choice_older_than_the_validity_prompts_again(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite
) -> None:
    old = int(time.time()) - 366 * 86400
    value = json.dumps(
        {"v": 1, "p": {"necessary": True, "statistics": True}, "t": old, "e": "x", "a": "custom"},
        separators=(",", ":"),
    )
    await browsing.context.add_cookies(
        [{"name": "cmp_consent", "value": value, "url": pages.origin}]
    )
    page = await open_site_page(browsing, pages, cmp, site)
    assert await banner_visible(page)
    assert (await page.evaluate("() => cmp.getConsent()"))["status"] == "expired"
    assert await page.evaluate("() => window.statsRuns") is None


async def test_withdrawal_is_as_easy_as_consent(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite
) -> None:
    page = await open_site_page(browsing, pages, cmp, site)
    sent = await choose(page, ACCEPT)
    await page.evaluate("""() => { window.changes = [];
        cmp.onChange(s => window.changes.push([s.action, s.purposes.statistics])); }""")

    # Any element with data-cmp-open reopens the settings, showing the current choice.
    await page.click("#settings-link")
    assert await page.is_visible("#cmp-root [data-cmp-layer='2']")
    assert await page.is_checked("#cmp-p-statistics")
    again = await choose(page, "#cmp-root [data-cmp-layer='2'] [data-cmp-act=reject_all]")
    assert again["subject_id"] == sent["subject_id"]
    assert (await state(cmp, site, sent["subject_id"]))["action"] == "reject_all"

    async with page.expect_response(lambda r: r.url.endswith("/events")) as info:
        await page.evaluate("() => cmp.withdraw()")
    assert (await info.value).status == 201
    got = await state(cmp, site, sent["subject_id"])
    assert got["action"] == "withdraw" and got["purposes"] == NONE
    assert (await data_layer(page))[-2] == ["consent", "update", DENIED]
    assert await page.evaluate("() => window.changes") == [
        ["reject_all", False],
        ["withdraw", False],
    ]
    assert (await consent_cookie(browsing.context))["a"] == "withdraw"
