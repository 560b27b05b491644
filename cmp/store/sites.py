"""Sites and their policy versions."""

from __future__ import annotations

import secrets

import asyncpg
from pydantic import Field

from cmp.canonical import content_sha256
from cmp.jurisdiction import stored_rules
from cmp.models import PolicyIn, PolicyVersion, Site, SiteIn
from cmp.store.coordination import notify_change
from cmp.store.sqlfiles import queries
from cmp.values import normal_origin

SITE_SQL = queries("sites")
POLICY_SQL = queries("policies")
# `CHECK (version > 1 OR material)` of policy_versions (0001), named by PostgreSQL.
FIRST_VERSION_CHECK = "policy_versions_check"


class FirstVersionNotMaterial(Exception):
    """The first policy version of a site must be material (it is what everyone is asked)."""

    def __init__(self, site_id: str) -> None:
        super().__init__(f"{site_id}: the first policy version of a site must be material")


class StoredSite(Site):
    """A site as stored: the site with its private subject key and stats-link key, which
    never leave the server (excluded from every dump and repr, so answering with the site
    is safe)."""

    subject_key: bytes = Field(exclude=True, repr=False)
    stats_link_key: bytes = Field(exclude=True, repr=False)
    # The HMAC key of the banner's link tokens (docs/linked-users.md); None: not made yet.
    link_secret: bytes | None = Field(default=None, exclude=True, repr=False)


def _origin(stored: str) -> str:
    """A stored origin in normal form: rows written before origins were normalised hold
    them as given (one that does not parse stays as it is, and matches no browser)."""
    try:
        return normal_origin(stored)
    except ValueError:
        return stored


def _site(record: asyncpg.Record) -> StoredSite:
    # Not validated again: the row was checked by the rules in force when it was written,
    # and a rule made stricter since (origins, retention) must not stop a site loading.
    return StoredSite.model_construct(
        site_id=record["site_id"],
        name=record["name"],
        origins=[_origin(o) for o in record["origins"]],
        languages=list(record["languages"]),
        default_language=record["default_language"],
        consent_validity_days=record["consent_validity_days"],
        retention_days=record["retention_days"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
        controller_name=record["controller_name"],
        controller_contact=record["controller_contact"],
        jurisdiction=record["jurisdiction"],
        withdrawal_url=record["withdrawal_url"],
        jurisdictions=stored_rules(record["jurisdictions"]),
        fallback=record["fallback"],
        share_across_devices=record["share_across_devices"],
        subject_key=bytes(record["subject_key"]),
        stats_link_key=bytes(record["stats_link_key"]),
        link_secret=None if record["link_secret"] is None else bytes(record["link_secret"]),
    )


async def upsert_site(
    conn: asyncpg.Connection, site_id: str, body: SiteIn
) -> tuple[StoredSite, bool]:
    """Create or update the site, and announce it; (the row, whether it was created)."""
    async with conn.transaction():
        record = await conn.fetchrow(
            SITE_SQL["upsert_site"],
            site_id,
            body.name,
            body.origins,
            body.languages,
            body.default_language,
            body.consent_validity_days,
            body.retention_days,
            secrets.token_bytes(32),
            body.controller_name,
            body.controller_contact,
            body.jurisdiction,
            body.withdrawal_url,
            None
            if body.jurisdictions is None
            else [r.model_dump(mode="json") for r in body.jurisdictions],
            body.fallback,
            body.share_across_devices,
        )
        await notify_change(conn, "site", site_id)
    assert record is not None
    return _site(record), bool(record["created"])


async def select_site(conn: asyncpg.Connection, site_id: str) -> StoredSite | None:
    record = await conn.fetchrow(SITE_SQL["select_site"], site_id)
    return _site(record) if record else None


async def select_sites(conn: asyncpg.Connection) -> list[StoredSite]:
    return [_site(r) for r in await conn.fetch(SITE_SQL["select_sites"])]


async def select_stats_link_key(conn: asyncpg.Connection, site_id: str) -> bytes | None:
    """The key the site's statistics links are signed with; None when there is no site."""
    key = await conn.fetchval(SITE_SQL["select_stats_link_key"], site_id)
    return bytes(key) if key is not None else None


async def rotate_stats_link_key(conn: asyncpg.Connection, site_id: str) -> bool:
    """Give the site a new stats-link key, revoking every link signed with the old one,
    and announce it; False when there is no such site."""
    async with conn.transaction():
        found = await conn.fetchval(
            SITE_SQL["update_stats_link_key"], site_id, secrets.token_bytes(32)
        )
        if found is not None:
            await notify_change(conn, "site", site_id)
    return found is not None


def _policy(record: asyncpg.Record) -> PolicyVersion:
    doc = record["document"]
    return PolicyVersion(
        site_id=record["site_id"],
        version=record["version"],
        material=record["material"],
        content_sha256=record["content_sha256"],
        published_at=record["published_at"],
        policy_url=doc["policy_url"],
        purposes=doc["purposes"],
        texts=doc["texts"],
        variants=doc.get("variants"),
        notice_texts=doc.get("notice_texts"),
    )


async def publish_policy(conn: asyncpg.Connection, site_id: str, body: PolicyIn) -> PolicyVersion:
    """Publish `body` as the next version of the site's policy, and announce it.

    FirstVersionNotMaterial when it would be version 1 and is not material: the rule's
    one home is the table's CHECK, which this turns into a domain error.
    """
    document = body.document()
    try:
        async with conn.transaction():
            record = await conn.fetchrow(
                POLICY_SQL["insert_policy"],
                site_id,
                body.material,
                document,
                content_sha256(document),
            )
            await notify_change(conn, "policy", site_id)
    except asyncpg.CheckViolationError as exc:
        if exc.constraint_name == FIRST_VERSION_CHECK:
            raise FirstVersionNotMaterial(site_id) from None
        raise
    assert record is not None
    return _policy(record)


async def select_current_policy(conn: asyncpg.Connection, site_id: str) -> PolicyVersion | None:
    """The newest version, read in `conn`'s transaction (the catalogue caches it for
    everyone else: `Catalog.current_policy`)."""
    record = await conn.fetchrow(POLICY_SQL["select_current_policy"], site_id)
    return _policy(record) if record else None


async def select_policy(
    conn: asyncpg.Connection, site_id: str, version: int
) -> PolicyVersion | None:
    record = await conn.fetchrow(POLICY_SQL["select_policy"], site_id, version)
    return _policy(record) if record else None


async def select_policies(
    conn: asyncpg.Connection, site_id: str, *, after: int = 0, limit: int | None = None
) -> list[PolicyVersion]:
    """The site's versions after `after`, oldest first, at most `limit` (None: all)."""
    records = await conn.fetch(POLICY_SQL["select_policies"], site_id, after, limit)
    return [_policy(r) for r in records]


async def select_policy_versions(conn: asyncpg.Connection, site_id: str) -> tuple[int, int]:
    """(current version, newest material version); (0, 0) when none is published."""
    record = await conn.fetchrow(POLICY_SQL["select_policy_versions"], site_id)
    assert record is not None
    return record["current_version"], record["material_version"]


async def rotate_link_secret(conn: asyncpg.Connection, site_id: str) -> str | None:
    """Give the site a new link secret (docs/linked-users.md), revoking every token signed
    with the old one, and announce it; the secret's text, or None for no such site."""
    secret = secrets.token_urlsafe(32)
    async with conn.transaction():
        found = await conn.fetchval(SITE_SQL["update_link_secret"], site_id, secret.encode())
        if found is not None:
            await notify_change(conn, "site", site_id)
    return secret if found is not None else None
