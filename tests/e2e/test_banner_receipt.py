"""The visitor's receipt in a real browser: `window.cmp.receipt()` and the settings
layer's download, checked offline with the server's public key."""

from __future__ import annotations

import json
from pathlib import Path

from cmp.appkeys import SIGNER
from cmp.audit.receipt import verify_receipt
from tests.e2e.harness import CmpServer, E2ESite, Pages, make_e2e_site, open_site_page
from tests.e2e.pageutil import Browsing, choose

ACCEPT = "#cmp-root [data-cmp-layer='1'] [data-cmp-act=accept_all]"
RECEIPT = "#cmp-root [data-cmp-act=receipt]"
SENTENCES = {
    "nb": "Last ned en signert kvittering på samtykket ditt.",
    "sv": "Ladda ner ett signerat kvitto på ditt samtycke.",
    "en": "Download a signed receipt of your consent.",
}


async def test_settings_layer_downloads_a_receipt_that_verifies(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite, tmp_path: Path
) -> None:
    page = await open_site_page(browsing, pages, cmp, site)
    posted = await choose(page, ACCEPT)
    await page.click("#settings-link")
    assert await page.is_visible(RECEIPT)
    assert await page.text_content(RECEIPT) == SENTENCES["nb"]
    # The banner waits out the 202 (not yet in a signed checkpoint) by itself.
    async with page.expect_download(timeout=60_000) as info:
        await page.click(RECEIPT)
    download = await info.value
    assert download.suggested_filename == f"consent-receipt-{posted['event_id']}.json"
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    receipt = json.loads(saved.read_text("utf-8"))
    assert receipt["record"]["event_id"] == posted["event_id"]
    assert receipt["record"]["action"] == "accept_all"
    verified = verify_receipt(receipt, cmp.client.app[SIGNER].public_key)  # type: ignore[index]
    assert verified.site_id == site.id and verified.seq == receipt["leaf_index"] + 1
    # The same through the API, without a download.
    doc = await page.evaluate("() => cmp.receipt({download: false})")
    assert doc["record"] == receipt["record"]


async def test_no_receipt_before_a_choice(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite
) -> None:
    page = await open_site_page(browsing, pages, cmp, site)
    error = await page.evaluate("() => cmp.receipt().then(() => 'resolved', e => String(e))")
    assert error == "Error: cmp: no recorded choice"
    await page.click("#cmp-root [data-cmp-act=settings]")
    assert not await page.is_visible(RECEIPT)


async def test_the_sentence_in_each_language(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite
) -> None:
    for lang, sentence in SENTENCES.items():
        page = await open_site_page(browsing, pages, cmp, site, lang)
        assert await page.text_content(RECEIPT) == sentence
        await page.close()


async def test_the_policy_area_names_the_controller_and_the_withdrawal_page(
    browsing: Browsing, pages: Pages, cmp: CmpServer
) -> None:
    site = await make_e2e_site(
        cmp,
        pages.origin,
        controller_name="Nettbutikk AS",
        controller_contact="personvern@shop.example",
        withdrawal_url="https://shop.example/samtykke",
    )
    page = await open_site_page(browsing, pages, cmp, site)
    area = "#cmp-root [data-cmp-layer='1'] [data-cmp-policy]"
    text = await page.text_content(area)
    assert text is not None
    assert "Behandlingsansvarlig: Nettbutikk AS, personvern@shop.example" in text
    link = page.locator(f"{area} a", has_text="Trekk tilbake samtykke")
    assert await link.get_attribute("href") == "https://shop.example/samtykke"
    await page.close()
    bare = await open_site_page(browsing, pages, cmp, await make_e2e_site(cmp, pages.origin))
    text = await bare.text_content(area)
    assert text is not None and "Behandlingsansvarlig" not in text and "·" not in text
