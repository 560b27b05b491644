"""Linked users in the banner (docs/linked-users.md, docs/banner.md): two browser contexts
are two devices of one signed-in customer. The page's backend mints a link token (here in
Python, as the docs show it) and the page calls `cmp.identify(token)`; the identify answer
carries the user's state, which the banner adopts: a decision on one device holds on the
other, on its next page load. A token that does not verify changes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.harness import ARTIFACTS, CmpServer, E2ESite, Pages, page_html
from tests.e2e.pageutil import Browsing, banner_visible, choose, consent_cookie
from tests.factories import ADMIN

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

ACCEPT = "#cmp-root [data-cmp-layer='1'] [data-cmp-act=accept_all]"
SETTINGS = "#cmp-root [data-cmp-act=settings]"
SAVE = "#cmp-root [data-cmp-act=save]"
USER = "kunde-4711"
RUNS = "() => [window.statsRuns || 0, window.marketingRuns || 0]"
# What the page keeps of its identify call: the consent it resolved to, or the error.
ANSWER = """window.identified = cmp.identify({token}).then(
  function (c) {{ return {{ ok: true, consent: c }}; }},
  function (e) {{ return {{ ok: false, error: String(e) }}; }});"""


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def link_token(secret: str, site_id: str, user_id: str, ttl: int = 300) -> str:
    """The documented format, minted as the site's backend would."""
    expires = int(time.time()) + ttl
    message = f"cmp-link-v1\n{site_id}\n{user_id}\n{expires}".encode()
    mac = hmac.digest(secret.encode(), message, hashlib.sha256)
    return f"{b64url(user_id.encode())}.{expires}.{b64url(mac)}"


@pytest.fixture
async def device_b(browser: Browser) -> AsyncIterator[Browsing]:
    context = await browser.new_context(viewport={"width": 1024, "height": 720})
    seen = Browsing(context)
    yield seen
    await context.close()
    assert seen.errors == [], f"uncaught errors in the page: {seen.errors}"


async def link_secret(cmp: CmpServer, site: E2ESite) -> str:
    r = await cmp.client.post(f"/v1/sites/{site.id}/link-secret", headers=ADMIN)
    assert r.status == 201, await r.text()
    return str((await r.json())["link_secret"])


def signed_in_page(pages: Pages, cmp: CmpServer, site: E2ESite, token: str) -> str:
    """The customer page as served to a signed-in customer: the banner, then at once the
    identify call with the token the backend put in the page."""
    tag = f'<script src="{cmp.url}/v1/sites/{site.id}/banner.js"></script>'
    html = page_html(cmp.url, site.id)
    assert tag in html
    call = f"<script>{ANSWER.format(token=json.dumps(token))}</script>"
    return pages.add(html.replace(tag, tag + "\n" + call))


async def identified(page: Page) -> dict[str, Any]:
    return await page.evaluate("() => window.identified")  # type: ignore[no-any-return]


async def user_state(cmp: CmpServer, site: E2ESite) -> dict[str, Any]:
    r = await cmp.client.get(f"/v1/sites/{site.id}/users/{USER}/consent", headers=site.read)
    assert r.status == 200, await r.text()
    return await r.json()  # type: ignore[no-any-return]


async def test_a_signed_in_customers_choice_follows_them_to_another_device_and_back(
    browsing: Browsing, device_b: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite
) -> None:
    secret = await link_secret(cmp, site)

    # Device A, signed out: statistics yes, marketing no.
    a = await browsing.visit(pages.add(page_html(cmp.url, site.id)))
    assert await banner_visible(a)
    await a.click(SETTINGS)
    await a.check("#cmp-p-statistics")
    await choose(a, SAVE)
    assert await a.evaluate(RUNS) == [1, 0]

    # Device A signs in: its subject is linked to the customer; nothing changes on it.
    a = await browsing.visit(signed_in_page(pages, cmp, site, link_token(secret, site.id, USER)))
    answer = await identified(a)
    assert answer["ok"], answer
    assert answer["consent"]["purposes"]["marketing"] is False
    assert not await banner_visible(a) and await a.evaluate(RUNS) == [1, 0]
    subject_a = answer["consent"]["subject_id"]
    assert (await user_state(cmp, site))["subjects"] == [subject_a]

    # Device B, signed in as the same customer, first visit: no banner ever, A's choice.
    b = await device_b.visit(signed_in_page(pages, cmp, site, link_token(secret, site.id, USER)))
    answer = await identified(b)
    assert answer["ok"], answer
    consent = answer["consent"]
    assert consent["subject_id"] != subject_a
    assert (consent["status"], consent["needs_prompt"]) == ("valid", False)
    assert consent["purposes"] == {
        "necessary": True,
        "preferences": False,
        "statistics": True,
        "marketing": False,
    }
    # The banner was never even built: no showing, no flash before the answer came.
    assert await b.evaluate("() => document.getElementById('cmp-root')") is None
    await b.wait_for_function("() => window.statsRuns === 1")
    assert await b.evaluate(RUNS) == [1, 0]
    assert (await consent_cookie(device_b.context))["p"]["marketing"] is False
    consent_mode = await b.evaluate("() => cmp.getConsent().consent_mode")
    assert consent_mode["analytics_storage"] == "granted"
    assert consent_mode["ad_storage"] == "denied"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await b.screenshot(path=str(ARTIFACTS / "identify-device-b.png"))

    # Device B accepts everything.
    await b.evaluate("() => cmp.show()")
    await choose(b, ACCEPT)
    await b.wait_for_function("() => window.marketingRuns === 1")
    assert (await user_state(cmp, site))["purposes"]["marketing"] is True

    # Device A's next page load follows: marketing granted, its tag runs.
    a = await browsing.visit(signed_in_page(pages, cmp, site, link_token(secret, site.id, USER)))
    answer = await identified(a)
    assert answer["ok"], answer
    assert answer["consent"]["purposes"]["marketing"] is True
    assert answer["consent"]["action"] == "accept_all"
    await a.wait_for_function("() => window.marketingRuns === 1")
    assert not await banner_visible(a)
    assert (await consent_cookie(browsing.context))["p"]["marketing"] is True
    # And its later pages know from the cookie, identify or not.
    a = await browsing.visit(pages.add(page_html(cmp.url, site.id)))
    await a.wait_for_function("() => window.marketingRuns === 1")
    assert not await banner_visible(a)


async def test_a_token_that_does_not_verify_changes_nothing_on_the_device(
    browsing: Browsing, device_b: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite
) -> None:
    secret = await link_secret(cmp, site)
    # The customer decided on device A: everything accepted.
    a = await browsing.visit(signed_in_page(pages, cmp, site, link_token(secret, site.id, USER)))
    assert (await identified(a))["ok"]
    await choose(a, ACCEPT)
    subjects = (await user_state(cmp, site))["subjects"]

    # Device B with a forged token (another secret) and then an expired one for that user.
    forged = link_token("not-the-sites-secret", site.id, USER)
    b = await device_b.visit(signed_in_page(pages, cmp, site, forged))
    answer = await identified(b)
    assert not answer["ok"] and "401" in answer["error"]
    # The banner shows as for any visitor; no cookie, no tag, nothing linked.
    await b.wait_for_selector("#cmp-root [role=dialog]", state="visible")
    assert (await b.evaluate("() => cmp.getConsent()"))["status"] == "none"
    assert await b.evaluate(RUNS) == [0, 0]
    expired = link_token(secret, site.id, USER, ttl=-60)
    b = await device_b.visit(signed_in_page(pages, cmp, site, expired))
    answer = await identified(b)
    assert not answer["ok"] and "401" in answer["error"]
    assert await banner_visible(b) and await b.evaluate(RUNS) == [0, 0]
    assert "cmp_consent" not in {c["name"] for c in await device_b.context.cookies()}
    assert (await user_state(cmp, site))["subjects"] == subjects
