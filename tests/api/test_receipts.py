"""The transparency log through the API: tiles built after commit, signed checkpoints,
proofs, the visitor's receipt, and what erasure and purge leave verifiable."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from cmp.appkeys import SETTINGS, SIGNER
from cmp.audit import merkle, notes, tiles
from cmp.audit.chain import hashed_part
from cmp.audit.receipt import ReceiptError, verify_receipt
from cmp.canonical import canonical_json
from cmp.maintenance import purge
from cmp.treelog import CHUNK, TREE_LOCK, integrate_site
from tests.factories import ADMIN, ORIGIN, age_records, event, make_key, make_site, retain_one_day

HDR = {"Origin": ORIGIN}


@pytest.fixture
async def site(client: TestClient) -> dict[str, Any]:
    site_id = await make_site(client)
    return {"id": site_id, "audit": await make_key(client, site_id, "audit")}


async def post(client: TestClient, site_id: str, bodies: list[dict[str, Any]]) -> None:
    for i in range(0, len(bodies), 100):
        r = await client.post(
            f"/v1/sites/{site_id}/events", json={"events": bodies[i : i + 100]}, headers=HDR
        )
        assert r.status == 201, await r.text()


async def settle(client: TestClient, db: asyncpg.Connection, site_id: str) -> None:
    """Integrate and sign everything committed so far (waits for the background job)."""
    signer = client.app[SIGNER]  # type: ignore[index]
    origin = notes.origin_of(client.app[SETTINGS].public_host, site_id)  # type: ignore[index]
    while await integrate_site(db, site_id, signer, origin, wait=True) == CHUNK:
        pass


async def receipt_of(client: TestClient, site_id: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await client.get(
        f"/v1/sites/{site_id}/receipts/{body['event_id']}",
        params={"subject_id": body["subject_id"]},
    )
    assert r.status == 200, await r.text()
    assert r.headers["Cache-Control"] == "no-store"
    doc: dict[str, Any] = await r.json()
    return doc


def key_of(client: TestClient) -> Any:
    return client.app[SIGNER].public_key  # type: ignore[index]


async def test_receipts_verify_and_leaves_are_the_chained_record_bytes(
    client: TestClient, site: dict[str, Any], db: asyncpg.Connection
) -> None:
    bodies = [event() for _ in range(300)]
    await post(client, site["id"], bodies)
    await settle(client, db, site["id"])
    r = await client.get(f"/v1/sites/{site['id']}/events", headers=site["audit"])
    rows = [json.loads(x) for x in (await r.text()).splitlines()]
    leaves = [merkle.leaf_hash(canonical_json(hashed_part(row))) for row in rows]
    # The stored tiles are those of the export's records, hashed as the chain hashes them.
    size, expected = tiles.append(0, {}, leaves)
    stored = {
        (t["level"], t["idx"]): bytes(t["hashes"])
        for t in await db.fetch(
            "SELECT level, idx, hashes FROM log_tiles WHERE site_id = $1", site["id"]
        )
    }
    assert size == 300 and stored == expected
    for i in (0, 150, 299):
        receipt = await receipt_of(client, site["id"], bodies[i])
        assert receipt["record"] == hashed_part(rows[i])
        assert receipt["leaf_index"] == i
        verified = verify_receipt(receipt, key_of(client))
        assert verified.checkpoint.size == 300
        assert verified.checkpoint.root == merkle.tree_root(300, merkle.list_getter(leaves))


async def test_receipt_is_202_until_integrated_then_200(
    client: TestClient, site: dict[str, Any], db: asyncpg.Connection, db_dsn: str
) -> None:
    holder = await asyncpg.connect(db_dsn)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", TREE_LOCK)  # the job skips
        body = event()
        await post(client, site["id"], [body])
        r = await client.get(
            f"/v1/sites/{site['id']}/receipts/{body['event_id']}",
            params={"subject_id": body["subject_id"]},
        )
        assert r.status == 202
        assert int(r.headers["Retry-After"]) >= 1
    finally:
        await holder.close()
    await settle(client, db, site["id"])
    verify_receipt(await receipt_of(client, site["id"], body), key_of(client))


async def test_a_wrong_pair_is_404(
    client: TestClient, site: dict[str, Any], db: asyncpg.Connection
) -> None:
    body = event()
    await post(client, site["id"], [body])
    await settle(client, db, site["id"])
    other = await make_site(client)
    base = f"/v1/sites/{site['id']}/receipts"
    for path, subject in (
        (f"{base}/{body['event_id']}", "someone-else"),
        (f"{base}/{uuid.uuid4()}", body["subject_id"]),
        (f"{base}/not-a-uuid", body["subject_id"]),
        # The same event in the other spellings uuid.UUID takes, which the path refuses.
        (f"{base}/{uuid.UUID(body['event_id']).hex}", body["subject_id"]),
        (f"{base}/urn:uuid:{body['event_id']}", body["subject_id"]),
        (f"{base}/%7B{body['event_id']}%7D", body["subject_id"]),
        (f"{base}/{body['event_id']}", ""),
        (f"{base}/{body['event_id']}", "bad subject!"),
        (f"/v1/sites/{other}/receipts/{body['event_id']}", body["subject_id"]),
        (f"/v1/sites/no-such-site/receipts/{body['event_id']}", body["subject_id"]),
    ):
        r = await client.get(path, params={"subject_id": subject})
        assert r.status == 404, (path, subject, await r.text())
    r = await client.get(f"{base}/{body['event_id']}")
    assert r.status == 404


async def test_receipt_answers_cors_for_the_site_origin(
    client: TestClient, site: dict[str, Any], db: asyncpg.Connection
) -> None:
    body = event()
    await post(client, site["id"], [body])
    await settle(client, db, site["id"])
    path = f"/v1/sites/{site['id']}/receipts/{body['event_id']}"
    r = await client.get(path, params={"subject_id": body["subject_id"]}, headers=HDR)
    assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == ORIGIN
    r = await client.get(
        path, params={"subject_id": body["subject_id"]}, headers={"Origin": "https://evil.example"}
    )
    assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers


async def test_inclusion_and_consistency_endpoints(
    client: TestClient, site: dict[str, Any], db: asyncpg.Connection
) -> None:
    await post(client, site["id"], [event() for _ in range(20)])
    await settle(client, db, site["id"])
    first = await client.get(f"/v1/sites/{site['id']}/log/checkpoint", headers=site["audit"])
    tree1 = (await first.json())["tree"]
    assert tree1["size"] == 20 and tree1["chain_checkpoint"]["seq"] == 20
    assert tree1["chain_checkpoint"]["hash"] == tree1["chain_hash"]
    await post(client, site["id"], [event() for _ in range(13)])
    await settle(client, db, site["id"])
    key = key_of(client)
    base = f"/v1/sites/{site['id']}/log/proof"
    r = await client.get(f"{base}/consistency?from=20&to=33", headers=site["audit"])
    assert r.status == 200, await r.text()
    doc = await r.json()
    old = notes.open_checkpoint(doc["from_checkpoint"], key)
    new = notes.open_checkpoint(doc["checkpoint"], key)
    assert doc["from_checkpoint"] == tree1["note"]
    proof = [base64.b64decode(x) for x in doc["consistency_proof"]]
    assert merkle.verify_consistency(20, 33, old.root, new.root, proof)
    # An older size nobody signed yet: signed on demand, then kept.
    r = await client.get(f"{base}/inclusion?index=4&size=7", headers=site["audit"])
    assert r.status == 200, await r.text()
    doc = await r.json()
    cp = notes.open_checkpoint(doc["checkpoint"], key)
    assert cp.size == 7 and base64.b64decode(doc["root_hash"]) == cp.root
    export = await client.get(f"/v1/sites/{site['id']}/events", headers=site["audit"])
    row = json.loads((await export.text()).splitlines()[4])
    leaf = merkle.leaf_hash(canonical_json(hashed_part(row)))
    proof = [base64.b64decode(x) for x in doc["inclusion_proof"]]
    assert merkle.verify_inclusion(4, 7, leaf, proof, cp.root)
    again = await client.get(f"{base}/inclusion?index=0&size=7", headers=site["audit"])
    assert (await again.json())["checkpoint"] == doc["checkpoint"]


@pytest.mark.parametrize(
    "query",
    [
        "inclusion?index=5&size=5",
        "inclusion?index=-1&size=5",
        "inclusion?index=0&size=999999",
        "inclusion?index=x&size=5",
        "inclusion?size=5",
        "consistency?from=5&to=2",
        "consistency?from=0&to=2",
        "consistency?from=1&to=99999999999999999999999",
    ],
)
async def test_bad_proof_queries_are_422(
    client: TestClient, site: dict[str, Any], db: asyncpg.Connection, query: str
) -> None:
    await post(client, site["id"], [event() for _ in range(5)])
    await settle(client, db, site["id"])
    r = await client.get(f"/v1/sites/{site['id']}/log/proof/{query}", headers=site["audit"])
    assert r.status == 422, await r.text()


async def test_proofs_need_an_audit_key(client: TestClient, site: dict[str, Any]) -> None:
    r = await client.get(f"/v1/sites/{site['id']}/log/proof/inclusion?index=0&size=1")
    assert r.status == 401
    read = await make_key(client, site["id"], "read")
    r = await client.get(f"/v1/sites/{site['id']}/log/proof/consistency?from=1&to=1", headers=read)
    assert r.status == 403


async def test_public_key_gives_the_sites_note_verifier_key(client: TestClient) -> None:
    r = await client.get("/v1/log/public-key", params={"site_id": "shop"})
    doc = await r.json()
    assert doc["origin"] == "localhost/sites/shop"
    name, key = notes.parse_verifier_key(doc["note_verifier_key"])
    assert (
        name == "localhost/sites/shop"
        and key.public_bytes_raw() == key_of(client).public_bytes_raw()
    )
    r = await client.get("/v1/log/public-key", params={"site_id": "Bad Id"})
    assert r.status == 422


async def test_other_receipts_verify_after_erasure_and_purge(
    client: TestClient, site: dict[str, Any], db: asyncpg.Connection
) -> None:
    bodies = [event() for _ in range(6)]
    await post(client, site["id"], bodies)
    await settle(client, db, site["id"])
    kept = await receipt_of(client, site["id"], bodies[4])
    r = await client.delete(
        f"/v1/sites/{site['id']}/subjects/{bodies[1]['subject_id']}", headers=ADMIN
    )
    assert r.status == 200
    await settle(client, db, site["id"])
    after_erasure = await receipt_of(client, site["id"], bodies[4])
    assert verify_receipt(after_erasure, key_of(client)).checkpoint.size == 7
    # The erased subject's record keeps its leaf: its old receipt index is unchanged.
    assert after_erasure["leaf_index"] == kept["leaf_index"]
    await retain_one_day(client, site["id"])
    # Age the first three records (a superuser session bypasses the append-only trigger;
    # they are in the tree already, so their leaves stay as they were).
    await age_records(db, site["id"], through_seq=3)
    done = [p for p in await purge(db, client.app[SIGNER]) if p.site_id == site["id"]]  # type: ignore[index]
    assert done and done[0].through_seq == 3
    await post(client, site["id"], [event()])
    await settle(client, db, site["id"])
    for body in bodies[3:]:
        receipt = await receipt_of(client, site["id"], body)
        assert verify_receipt(receipt, key_of(client)).checkpoint.size == 8
    r = await client.get(
        f"/v1/sites/{site['id']}/receipts/{bodies[0]['event_id']}",
        params={"subject_id": bodies[0]["subject_id"]},
    )
    assert r.status == 404  # purged: no record to give, but the old receipt still holds
    # A receipt kept from before: consistent with today's checkpoint.
    r = await client.get(
        f"/v1/sites/{site['id']}/log/proof/consistency?from=6&to=8", headers=site["audit"]
    )
    doc = await r.json()
    verify_receipt(
        kept, key_of(client), newer=doc["checkpoint"], consistency_proof=doc["consistency_proof"]
    )


async def test_integration_is_done_by_the_background_job(
    client: TestClient, site: dict[str, Any]
) -> None:
    body = event()
    await post(client, site["id"], [body])
    path = f"/v1/sites/{site['id']}/receipts/{body['event_id']}"
    for _ in range(600):  # generous: shared, noisy machine
        r = await client.get(path, params={"subject_id": body["subject_id"]})
        if r.status == 200:
            break
        assert r.status == 202
        await asyncio.sleep(0.1)
    assert r.status == 200
    verify_receipt(await r.json(), key_of(client))
    metrics = await (await client.get("/metrics")).text()
    assert "cmp_log_integration_delay_seconds_count" in metrics
    assert "cmp_log_integration_interval_seconds 1.0" in metrics


async def test_tampered_receipt_is_named(
    client: TestClient, site: dict[str, Any], db: asyncpg.Connection
) -> None:
    body = event()
    await post(client, site["id"], [body, event()])
    await settle(client, db, site["id"])
    receipt = await receipt_of(client, site["id"], body)
    changed = json.loads(json.dumps(receipt))
    changed["record"]["action"] = "reject_all"
    with pytest.raises(ReceiptError, match="inclusion proof"):
        verify_receipt(changed, key_of(client))


async def test_checkpoints_are_kept_sparsely_and_re_signing_is_deterministic(
    client: TestClient, site: dict[str, Any], db: asyncpg.Connection
) -> None:
    for n in (3, 4, 5):
        await post(client, site["id"], [event() for _ in range(n)])
        await settle(client, db, site["id"])
    kept = await db.fetch(
        "SELECT size, note FROM log_tree_heads WHERE site_id = $1 ORDER BY size", site["id"]
    )
    # The first head is kept; the next ones (within a minute) only replace the newest.
    assert [r["size"] for r in kept] == [3]
    latest = await db.fetchrow(
        "SELECT head_size, head_note FROM log_trees WHERE site_id = $1", site["id"]
    )
    assert latest["head_size"] == 12
    signer = client.app[SIGNER]  # type: ignore[index]
    cp = notes.open_checkpoint(kept[0]["note"], signer.public_key)
    assert notes.sign_checkpoint(signer, cp.origin, cp.size, cp.root) == kept[0]["note"]


async def test_receipts_are_rate_limited_per_network(
    aiohttp_client: Any, settings: Any, db_dsn: str
) -> None:
    from cmp.app import create_app

    app = create_app(settings.model_copy(update={"rate_per_second": 0.01, "rate_burst": 3}), db_dsn)
    client = await aiohttp_client(app)
    site_id = await make_site(client)
    url = f"/v1/sites/{site_id}/receipts/{uuid.uuid4()}"
    answers = [(await client.get(url, params={"subject_id": "x"})).status for _ in range(6)]
    assert answers[:3] == [404, 404, 404]
    assert answers[3:] == [429, 429, 429]
