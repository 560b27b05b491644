"""Site administration: `PUT/GET /v1/sites/{site_id}` (admin)."""

from __future__ import annotations

from aiohttp import web

from cmp.api.access import Context, SiteContext
from cmp.api.json import json_response
from cmp.api.problems import Problem
from cmp.api.validation import parse_json
from cmp.appkeys import CATALOG, POOL
from cmp.errorcap import ERRORS_MAX
from cmp.models import SiteIn
from cmp.store import sites as site_store


async def put_site(request: web.Request, ctx: Context) -> web.Response:
    site_id = ctx.site_id
    assert site_id is not None  # the route's path names the site (routes.py)
    body = await parse_json(request, SiteIn)
    errors = body.jurisdiction_errors()
    if errors:
        raise Problem(
            422,
            "the jurisdiction rules are ambiguous or incomplete",
            code="validation",
            errors=errors[:ERRORS_MAX],
            errors_omitted=max(0, len(errors) - ERRORS_MAX),
        )
    async with request.app[POOL].acquire() as conn:
        site, created = await site_store.upsert_site(conn, site_id, body)
    request.app[CATALOG].invalidate(f"site:{site_id}")
    return json_response(site.model_dump(mode="json"), status=201 if created else 200)


async def get_site(request: web.Request, ctx: SiteContext) -> web.Response:
    return json_response(ctx.site.model_dump(mode="json"))
