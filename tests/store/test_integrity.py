"""What the database itself guarantees: immutable policies, append-only log, no secrets."""

from __future__ import annotations

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from cmp.canonical import content_sha256
from cmp.models import PolicyIn
from tests.factories import ADMIN_KEY, ORIGIN, event, make_key, make_site, policy_body


async def test_policy_versions_cannot_be_changed_or_deleted_by_sql(
    client: TestClient, db: asyncpg.Connection
) -> None:
    site_id = await make_site(client)
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await db.execute("UPDATE policy_versions SET material = false WHERE site_id = $1", site_id)
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await db.execute("DELETE FROM policy_versions WHERE site_id = $1", site_id)
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await db.execute("TRUNCATE policy_versions CASCADE")


async def test_consent_log_rows_cannot_be_edited_or_deleted(
    client: TestClient, db: asyncpg.Connection
) -> None:
    site_id = await make_site(client)
    r = await client.post(f"/v1/sites/{site_id}/events", json=event(), headers={"Origin": ORIGIN})
    assert r.status == 201
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await db.execute(
            "UPDATE consent_events SET action = 'reject_all' WHERE site_id = $1", site_id
        )
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await db.execute("DELETE FROM consent_events WHERE site_id = $1", site_id)


def test_content_hash_is_stable_across_key_order() -> None:
    body = policy_body()
    reordered = {k: body[k] for k in reversed(list(body))}
    reordered["purposes"] = [{k: p[k] for k in reversed(list(p))} for p in body["purposes"]]
    a = PolicyIn.model_validate(body).document()
    b = PolicyIn.model_validate(reordered).document()
    assert content_sha256(a) == content_sha256(b)
    # Pinned: the canonical form must not drift between releases (audit records cite it).
    # sha256(b'{"a":null,"b":[1,"ø"]}'), UTF-8, no escapes:
    assert content_sha256({"b": [1, "ø"], "a": None}) == (
        "fc90ed136828f4490bdb3dae978284fec09dc370fd3b39bcda7ddb0a2231721a"
    )


async def test_no_secret_or_raw_ip_is_stored(client: TestClient, db: asyncpg.Connection) -> None:
    site_id = await make_site(client)
    read = await make_key(client, site_id, "read")
    key = read["Authorization"].split()[1]
    r = await client.post(f"/v1/sites/{site_id}/events", json=event(), headers={"Origin": ORIGIN})
    assert r.status == 201
    rows = await db.fetch("SELECT * FROM api_keys WHERE site_id = $1 OR site_id IS NULL", site_id)
    for table in ("consent_events", "consent_state", "sites"):
        rows += await db.fetch(f"SELECT * FROM {table} WHERE site_id = $1", site_id)
    dump = "\n".join(str(tuple(row)) for row in rows)
    secret = key.split("_", 3)[3]  # cmp_live_<id>_<secret>; the secret may hold "_" itself
    assert key not in dump and secret not in dump
    assert ADMIN_KEY not in dump
    assert "127.0.0.1" not in dump  # the test client's address is stored as 127.0.0.0/24
    prefix = await db.fetchval("SELECT ip_prefix FROM consent_events WHERE site_id = $1", site_id)
    assert prefix == "127.0.0.0/24"
