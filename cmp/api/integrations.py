"""Drop-in endpoints for banners sites already use: vanilla-cookieconsent v3 and Klaro 0.7.

Same storage, same rules, same origin check as the native collect endpoint.
"""

from __future__ import annotations

from aiohttp import web

from cmp.api.access import SiteContext
from cmp.api.collect import collect, cors_headers
from cmp.api.json import json_response
from cmp.api.problems import Problem
from cmp.appkeys import CATALOG
from cmp.ingest import Ingest
from cmp.integrations import klaro_config
from cmp.values import origin_allowed


async def post_cookieconsent(request: web.Request, ctx: SiteContext) -> web.Response:
    result = await collect(request, ctx.site, Ingest.cookieconsent)
    return json_response(
        {"accepted": result.accepted, "duplicates": result.duplicates},
        status=201,
        headers=cors_headers(request.headers.get("Origin")),
    )


async def post_klaro_submit(request: web.Request, ctx: SiteContext) -> web.Response:
    result = await collect(request, ctx.site, Ingest.klaro)
    return json_response(
        {"ok": True, "accepted": result.accepted},
        status=201,
        headers=cors_headers(request.headers.get("Origin")),
    )


async def get_klaro_config(request: web.Request, ctx: SiteContext) -> web.Response:
    site = ctx.site
    site_id = site.site_id
    catalog = request.app[CATALOG]
    origin = request.headers.get("Origin")
    if origin is not None and not origin_allowed(site.origins, origin):
        raise Problem(403, f"origin {origin} is not allowed for this site", code="origin")
    policy = await catalog.current_policy(site_id)
    if policy is None:
        raise Problem(404, "the site has no published policy", code="not-found")
    config = klaro_config(
        site.languages,
        site.default_language,
        site.consent_validity_days,
        policy,
        request.query.get("name", "default")[:100],
    )
    return json_response(
        config, headers={**cors_headers(origin), "Cache-Control": "public, max-age=60"}
    )
