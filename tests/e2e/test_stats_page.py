"""The statistics page in Chromium (issue 22 item 5): the funnel per day and the variants
side by side with their intervals render, their numbers are in the DOM, and a screenshot
is written to .data/stats-page.png for a person to look at (and stats-page-as-of.png of a
day read from provisional counts)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from tests.api.test_stats_funnel import HDR, showing, site_with_variants
from tests.e2e.harness import CmpServer
from tests.factories import event, stats_link

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

SHOT = Path(__file__).resolve().parents[2] / ".data" / "stats-page.png"
SHOT_AS_OF = SHOT.with_name("stats-page-as-of.png")


async def fill_site(cmp: CmpServer) -> str:
    client = cmp.client
    site = await site_with_variants(client)
    decisions: list[dict[str, Any]] = []
    # a: 40 showings, 24 accept all, 4 custom; b: 40 showings, 8 accept all, 6 reject all.
    for variant, plan in (
        ("a", ["accept_all"] * 24 + ["custom"] * 4),
        ("b", ["accept_all"] * 8 + ["reject_all"] * 6),
    ):
        shown = [showing(f"{variant}-{n}-{uuid.uuid4()}", variant=variant) for n in range(40)]
        r = await client.post(
            f"/v1/sites/{site}/impressions", json={"impressions": shown}, headers=HDR
        )
        assert r.status == 202
        for one, action in zip(shown, plan, strict=False):
            purposes = {
                "necessary": True,
                "preferences": True,
                "statistics": True,
                "marketing": False,
            }
            extra = {"purposes": purposes} if action == "custom" else {}
            decisions.append(
                event(
                    one["subject_id"],
                    action=action,
                    variant=variant,
                    impression_id=one["impression_id"],
                    **extra,
                )
            )
    r = await client.post(f"/v1/sites/{site}/events", json={"events": decisions}, headers=HDR)
    assert r.status == 201, await r.text()
    return site


async def test_the_stats_page_shows_the_funnel_and_the_variants(
    browser: Browser, cmp: CmpServer
) -> None:
    site = await fill_site(cmp)
    link = await stats_link(cmp.client, site)
    page = await browser.new_page(viewport={"width": 1100, "height": 900})
    try:
        response = await page.goto(f"{cmp.url}{link}")
        assert response is not None and response.status == 200
        total = await page.locator("#funnel tfoot td").all_text_contents()
        # Total, impressions, unique, interactions, accept all, custom, reject all, ignored
        assert total[:8] == ["Total", "80", "80", "42", "32", "4", "6", "38"]
        assert total[8] == "40.0\u202f%"
        rows = await page.locator("#variants tbody tr").all()
        cells = [await row.locator("td").all_text_contents() for row in rows]
        assert [c[1:5] for c in cells] == [
            ["a", "40", "24", "60.0\u202f%"],
            ["b", "40", "8", "20.0\u202f%"],
        ]
        assert cells[0][5] == "44.6\u202f% – 73.7\u202f%"  # wilson(24, 40) = (0.446, 0.7365)
        assert "a and b differ" in (await page.text_content("p.note") or "")
        # Every table fits the page's column: none scrolls for a site's four purposes.
        widths = await page.evaluate(
            "[...document.querySelectorAll('.scroll')].map(e => [e.scrollWidth, e.clientWidth])"
        )
        assert len(widths) == 3 and all(need <= room for need, room in widths), widths
        assert await date_lines(page) == 1  # the first column is not squeezed to break it
        shown = await page.text_content("p.range") or ""
        stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
        assert re.match(rf"{stamp} to {stamp} \(UTC, end exclusive\)", shown), shown
        SHOT.parent.mkdir(exist_ok=True)
        await page.screenshot(path=str(SHOT), full_page=True)
        assert SHOT.stat().st_size > 10_000
    finally:
        await page.close()


async def test_the_stats_page_says_as_of_when_the_day_is_provisional(
    browser: Browser, cmp: CmpServer, db: asyncpg.Connection
) -> None:
    site = await fill_site(cmp)
    link = await stats_link(cmp.client, site)
    page = await browser.new_page()
    try:
        await page.goto(f"{cmp.url}{link}")
        exact = await funnel_width(page)
        # The counts a maintenance refresh keeps for a big site (cmp.store.impressions),
        # taken ten minutes ago: the page shows them and says so.
        as_of = await db.fetchval(
            "INSERT INTO impression_provisional (site_id, day, rule, variant, surface,"
            " impressions, visitors, as_of)"
            " SELECT $1, c.day, c.rule, c.variant, c.surface, c.impressions, c.visitors,"
            "        now() - interval '10 minutes'"
            " FROM cmp_impression_counts($1::text, (now() AT TIME ZONE 'UTC')::date,"
            "                            (now() AT TIME ZONE 'UTC')::date + 1) AS c"
            " RETURNING as_of",
            site,
        )
        response = await page.goto(f"{cmp.url}{link}")
        assert response is not None and response.status == 200
        note = f"as of {as_of.astimezone(UTC):%H:%M} UTC"
        cells = await page.locator("#funnel tbody tr td:first-child").all_text_contents()
        first = [c.replace("\u00a0", " ") for c in cells]
        assert len(first) == 1 and first[0].endswith(f"({note})"), first
        total = await page.locator("#funnel tfoot td").first.text_content()
        assert (total or "").replace("\u00a0", " ") == f"Total ({note})"
        assert await page.get_by_text("Total (as of").is_visible()
        # The note takes a line of its own: the funnel is no wider than without it, and
        # the date above it does not break.
        assert await funnel_width(page) <= exact
        assert await date_lines(page) == 1
        await page.screenshot(path=str(SHOT_AS_OF), full_page=True)
    finally:
        await page.close()


async def funnel_width(page: Page) -> int:
    """The width the funnel table needs (its scrolling box's content width)."""
    width: int = await page.evaluate("document.querySelector('#funnel').parentElement.scrollWidth")
    return width


async def date_lines(page: Page) -> int:
    """The lines the funnel's first date takes (1 when it does not break at a hyphen)."""
    lines: int = await page.evaluate(
        "(() => { const text = document.querySelector('#funnel tbody td').firstChild;"
        " const r = document.createRange(); r.setStart(text, 0); r.setEnd(text, 10);"
        " return r.getClientRects().length; })()"
    )
    return lines
