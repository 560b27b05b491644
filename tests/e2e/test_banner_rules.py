"""banner.js per jurisdiction rule (docs/banner.md, Rules), in Chromium through Debian's
nginx setting the visitor's location header as a CDN would: a Norwegian visitor gets the
blocking opt-in banner, a Californian an opt-out notice with "Do not sell or share" and
tags at once, a Californian with GPC a refusal recorded without a click, a Texan a
notice only, an unknown location the fallback rule. Each is checked on the page and in
what the server stored. The notices are worded for their model, by the policy or the banner."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from cmp.config import Settings
from tests.e2e.conftest import unavailable
from tests.e2e.geoproxy import COUNTRY_HEADER, REGION_HEADER, GeoProxy, nginx_binary
from tests.e2e.harness import ARTIFACTS, CmpServer, E2ESite, Pages, make_e2e_site, page_html, state
from tests.e2e.pageutil import Browsing, banner_visible, choose, data_layer, is_event_post
from tests.e2e.policy import NOTICE_TEXTS
from tests.factories import ADMIN

if TYPE_CHECKING:
    from playwright.async_api import Page

EEA = ["AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
       "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS",
       "LI", "NO"]  # fmt: skip
RULES = [
    {"id": "eea", "countries": EEA, "model": "opt_in"},
    {"id": "us-ca", "regions": ["US-CA"], "model": "opt_out"},
    {"id": "us-tx", "regions": ["US-TX"], "model": "notice_only"},
    {"id": "rest", "model": "opt_in", "default": True},
]
NOTICE = "#cmp-root.cmp-notice [role=region]"
DNS = "#cmp-root [data-cmp-layer='1'] [data-cmp-act=dns]"
OK = "#cmp-root [data-cmp-layer='1'] [data-cmp-act=ok]"
ACCEPT = "#cmp-root [data-cmp-layer='1'] [data-cmp-act=accept_all]"
REJECT = "#cmp-root [data-cmp-layer='1'] [data-cmp-act=reject_all]"
ALL = {"necessary": True, "preferences": True, "statistics": True, "marketing": True}
NO_SALE = {**ALL, "marketing": False}
RUNS = "() => [window.statsRuns || 0, window.extRuns || 0, window.marketingRuns || 0]"

Proxy = Callable[..., Awaitable[GeoProxy]]


@pytest.fixture
async def geo_cmp(settings: Settings, db_dsn: str) -> AsyncIterator[CmpServer]:
    if nginx_binary() is None:
        unavailable("nginx is not installed (apt-get install nginx)")
    geo = {
        "trusted_proxies": ["127.0.0.1/32"],
        "geo_country_header": COUNTRY_HEADER,
        "geo_region_header": REGION_HEADER,
    }
    server = CmpServer(settings.model_copy(update=geo), db_dsn)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def geo_site(geo_cmp: CmpServer, pages: Pages) -> E2ESite:
    return await make_e2e_site(geo_cmp, pages.origin, jurisdictions=RULES, fallback="eea")


@pytest.fixture
async def proxy(geo_cmp: CmpServer, tmp_path: Path) -> AsyncIterator[Proxy]:
    started: list[GeoProxy] = []

    async def start(country: str, region: str | None = None) -> GeoProxy:
        headers = {COUNTRY_HEADER: country} | ({REGION_HEADER: region} if region else {})
        assert geo_cmp.port is not None
        p = GeoProxy(tmp_path / f"nginx-{len(started)}", geo_cmp.port, headers)
        started.append(p)
        await p.start()
        return p

    yield start
    for p in started:
        p.stop()


async def visit(browsing: Browsing, pages: Pages, via: GeoProxy, site: E2ESite, lang: str) -> Page:
    return await browsing.visit(pages.add(page_html(via.url, site.id, lang)))


async def recorded(db_dsn: str, site_id: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(db_dsn)
    try:
        rows = await conn.fetch(
            "SELECT action, purposes::text, gpc, rule, country, region FROM consent_events "
            "WHERE site_id = $1 ORDER BY seq",
            site_id,
        )
    finally:
        await conn.close()
    return [{**dict(r), "purposes": json.loads(r["purposes"])} for r in rows]


def defaults(layer: list[Any]) -> list[dict[str, Any]]:
    return [e[2] for e in layer if isinstance(e, list) and e[:2] == ["consent", "default"]]


async def test_a_norwegian_visitor_gets_the_blocking_banner_and_ga_waits_for_accept(
    browsing: Browsing, pages: Pages, geo_cmp: CmpServer, geo_site: E2ESite, proxy: Proxy,
    db_dsn: str,
) -> None:  # fmt: skip
    via = await proxy("NO")
    page = await visit(browsing, pages, via, geo_site, "nb")
    assert await banner_visible(page)
    assert await page.get_attribute("#cmp-root [role=dialog]", "aria-modal") == "true"
    consent = await page.evaluate("() => cmp.getConsent()")
    assert (consent["rule"], consent["model"], consent["status"]) == ("eea", "opt_in", "none")
    await page.wait_for_timeout(300)  # the fake GA tag would have run by now
    assert await page.evaluate(RUNS) == [0, 0, 0]

    # Consent Mode: this rule's defaults first, then one per rule with its region list,
    # and an update to this rule's (denied), as Google may place the visitor in California.
    layer = await data_layer(page)
    first, *regional = defaults(layer)
    assert first["analytics_storage"] == "denied" and "region" not in first
    by_region = {tuple(d["region"]): d for d in regional}
    assert by_region[tuple(EEA)]["ad_storage"] == "denied"
    assert by_region[("US-CA",)]["ad_storage"] == "granted"
    assert by_region[("US-TX",)]["analytics_storage"] == "granted"
    assert ["consent", "update", {**first, "wait_for_update": None}] != layer[-1]
    updates = [e[2] for e in layer if isinstance(e, list) and e[:2] == ["consent", "update"]]
    assert [u["ad_storage"] for u in updates] == ["denied"]

    await choose(page, ACCEPT)
    await page.wait_for_function("() => window.extRuns === 1")
    assert await page.evaluate(RUNS) == [1, 1, 1]
    subject = (await page.evaluate("() => cmp.getConsent()"))["subject_id"]
    got = await state(geo_cmp, geo_site, subject)
    assert (got["rule"], got["model"], got["status"]) == ("eea", "opt_in", "valid")
    [event] = await recorded(db_dsn, geo_site.id)
    assert (event["rule"], event["country"], event["action"]) == ("eea", "NO", "accept_all")


async def test_a_californian_gets_a_notice_tags_run_and_do_not_sell_denies_marketing(
    browsing: Browsing, pages: Pages, geo_cmp: CmpServer, geo_site: E2ESite, proxy: Proxy,
    db_dsn: str,
) -> None:  # fmt: skip
    via = await proxy("US", "CA")
    page = await visit(browsing, pages, via, geo_site, "en")
    assert await banner_visible(page) and await page.is_visible(NOTICE)
    assert await page.get_attribute(NOTICE, "aria-modal") is None
    # Not blocking: the page behind it takes clicks, and nothing was posted but a showing.
    await page.click("#home")
    assert await page.text_content(DNS) == "Do not sell or share my personal information"
    await page.wait_for_function("() => window.extRuns === 1")
    assert await page.evaluate(RUNS) == [1, 1, 1]
    consent = await page.evaluate("() => cmp.getConsent()")
    assert (consent["rule"], consent["model"], consent["status"]) == ("us-ca", "opt_out", "default")
    assert consent["purposes"] == ALL and consent["needs_prompt"] is False
    layer = await data_layer(page)
    assert defaults(layer)[0]["ad_storage"] == "granted"
    assert layer.index(["consent", "update", consent["consent_mode"]]) > 0
    assert await recorded(db_dsn, geo_site.id) == []
    subject = consent["subject_id"]
    # A server-side tag manager asking with the visitor's location agrees.
    r = await geo_cmp.client.get(
        f"/v1/sites/{geo_site.id}/subjects/{subject}/consent?country=US&region=US-CA",
        headers=geo_site.read,
    )
    before = await r.json()
    assert (before["rule"], before["status"], before["purposes"]) == ("us-ca", "default", ALL)

    sent = await choose(page, DNS)
    assert sent["action"] == "custom" and sent["purposes"] == {
        "preferences": True, "statistics": True, "marketing": False
    }  # fmt: skip
    assert not await banner_visible(page)
    layer = await data_layer(page)
    last = [e[2] for e in layer if isinstance(e, list) and e[:2] == ["consent", "update"]][-1]
    assert last["ad_storage"] == last["ad_user_data"] == last["ad_personalization"] == "denied"
    assert last["analytics_storage"] == "granted"
    got = await state(geo_cmp, geo_site, subject)
    assert (got["rule"], got["status"], got["purposes"]) == ("us-ca", "valid", NO_SALE)
    [event] = await recorded(db_dsn, geo_site.id)
    assert (event["rule"], event["country"], event["region"]) == ("us-ca", "US", "US-CA")

    # The next page: statistics at once, the marketing tag no more, no notice.
    again = await visit(browsing, pages, via, geo_site, "en")
    await again.wait_for_function("() => window.extRuns === 1")
    await again.wait_for_timeout(200)
    assert await again.evaluate(RUNS) == [1, 1, 0]
    assert not await banner_visible(again)


async def test_a_californian_with_gpc_is_opted_out_of_sale_without_a_click(
    browsing: Browsing, pages: Pages, geo_cmp: CmpServer, geo_site: E2ESite, proxy: Proxy,
    db_dsn: str,
) -> None:  # fmt: skip
    via = await proxy("US", "CA")
    await browsing.context.set_extra_http_headers({"Sec-GPC": "1"})
    await browsing.context.add_init_script(
        "Object.defineProperty(navigator, 'globalPrivacyControl', {get: () => true})"
    )
    page = await browsing.context.new_page()
    page.on("pageerror", lambda exc: browsing.errors.append(str(exc)))
    async with page.expect_response(is_event_post) as info:
        await page.goto(pages.add(page_html(via.url, geo_site.id, "en")))
    response = await info.value
    assert response.status == 201, await response.text()
    sent = json.loads(response.request.post_data or "{}")
    assert sent["purposes"]["marketing"] is False and "impression_id" not in sent
    await page.wait_for_function("() => window.extRuns === 1")
    await page.wait_for_timeout(200)
    assert await page.evaluate(RUNS) == [1, 1, 0]
    # The notice still informs, and says the signal was honoured.
    assert await page.is_visible(NOTICE) and await page.is_visible("#cmp-root [data-cmp-gpc]")

    subject = (await page.evaluate("() => cmp.getConsent()"))["subject_id"]
    got = await state(geo_cmp, geo_site, subject)
    assert (got["rule"], got["gpc"], got["purposes"]) == ("us-ca", True, NO_SALE)
    assert got["consent_mode"]["ad_storage"] == "denied"
    [event] = await recorded(db_dsn, geo_site.id)
    assert (event["rule"], event["gpc"], event["purposes"]["marketing"]) == ("us-ca", True, False)

    await page.click(OK)  # the choice is made: OK only closes the notice
    await page.wait_for_timeout(300)
    assert not await banner_visible(page) and len(await recorded(db_dsn, geo_site.id)) == 1


async def test_a_texan_gets_a_notice_only_and_ok_records_the_acknowledgement(
    browsing: Browsing, pages: Pages, geo_cmp: CmpServer, geo_site: E2ESite, proxy: Proxy,
    db_dsn: str,
) -> None:  # fmt: skip
    via = await proxy("US", "US-TX")
    page = await visit(browsing, pages, via, geo_site, "en")
    assert await page.is_visible(NOTICE)
    assert await page.locator("#cmp-root [data-cmp-layer='1'] button").count() == 1
    await page.wait_for_function("() => window.extRuns === 1")
    assert await page.evaluate(RUNS) == [1, 1, 1]
    assert (await page.evaluate("() => cmp.getConsent()"))["model"] == "notice_only"
    sent = await choose(page, OK)
    assert sent["action"] == "accept_all"
    [event] = await recorded(db_dsn, geo_site.id)
    assert (event["rule"], event["region"]) == ("us-tx", "US-TX")


async def test_an_unknown_location_gets_the_fallback_rule(
    browsing: Browsing, pages: Pages, geo_cmp: CmpServer, geo_site: E2ESite, proxy: Proxy,
    db_dsn: str,
) -> None:  # fmt: skip
    via = await proxy("XX")  # Cloudflare: no country data
    page = await visit(browsing, pages, via, geo_site, "en")
    assert await page.get_attribute("#cmp-root [role=dialog]", "aria-modal") == "true"
    assert (await page.evaluate("() => cmp.getConsent()"))["rule"] == "eea"
    await page.wait_for_timeout(300)
    assert await page.evaluate(RUNS) == [0, 0, 0]
    await choose(page, REJECT)
    [event] = await recorded(db_dsn, geo_site.id)
    assert (event["rule"], event["country"], event["action"]) == ("eea", None, "reject_all")


# The banner's own notice wording (docs/banner.md, Notice texts) where the policy has none.
BUILT_IN = {
    ("opt_out", "nb"): ("Dine personvernvalg", "Vi bruker informasjonskapsler og lignende"),
    ("opt_out", "sv"): ("Dina integritetsval", "Vi använder kakor och liknande tekniker"),
    ("notice_only", "nb"): ("Vi bruker informasjonskapsler", "Dette nettstedet bruker"),
    ("notice_only", "sv"): ("Vi använder kakor", "Den här webbplatsen använder kakor"),
}
WHERE = {"opt_in": ("NO", None), "opt_out": ("US", "CA"), "notice_only": ("US", "TX")}
TITLE = "#cmp-root [data-cmp-layer='1'] #cmp-title"
BODY = "#cmp-root [data-cmp-layer='1'] #cmp-desc"


async def first_layer(
    browsing: Browsing, pages: Pages, proxy: Proxy, site: E2ESite, model: str, lang: str
) -> tuple[str, str]:
    """The title and body the visitor of `model`'s rule reads in `lang`."""
    page = await visit(browsing, pages, await proxy(*WHERE[model]), site, lang)
    assert await banner_visible(page)
    assert (await page.evaluate("() => cmp.getConsent()"))["model"] == model
    title, body = await page.text_content(TITLE), await page.text_content(BODY)
    await page.close()
    assert title is not None and body is not None
    return title, body


async def test_a_notice_is_worded_for_its_model_in_the_page_language(
    browsing: Browsing, pages: Pages, geo_site: E2ESite, proxy: Proxy
) -> None:
    # The policy words only the request for consent: the notices use the banner's wording.
    for (model, lang), (title, start) in BUILT_IN.items():
        shown, body = await first_layer(browsing, pages, proxy, geo_site, model, lang)
        assert (shown, body[: len(start)]) == (title, start), (model, lang)
        assert body != geo_site.texts[lang]["body"]
        dns = {"nb": "Ikke selg eller del", "sv": "Sälj eller dela inte"}[lang]
        assert (dns in body) == (model == "opt_out"), (model, lang, body)
    for lang in ("nb", "sv"):
        shown = await first_layer(browsing, pages, proxy, geo_site, "opt_in", lang)
        assert shown == (geo_site.texts[lang]["title"], geo_site.texts[lang]["body"])


async def test_a_policy_s_own_notice_texts_are_shown_under_their_model(
    browsing: Browsing, pages: Pages, geo_cmp: CmpServer, geo_site: E2ESite, proxy: Proxy
) -> None:
    policy = {**geo_site.policy, "material": False, "notice_texts": NOTICE_TEXTS}
    r = await geo_cmp.client.post(f"/v1/sites/{geo_site.id}/policies", json=policy, headers=ADMIN)
    assert r.status == 201, await r.text()
    for model in ("opt_out", "notice_only"):
        for lang in ("nb", "sv"):
            want = NOTICE_TEXTS[model][lang]
            got = await first_layer(browsing, pages, proxy, geo_site, model, lang)
            assert got == (want["title"], want["body"])
    got = await first_layer(browsing, pages, proxy, geo_site, "opt_in", "nb")
    assert got == (geo_site.texts["nb"]["title"], geo_site.texts["nb"]["body"])


async def test_banner_js_is_one_body_per_rule_kept_out_of_shared_caches(
    geo_cmp: CmpServer, geo_site: E2ESite, proxy: Proxy
) -> None:
    import aiohttp

    tags = {}
    async with aiohttp.ClientSession() as http:
        for country, region in (("NO", None), ("SE", None), ("US", "CA")):
            via = await proxy(country, region)
            async with http.get(f"{via.url}/v1/sites/{geo_site.id}/banner.js") as r:
                assert r.status == 200
                assert r.headers["Cache-Control"] == "private, max-age=300"
                assert REGION_HEADER in r.headers["Vary"] and COUNTRY_HEADER in r.headers["Vary"]
                tags[country] = r.headers["ETag"]
                body = await r.text()
                assert ('"model":"opt_out"}' in body.split('"rule":')[1]) == (country == "US")
    assert tags["NO"] == tags["SE"] != tags["US"]


async def test_screenshots_of_the_banner_per_model(
    browsing: Browsing, pages: Pages, geo_site: E2ESite, proxy: Proxy
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots = [
        ("NO", None, "nb", "rule-opt-in-nb"),
        ("US", "CA", "en", "rule-opt-out-en"),
        ("US", "CA", "nb", "rule-opt-out-nb"),
        ("US", "TX", "en", "rule-notice-only-en"),
    ]
    for country, region, lang, name in shots:
        via = await proxy(country, region)
        page = await visit(browsing, pages, via, geo_site, lang)
        assert await banner_visible(page)
        await page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
        await page.close()
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 5_000
