"""Drop-in endpoints for banners sites already use: vanilla-cookieconsent v3 and Klaro 0.7.

Same storage, same rules, same origin check as the native collect endpoint. Klaro's
config is public and can be megabytes for a large policy: it is built once per change of
the site or its policy, and per jurisdiction rule (and GPC, under a rule that grants by
default), and cached like `banner.js` (strong ETag, 304 on a match; private when the site
has rules), and each request takes a token of the client network's bucket first.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from cmp.api.access import SiteContext
from cmp.api.banner import matches_etag
from cmp.api.collect import client_ip, collect, cors_headers, visitor_location
from cmp.api.json import dumps, json_response
from cmp.api.problems import Problem
from cmp.appkeys import CATALOG, LIMITER, SETTINGS
from cmp.ingest import Ingest
from cmp.ingest.facts import ip_prefix
from cmp.integrations import klaro_config
from cmp.jurisdiction import site_rules
from cmp.store.sites import StoredSite
from cmp.values import origin_allowed

KLARO_CACHE_CONTROL = "public, max-age=60"
KLARO_CACHE_CONTROL_PER_RULE = "private, max-age=60"
KLARO_BUILT_MAX = 512
KLARO_NAME_MAX = 100


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


@dataclass(frozen=True, slots=True)
class KlaroConfig:
    """A site's Klaro config as JSON, all but the `name` Klaro asks for (`?name=`),
    which goes last: one build serves every name."""

    head: bytes  # the object up to the name's value
    digest: str

    def body(self, name: str) -> bytes:
        return b"%s%s}" % (self.head, dumps(name))

    def etag(self, name: str) -> str:
        named = hashlib.sha256(name.encode()).hexdigest()[:16]
        return f'"{self.digest}-{named}"'


class KlaroConfigs:
    """Built configs by (site, its last change, current policy version, the visitor's rule,
    GPC where it matters): every input is in the key, so an entry is never stale, and
    other processes see a change through the catalogue's invalidation (cmp/catalog.py)
    like `banner.js` does. `builds` counts
    what was built, for the tests that show one build serves many requests."""

    def __init__(self) -> None:
        self._built: OrderedDict[tuple[str, datetime, int, str, bool], KlaroConfig] = OrderedDict()
        self.builds = 0

    async def get(self, request: web.Request, site: StoredSite) -> KlaroConfig:
        catalog = request.app[CATALOG]
        current, _ = await catalog.policy_versions(site.site_id)
        rules = site_rules(site)
        rule = rules.match(visitor_location(request)) if site.jurisdictions else rules.default
        # GPC changes only what a granting rule turns on by default.
        gpc = rule.model != "opt_in" and request.headers.get("Sec-GPC", "").strip() == "1"
        key = (site.site_id, site.updated_at, current, rule.id, gpc)
        found = self._built.get(key)
        if found is not None:
            self._built.move_to_end(key)
            return found
        policy = await catalog.policy(site.site_id, current) if current else None
        if policy is None:
            raise Problem(404, "the site has no published policy", code="not-found")
        config = klaro_config(
            site.languages, site.default_language, site.consent_validity_days, policy, "", rule, gpc
        )
        del config["name"]
        text = dumps(config)
        found = KlaroConfig(
            head=text[:-1] + b',"name":',
            digest=hashlib.sha256(text).hexdigest()[:32],
        )
        self.builds += 1
        self._built[key] = found
        if len(self._built) > KLARO_BUILT_MAX:
            self._built.popitem(last=False)
        return found


KLARO_CONFIGS = KlaroConfigs()


def take_token(request: web.Request, site_id: str, bucket: str, headers: dict[str, str]) -> None:
    """One token of the client network's `bucket` for the site, or 429."""
    prefix = ip_prefix(client_ip(request)) or "-"
    wait = request.app[LIMITER].take(site_id, f"{bucket} {prefix}")
    if wait > 0:
        raise Problem(
            429,
            "too many requests from this network for this site",
            code="rate-limited",
            headers={**headers, "Retry-After": str(int(wait) + 1)},
        )


async def get_klaro_config(request: web.Request, ctx: SiteContext) -> web.Response:
    site = ctx.site
    origin = request.headers.get("Origin")
    if origin is not None and not origin_allowed(site.origins, origin):
        raise Problem(403, f"origin {origin} is not allowed for this site", code="origin")
    cors = cors_headers(origin)
    take_token(request, site.site_id, "klaro-config", cors)
    built = await KLARO_CONFIGS.get(request, site)
    name = request.query.get("name", "default")[:KLARO_NAME_MAX]
    headers = {**cors, "ETag": built.etag(name), **klaro_caching(request, site, cors)}
    if matches_etag(request, {headers["ETag"]}):
        return web.Response(status=304, headers=headers)
    return web.Response(body=built.body(name), content_type="application/json", headers=headers)


def klaro_caching(request: web.Request, site: StoredSite, cors: dict[str, str]) -> dict[str, str]:
    """Public for a site without rules; otherwise one config per rule (and GPC): private,
    varying on the headers that choose it."""
    if not site.jurisdictions:
        return {"Cache-Control": KLARO_CACHE_CONTROL}
    settings = request.app[SETTINGS]
    geo = [h for h in (settings.geo_country_header, settings.geo_region_header) if h]
    vary = [v for v in (cors.get("Vary"),) if v] + [*geo, "Sec-GPC"]
    return {"Cache-Control": KLARO_CACHE_CONTROL_PER_RULE, "Vary": ", ".join(vary)}
