"""Banners sites already use, unmodified from npm, against a real cmp server:
vanilla-cookieconsent 3.1 posting to `/integrations/cookieconsent`, and Klaro 0.7 in API
mode loading its config from `/v1/privacy-managers/{id}/config.json` and submitting
there. The server must hold exactly the events the visitor made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.e2e.harness import CmpServer, E2ESite, Pages, publish, state, stored_events
from tests.e2e.pageutil import Browsing
from tests.factories import make_key

if TYPE_CHECKING:
    from playwright.async_api import Page, Response

CC_TEXTS = {
    "consentModal": {
        "title": "We use cookies",
        "description": "Choose.",
        "acceptAllBtn": "Accept all",
        "acceptNecessaryBtn": "Reject all",
        "showPreferencesBtn": "Manage preferences",
        "revisionMessage": "Our policy changed.",
    },
    "preferencesModal": {
        "title": "Preferences",
        "acceptAllBtn": "Accept all",
        "acceptNecessaryBtn": "Reject all",
        "savePreferencesBtn": "Save preferences",
        "sections": [
            {"title": key.title(), "linkedCategory": key}
            for key in ("necessary", "preferences", "statistics", "marketing")
        ],
    },
}

CC_READY = "() => !!window.CookieConsent"


def cookieconsent_page(api: str, site_id: str, revision: int) -> str:
    config = {
        "revision": revision,
        "hideFromBots": False,  # headless Chromium counts as a bot otherwise
        "categories": {
            "necessary": {"enabled": True, "readOnly": True},
            "preferences": {},
            "statistics": {},
            "marketing": {},
        },
        "language": {"default": "en", "translations": {"en": CC_TEXTS}},
    }
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>cc</title>
<link rel="stylesheet" href="/vendor/vanilla-cookieconsent/dist/cookieconsent.css">
<script src="/vendor/vanilla-cookieconsent/dist/cookieconsent.umd.js"></script>
</head><body><h1>Shop</h1>
<script>
window.ccPosts = [];
function post(event, cookie) {{
  const body = JSON.stringify({{cookie: cookie,
    preferences: CookieConsent.getUserPreferences(), event: event}});
  window.ccPosts.push(fetch("{api}/v1/sites/{site_id}/integrations/cookieconsent", {{
    method: "POST", headers: {{"Content-Type": "application/json"}}, body: body}})
    .then(r => r.status));
}}
const config = {json.dumps(config)};
config.onFirstConsent = ({{cookie}}) => post("onFirstConsent", cookie);
config.onChange = ({{cookie}}) => post("onChange", cookie);
CookieConsent.run(config);
</script></body></html>"""


async def settled_posts(page: Page, count: int) -> list[int]:
    await page.wait_for_function(f"() => window.ccPosts.length >= {count}")
    return await page.evaluate("() => Promise.all(window.ccPosts)")  # type: ignore[no-any-return]


async def test_vanilla_cookieconsent_accept_change_and_revision_bump(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite, vendor: Path
) -> None:
    page = await browsing.visit(pages.add(cookieconsent_page(cmp.url, site.id, 1)), CC_READY)
    await page.click("#cc-main .cm__btn[data-role=all]")
    assert await settled_posts(page, 1) == [201]
    subject = await page.evaluate("() => CookieConsent.getCookie('consentId')")
    got = await state(cmp, site, subject)
    assert got["status"] == "valid" and got["action"] == "accept_all"
    assert got["policy_version"] == 1 and all(got["purposes"].values())

    await page.evaluate("() => CookieConsent.showPreferences()")
    await page.uncheck("#cc-main .section__toggle[value=statistics]")
    await page.uncheck("#cc-main .section__toggle[value=marketing]")
    await page.click("#cc-main .pm__btn[data-role=save]")
    assert await settled_posts(page, 2) == [201, 201]
    got = await state(cmp, site, subject)
    assert got["action"] == "custom"
    assert got["purposes"] == {
        "necessary": True,
        "preferences": True,
        "statistics": False,
        "marketing": False,
    }

    # A new material policy version, announced to cookieconsent as revision 2.
    assert await publish(cmp, site.id, material=True) == 2
    assert (await state(cmp, site, subject))["status"] == "stale"
    page = await browsing.visit(pages.add(cookieconsent_page(cmp.url, site.id, 2)), CC_READY)
    await page.wait_for_selector("#cc-main .cm__btn[data-role=necessary]", state="visible")
    await page.click("#cc-main .cm__btn[data-role=necessary]")
    statuses = await settled_posts(page, 1)
    assert statuses and set(statuses) == {201}
    got = await state(cmp, site, subject)
    assert got["status"] == "valid" and got["policy_version"] == 2
    assert got["action"] == "reject_all" and not got["purposes"]["statistics"]

    audit = await make_key(cmp.client, site.id, "audit")
    r = await cmp.client.get(f"/v1/sites/{site.id}/subjects/{subject}/events", headers=audit)
    assert r.status == 200, await r.text()
    history = [(e["action"], e["policy_version"]) for e in (await r.json())["events"]]
    assert history == [("accept_all", 1), ("custom", 1), ("reject_all", 2)]


def klaro_page(api: str, site_id: str) -> str:
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>klaro</title>
<script defer data-klaro-api-url="{api}" data-klaro-id="{site_id}"
        src="/vendor/klaro/dist/klaro.js"></script>
</head><body><h1>Shop</h1></body></html>"""


def is_klaro_submit(response: Response) -> bool:
    return response.url.endswith("/submit") and response.request.method == "POST"


async def klaro_decision(browsing: Browsing, url: str, *clicks: str) -> dict[str, Any]:
    """A fresh visitor makes one Klaro decision; returns what Klaro submitted."""
    assert browsing.context.browser is not None
    context = await browsing.context.browser.new_context()
    visitor = Browsing(context)
    try:
        page = await visitor.visit(url, "() => !!window.klaro")
        await page.wait_for_selector(".klaro .cookie-notice", state="visible")
        *opening, final = clicks
        for selector in opening:
            await page.click(selector)
        async with page.expect_response(
            lambda r: is_klaro_submit(r) and '"show"' not in (r.request.post_data or "")
        ) as info:
            await page.click(final)
        response = await info.value
        assert response.status == 201 and (await response.json())["ok"] is True
        sent = json.loads(response.request.post_data or "{}")
        assert visitor.errors == []
        return sent["consent_data"]  # type: ignore[no-any-return]
    finally:
        await context.close()


async def test_klaro_api_mode_loads_its_config_and_records_accept_decline_and_save(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite, vendor: Path, db_dsn: str
) -> None:
    url = pages.add(klaro_page(cmp.url, site.id))
    accept = await klaro_decision(browsing, url, ".klaro .cookie-notice .cm-btn-success")
    assert accept["type"] == "accept"
    decline = await klaro_decision(browsing, url, ".klaro .cookie-notice .cn-decline")
    assert decline["type"] == "decline"
    save = await klaro_decision(
        browsing,
        url,
        ".klaro .cookie-notice .cn-learn-more",
        ".klaro .cookie-modal label[for='purpose-item-statistics']",
        ".klaro .cookie-modal .cm-btn-accept",
    )
    assert save["type"] == "save" and save["consents"]["google-analytics"] is True

    events = await stored_events(db_dsn, site.id)
    assert [e["action"] for e in events] == ["accept_all", "reject_all", "custom"]
    assert all(e["subject_id"].startswith("klaro-") for e in events)
    assert len({e["subject_id"] for e in events}) == 3
    assert events[0]["purposes"] == {
        "necessary": True,
        "preferences": True,
        "statistics": True,
        "marketing": True,
    }
    assert events[1]["purposes"] == {
        "necessary": True,
        "preferences": False,
        "statistics": False,
        "marketing": False,
    }
    assert events[2]["purposes"] == {
        "necessary": True,
        "preferences": False,
        "statistics": True,
        "marketing": False,
    }


async def test_klaro_shows_no_missing_translations(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite, vendor: Path
) -> None:
    page = await browsing.visit(pages.add(klaro_page(cmp.url, site.id)), "() => !!window.klaro")
    await page.wait_for_selector(".klaro .cookie-notice", state="visible")
    await page.click(".klaro .cookie-notice .cn-learn-more")
    await page.wait_for_selector(".klaro .cookie-modal", state="visible")
    text = await page.inner_text(".klaro")
    assert "missing translation" not in text
