"""Sites, policy versions and keys as the store writes them: each change is announced to
every process in its own transaction, and version 1 of a policy is material whoever
publishes it (the API, a site file or any future caller)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from cmp.models import PolicyIn, SiteIn
from cmp.store import keys as key_store
from cmp.store import sites as site_store
from cmp.store.coordination import listen_for_changes
from tests.factories import new_site_id, policy_body, site_body


async def test_the_first_version_must_be_material_whoever_publishes(
    db: asyncpg.Connection,
) -> None:
    site_id = new_site_id()
    await site_store.upsert_site(db, site_id, SiteIn.model_validate(site_body()))
    minor = PolicyIn.model_validate(policy_body(material=False))
    with pytest.raises(site_store.FirstVersionNotMaterial):
        await site_store.publish_policy(db, site_id, minor)
    assert await site_store.select_current_policy(db, site_id) is None
    first = await site_store.publish_policy(
        db, site_id, PolicyIn.model_validate(policy_body(material=True))
    )
    second = await site_store.publish_policy(db, site_id, minor)
    assert [(first.version, first.material), (second.version, second.material)] == [
        (1, True),
        (2, False),
    ]
    assert await site_store.select_current_policy(db, site_id) == second


async def test_every_change_is_announced_once_committed(
    db: asyncpg.Connection, db_dsn: str
) -> None:
    site_id = new_site_id()
    body = SiteIn.model_validate(site_body())
    heard: list[str] = []
    arrived = asyncio.Event()

    def hear(payload: str) -> None:
        heard.append(payload)
        arrived.set()

    listener = await listen_for_changes(db_dsn, hear, lambda _conn: None)
    try:
        await site_store.upsert_site(db, site_id, body)
        await site_store.publish_policy(db, site_id, PolicyIn.model_validate(policy_body()))
        key = await key_store.insert_key(db, site_id, "read")
        assert await key_store.revoke_key(db, site_id, key.id)
        assert not await key_store.revoke_key(db, site_id, "0000000000000000")
        with pytest.raises(asyncpg.DivisionByZeroError):
            async with db.transaction():  # rolled back, so never announced
                await site_store.upsert_site(db, site_id, body)
                await db.execute("SELECT 1/0")
        # Announcements arrive in commit order: once the last is in, all before it are.
        last = await key_store.insert_key(db, site_id, "audit")
        assert await key_store.revoke_key(db, site_id, last.id)
        async with asyncio.timeout(30):
            while f"key:{last.id}" not in heard:
                arrived.clear()
                await arrived.wait()
    finally:
        await listener.close()
    mine = {f"site:{site_id}", f"policy:{site_id}", f"key:{key.id}", f"key:{last.id}"}
    assert [h for h in heard if h in mine] == [
        f"site:{site_id}",
        f"policy:{site_id}",
        f"key:{key.id}",
        f"key:{last.id}",
    ]
