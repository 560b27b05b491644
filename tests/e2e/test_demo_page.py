"""The demo page (`cmpd serve --demo`): banner, fake Google Analytics tag, live panel and
'Cookie settings' link, under the page's own strict nonce CSP."""

from __future__ import annotations

import json

from tests.e2e.harness import ARTIFACTS, CmpServer, make_e2e_site, state
from tests.e2e.pageutil import Browsing, banner_visible, choose


async def test_the_demo_page_shows_the_banner_and_the_live_consent_state(
    browsing: Browsing, demo_cmp: CmpServer
) -> None:
    # The page comes from the cmp server itself, so that origin must be allowed.
    site = await make_e2e_site(demo_cmp, demo_cmp.url)
    r = await demo_cmp.client.get(f"/demo/{site.id}")
    assert r.status == 200 and "script-src 'nonce-" in r.headers["Content-Security-Policy"]
    assert (await demo_cmp.client.get("/demo/t-nope0000")).status == 404

    page = await browsing.visit(f"{demo_cmp.url}/demo/{site.id}")
    assert await page.get_attribute("html", "lang") == "nb"
    assert await banner_visible(page)
    assert await page.text_content("#ga") == "ikke lastet"
    assert await page.evaluate("() => window.fakeGaLoaded") is None

    sent = await choose(page, "#cmp-root [data-cmp-layer='1'] [data-cmp-act=accept_all]")
    assert await page.text_content("#ga") == "lastet"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "demo-page.png"), full_page=True)
    panel = json.loads(await page.text_content("#consent") or "{}")
    assert panel["status"] == "valid" and panel["purposes"]["statistics"] is True
    assert "cmp_consent_update" in (await page.text_content("#datalayer") or "")
    assert (await state(demo_cmp, site, sent["subject_id"]))["status"] == "valid"

    await page.click("a[data-cmp-open]")
    await choose(page, "#cmp-root [data-cmp-layer='2'] [data-cmp-act=reject_all]")
    panel = json.loads(await page.text_content("#consent") or "{}")
    assert panel["action"] == "reject_all" and panel["purposes"]["statistics"] is False
    assert not [m for m in browsing.console if "Content Security Policy" in m]
