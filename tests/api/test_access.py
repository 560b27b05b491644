"""The auth matrix (docs/api.md), generated from the route table: every route, every kind
of caller, the status its declared scope promises, against the real server.

A route added to the table is covered without touching this file; a server that
enforces anything other than the table declares fails here (the last tests show it).
"""

from __future__ import annotations

import ast
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

import cmp.app
from cmp.api.access import KEY_SCOPES, ROUTE_TABLE, AnyRoute, RouteScope
from cmp.api.routes import ROUTES, setup_routes
from cmp.config import Settings
from tests.factories import ADMIN, ORIGIN, make_key, make_site, new_site_id, stats_link

ALLOWED = 0  # not a status: "let through", i.e. neither 401 nor 403
BAD_KEY = {"Authorization": "Bearer cmp_live_0000000000000000_notakey"}
FOREIGN = "https://elsewhere.example"
# The 404 that hides another tenant's site (cmp/api/auth.py): never the answer to a
# caller the scope lets through.
TENANCY_404 = "no such resource"


@dataclass(frozen=True)
class Caller:
    name: str
    headers: dict[str, str]
    key_scope: str | None = None  # the scope of a key of the site under test
    origin: str | None = None
    signed: bool = False


def expected(scope: RouteScope, caller: Caller) -> int:
    """What the route's declared scope promises this caller (ALLOWED: let through)."""
    keyed = "Authorization" in caller.headers
    if scope in ("public", "ops"):
        return ALLOWED
    if scope == "preflight":
        return ALLOWED if caller.origin == ORIGIN else 403
    if scope == "signed-link":
        return ALLOWED if caller.signed else 403
    if scope == "origin" and caller.origin is not None:
        return ALLOWED if caller.origin == ORIGIN else 403
    # A key scope, or `origin` without an Origin (server-to-server: an admin key).
    needed = "admin" if scope == "origin" else scope
    if caller.name == "bad key" or not keyed:
        return 401
    if caller.name == "other site's admin":
        return 404
    if caller.name == "root" or caller.key_scope in (needed, "admin"):
        return ALLOWED
    return 403


def callers_for(route: AnyRoute, keys: Mapping[str, dict[str, str]]) -> list[Caller]:
    found = [
        Caller("no key", {}),
        Caller("bad key", BAD_KEY),
        Caller("other site's admin", keys["other"]),
        Caller("root", ADMIN),
        *(Caller(f"{scope} key", keys[scope], key_scope=scope) for scope in KEY_SCOPES),
    ]
    if route.scope in (*KEY_SCOPES, "origin", "preflight"):
        # An allowed Origin never stands in for a key; on collect routes it is the access.
        found += [
            Caller("allowed origin", {"Origin": ORIGIN}, origin=ORIGIN),
            Caller("foreign origin", {"Origin": FOREIGN}, origin=FOREIGN),
        ]
    if route.scope == "signed-link":
        found.append(Caller("signed link", {}, signed=True))
    return found


async def url_of(client: TestClient, route: AnyRoute, site_id: str, caller: Caller) -> str:
    values = {
        "site_id": site_id,
        "subject_id": "s-matrix",
        "version": "1",
        "key_id": "0" * 16,  # well formed, no such key: revoking it changes nothing
        "event_id": str(uuid.uuid4()),
        "user_id": "u-matrix",
    }
    if caller.signed:
        return await stats_link(client, site_id)
    return route.path.format(**values)


async def call(client: TestClient, route: AnyRoute, url: str, caller: Caller) -> tuple[int, Any]:
    r = await client.request(route.method, url, headers=caller.headers)
    body = await r.read()
    problem = await r.json() if r.content_type == "application/problem+json" else None
    return r.status, (problem or {}).get("detail", body[:80])


async def mismatches(
    client: TestClient,
    route: AnyRoute,
    declared: RouteScope,
    site_id: str,
    keys: Mapping[str, dict[str, str]],
) -> list[str]:
    """Every caller for whom the server does not do what `declared` promises."""
    wrong = []
    for caller in callers_for(route, keys):
        status, detail = await call(
            client, route, await url_of(client, route, site_id, caller), caller
        )
        want = expected(declared, caller)
        label = f"{route.method} {route.path} as {caller.name}"
        if want == ALLOWED:
            if status in (401, 403):
                wrong.append(f"{label}: {status} ({detail}), expected to be let through")
            elif declared not in ("public", "ops") and status == 404 and detail == TENANCY_404:
                wrong.append(f"{label}: 404 as for another tenant, expected to be let through")
        elif status != want:
            wrong.append(f"{label}: {status} ({detail}) != {want}")
    return wrong


@pytest.fixture
async def tenancy(client: TestClient) -> dict[str, Any]:
    site_id = await make_site(client)
    keys = {scope: await make_key(client, site_id, scope) for scope in KEY_SCOPES}
    keys["other"] = await make_key(client, await make_site(client), "admin")
    return {"site_id": site_id, "keys": keys}


async def test_every_route_answers_every_caller_as_its_declared_scope_says(
    client: TestClient, tenancy: dict[str, Any]
) -> None:
    wrong = []
    for route in ROUTES:
        wrong += await mismatches(client, route, route.scope, tenancy["site_id"], tenancy["keys"])
    assert wrong == []


async def test_another_tenants_key_cannot_tell_its_site_from_a_missing_one(
    client: TestClient, tenancy: dict[str, Any]
) -> None:
    other = Caller("other site's admin", tenancy["keys"]["other"])
    keyed = [r for r in ROUTES if r.scope in KEY_SCOPES and "{site_id}" in r.path]
    assert keyed, "the table has key-scoped site routes"
    for route in keyed:
        existing = await url_of(client, route, tenancy["site_id"], other)
        missing = await url_of(client, route, new_site_id(), other)
        answers = [await call(client, route, url, other) for url in (existing, missing)]
        assert answers[0] == answers[1] == (404, TENANCY_404), (route.method, route.path)


async def test_the_app_serves_exactly_the_route_table(client: TestClient) -> None:
    table = client.app[ROUTE_TABLE]  # type: ignore[index]
    assert table == ROUTES
    served = {
        (route.method, resource.canonical)
        for resource in client.app.router.resources()  # type: ignore[union-attr]
        for route in resource
        if route.method != "HEAD" and resource.canonical != "/{tail}"
    }
    assert served == {(r.method, r.path) for r in ROUTES}


def test_only_the_route_table_checks_keys() -> None:
    api = Path(cmp.app.__file__).parent / "api"
    importers = set()
    for path in api.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "cmp.api.auth":
                importers.add(path.relative_to(api).as_posix())
    assert importers == {"access.py"}


# --- the matrix catches a server that enforces something else ------------------------


def drifted(route: AnyRoute, scope: RouteScope) -> tuple[AnyRoute, ...]:
    return tuple(replace(r, scope=scope) if r == route else r for r in ROUTES)


@pytest.mark.parametrize(
    ("method", "path", "enforced"),
    [
        ("GET", "/v1/sites/{site_id}/keys", "read"),  # an admin route open to read keys
        ("GET", "/v1/sites/{site_id}/stats", "public"),  # an audit route open to anyone
        ("POST", "/v1/sites/{site_id}/events", "admin"),  # collect closed to browsers
    ],
)
async def test_a_route_enforced_otherwise_than_declared_is_caught(
    aiohttp_client: Any,
    settings: Settings,
    db_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    enforced: RouteScope,
) -> None:
    (route,) = [r for r in ROUTES if (r.method, r.path) == (method, path)]
    assert route.scope != enforced
    # The real server, its table changed for this one route; the matrix still expects
    # what the real table declares.
    monkeypatch.setattr(
        cmp.app, "setup_routes", lambda app: setup_routes(app, drifted(route, enforced))
    )
    client = await aiohttp_client(cmp.app.create_app(settings, db_dsn))
    site_id = await make_site(client)
    keys = {scope: await make_key(client, site_id, scope) for scope in KEY_SCOPES}
    keys["other"] = await make_key(client, await make_site(client), "admin")
    assert await mismatches(client, route, enforced, site_id, keys) == []
    assert await mismatches(client, route, route.scope, site_id, keys) != []
