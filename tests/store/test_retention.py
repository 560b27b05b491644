"""Retention and erasure leave nothing behind that has lost its proof, and a site's
chain head is never silently missing (issue 10, G and H)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from cmp.appkeys import SIGNER
from cmp.audit.verify import verify_export
from cmp.maintenance import purge
from cmp.sitefile import SiteFileError, load
from tests.factories import (
    ADMIN,
    age_records,
    make_key,
    make_site,
    new_site_id,
    retain_one_day,
    site_body,
)
from tests.store.chainrows import append, insert_site, new_event


async def consent(client: TestClient, site_id: str, key: dict[str, str], subject: str) -> str:
    r = await client.get(f"/v1/sites/{site_id}/subjects/{subject}/consent", headers=key)
    assert r.status == 200, await r.text()
    status: str = (await r.json())["status"]
    return status


async def export_lines(client: TestClient, site_id: str, key: dict[str, str]) -> list[str]:
    r = await client.get(f"/v1/sites/{site_id}/events", headers=key)
    assert r.status == 200, await r.text()
    return [line for line in (await r.text()).splitlines() if line]


async def test_purge_removes_the_states_whose_proof_it_removed(
    client: TestClient, db: asyncpg.Connection
) -> None:
    site_id = await make_site(client)
    read = await make_key(client, site_id, "read")
    audit = await make_key(client, site_id, "audit")
    # A site stored before the rule (retention shorter than consent validity).
    await db.execute("UPDATE sites SET retention_days = 30 WHERE site_id = $1", site_id)
    now = datetime.now(UTC)
    old = now - timedelta(days=60)
    outcomes = await append(
        db,
        [
            new_event(site_id, old, "gone"),
            new_event(site_id, old, "renewed"),
            new_event(site_id, now - timedelta(days=1), "renewed", action="reject_all"),
            new_event(site_id, now - timedelta(days=1), "recent"),
        ],
    )
    assert outcomes == ["new"] * 4
    assert await consent(client, site_id, read, "gone") == "valid"

    done = [p for p in await purge(db, client.app[SIGNER]) if p.site_id == site_id]

    assert await consent(client, site_id, read, "gone") == "none"
    assert [(p.through_seq, p.deleted, p.states) for p in done] == [(2, 2, 1)]
    assert await consent(client, site_id, read, "renewed") == "valid"
    assert await consent(client, site_id, read, "recent") == "valid"
    left = await db.fetch(
        "SELECT subject_id, seq FROM consent_state WHERE site_id = $1 ORDER BY seq", site_id
    )
    assert [(r["subject_id"], r["seq"]) for r in left] == [("renewed", 3), ("recent", 4)]
    lines = await export_lines(client, site_id, audit)
    assert len(lines) == 2
    result = verify_export(lines)
    assert result.ok, result.summary()


async def test_retention_shorter_than_consent_validity_is_refused(client: TestClient) -> None:
    site_id = new_site_id()
    body = site_body(consent_validity_days=365, retention_days=364)
    r = await client.put(f"/v1/sites/{site_id}", json=body, headers=ADMIN)
    assert r.status == 422, await r.text()
    problem = await r.json()
    assert [e["pointer"] for e in problem["errors"]] == ["/retention_days"]
    r = await client.get(f"/v1/sites/{site_id}", headers=ADMIN)
    assert r.status == 404
    r = await client.put(
        f"/v1/sites/{site_id}", json={**body, "retention_days": 365}, headers=ADMIN
    )
    assert r.status == 201, await r.text()


def test_a_site_file_with_retention_shorter_than_validity_is_refused(tmp_path: Any) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        'site_id = "short-keep"\n[site]\nname = "x"\nlanguages = ["nb"]\n'
        'default_language = "nb"\nconsent_validity_days = 365\nretention_days = 90\n'
    )
    with pytest.raises(SiteFileError, match="retention_days"):
        load(path)


async def test_a_stored_site_that_breaks_the_rule_still_loads(
    client: TestClient, db: asyncpg.Connection
) -> None:
    site_id = await make_site(client, policy=False)
    await db.execute("UPDATE sites SET retention_days = 30 WHERE site_id = $1", site_id)
    from cmp.store.sites import select_site

    row = await select_site(db, site_id)
    assert row is not None and row.retention_days == 30


async def test_append_for_a_site_without_a_chain_head_fails_and_stores_nothing(
    db: asyncpg.Connection,
) -> None:
    headless, fine = new_site_id(), new_site_id()
    await insert_site(db, headless, head=False)
    await insert_site(db, fine)
    now = datetime.now(UTC)
    with pytest.raises(asyncpg.PostgresError) as raised:
        await append(db, [new_event(fine, now), new_event(headless, now)])
    # An internal fault, not a data error (classes 22/23 are retried request by request).
    assert raised.value.sqlstate == "XX000"
    assert "log_heads" in str(raised.value)
    stored = await db.fetchval(
        "SELECT count(*) FROM consent_events WHERE site_id = any($1)", [headless, fine]
    )
    assert stored == 0
    assert await append(db, [new_event(fine, now)]) == ["new"]


async def test_purge_removes_the_user_links_whose_record_it_removed(
    client: TestClient, db: asyncpg.Connection
) -> None:
    """A subject's link to a user (docs/linked-users.md) goes with its link record."""
    site_id = await make_site(client)
    identify = await make_key(client, site_id, "identify")
    read = await make_key(client, site_id, "read")
    for subject in ("old-device", "new-device"):
        body = {"user_id": "u", "event_id": str(uuid.uuid4())}
        r = await client.post(
            f"/v1/sites/{site_id}/subjects/{subject}/link", json=body, headers=identify
        )
        assert r.status == 201, await r.text()
    await age_records(db, site_id, through_seq=1)
    await retain_one_day(client, site_id)
    done = [p for p in await purge(db, client.app[SIGNER]) if p.site_id == site_id]
    assert [p.through_seq for p in done] == [1]
    r = await client.get(f"/v1/sites/{site_id}/users/u/consent", headers=read)
    assert (await r.json())["subjects"] == ["new-device"]
