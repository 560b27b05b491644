"""Collect endpoints (public, Origin-checked): native events, CORS preflight.

A thin shell around `cmp.ingest`: it checks the site and origin, gathers the request
facts (origin, user agent, client address, Sec-GPC), reads the body within its limits
and calls the pipeline once; rejections become problems that carry CORS headers, so a
banner's script can read them too.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from cmp.api.access import SiteContext
from cmp.api.problems import Problem
from cmp.api.validation import read_bytes, refuse_encoded
from cmp.appkeys import IMPRESSIONS, INGEST, METRICS, SETTINGS
from cmp.commit import Unavailable
from cmp.ingest import Accepted, Facts, Ingest, Rejected, request_facts
from cmp.jurisdiction import UNKNOWN, Location, location_of
from cmp.store.sites import StoredSite

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


def _trusted(cidrs: tuple[str, ...], hop: str) -> bool | None:
    """Whether the address `hop` is one of our proxies; None when it is no address.

    A proxy's address is remembered (a handful, and no visitor's), so the peer of every
    request behind one is not parsed again; a visitor's address never is."""
    known = _proxies.get(cidrs)
    if known is not None and hop in known:
        return True
    try:
        address = ipaddress.ip_address(hop)
    except ValueError:
        return None
    if not any(address in net for net in _networks(cidrs)):
        return False
    if known is None:
        known = _proxies[cidrs] = set()
    if len(known) < PROXIES_REMEMBERED:
        known.add(hop)
    return True


PROXIES_REMEMBERED = 64
_proxies: dict[tuple[str, ...], set[str]] = {}


def visitor_location(request: web.Request) -> Location:
    """The visitor's country and region from the headers CMP_GEO_COUNTRY_HEADER and
    CMP_GEO_REGION_HEADER name, believed only when the peer is a trusted proxy: anyone
    else could send them (docs/operations.md, Visitor location). Unknown otherwise."""
    settings = request.app[SETTINGS]
    if settings.geo_country_header is None and settings.geo_region_header is None:
        return UNKNOWN
    peer = request.remote
    cidrs = tuple(settings.trusted_proxies)
    if peer is None or not cidrs or not _trusted(cidrs, peer):
        return UNKNOWN
    headers = request.headers
    return location_of(
        headers.get(settings.geo_country_header) if settings.geo_country_header else None,
        headers.get(settings.geo_region_header) if settings.geo_region_header else None,
    )


def client_ip(request: web.Request) -> str | None:
    """The peer address, or the first untrusted hop of X-Forwarded-For behind our proxies."""
    peer = request.remote
    cidrs = tuple(request.app[SETTINGS].trusted_proxies)
    if not cidrs or peer is None:
        return peer
    chain = [peer]
    forwarded = request.headers.get("X-Forwarded-For", "")
    chain = [p.strip() for p in forwarded.split(",") if p.strip()] + chain
    for hop in reversed(chain):
        trusted = _trusted(cidrs, hop)
        if trusted is None:
            return None
        if not trusted:
            return hop
    return chain[0]


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
    raw = await read_bytes(request, headers)
    if len(raw) > BODY_MAX:
        raise Problem(413, "body larger than 64 KiB", code="too-large", headers=headers)
    return raw


def facts_of(request: web.Request, origin: str | None) -> Facts:
    return request_facts(
        origin=origin,
        user_agent=request.headers.get("User-Agent"),
        client_ip=client_ip(request),
        sec_gpc=request.headers.get("Sec-GPC"),
        now=datetime.now(UTC),
        location=visitor_location(request),
    )


Entry = Callable[[Ingest, StoredSite, bytes, Facts], Awaitable[Accepted]]


async def collect(request: web.Request, site: StoredSite, entry: Entry) -> Accepted:
    """The shared shell of every collect endpoint: facts, first rate token, body, then
    one call into the pipeline; its rejections become problems with CORS headers. The
    route table checked the origin (or, without Origin, an admin key) and found the site."""
    origin = request.headers.get("Origin")
    facts = facts_of(request, origin)
    ingest = request.app[INGEST]
    metrics = request.app[METRICS]
    try:
        ingest.admit(site.site_id, facts)
        raw = await read_body(request, origin)
        result = await entry(ingest, site, raw, facts)
    except Rejected as exc:
        raise rejected_problem(request, exc, origin) from None
    except Unavailable as exc:
        raise unavailable_problem(
            request, exc, origin, "the consent log cannot take events right now; retry"
        ) from None
    metrics.accepted.inc(result.accepted)
    if result.duplicates:
        metrics.duplicates.inc(result.duplicates)
    return result


def rejected_problem(request: web.Request, exc: Rejected, origin: str | None) -> Problem:
    """A pipeline's rejection as the problem answered, with CORS headers."""
    request.app[METRICS].rejections.labels(exc.reason).inc()
    headers = cors_headers(origin)
    if exc.retry_after is not None:
        headers["Retry-After"] = str(int(exc.retry_after) + 1)
    return Problem(
        exc.status,
        exc.detail,
        code=exc.reason,
        errors=exc.errors,
        headers=headers,
        errors_omitted=exc.errors_omitted,
    )


def unavailable_problem(
    request: web.Request, exc: Unavailable, origin: str | None, detail: str
) -> Problem:
    request.app[METRICS].rejections.labels(f"unavailable-{exc.reason}").inc()
    return Problem(
        503,
        detail,
        code="unavailable",
        headers={"Retry-After": "1", **cors_headers(origin)},
    )


async def post_impressions(request: web.Request, ctx: SiteContext) -> web.Response:
    """Count showings of the banner (docs/api.md): 202 once durably counted."""
    origin = request.headers.get("Origin")
    facts = facts_of(request, origin)
    impressions = request.app[IMPRESSIONS]
    try:
        impressions.admit(ctx.site.site_id, facts)
        raw = await read_body(request, origin)
        result = await impressions.count(ctx.site, raw, facts)
    except Rejected as exc:
        raise rejected_problem(request, exc, origin) from None
    except Unavailable as exc:
        raise unavailable_problem(
            request, exc, origin, "impressions cannot be counted right now; retry"
        ) from None
    body = b'{"counted":%d,"duplicates":%d,"ignored":%d}' % (
        result.counted,
        result.duplicates,
        result.ignored,
    )
    return web.Response(
        body=body, status=202, content_type="application/json", headers=cors_headers(origin)
    )


async def post_events(request: web.Request, ctx: SiteContext) -> web.Response:
    result = await collect(request, ctx.site, Ingest.native)
    return accepted_response(result, request.headers.get("Origin"))


def accepted_response(result: Accepted, origin: str | None) -> web.Response:
    """201 {"accepted": n, "duplicates": m} — built directly: this is the hot path."""
    body = b'{"accepted":%d,"duplicates":%d}' % (result.accepted, result.duplicates)
    return web.Response(
        body=body, status=201, content_type="application/json", headers=cors_headers(origin)
    )


async def preflight(request: web.Request, ctx: SiteContext) -> web.Response:
    """CORS preflight: the exact allowed origin echoed, never `*` (the route table let
    only an allowed origin through)."""
    origin = request.headers["Origin"]
    return web.Response(
        status=204,
        headers={
            **cors_headers(origin),
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
        },
    )
