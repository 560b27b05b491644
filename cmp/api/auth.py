"""Bearer-key authentication and tenancy (docs/api.md).

401 without a key or with a bad/revoked one; 404 (not 403) for a key of another site,
so nothing leaks about other tenants; 403 for the right site but the wrong scope.
Which routes need which scope is declared in the route table (cmp/api/routes.py).
"""

from __future__ import annotations

import hmac

from aiohttp import web

from cmp.api.problems import Problem
from cmp.appkeys import CATALOG
from cmp.models import Scope
from cmp.store.keys import KeyAuth, hash_secret, key_id_of
from cmp.values import API_KEY_ID_RE


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def authenticate(request: web.Request) -> KeyAuth | None:
    """The key presented, verified; None when no Authorization header was sent."""
    token = bearer(request)
    if token is None:
        if "Authorization" in request.headers:
            raise Problem(
                401,
                "Authorization must be 'Bearer <key>'",
                code="unauthorized",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None
    key_id = key_id_of(token)
    # Only printable ASCII can be a key; anything else never reaches the database.
    well_formed = token.isascii() and token.isprintable() and API_KEY_ID_RE.fullmatch(key_id)
    found = await request.app[CATALOG].key(key_id) if well_formed else None
    if (
        found is None
        or found.revoked_at is not None
        or not hmac.compare_digest(found.secret_hash, hash_secret(token))
    ):
        raise Problem(
            401,
            "the API key is not valid",
            code="unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.app[CATALOG].used_keys.add(found.id)
    return found


async def authorize(request: web.Request, scope: Scope, site_id: str | None) -> KeyAuth:
    """A valid key of `scope` (admin implies every scope) for `site_id` (None: root only).

    Called by the route table's checks (cmp/api/access.py), never by a handler."""
    key = await authenticate(request)
    if key is None:
        raise Problem(
            401,
            "an API key is required",
            code="unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if key.site_id is not None and key.site_id != site_id:
        raise Problem(404, "no such resource", code="not-found")
    if key.scope != scope and key.scope != "admin":
        raise Problem(403, f"this key lacks the '{scope}' scope", code="forbidden")
    return key
