"""API keys of a site: create (shown once), list (no secrets), revoke (admin)."""

from __future__ import annotations

from aiohttp import web

from cmp.api.access import SiteContext
from cmp.api.json import json_response
from cmp.api.problems import Problem
from cmp.api.validation import parse_json
from cmp.appkeys import CATALOG, POOL
from cmp.models import KeyIn
from cmp.store import keys as key_store
from cmp.values import API_KEY_ID_RE


async def post_key(request: web.Request, ctx: SiteContext) -> web.Response:
    body = await parse_json(request, KeyIn)
    async with request.app[POOL].acquire() as conn:
        created = await key_store.insert_key(conn, ctx.site.site_id, body.scope)
    return json_response(created.model_dump(mode="json"), status=201)


async def list_keys(request: web.Request, ctx: SiteContext) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        found = await key_store.select_keys(conn, ctx.site.site_id)
    return json_response({"keys": [k.model_dump(mode="json") for k in found]})


async def delete_key(request: web.Request, ctx: SiteContext) -> web.Response:
    key_id = request.match_info["key_id"]
    if not API_KEY_ID_RE.fullmatch(key_id):
        raise Problem(404, "no such key", code="not-found")
    async with request.app[POOL].acquire() as conn:
        revoked = await key_store.revoke_key(conn, ctx.site.site_id, key_id)
    if not revoked:
        raise Problem(404, "no such key", code="not-found")
    request.app[CATALOG].invalidate(f"key:{key_id}")
    return web.Response(status=204)
