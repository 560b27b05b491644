"""Consent statistics (SPEC §3.5): JSON for `audit` keys, an HTML page behind signed links.

Both answer the same question — events per action and opt-in rate per purpose per
UTC day/week/month over [from, to) — from the same single aggregate query.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from aiohttp import web

from cmp.api.auth import require
from cmp.api.json import json_response
from cmp.api.problems import Problem
from cmp.api.sites import existing_site, site_id_of
from cmp.appkeys import CATALOG, LONG_READS, SIGNER
from cmp.stats_page import (
    CSP,
    SIGNED_PARAMS,
    columns,
    format_instant,
    link_problem,
    parse_instant,
    render_page,
)
from cmp.store import stats as stats_store
from cmp.store.stats import INTERVALS, Interval, Tally

DEFAULT_SPAN: Final = timedelta(days=30)
# Daily buckets over more than two years are a table nobody reads and a heavy query.
MAX_DAILY_SPAN: Final = timedelta(days=731)
INSTANT_HINT: Final = "must be an RFC 3339 timestamp (2026-11-21T10:00:00Z) or a date (2026-11-21)"
PAGE_HEADERS: Final = {
    "Cache-Control": "private, no-store",
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",  # the URL is the credential: never pass it on
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
}


@dataclass(frozen=True, slots=True)
class StatsRange:
    start: datetime  # inclusive
    end: datetime  # exclusive
    interval: Interval


def resolve_range(query: Mapping[str, str], now: datetime) -> StatsRange:
    """The query's range with its defaults (the last 30 days up to now), or a 422."""
    errors: list[dict[str, str]] = []
    interval = query.get("interval", "day")
    if interval not in INTERVALS:
        errors.append({"pointer": "/interval", "detail": f"must be one of {', '.join(INTERVALS)}"})
    given: dict[str, datetime] = {}
    for name in ("from", "to"):
        if name in query:
            try:
                given[name] = parse_instant(query[name])
            except ValueError:
                errors.append({"pointer": f"/{name}", "detail": INSTANT_HINT})
    if not errors:
        end = given.get("to", now)
        try:
            start = given.get("from") or end - DEFAULT_SPAN
        except OverflowError:
            errors.append({"pointer": "/to", "detail": "is out of range"})
        else:
            if start >= end:
                errors.append({"pointer": "/from", "detail": "must be before 'to' (default: now)"})
            elif interval == "day" and end - start > MAX_DAILY_SPAN:
                errors.append(
                    {
                        "pointer": "/from",
                        "detail": "a range per day may span at most 731 days; "
                        "use interval=week or interval=month",
                    }
                )
    if errors:
        raise Problem(422, "query parameters failed validation", code="validation", errors=errors)
    return StatsRange(start, end, cast(Interval, interval))  # checked above


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


async def get_stats(request: web.Request) -> web.Response:
    site_id = site_id_of(request)
    await require(request, "audit", site_id)
    await existing_site(request, site_id)
    rng = resolve_range(request.query, datetime.now(UTC))
    buckets, totals = await _tallies(request, site_id, rng)
    return json_response(report_json(site_id, rng, buckets, totals))


async def get_stats_page(request: web.Request) -> web.Response:
    site_id = site_id_of(request)
    # The signature comes first: without it, nothing (not even whether the site exists).
    repeated = any(len(request.query.getall(name, ())) > 1 for name in SIGNED_PARAMS)
    reason = "the link's signature is not valid" if repeated else None
    reason = reason or link_problem(
        request.app[SIGNER].public_key, site_id, request.query, time.time()
    )
    if reason is not None:
        raise Problem(403, reason, code="forbidden")
    row = await existing_site(request, site_id)
    rng = resolve_range(request.query, datetime.now(UTC))
    buckets, totals = await _tallies(request, site_id, rng)
    catalog = request.app[CATALOG]
    current, _ = await catalog.heads(site_id)
    policy = await catalog.policy(site_id, current) if current else None
    page = render_page(
        site_id=site_id,
        site_name=row.site.name,
        start=rng.start,
        end=rng.end,
        interval=rng.interval,
        buckets=buckets,
        totals=totals,
        cols=columns(policy.purposes if policy else (), totals.purposes, row.site.default_language),
    )
    return web.Response(text=page, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)
