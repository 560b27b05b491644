"""API keys: issue, look up for authentication, list, revoke. Only hashes are stored."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from cmp.models import ApiKey, CreatedKey, Scope
from cmp.store.coordination import notify_change
from cmp.store.sqlfiles import queries

SQL = queries("keys")
PREFIX = "cmp_live_"
ROOT_ID = "root"
# Active (unrevoked) keys one site may hold (README, API overview): a key per client
# and per person is far below it, and the catalogue's key cache stays small.
MAX_ACTIVE_KEYS = 100


class KeyLimitReached(Exception):
    """The site holds MAX_ACTIVE_KEYS active keys already: revoke one first."""

    def __init__(self, site_id: str) -> None:
        super().__init__(
            f"site {site_id} holds {MAX_ACTIVE_KEYS} active keys, the most a site may hold;"
            " revoke one first"
        )


def hash_secret(key: str) -> bytes:
    """SHA-256 of the whole key: the secret part has 256 random bits, so no slow KDF."""
    return hashlib.sha256(key.encode("utf-8")).digest()


def key_id_of(key: str) -> str:
    """The id part of `cmp_live_<id>_<secret>`; any other form is the root key from env."""
    if key.startswith(PREFIX):
        rest = key[len(PREFIX) :]
        key_id, sep, _ = rest.partition("_")
        if sep and key_id:
            return key_id
    return ROOT_ID


def new_key() -> tuple[str, str]:
    """(id, full key): 64-bit id, 256-bit secret."""
    key_id = secrets.token_hex(8)
    return key_id, f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True, slots=True)
class KeyAuth:
    id: str
    site_id: str | None
    scope: Scope
    secret_hash: bytes
    revoked_at: datetime | None


def _key(record: asyncpg.Record) -> ApiKey:
    return ApiKey(
        id=record["id"],
        site_id=record["site_id"],
        scope=record["scope"],
        created_at=record["created_at"],
        revoked_at=record["revoked_at"],
        last_used_at=record["last_used_at"],
    )


async def insert_key(conn: asyncpg.Connection, site_id: str, scope: Scope) -> CreatedKey:
    """A new key of the site; KeyLimitReached when it holds MAX_ACTIVE_KEYS already."""
    key_id, key = new_key()
    async with conn.transaction():
        await conn.execute(SQL["lock_site_keys"], site_id)
        record = await conn.fetchrow(
            SQL["insert_key"], key_id, site_id, scope, hash_secret(key), MAX_ACTIVE_KEYS
        )
    if record is None:
        raise KeyLimitReached(site_id)
    return CreatedKey(**_key(record).model_dump(), key=key)


async def ensure_root_key(conn: asyncpg.Connection, configured: str | None) -> str | None:
    """Install the root admin key. Returns a newly generated key (to print once) or None."""
    if configured is not None:
        # The configured key replaces any earlier root key (e.g. a generated one).
        key_id = key_id_of(configured)
        async with conn.transaction():
            await conn.execute(SQL["revoke_other_root_keys"], key_id)
            await conn.execute(SQL["upsert_root_key"], key_id, hash_secret(configured))
        return None
    if await conn.fetchval(SQL["select_root_key_exists"]):
        return None
    key = f"{PREFIX}{ROOT_ID}_{secrets.token_urlsafe(32)}"
    await conn.execute(SQL["insert_root_key"], ROOT_ID, hash_secret(key))
    return key


async def select_key_for_auth(conn: asyncpg.Connection, key_id: str) -> KeyAuth | None:
    record = await conn.fetchrow(SQL["select_key_for_auth"], key_id)
    if record is None:
        return None
    return KeyAuth(
        id=record["id"],
        site_id=record["site_id"],
        scope=record["scope"],
        secret_hash=bytes(record["secret_hash"]),
        revoked_at=record["revoked_at"],
    )


async def select_keys(
    conn: asyncpg.Connection, site_id: str, *, after: str | None = None, limit: int | None = None
) -> list[ApiKey]:
    """The site's keys after the key `after`, oldest first, at most `limit` (None: all)."""
    return [_key(r) for r in await conn.fetch(SQL["select_keys"], site_id, after, limit)]


async def revoke_key(conn: asyncpg.Connection, site_id: str, key_id: str) -> bool:
    """Revoke a key of the site and announce it; False when there is no such key."""
    async with conn.transaction():
        revoked = await conn.fetchval(SQL["revoke_key"], site_id, key_id) is not None
        if revoked:
            await notify_change(conn, "key", key_id)
    return revoked


async def touch_keys(conn: asyncpg.Connection, key_ids: list[str]) -> None:
    await conn.execute(SQL["touch_keys"], key_ids)
