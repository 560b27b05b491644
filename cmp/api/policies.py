"""Policy versions: publish (immutable, numbered) and read (admin)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cmp.api.access import SiteContext
from cmp.api.json import json_response
from cmp.api.paging import Listing, page_body, page_query
from cmp.api.problems import Problem
from cmp.api.validation import parse_json
from cmp.appkeys import CATALOG, POOL
from cmp.models import PolicyIn, PolicyVersion
from cmp.store import sites as site_store
from cmp.store.sites import StoredSite
from cmp.values import VERSION_RE, version_number

# A version may carry a long policy text per language: pages are short.
POLICY_LISTING = Listing(default=20, maximum=100, after=VERSION_RE)


def policy_json(policy: PolicyVersion) -> dict[str, Any]:
    return policy.model_dump(mode="json")


async def publish(request: web.Request, site: StoredSite, body: PolicyIn) -> PolicyVersion:
    """Validate against the site and publish the next version."""
    site_id = site.site_id
    errors = body.language_errors(site.languages)
    if errors:
        raise Problem(
            422, "policy does not cover the site's languages", code="validation", errors=errors
        )
    try:
        async with request.app[POOL].acquire() as conn:
            policy = await site_store.publish_policy(conn, site_id, body)
    except site_store.FirstVersionNotMaterial:
        raise Problem(
            422,
            "the first policy version of a site must be material",
            code="validation",
            errors=[{"pointer": "/material", "detail": "must be true for version 1"}],
        ) from None
    request.app[CATALOG].invalidate(f"policy:{site_id}")
    return policy


async def post_policy(request: web.Request, ctx: SiteContext) -> web.Response:
    body = await parse_json(request, PolicyIn)
    policy = await publish(request, ctx.site, body)
    return json_response(policy_json(policy), status=201)


async def list_policies(request: web.Request, ctx: SiteContext) -> web.Response:
    page = page_query(request, POLICY_LISTING)
    async with request.app[POOL].acquire() as conn:
        policies = await site_store.select_policies(
            conn, ctx.site.site_id, after=int(page.after or 0), limit=page.limit + 1
        )
    items = [policy_json(p) for p in policies]
    return json_response(page_body(request, "policies", items, page, "version"))


async def get_policy(request: web.Request, ctx: SiteContext) -> web.Response:
    site_id = ctx.site.site_id
    raw = request.match_info["version"]
    if raw == "current":
        policy = await request.app[CATALOG].current_policy(site_id)
    else:
        version = version_number(raw)
        if version is None:
            raise Problem(404, "no such policy version", code="not-found")
        async with request.app[POOL].acquire() as conn:
            policy = await site_store.select_policy(conn, site_id, version)
    if policy is None:
        raise Problem(404, "no such policy version", code="not-found")
    return json_response(policy_json(policy))
