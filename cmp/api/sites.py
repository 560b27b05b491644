"""Site administration: `PUT/GET /v1/sites/{site_id}` (admin)."""

from __future__ import annotations

from aiohttp import web

from cmp.api.auth import require
from cmp.api.json import json_response
from cmp.api.problems import Problem
from cmp.api.validation import parse_json
from cmp.appkeys import CATALOG, POOL
from cmp.models import Scope, SiteIn
from cmp.store import sites as site_store
from cmp.store.sites import StoredSite
from cmp.values import SITE_ID_RE


def site_id_of(request: web.Request) -> str:
    site_id = request.match_info["site_id"]
    if not SITE_ID_RE.fullmatch(site_id):
        raise Problem(404, "no such site", code="not-found")
    return site_id


async def existing_site(request: web.Request, site_id: str) -> StoredSite:
    """The site from the catalogue, or 404."""
    site = await request.app[CATALOG].site(site_id)
    if site is None:
        raise Problem(404, "no such site", code="not-found")
    return site


async def authorized_site(request: web.Request, scope: Scope) -> StoredSite:
    """The path's site, for a key of `scope`: 401/403 as `require`, 404 for another
    tenant's site and for one that does not exist alike."""
    site_id = site_id_of(request)
    await require(request, scope, site_id)
    return await existing_site(request, site_id)


async def put_site(request: web.Request) -> web.Response:
    site_id = site_id_of(request)
    await require(request, "admin", site_id)
    body = await parse_json(request, SiteIn)
    async with request.app[POOL].acquire() as conn:
        site, created = await site_store.upsert_site(conn, site_id, body)
    request.app[CATALOG].invalidate(f"site:{site_id}")
    return json_response(site.model_dump(mode="json"), status=201 if created else 200)


async def get_site(request: web.Request) -> web.Response:
    site = await authorized_site(request, "admin")
    return json_response(site.model_dump(mode="json"))
