"""Collect endpoints (public, Origin-checked): native events, CORS preflight.

A thin shell around `cmp.ingest`: it gathers the request facts (origin, user agent,
IP prefix, Sec-GPC), checks origin and rate, and maps pipeline rejections to problems
that carry CORS headers, so a banner's script can read them too.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from cmp.api.auth import require
from cmp.api.problems import Problem
from cmp.api.sites import site_id_of
from cmp.api.validation import refuse_encoded
from cmp.appkeys import CATALOG, COMMITTER, LIMITER, METRICS, SETTINGS
from cmp.canonical import utc_text
from cmp.commit import Unavailable
from cmp.ingest import (
    USER_AGENT_MAX,
    Accepted,
    Facts,
    Rejected,
    commit,
    header_text,
    ip_prefix,
    parse,
    prepare,
)
from cmp.store.events import NewEvent
from cmp.store.sites import SiteRow

BODY_MAX = 64 * 1024
PREFLIGHT_MAX_AGE = "86400"
JSON_OR_TEXT = ("application/json", "text/plain")


def cors_headers(origin: str | None) -> dict[str, str]:
    if origin is None:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


@functools.cache
def _networks(cidrs: tuple[str, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(c, strict=False) for c in cidrs]


def client_ip(request: web.Request) -> str | None:
    """The peer address, or the first untrusted hop of X-Forwarded-For behind our proxies."""
    peer = request.remote
    trusted = _networks(tuple(request.app[SETTINGS].trusted_proxies))
    if not trusted or peer is None:
        return peer
    chain = [peer]
    forwarded = request.headers.get("X-Forwarded-For", "")
    chain = [p.strip() for p in forwarded.split(",") if p.strip()] + chain
    for hop in reversed(chain):
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return None
        if not any(address in net for net in trusted):
            return hop
    return chain[0]


async def collect_site(request: web.Request) -> tuple[SiteRow, str | None]:
    """The site, after the origin check (or, without Origin, an admin key)."""
    site_id = site_id_of(request)
    origin = request.headers.get("Origin")
    if origin is None:
        await require(request, "admin", site_id)
    site = await request.app[CATALOG].site(site_id)
    if site is None:
        raise Problem(404, "no such site", code="not-found")
    if origin is not None and origin not in site.site.origins:
        request.app[METRICS].rejections.labels("origin").inc()
        raise Problem(403, f"origin {origin} is not allowed for this site", code="origin")
    return site, origin


async def read_body(request: web.Request, origin: str | None) -> bytes:
    headers = cors_headers(origin)
    refuse_encoded(request, headers)
    if request.content_type not in JSON_OR_TEXT:
        raise Problem(
            415,
            "Content-Type must be application/json or text/plain",
            code="unsupported-media-type",
            headers=headers,
        )
    if request.content_length is not None and request.content_length > BODY_MAX:
        raise Problem(413, "body larger than 64 KiB", code="too-large", headers=headers)
    raw = await request.read()
    if len(raw) > BODY_MAX:
        raise Problem(413, "body larger than 64 KiB", code="too-large", headers=headers)
    return raw


def request_facts(request: web.Request, origin: str | None) -> Facts:
    now = datetime.now(UTC)
    return Facts(
        origin=origin,
        user_agent=header_text(request.headers.get("User-Agent"), USER_AGENT_MAX),
        ip_prefix=ip_prefix(client_ip(request)),
        gpc=request.headers.get("Sec-GPC", "").strip() == "1",
        received_at=now,
        received_text=utc_text(now),
    )


def check_rate(request: web.Request, site_id: str, facts: Facts, cost: int) -> None:
    """Take `cost` tokens of the (site, network) bucket, or answer 429."""
    if facts.origin is None or cost <= 0:
        return  # server-to-server import with an admin key
    wait = request.app[LIMITER].take(site_id, facts.ip_prefix or "-", cost)
    if wait > 0:
        request.app[METRICS].rejections.labels("rate-limited").inc()
        raise Problem(
            429,
            "too many requests from this network for this site",
            code="rate-limited",
            headers={"Retry-After": str(int(wait) + 1), **cors_headers(facts.origin)},
        )


Prepare = Callable[[SiteRow, bytes, Facts], Awaitable[list[NewEvent]]]


async def ingest_request(request: web.Request, prepare: Prepare) -> Accepted:
    """The shared shell of every collect endpoint: site, body, facts, rate, pipeline."""
    site, origin = await collect_site(request)
    facts = request_facts(request, origin)
    site_id = site.site.site_id
    # One token before the body is read or parsed, one more per further event after:
    # a flood of bad requests is stopped before it costs parsing or queries.
    check_rate(request, site_id, facts, 1)
    raw = await read_body(request, origin)
    metrics = request.app[METRICS]
    try:
        events = await prepare(site, raw, facts)
        check_rate(request, site_id, facts, len(events) - 1)
        result = await commit(request.app[COMMITTER], events)
    except Rejected as exc:
        metrics.rejections.labels(exc.reason).inc()
        raise Problem(
            exc.status, exc.detail, code=exc.reason, errors=exc.errors, headers=cors_headers(origin)
        ) from None
    except Unavailable as exc:
        metrics.rejections.labels(f"unavailable-{exc.reason}").inc()
        raise Problem(
            503,
            "the consent log cannot take events right now; retry",
            code="unavailable",
            headers={"Retry-After": "1", **cors_headers(origin)},
        ) from None
    metrics.accepted.inc(result.accepted)
    if result.duplicates:
        metrics.duplicates.inc(result.duplicates)
    return result


async def post_events(request: web.Request) -> web.Response:
    async def pipeline(site: SiteRow, raw: bytes, facts: Facts) -> list[NewEvent]:
        events, prefix = parse(raw)
        catalog = request.app[CATALOG]
        site_id = site.site.site_id
        return await prepare(site, events, prefix, lambda v: catalog.view(site_id, v), facts)

    result = await ingest_request(request, pipeline)
    return accepted_response(result, request.headers.get("Origin"))


def accepted_response(result: Accepted, origin: str | None) -> web.Response:
    """201 {"accepted": n, "duplicates": m} — built directly: this is the hot path."""
    body = b'{"accepted":%d,"duplicates":%d}' % (result.accepted, result.duplicates)
    return web.Response(
        body=body, status=201, content_type="application/json", headers=cors_headers(origin)
    )


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight: the exact allowed origin echoed, never `*`."""
    site_id = site_id_of(request)
    origin = request.headers.get("Origin")
    site = await request.app[CATALOG].site(site_id)
    if site is None or origin is None or origin not in site.site.origins:
        raise Problem(403, "origin not allowed", code="origin")
    return web.Response(
        status=204,
        headers={
            **cors_headers(origin),
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
        },
    )
