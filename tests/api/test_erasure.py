"""Erasure with record version 2: the person leaves the log, the proof stays.

A subject's events carry unique markers in every personal value (subject id, user
agent, IP prefix, page URL); after `DELETE …/subjects/S` no table or column of the whole
database holds any of them or the subject's digest (ids table, tiles, stats rollup
included), while the export and the receipts of other subjects still verify, through
`cmpd verify`, `cmpd verify-receipt` and Go's tlog code.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from cmp.app import create_app
from cmp.audit.chain import subject_digest
from cmp.audit.receipt import verify_receipt
from cmp.audit.signing import parse_public_key
from cmp.audit.verify import verify_export
from cmp.canonical import canonical_json
from cmp.config import Settings
from cmp.store.stats import roll_up
from cmp.users import user_digest
from tests.api.test_go_verifier import check
from tests.api.test_receipts import settle
from tests.factories import ADMIN, ORIGIN, event, make_key, make_site


@pytest.fixture
async def proxied(aiohttp_client: Any, settings: Settings, db_dsn: str) -> TestClient:
    """The app behind a trusted proxy on loopback, so each test picks the client address."""
    trusting = settings.model_copy(update={"trusted_proxies": ["127.0.0.0/8", "::1/128"]})
    return await aiohttp_client(create_app(trusting, db_dsn))  # type: ignore[no-any-return]


def marked(tag: str) -> dict[str, Any]:
    """A subject whose every personal value carries `tag`, and the values to look for."""
    octet = secrets.randbelow(200) + 20
    return {
        "subject_id": f"subject-{tag}",
        "user_agent": f"Agent/{tag}",
        "ip": f"198.{octet}.{secrets.randbelow(250)}.9",
        "page_url": f"https://shop.example/page-{tag}",
    }


async def send(client: TestClient, site_id: str, who: dict[str, Any], **fields: Any) -> str:
    body = event(who["subject_id"], page_url=who["page_url"], **fields)
    headers = {"Origin": ORIGIN, "User-Agent": who["user_agent"], "X-Forwarded-For": who["ip"]}
    r = await client.post(f"/v1/sites/{site_id}/events", json=body, headers=headers)
    assert r.status == 201, await r.text()
    return str(body["event_id"])


async def scan(db: asyncpg.Connection, needles: list[str]) -> list[str]:
    """Every (table, needle) of the whole database where a row's text holds the needle:
    every table of the schema, partitions included, every column (bytea as hex)."""
    tables = await db.fetch(
        "SELECT c.oid::regclass::text AS name FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'm')"
    )
    found = []
    for table in tables:
        for needle in needles:
            hit = await db.fetchval(
                f"SELECT count(*) FROM {table['name']} t"
                " WHERE strpos(lower(t::text), lower($1)) > 0",
                needle,
            )
            if hit:
                found.append(f"{table['name']}: {needle}")
    return found


async def test_erasure_leaves_no_personal_value_anywhere_and_every_proof_verifies(
    proxied: TestClient, db: asyncpg.Connection, tmp_path: Path, tlogcheck: Path
) -> None:
    client = proxied
    site_id = await make_site(client)
    audit = await make_key(client, site_id, "audit")
    read = await make_key(client, site_id, "read")
    tag = secrets.token_hex(6)
    gone, kept = marked(f"gone-{tag}"), marked(f"kept-{tag}")
    gone_events = [
        await send(client, site_id, gone),
        await send(client, site_id, gone, action="reject_all"),
    ]
    kept_events = [await send(client, site_id, kept), await send(client, site_id, kept)]
    # Today rolled up into the stats as if closed, and everything in the signed tree.
    await roll_up(db, closed_before=datetime.now(UTC) + timedelta(days=2))
    assert await db.fetchval("SELECT count(*) FROM stats_days WHERE site_id = $1", site_id)
    await send(client, site_id, gone, action="withdraw")
    await settle(client, db, site_id)
    receipt_path = f"/v1/sites/{site_id}/receipts/{gone_events[0]}"
    assert (await client.get(receipt_path, params={"subject_id": gone["subject_id"]})).status == 200
    digest = subject_digest(
        await db.fetchval("SELECT subject_key FROM sites WHERE site_id = $1", site_id),
        gone["subject_id"],
    )
    needles = [
        gone["subject_id"],
        gone["user_agent"],
        gone["page_url"],
        gone["ip"].rsplit(".", 1)[0] + ".0/24",
        digest,
    ]
    before = {hit.split(": ", 1)[1] for hit in await scan(db, needles)}
    assert before == set(needles)  # the scan finds what is there

    r = await client.delete(f"/v1/sites/{site_id}/subjects/{gone['subject_id']}", headers=ADMIN)
    assert r.status == 200, await r.text()
    assert (await r.json())["erased_events"] == 3
    assert digest not in await r.text()

    assert await scan(db, needles) == []
    # The other subject keeps everything, and the scan would have seen it.
    hits = await scan(db, [kept["user_agent"], kept["page_url"]])
    assert {hit.split(": ", 1)[1] for hit in hits} == {kept["user_agent"], kept["page_url"]}

    # The subject's receipts are gone; its history is the erasure alone; no state.
    r = await client.get(receipt_path, params={"subject_id": gone["subject_id"]})
    assert r.status == 404
    r = await client.get(f"/v1/sites/{site_id}/subjects/{gone['subject_id']}/events", headers=audit)
    history = (await r.json())["events"]
    assert [e["action"] for e in history] == ["erased"]
    assert history[0]["subject_digest"] is None and history[0]["subject_digest_salt"] is None
    r = await client.get(f"/v1/sites/{site_id}/subjects/{gone['subject_id']}/consent", headers=read)
    assert (await r.json())["status"] == "none"

    # The proof stays: the export verifies, the erased records still say what was chosen.
    r = await client.get(f"/v1/sites/{site_id}/events", headers=audit)
    lines = [line for line in (await r.text()).splitlines() if line]
    assert verify_export(lines).ok, verify_export(lines).summary()
    rows = [json.loads(line) for line in lines]
    erased_rows = [row for row in rows if row["event_id"] in gone_events]
    assert [row["action"] for row in erased_rows] == ["accept_all", "reject_all"]
    for row in erased_rows:
        assert row["subject_id"] is None
        for name in ("subject_digest", "page_url", "ip_prefix", "user_agent"):
            assert row[name] is None and row[f"{name}_salt"] is None
            assert len(row[f"{name}_sha256"]) == 64  # the commitment stays in the chain
    export_file = tmp_path / "log.jsonl"
    export_file.write_text("\n".join(lines) + "\n")
    from cmp.cli import main

    assert main(["verify", str(export_file)]) == 0

    # Other subjects' receipts verify, disclosures included: here, through
    # `cmpd verify-receipt`, and through Go's tlog code.
    await settle(client, db, site_id)
    key_doc = await (await client.get("/v1/log/public-key", params={"site_id": site_id})).json()
    key = parse_public_key(json.dumps(key_doc))
    (tmp_path / "key.json").write_text(json.dumps(key_doc))
    go_receipts = []
    for event_id in kept_events:
        r = await client.get(
            f"/v1/sites/{site_id}/receipts/{event_id}", params={"subject_id": kept["subject_id"]}
        )
        receipt = await r.json()
        assert receipt["disclosures"]["user_agent"]["value"] == kept["user_agent"]
        verify_receipt(receipt, key)
        (tmp_path / "receipt.json").write_text(json.dumps(receipt))
        argv = ["verify-receipt", str(tmp_path / "receipt.json")]
        assert main([*argv, "--public-key", str(tmp_path / "key.json")]) == 0
        go_receipts.append(
            {
                "record": base64.b64encode(canonical_json(receipt["record"])).decode(),
                "leaf_index": receipt["leaf_index"],
                "checkpoint": receipt["checkpoint"],
                "inclusion_proof": receipt["inclusion_proof"],
                "disclosures": receipt["disclosures"],
            }
        )
    doc = {"verifier_key": key_doc["note_verifier_key"], "receipts": go_receipts, "consistency": []}
    done = check(tlogcheck, tmp_path, doc)
    assert done.returncode == 0, done.stderr
    assert "2 inclusion proofs, 0 consistency proofs, 8 disclosures verified" in done.stdout


async def test_erasing_a_subject_never_seen_is_404_and_appends_nothing(
    client: TestClient, db: asyncpg.Connection
) -> None:
    site_id = await make_site(client)
    r = await client.post(
        f"/v1/sites/{site_id}/events", json=event("seen"), headers={"Origin": ORIGIN}
    )
    assert r.status == 201
    head = await db.fetchval("SELECT seq FROM log_heads WHERE site_id = $1", site_id)
    r = await client.delete(f"/v1/sites/{site_id}/subjects/never-seen", headers=ADMIN)
    assert r.status == 404
    assert "digest" not in await r.text()
    # A subject already erased has nothing left to erase either.
    assert (await client.delete(f"/v1/sites/{site_id}/subjects/seen", headers=ADMIN)).status == 200
    assert (await client.delete(f"/v1/sites/{site_id}/subjects/seen", headers=ADMIN)).status == 404
    assert await db.fetchval("SELECT seq FROM log_heads WHERE site_id = $1", site_id) == head + 1


async def test_a_retried_event_of_an_erased_subject_stays_a_duplicate(
    client: TestClient, db: asyncpg.Connection
) -> None:
    site_id = await make_site(client)
    body = event("retried")
    headers = {"Origin": ORIGIN}
    assert (
        await client.post(f"/v1/sites/{site_id}/events", json=body, headers=headers)
    ).status == 201
    assert (
        await client.delete(f"/v1/sites/{site_id}/subjects/retried", headers=ADMIN)
    ).status == 200
    r = await client.post(f"/v1/sites/{site_id}/events", json=body, headers=headers)
    assert r.status == 201 and (await r.json()) == {"accepted": 0, "duplicates": 1}
    assert await db.fetchval("SELECT seq FROM log_heads WHERE site_id = $1", site_id) == 2


async def test_erasing_a_user_leaves_none_of_its_subjects_linkable(
    proxied: TestClient, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """Linked users (docs/linked-users.md): access by the site's user id returns exactly
    the records of the subjects ever linked to it; its erasure leaves no user id, user
    digest, or personal value of those subjects anywhere, and the log still verifies."""
    client = proxied
    site_id = await make_site(client)
    audit = await make_key(client, site_id, "audit")
    identify = await make_key(client, site_id, "identify")
    tag = secrets.token_hex(6)
    user_id = f"customer-{tag}"
    laptop, phone, old = marked(f"laptop-{tag}"), marked(f"phone-{tag}"), marked(f"old-{tag}")
    kept = marked(f"kept-{tag}")
    sent = {
        who["subject_id"]: [await send(client, site_id, who)] for who in (laptop, phone, old, kept)
    }
    for who in (laptop, phone, old):
        r = await client.post(
            f"/v1/sites/{site_id}/subjects/{who['subject_id']}/link",
            json={"user_id": user_id, "event_id": str(uuid.uuid4())},
            headers=identify,
        )
        assert r.status == 201, await r.text()
    r = await client.delete(
        f"/v1/sites/{site_id}/subjects/{old['subject_id']}/link", headers=identify
    )
    assert r.status == 201  # linked once: still the user's
    sent[laptop["subject_id"]].append(await send(client, site_id, laptop, action="reject_all"))

    r = await client.get(f"/v1/sites/{site_id}/users/{user_id}/events", headers=audit)
    assert r.status == 200, await r.text()
    access = await r.json()
    gone = (laptop, phone, old)
    assert access["subjects"] == sorted(who["subject_id"] for who in gone)
    rows = access["events"]
    assert {row["subject_id"] for row in rows} == set(access["subjects"])
    consent = [row["event_id"] for row in rows if row["action"] not in ("link", "unlink")]
    assert sorted(consent) == sorted(e for who in gone for e in sent[who["subject_id"]])
    assert [row["action"] for row in rows].count("link") == 3
    assert [row["seq"] for row in rows] == sorted(row["seq"] for row in rows)

    key = await db.fetchval("SELECT subject_key FROM sites WHERE site_id = $1", site_id)
    needles = [user_id, user_digest(key, user_id)]
    for who in gone:
        needles += [
            who["subject_id"],
            who["user_agent"],
            who["page_url"],
            who["ip"].rsplit(".", 1)[0] + ".0/24",
            subject_digest(key, who["subject_id"]),
        ]
    before = {hit.split(": ", 1)[1] for hit in await scan(db, needles)}
    assert before == set(needles) - {user_id}  # the id itself is never stored

    r = await client.delete(f"/v1/sites/{site_id}/users/{user_id}", headers=ADMIN)
    assert r.status == 200, await r.text()
    assert await r.json() == {"site_id": site_id, "erased_subjects": 3, "erased_events": 8}
    assert await scan(db, needles) == []
    hits = await scan(db, [kept["user_agent"], kept["subject_id"]])
    assert len(hits) >= 2  # the subject never linked keeps everything

    r = await client.get(f"/v1/sites/{site_id}/users/{user_id}/events", headers=audit)
    assert (await r.json())["events"] == []
    assert (
        await client.delete(f"/v1/sites/{site_id}/users/{user_id}", headers=ADMIN)
    ).status == 404
    r = await client.get(f"/v1/sites/{site_id}/events", headers=audit)
    lines = [line for line in (await r.text()).splitlines() if line]
    assert verify_export(lines).ok, verify_export(lines).summary()
    assert [json.loads(line)["action"] for line in lines].count("erased") == 3
    export_file = tmp_path / "log.jsonl"
    export_file.write_text("\n".join(lines) + "\n")
    from cmp.cli import main

    assert main(["verify", str(export_file)]) == 0
