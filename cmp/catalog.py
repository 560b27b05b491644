"""In-process cache of the slowly changing catalogue: sites, policy versions, API keys.

Hot paths must not read immutable or rarely changed data per request. Policy versions
never change, so they are cached for good (bounded). Sites, policy versions and keys change
by admin calls: the writing process drops its own entry at once, and every process
drops it on a PostgreSQL NOTIFY (`cmp_invalidate`, which the store sends in the same
transaction as the change: `cmp.store.coordination`), so other workers follow as soon
as the notification arrives.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

import asyncpg

from cmp.background import stop
from cmp.consent import PolicyView
from cmp.models import PolicyVersion
from cmp.store import keys as key_store
from cmp.store import sites as site_store
from cmp.store.coordination import listen_for_changes
from cmp.store.db import DB_ERRORS, DB_ERRORS_OR_TIMEOUT, db_error_text
from cmp.store.keys import KeyAuth
from cmp.store.sites import StoredSite

log = logging.getLogger(__name__)

POLICY_CACHE_MAX = 4096
# Keys that authenticated lately, least recently used dropped first: a key past it costs
# one indexed query when next used; without it, every key ever used stayed in memory.
KEY_CACHE_MAX = 10_000
MISSING_SECONDS = 2.0
MISSING_MAX = 10_000


class Catalog:
    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self._pool = pool
        self._dsn = dsn
        self._closing = False
        self._reconnect: asyncio.Task[None] | None = None
        self._sites: dict[str, StoredSite] = {}
        # (kind, id) -> monotonic time the miss expires: the public endpoints name sites,
        # policy versions and keys, and a made-up one must not cost a query per request.
        self._missing: dict[tuple[str, str], float] = {}
        self._policy_versions: dict[str, tuple[int, int]] = {}
        self._policies: OrderedDict[tuple[str, int], tuple[PolicyVersion, PolicyView]] = (
            OrderedDict()
        )
        self._keys: OrderedDict[str, KeyAuth] = OrderedDict()
        self._key_cache_max = KEY_CACHE_MAX
        self._listener: asyncpg.Connection | None = None
        # Ids of keys that authenticated since the last flush (api_keys.last_used_at).
        self.used_keys: set[str] = set()

    # --- invalidation ------------------------------------------------------

    async def listen(self) -> None:
        """Hold one dedicated connection that LISTENs for invalidations."""
        self._closing = False
        await self._connect_listener()

    async def _connect_listener(self) -> None:
        self._listener = await listen_for_changes(self._dsn, self.invalidate, self._on_lost)

    def _on_lost(self, _conn: object) -> None:
        # Notifications sent while we were gone are lost: forget everything, reconnect.
        self._listener = None
        self.clear()
        if not self._closing:
            self._reconnect = asyncio.create_task(self._reconnect_listener())

    async def _reconnect_listener(self) -> None:
        delay = 0.1
        while not self._closing:
            try:
                await self._connect_listener()
            except DB_ERRORS as exc:
                log.warning("invalidation listener: reconnect failed: %s", db_error_text(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.clear()
            log.info("invalidation listener reconnected")
            return

    async def close(self) -> None:
        self._closing = True
        if self._reconnect is not None:
            await stop(self._reconnect, "invalidation listener reconnect")
        if self._listener is not None:
            conn, self._listener = self._listener, None
            try:
                await conn.close(timeout=2)
            except DB_ERRORS_OR_TIMEOUT:
                conn.terminate()

    def invalidate(self, payload: str) -> None:
        kind, _, ident = payload.partition(":")
        if kind == "site":
            self._sites.pop(ident, None)
            self._missing.pop(("site", ident), None)
            self._policy_versions.pop(ident, None)
        elif kind == "policy":
            self._policy_versions.pop(ident, None)
            self._missing = {k: t for k, t in self._missing.items() if k[0] != "policy"}
        elif kind == "key":
            self._keys.pop(ident, None)
            self._missing.pop(("key", ident), None)
        else:
            self.clear()

    def clear(self) -> None:
        self._sites.clear()
        self._missing.clear()
        self._policy_versions.clear()
        self._keys.clear()

    # --- lookups -------------------------------------------------------------

    def _missed(self, kind: str, ident: str) -> bool:
        """Whether `ident` was looked up in vain moments ago."""
        return self._missing.get((kind, ident), 0.0) > time.monotonic()

    def _miss(self, kind: str, ident: str) -> None:
        if len(self._missing) > MISSING_MAX:
            self._missing.clear()
        self._missing[(kind, ident)] = time.monotonic() + MISSING_SECONDS

    async def site(self, site_id: str) -> StoredSite | None:
        found = self._sites.get(site_id)
        if found is None:
            if self._missed("site", site_id):
                return None
            async with self._pool.acquire() as conn:
                found = await site_store.select_site(conn, site_id)
            if found is not None:
                self._sites[site_id] = found
            else:
                self._miss("site", site_id)
        return found

    async def policy(self, site_id: str, version: int) -> PolicyVersion | None:
        """A policy version (immutable, so cached for good, LRU-bounded)."""
        found = await self._entry(site_id, version)
        return found[0] if found else None

    async def view(self, site_id: str, version: int) -> PolicyView | None:
        """The same version compiled for validation and state."""
        found = await self._entry(site_id, version)
        return found[1] if found else None

    async def _entry(self, site_id: str, version: int) -> tuple[PolicyVersion, PolicyView] | None:
        key = (site_id, version)
        found = self._policies.get(key)
        if found is not None:
            self._policies.move_to_end(key)
            return found
        ident = f"{site_id}:{version}"
        if self._missed("policy", ident):
            return None
        async with self._pool.acquire() as conn:
            policy = await site_store.select_policy(conn, site_id, version)
        if policy is None:
            self._miss("policy", ident)
            return None
        found = (policy, PolicyView.of(policy))
        self._policies[key] = found
        if len(self._policies) > POLICY_CACHE_MAX:
            self._policies.popitem(last=False)
        return found

    async def policy_versions(self, site_id: str) -> tuple[int, int]:
        """(current version, newest material version) of a site."""
        found = self._policy_versions.get(site_id)
        if found is None:
            async with self._pool.acquire() as conn:
                found = await site_store.select_policy_versions(conn, site_id)
            self._policy_versions[site_id] = found
        return found

    async def current_policy(self, site_id: str) -> PolicyVersion | None:
        """The site's current (newest) policy version; None before the first is published.
        The one way to ask: the version and the policy come from one reading of
        `policy_versions`."""
        current, _ = await self.policy_versions(site_id)
        return await self.policy(site_id, current) if current else None

    async def current_view(self, site_id: str) -> tuple[PolicyView | None, int]:
        """The current version compiled, and the newest material version."""
        current, material = await self.policy_versions(site_id)
        view = await self.view(site_id, current) if current else None
        return view, material

    async def key(self, key_id: str) -> KeyAuth | None:
        found = self._keys.get(key_id)
        if found is not None:
            self._keys.move_to_end(key_id)
            return found
        if self._missed("key", key_id):
            return None
        async with self._pool.acquire() as conn:
            found = await key_store.select_key_for_auth(conn, key_id)
        if found is None:
            self._miss("key", key_id)
            return None
        self._keys[key_id] = found
        while len(self._keys) > self._key_cache_max:
            self._keys.popitem(last=False)
        return found

    @property
    def cached_keys(self) -> int:
        """How many keys the cache holds (at most KEY_CACHE_MAX)."""
        return len(self._keys)
