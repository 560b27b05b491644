"""API keys of a site: create (shown once, at most MAX_ACTIVE_KEYS active), list (no
secrets, paginated), revoke (admin)."""

from __future__ import annotations

from aiohttp import web

from cmp.api.access import SiteContext
from cmp.api.json import json_response
from cmp.api.paging import Listing, page_body, page_query
from cmp.api.problems import Problem
from cmp.api.validation import parse_json
from cmp.appkeys import CATALOG, POOL
from cmp.models import KeyIn
from cmp.store import keys as key_store
from cmp.values import API_KEY_ID_RE

KEY_LISTING = Listing(default=100, maximum=1000, after=API_KEY_ID_RE)


async def post_key(request: web.Request, ctx: SiteContext) -> web.Response:
    body = await parse_json(request, KeyIn)
    try:
        async with request.app[POOL].acquire() as conn:
            created = await key_store.insert_key(conn, ctx.site.site_id, body.scope)
    except key_store.KeyLimitReached as exc:
        detail = f"{exc} (DELETE /v1/sites/{{site_id}}/keys/{{id}})"
        raise Problem(
            422,
            "the site holds the most active keys it may",
            code="validation",
            errors=[{"pointer": "", "detail": detail}],
        ) from None
    return json_response(created.model_dump(mode="json"), status=201)


async def list_keys(request: web.Request, ctx: SiteContext) -> web.Response:
    page = page_query(request, KEY_LISTING)
    async with request.app[POOL].acquire() as conn:
        found = await key_store.select_keys(
            conn, ctx.site.site_id, after=page.after, limit=page.limit + 1
        )
    items = [k.model_dump(mode="json") for k in found]
    return json_response(page_body(request, "keys", items, page, "id"))


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
