"""Access control from the route table: what a route declares, what is checked before
its handler runs, and the typed context the handler receives.

A route declares its scope once (`RouteScope`). `guarded` turns the declaration into
checks, always in this order: the path's site id (404 when it cannot be one), the
caller (a key, an Origin), then the site itself for a `SiteRoute` (404 when missing —
for another tenant's key it is 404 before that, so the two cannot be told apart; a
signed link is checked with the site's own key, and a missing site is 403 like a
forged link). A handler never checks access: it receives what was established, once
per request, with the same catalogue lookups a handler made itself before.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal

from aiohttp import web
from pydantic import BaseModel

from cmp.api.auth import authorize
from cmp.api.problems import Handler as WebHandler
from cmp.api.problems import Problem
from cmp.appkeys import CATALOG, METRICS
from cmp.models import Scope
from cmp.stats_links import NOT_VALID, SIGNED_PARAMS, link_problem
from cmp.store.keys import KeyAuth
from cmp.store.sites import StoredSite
from cmp.values import SITE_ID_RE, origin_allowed

# admin | read | audit | identify: a key of that scope (admin holds every scope) for the
#   path's site, or the root key; 401 without a valid key, 404 for another site's key,
#   403 otherwise.
# origin: a browser's Origin must be one of the site's origins (403); a request without
#   Origin is a server-to-server import and needs an admin key (docs/api.md).
# preflight: a CORS preflight; 403 unless the Origin is one of the site's origins (a
#   missing site too: a preflight says nothing about which sites exist).
# signed-link: a link signed by `cmpd stats-url` with the site's stats-link key; 403 for
#   a link that does not verify, and for a missing site alike (nothing about it leaks).
# public: anyone. ops: anyone, operations (no site, nothing stored).
RouteScope = Literal[
    "admin", "read", "audit", "identify", "origin", "preflight", "signed-link", "public", "ops"
]
# The route scopes that are key scopes, as the key scope they ask for.
KEY_SCOPES: Final[dict[RouteScope, Scope]] = {
    "admin": "admin",
    "read": "read",
    "audit": "audit",
    "identify": "identify",
}
SITE_PARAM: Final = "{site_id}"


# Built once per request, positionally: the cheapest way to make a frozen dataclass.
@dataclass(frozen=True, slots=True)
class Context:
    """What the route table established for a route that loads no site."""

    key: KeyAuth | None  # the verified key; None where the scope takes none
    site_id: str | None  # the path's site id, checked; None when the path has none


@dataclass(frozen=True, slots=True)
class SiteContext:
    """What the route table established for a route on one existing site."""

    key: KeyAuth | None
    site: StoredSite


Handler = Callable[[web.Request, Context], Awaitable[web.StreamResponse]]
SiteHandler = Callable[[web.Request, SiteContext], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, kw_only=True)
class Declared:
    """What every route declares; `Route` and `SiteRoute` add the handler."""

    method: str
    path: str
    summary: str
    scope: RouteScope
    body: type[BaseModel] | None = None  # parsed by the handler; documented from here
    tag: str = "ops"


@dataclass(frozen=True, kw_only=True)
class Route(Declared):
    """A route whose handler loads no site: operations, the public key, and the two
    routes that name a site which may not exist (its creation; a receipt, where a
    missing site answers like a missing record)."""

    handler: Handler

    @property
    def name(self) -> str:
        """The handler's name: the operation id in the OpenAPI document."""
        return self.handler.__name__


@dataclass(frozen=True, kw_only=True)
class SiteRoute(Declared):
    """A route on one site: its handler gets the site, loaded and access-checked."""

    handler: SiteHandler

    @property
    def name(self) -> str:
        """The handler's name: the operation id in the OpenAPI document."""
        return self.handler.__name__


AnyRoute = Route | SiteRoute

# The table the app serves, for what describes it (the OpenAPI document).
ROUTE_TABLE: Final = web.AppKey[tuple[AnyRoute, ...]]("route_table")


def site_id_of(request: web.Request) -> str:
    """The path's site id; 404 for text that cannot be one (it never reaches a query)."""
    site_id = request.match_info["site_id"]
    if not SITE_ID_RE.fullmatch(site_id):
        raise no_such_site()
    return site_id


def check_declaration(route: AnyRoute) -> None:
    """Refuse, at startup, a route whose declaration its checks could not honour."""
    on_site = SITE_PARAM in route.path
    if isinstance(route, SiteRoute) and not on_site:
        raise ValueError(f"{route.method} {route.path}: a SiteRoute needs {SITE_PARAM}")
    if route.scope in ("origin", "preflight", "signed-link") and not isinstance(route, SiteRoute):
        raise ValueError(f"{route.method} {route.path}: scope {route.scope} needs a SiteRoute")
    if route.scope == "ops" and on_site:
        raise ValueError(f"{route.method} {route.path}: an ops route names no site")


async def _caller(request: web.Request, scope: RouteScope, site_id: str | None) -> KeyAuth | None:
    """Who calls, checked before anything about the site is looked at."""
    key_scope = KEY_SCOPES.get(scope)
    if key_scope is not None:
        return await authorize(request, key_scope, site_id)
    if scope == "origin" and "Origin" not in request.headers:
        return await authorize(request, "admin", site_id)  # a server-to-server import
    return None


def _check_link(request: web.Request, site_id: str, site: StoredSite | None) -> None:
    repeated = any(len(request.query.getall(name, ())) > 1 for name in SIGNED_PARAMS)
    reason = NOT_VALID if repeated else None
    key = site.stats_link_key if site is not None else None
    reason = reason or link_problem(key, site_id, request.query, time.time())
    if reason is not None:
        raise Problem(403, reason, code="forbidden")


def _admitted(request: web.Request, scope: RouteScope, site: StoredSite | None) -> StoredSite:
    """The site, when the scope's site-dependent checks pass."""
    origin = request.headers.get("Origin")
    if scope == "signed-link":
        _check_link(request, request.match_info["site_id"], site)
    if scope == "preflight":
        if site is None or origin is None or not origin_allowed(site.origins, origin):
            raise Problem(403, "origin not allowed", code="origin")
        return site
    if site is None:
        raise no_such_site()
    if scope == "origin" and origin is not None and not origin_allowed(site.origins, origin):
        request.app[METRICS].rejections.labels("origin").inc()
        raise Problem(403, f"origin {origin} is not allowed for this site", code="origin")
    return site


def no_such_site() -> Problem:
    return Problem(404, "no such site", code="not-found")


def guarded(route: AnyRoute) -> WebHandler:
    """The aiohttp handler of `route`: its declared checks, then its handler."""
    check_declaration(route)
    if isinstance(route, SiteRoute):
        return _on_site(route)
    return _on_path(route)


def _on_site(route: SiteRoute) -> WebHandler:
    handler, scope = route.handler, route.scope
    key_scope = KEY_SCOPES.get(scope)
    if key_scope is not None:
        # The read paths: the same steps as `checked`, without the branches they skip.
        async def keyed(request: web.Request) -> web.StreamResponse:
            site_id = site_id_of(request)
            key = await authorize(request, key_scope, site_id)
            site = await request.app[CATALOG].site(site_id)
            if site is None:
                raise no_such_site()
            return await handler(request, SiteContext(key, site))

        return keyed

    async def checked(request: web.Request) -> web.StreamResponse:
        site_id = site_id_of(request)
        key = await _caller(request, scope, site_id)
        site = _admitted(request, scope, await request.app[CATALOG].site(site_id))
        return await handler(request, SiteContext(key, site))

    return checked


def _on_path(route: Route) -> WebHandler:
    handler, scope = route.handler, route.scope
    if SITE_PARAM not in route.path:

        async def anywhere(request: web.Request) -> web.StreamResponse:
            key = await _caller(request, scope, None)
            return await handler(request, Context(key, None))

        return anywhere

    async def on_site_id(request: web.Request) -> web.StreamResponse:
        site_id = site_id_of(request)
        key = await _caller(request, scope, site_id)
        return await handler(request, Context(key, site_id))

    return on_site_id
