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
from cmp.api.bodies import Response
from cmp.api.json import json_response
from cmp.api.stats_page import columns, page_headers, render_page
from cmp.api.validation import query_problem
from cmp.appkeys import CATALOG, LONG_READS, POOL
from cmp.funnel import ignored, median_bin, rate, shown_rate, two_proportions, wilson
from cmp.store import sites as site_store
from cmp.store import stats as stats_store
from cmp.store.impressions import EVERY
from cmp.store.stats import ANSWERS, Counts, Tally
from cmp.timerange import RangeError, StatsRange, format_instant, stats_range


def resolve_range(query: Mapping[str, str], now: datetime) -> StatsRange:
    """The query's range with its defaults (the last 30 days up to now), or a 422."""
    try:
        return stats_range(query, now)
    except RangeError as exc:
        raise query_problem(exc.errors) from None


def funnel_json(counts: Counts, shown: tuple[int, int]) -> dict[str, Any]:
    """The impression funnel of one group (docs/api.md "Statistics")."""
    impressions, visitors = shown
    accept_all = counts.answered.get("accept_all", 0)
    median = median_bin(counts.latency)
    interval = wilson(accept_all, impressions)
    keys = sorted(counts.purposes.keys() | counts.decided.keys())
    return {
        "impressions": impressions,
        "unique_visitors": visitors,
        "interactions": counts.interactions,
        "ignored": ignored(impressions, counts.interactions),
        "answers": {a: counts.answered.get(a, 0) for a in ANSWERS},
        "accept_all_rate": shown_rate(accept_all, impressions),
        "accept_all_interval": list(interval) if interval else None,
        "opt_in_rate": {
            key: {
                "over_impressions": shown_rate(counts.granted.get(key, 0), impressions),
                "over_decisions": rate(*counts.decided.get(key, (0, 0))),
            }
            for key in keys
        },
        "decisions": counts.decisions,
        "median_seconds_to_decision": median,
        "timed_decisions": sum(counts.latency.values()),
        "excluded": {"api_imported": counts.api_imported, "gpc_automatic": counts.gpc_automatic},
    }


def _named(tally: Tally, position: int) -> list[str]:
    """The rules (position 0) or variants (1) the tally has decisions or impressions of."""
    found = {cell[position] for cell in tally.cells}
    found |= {level[position] for level in tally.shown}
    return sorted(found - {EVERY})


def comparisons_json(tally: Tally, rule: str) -> list[dict[str, Any]]:
    """Each pair of the rule's variants (EVERY: of the site), by their accept-all rates."""
    named = [v for v in _named(tally, 1) if tally.impressions(rule, v)[0]]
    found = []
    for n, a in enumerate(named):
        for b in named[n + 1 :]:
            xa = tally.counts(rule, a).answered.get("accept_all", 0)
            xb = tally.counts(rule, b).answered.get("accept_all", 0)
            test = two_proportions(
                xa, tally.impressions(rule, a)[0], xb, tally.impressions(rule, b)[0]
            )
            found.append(
                {"variants": [a, b], "z": test.z, "p_value": test.p_value, "differs": test.differs}
            )
    return found


def tally_json(tally: Tally, *, compare: bool = False) -> dict[str, Any]:
    rules = []
    for rule in _named(tally, 0):
        counts = tally.counts(rule)
        rules.append(
            {
                "rule": rule,
                "events": counts.events,
                "actions": counts.actions,
                "opt_in": Tally(None, {("", ""): counts}).opt_in(),
                "funnel": funnel_json(counts, tally.impressions(rule)),
                "variants": [
                    {
                        "variant": v,
                        "funnel": funnel_json(tally.counts(rule, v), tally.impressions(rule, v)),
                    }
                    for v in _named(tally, 1)
                    if (rule, v) in tally.cells or tally.impressions(rule, v)[0]
                ],
                **({"comparisons": comparisons_json(tally, rule)} if compare else {}),
            }
        )
    body: dict[str, Any] = {
        "events": tally.events,
        "actions": tally.actions,
        "opt_in": tally.opt_in(),
        "funnel": funnel_json(tally.site, tally.impressions()),
        "rules": rules,
        "variants": [
            {
                "variant": v,
                "funnel": funnel_json(tally.counts(variant=v), tally.impressions(variant=v)),
            }
            for v in _named(tally, 1)
        ],
    }
    if compare:
        body["comparisons"] = comparisons_json(tally, EVERY)
    if tally.as_of is not None:  # impressions of a day not rolled up, counted then
        body["as_of"] = format_instant(tally.as_of)
    return body


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
        "totals": tally_json(totals, compare=True),
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
    return Response(text=page, content_type="text/html", charset="utf-8", headers=page_headers())


async def revoke_stats_links(request: web.Request, ctx: SiteContext) -> web.Response:
    """Every stats link of the site stops working: the site gets a new stats-link key."""
    site_id = ctx.site.site_id
    async with request.app[POOL].acquire() as conn:
        await site_store.rotate_stats_link_key(conn, site_id)
    request.app[CATALOG].invalidate(f"site:{site_id}")
    return web.Response(status=204)
