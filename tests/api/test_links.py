"""Linked users, the link itself (docs/linked-users.md): `link` and `unlink` records are
appended to the chain (never a rewrite), the user only as a commitment to its keyed
digest; retries, relinks and unlinks; the records verify in the export, through
`cmpd verify` and in a receipt; statistics do not count them; erasure empties them."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from cmp.audit.chain import commit, subject_digest
from cmp.audit.receipt import verify_receipt
from cmp.audit.signing import parse_public_key
from cmp.audit.verify import verify_export
from cmp.users import user_digest
from tests.api.test_receipts import settle
from tests.factories import ADMIN, ORIGIN, event, make_key, make_site


async def link(
    client: TestClient,
    site_id: str,
    subject_id: str,
    user_id: str,
    key: dict[str, str],
    event_id: str | None = None,
) -> Any:
    body = {"user_id": user_id, "event_id": event_id or str(uuid.uuid4())}
    return await client.post(
        f"/v1/sites/{site_id}/subjects/{subject_id}/link", json=body, headers=key
    )


async def export(client: TestClient, site_id: str) -> list[str]:
    audit = await make_key(client, site_id, "audit")
    r = await client.get(f"/v1/sites/{site_id}/events", headers=audit)
    assert r.status == 200
    return [line for line in (await r.text()).splitlines() if line]


async def subject_key(db: asyncpg.Connection, site_id: str) -> bytes:
    return bytes(await db.fetchval("SELECT subject_key FROM sites WHERE site_id = $1", site_id))


async def test_link_appends_a_record_committing_to_the_users_digest(
    client: TestClient, db: asyncpg.Connection, tmp_path: Path
) -> None:
    site_id = await make_site(client)
    identify = await make_key(client, site_id, "identify")
    r = await client.post(
        f"/v1/sites/{site_id}/events", json=event("laptop"), headers={"Origin": ORIGIN}
    )
    assert r.status == 201
    r = await link(client, site_id, "laptop", " customer-123 ", identify)
    assert r.status == 201, await r.text()
    assert await r.json() == {
        "site_id": site_id,
        "subject_id": "laptop",
        "linked": True,
        "appended": True,
        "seq": 2,
    }
    lines = await export(client, site_id)
    assert verify_export(lines).ok, verify_export(lines).summary()
    row = json.loads(lines[-1])
    key = await subject_key(db, site_id)
    digest = user_digest(key, "customer-123")  # normalised: surrounding space goes
    assert row["action"] == "link" and row["v"] == 2 and row["seq"] == 2
    assert row["user_digest"] == digest
    assert row["user_digest_sha256"] == commit(bytes.fromhex(row["user_digest_salt"]), digest)
    assert row["subject_digest"] == subject_digest(key, "laptop")
    assert row["subject_id"] == "laptop"
    assert row["purposes"] is None and row["policy_version"] is None
    assert "customer-123" not in "\n".join(lines)  # only the digest, never the id
    # The earlier record is as it was: appended, not rewritten.
    assert json.loads(lines[0])["user_digest_sha256"] is None
    (tmp_path / "log.jsonl").write_text("\n".join(lines) + "\n")
    from cmp.cli import main

    assert main(["verify", str(tmp_path / "log.jsonl")]) == 0

    # A receipt of the link record verifies, the user's digest disclosed.
    await settle(client, db, site_id)
    r = await client.get(
        f"/v1/sites/{site_id}/receipts/{row['event_id']}", params={"subject_id": "laptop"}
    )
    assert r.status == 200, await r.text()
    receipt = await r.json()
    assert receipt["disclosures"]["user_digest"]["value"] == digest
    key_doc = await (await client.get("/v1/log/public-key", params={"site_id": site_id})).json()
    verify_receipt(receipt, parse_public_key(json.dumps(key_doc)))


async def test_relink_unlink_and_retries_append_only_what_changes(
    client: TestClient, db: asyncpg.Connection
) -> None:
    site_id = await make_site(client)
    identify = await make_key(client, site_id, "identify")
    first = str(uuid.uuid4())
    assert (await link(client, site_id, "phone", "u1", identify, first)).status == 201
    # A retry is a duplicate; the same event id for another user is a conflict.
    r = await link(client, site_id, "phone", "u1", identify, first)
    assert r.status == 200 and (await r.json())["appended"] is False
    assert (await link(client, site_id, "phone", "u2", identify, first)).status == 409
    # Linking again to the user it is linked to appends nothing.
    r = await link(client, site_id, "phone", "u1", identify)
    assert r.status == 200 and await r.json() == {
        "site_id": site_id,
        "subject_id": "phone",
        "linked": True,
        "appended": False,
        "seq": 1,
    }
    assert (await link(client, site_id, "phone", "u2", identify)).status == 201  # relink
    path = f"/v1/sites/{site_id}/subjects/phone/link"
    r = await client.delete(path, headers=identify)
    assert r.status == 201 and (await r.json())["linked"] is False
    assert (await client.delete(path, headers=identify)).status == 404
    rows = [json.loads(line) for line in await export(client, site_id)]
    key = await subject_key(db, site_id)
    assert [(r["action"], r["user_digest"]) for r in rows] == [
        ("link", user_digest(key, "u1")),
        ("link", user_digest(key, "u2")),
        ("unlink", user_digest(key, "u2")),  # the unlink names whom it unlinked from
    ]
    assert verify_export([json.dumps(r) for r in rows]).ok
    assert await db.fetchval("SELECT count(*) FROM subject_links WHERE site_id = $1", site_id) == 0


async def test_link_records_are_not_consent_in_the_statistics(client: TestClient) -> None:
    site_id = await make_site(client)
    identify = await make_key(client, site_id, "identify")
    r = await client.post(
        f"/v1/sites/{site_id}/events", json=event("s"), headers={"Origin": ORIGIN}
    )
    assert r.status == 201
    assert (await link(client, site_id, "s", "u", identify)).status == 201
    assert (
        await client.delete(f"/v1/sites/{site_id}/subjects/s/link", headers=identify)
    ).status == 201
    audit = await make_key(client, site_id, "audit")
    r = await client.get(f"/v1/sites/{site_id}/stats", headers=audit)
    assert r.status == 200, await r.text()
    assert (await r.json())["totals"]["events"] == 1


async def test_bad_link_bodies_are_422_and_link_nothing(
    client: TestClient, db: asyncpg.Connection
) -> None:
    site_id = await make_site(client)
    identify = await make_key(client, site_id, "identify")
    path = f"/v1/sites/{site_id}/subjects/s/link"
    for body in (
        {"user_id": "", "event_id": str(uuid.uuid4())},
        {"user_id": "   ", "event_id": str(uuid.uuid4())},
        {"user_id": "a\u0000b", "event_id": str(uuid.uuid4())},
        {"user_id": "x" * 257, "event_id": str(uuid.uuid4())},
        {"user_id": "u", "event_id": "not-a-uuid"},
        {"user_id": "u"},
        {"user_id": 5, "event_id": str(uuid.uuid4())},
    ):
        r = await client.post(path, json=body, headers=identify)
        assert r.status == 422, (body, await r.text())
    assert await db.fetchval("SELECT seq FROM log_heads WHERE site_id = $1", site_id) == 0


async def test_erasing_a_linked_subject_empties_its_link_records(
    client: TestClient, db: asyncpg.Connection
) -> None:
    site_id = await make_site(client)
    identify = await make_key(client, site_id, "identify")
    assert (await link(client, site_id, "gone", "user-gone", identify)).status == 201
    r = await client.delete(f"/v1/sites/{site_id}/subjects/gone", headers=ADMIN)
    assert r.status == 200, await r.text()
    rows = [json.loads(line) for line in await export(client, site_id)]
    assert rows[0]["action"] == "link" and rows[0]["user_digest"] is None
    assert rows[0]["user_digest_salt"] is None and rows[0]["subject_id"] is None
    assert len(rows[0]["user_digest_sha256"]) == 64
    assert verify_export([json.dumps(r) for r in rows]).ok
    assert await db.fetchval("SELECT count(*) FROM subject_links WHERE site_id = $1", site_id) == 0


async def test_csv_and_iso27560_exports_carry_link_records(
    client: TestClient, db: asyncpg.Connection
) -> None:
    site_id = await make_site(client)
    identify = await make_key(client, site_id, "identify")
    audit = await make_key(client, site_id, "audit")
    r = await client.post(
        f"/v1/sites/{site_id}/events", json=event("s"), headers={"Origin": ORIGIN}
    )
    assert r.status == 201
    assert (await link(client, site_id, "s", "u", identify)).status == 201
    r = await client.get(f"/v1/sites/{site_id}/events?format=csv", headers=audit)
    assert r.status == 200, await r.text()
    rows = list(csv.DictReader(io.StringIO(await r.text(), newline="")))
    digest = user_digest(await subject_key(db, site_id), "u")
    assert [(row["action"], row["user_digest"]) for row in rows] == [
        ("accept_all", ""),
        ("link", digest),
    ]
    assert len(rows[1]["user_digest_sha256"]) == 64 and len(rows[1]["user_digest_salt"]) == 32
    r = await client.get(f"/v1/sites/{site_id}/events?format=iso27560", headers=audit)
    assert r.status == 200, await r.text()
    docs = [json.loads(line) for line in (await r.text()).splitlines() if line]
    assert [d["cmp:event"]["cmp:action"] for d in docs] == ["accept_all", "link"]
    assert "dpv:hasConsentStatus" not in docs[1]  # a link changes no consent


async def test_cmpd_key_create_makes_an_identify_key(client: TestClient, db_dsn: str) -> None:
    site_id = await make_site(client)
    env = {**os.environ, "CMP_DATABASE_URL": db_dsn, "CMP_LOG_LEVEL": "WARNING"}
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "cmp", "key", "create", "--site", site_id, "--scope", "identify"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await run.communicate()
    assert run.returncode == 0
    key = {"Authorization": f"Bearer {out.decode().strip()}"}
    assert (await link(client, site_id, "s", "u", key)).status == 201
