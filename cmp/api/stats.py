"""Consent statistics (docs/api.md): JSON for `audit` keys, an HTML page behind signed links
(revoked all at once by an admin).

Both answer the same question — events per action and opt-in rate per purpose per
UTC day/week/month over [from, to) — from the same single aggregate query.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from cmp.api.access import SiteContext
from cmp.api.json import json_response
from cmp.api.stats_page import columns, page_headers, render_page
from cmp.api.validation import query_problem
from cmp.appkeys import CATALOG, LONG_READS, POOL
from cmp.store import sites as site_store
from cmp.store import stats as stats_store
from cmp.store.stats import Tally
from cmp.timerange import RangeError, StatsRange, format_instant, stats_range


def resolve_range(query: Mapping[str, str], now: datetime) -> StatsRange:
    """The query's range with its defaults (the last 30 days up to now), or a 422."""
    try:
        return stats_range(query, now)
    except RangeError as exc:
        raise query_problem(exc.errors) from None


def tally_json(tally: Tally) -> dict[str, Any]:
    return {"events": tally.events, "actions": tally.actions, "opt_in": tally.opt_in()}


def report_json(
    site_id: str, rng: StatsRange, buckets: list[Tally], totals: Tally
) -> dict[str, Any]:
    return {
        "site_id": site_id,
        "from": format_instant(rng.start),
        "to": format_instant(rng.end),
        "interval": rng.interval,
        "buckets": [
            {"start": format_instant(b.start), **tally_json(b)} for b in buckets if b.start
        ],
        "totals": tally_json(totals),
    }


async def _tallies(
    request: web.Request, site_id: str, rng: StatsRange
) -> tuple[list[Tally], Tally]:
    async with request.app[LONG_READS].connection(site_id) as conn:
        return await stats_store.select_stats(
            conn, site_id, start=rng.start, end=rng.end, interval=rng.interval
        )


async def get_stats(request: web.Request, ctx: SiteContext) -> web.Response:
    site_id = ctx.site.site_id
    rng = resolve_range(request.query, datetime.now(UTC))
    buckets, totals = await _tallies(request, site_id, rng)
    return json_response(report_json(site_id, rng, buckets, totals))


async def get_stats_page(request: web.Request, ctx: SiteContext) -> web.Response:
    """Behind a signed link (checked by the route table before the site is looked at)."""
    site = ctx.site
    site_id = site.site_id
    rng = resolve_range(request.query, datetime.now(UTC))
    buckets, totals = await _tallies(request, site_id, rng)
    policy = await request.app[CATALOG].current_policy(site_id)
    page = render_page(
        site_id=site_id,
        site_name=site.name,
        start=rng.start,
        end=rng.end,
        interval=rng.interval,
        buckets=buckets,
        totals=totals,
        cols=columns(policy.purposes if policy else (), totals.purposes, site.default_language),
    )
    return web.Response(
        text=page, content_type="text/html", charset="utf-8", headers=page_headers()
    )


async def revoke_stats_links(request: web.Request, ctx: SiteContext) -> web.Response:
    """Every stats link of the site stops working: the site gets a new stats-link key."""
    site_id = ctx.site.site_id
    async with request.app[POOL].acquire() as conn:
        await site_store.rotate_stats_link_key(conn, site_id)
    request.app[CATALOG].invalidate(f"site:{site_id}")
    return web.Response(status=204)
