"""ISO/IEC TS 27560 records: the site fields, the export and the receipt format, the
banner showing the controller and the withdrawal link."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from cmp.appkeys import SIGNER
from cmp.audit.chain import hashed_part
from cmp.audit.iso27560 import Controller, consent_record
from cmp.audit.receipt import verify_receipt
from cmp.canonical import canonical_json
from tests.api.test_receipts import post, receipt_of, settle
from tests.factories import ADMIN, event, make_key, make_site, site_body

FIELDS = {
    "controller_name": "Nettbutikk AS",
    "controller_contact": "personvern@shop.example",
    "jurisdiction": "NO",
    "withdrawal_url": "https://shop.example/samtykke",
}


async def test_site_fields_round_trip_and_reach_the_banner(client: TestClient) -> None:
    site_id = await make_site(client, **FIELDS)
    r = await client.get(f"/v1/sites/{site_id}", headers=ADMIN)
    body = await r.json()
    assert {k: body[k] for k in FIELDS} == FIELDS
    script = await (await client.get(f"/v1/sites/{site_id}/banner.js")).text()
    assert '"controller":"Nettbutikk AS, personvern@shop.example"' in script
    assert '"withdrawal_url":"https://shop.example/samtykke"' in script
    # Unset again: the fields are optional and a PUT without them clears them.
    r = await client.put(f"/v1/sites/{site_id}", json=site_body(), headers=ADMIN)
    assert r.status == 200
    body = await r.json()
    assert all(body[k] is None for k in FIELDS)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("jurisdiction", "no"),
        ("jurisdiction", "NOR"),
        ("withdrawal_url", "javascript:alert(1)"),
        ("withdrawal_url", "https://a b"),
        ("controller_name", "Bad\u0007name"),
        ("controller_name", ""),
        ("controller_contact", "x" * 201),
    ],
)
async def test_bad_site_fields_are_422(client: TestClient, field: str, value: str) -> None:
    r = await client.put("/v1/sites/t-bad27560", json=site_body(**{field: value}), headers=ADMIN)
    assert r.status == 422, await r.text()


async def test_export_as_27560_documents_tied_to_the_chain(client: TestClient) -> None:
    site_id = await make_site(client, **FIELDS)
    audit = await make_key(client, site_id, "audit")
    bodies = [
        event(action="accept_all"),
        event(action="reject_all"),
        event(
            action="custom",
            purposes={"preferences": False, "statistics": True, "marketing": False},
        ),
        event(action="withdraw"),
    ]
    await post(client, site_id, bodies)
    r = await client.get(f"/v1/sites/{site_id}/events", headers=audit)
    rows = [json.loads(x) for x in (await r.text()).splitlines()]
    r = await client.get(f"/v1/sites/{site_id}/events?format=iso27560", headers=audit)
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/x-ndjson")
    docs = [json.loads(x) for x in (await r.text()).splitlines()]
    assert len(docs) == 4
    for row, doc in zip(rows, docs, strict=True):
        record = doc["cmp:record"]
        digest = hashlib.sha256(row["prev_hash"].encode() + canonical_json(record)).hexdigest()
        assert digest == row["hash"]  # the document's record is the chained record
        assert doc["@type"] == "dpv:ConsentRecord" and doc["dct:identifier"] == row["event_id"]
        assert doc["dpv:hasDataSubject"]["@id"].endswith(row["subject_digest"])
        assert row["subject_id"] not in json.dumps(doc)
        assert doc["dpv:hasDataController"] == {
            "@type": "dpv:DataController",
            "dpv:hasName": "Nettbutikk AS",
            "dpv:hasContact": "personvern@shop.example",
        }
        assert doc["dpv:hasJurisdiction"] == ["loc:NO"]
        assert doc["dpv:hasApplicableLaw"] == "eu-gdpr:GDPR"
        assert doc["cmp:withdrawalUrl"] == FIELDS["withdrawal_url"]
        assert doc["dpv:hasNotice"]["dct:source"] == "https://shop.example/personvern"
        assert doc["dpv:hasNotice"]["cmp:contentSha256"] == row["policy_sha256"]
    assert [d["dpv:hasConsentStatus"] for d in docs] == [
        "dpv:ConsentGiven",
        "dpv:ConsentRefused",
        "dpv:ConsentGiven",
        "dpv:ConsentWithdrawn",
    ]
    custom = {
        p["dpv:hasPurpose"]["dct:title"]: p["dpv:hasConsentStatus"]
        for p in docs[2]["dpv:hasProcess"]
    }
    assert custom["statistics"] == "dpv:ConsentGiven"
    assert custom["marketing"] == "dpv:ConsentRefused"
    r = await client.get(f"/v1/sites/{site_id}/events?format=xml", headers=audit)
    assert r.status == 422


async def test_receipt_in_27560_form_still_verifies(
    client: TestClient, db: asyncpg.Connection
) -> None:
    site_id = await make_site(client, **FIELDS)
    body = event()
    await post(client, site_id, [body])
    await settle(client, db, site_id)
    r = await client.get(
        f"/v1/sites/{site_id}/receipts/{body['event_id']}",
        params={"subject_id": body["subject_id"], "format": "iso27560"},
    )
    assert r.status == 200, await r.text()
    receipt: dict[str, Any] = await r.json()
    assert receipt["iso27560"]["cmp:record"] == receipt["record"]
    assert receipt["iso27560"]["dpv:hasConsentStatus"] == "dpv:ConsentGiven"
    verify_receipt(receipt, client.app[SIGNER].public_key)  # type: ignore[index]
    plain = await receipt_of(client, site_id, body)
    assert "iso27560" not in plain
    r = await client.get(
        f"/v1/sites/{site_id}/receipts/{body['event_id']}",
        params={"subject_id": body["subject_id"], "format": "pdf"},
    )
    assert r.status == 422


def test_an_erased_record_and_a_bare_site() -> None:
    record = {
        **{k: None for k in ("policy_version", "policy_sha256", "purposes", "services")},
        **{k: None for k in ("gpc", "language", "source", "page_url", "origin", "ip_prefix")},
        "user_agent": None,
        "occurred_at": None,
        "v": 1,
        "site_id": "shop",
        "seq": 9,
        "event_id": "7d0e5b8c-3f4a-4b6d-9e1f-2a3b4c5d6e7f",
        "subject_digest": "0" * 64,
        "action": "erased",
        "received_at": "2026-12-01T08:30:00.000000Z",
    }
    doc = consent_record(hashed_part(record), Controller())
    assert doc["dpv:hasConsentStatus"] == "dpv:ConsentInvalidated"
    for absent in (
        "dpv:hasDataController",
        "dpv:hasJurisdiction",
        "dpv:hasNotice",
        "dpv:hasProcess",
    ):
        assert absent not in doc
    assert doc["cmp:event"] == {"cmp:action": "erased", "cmp:receivedAt": record["received_at"]}
    se = consent_record(hashed_part(record), Controller(jurisdiction="US-CA"))
    assert se["dpv:hasJurisdiction"] == ["loc:US-CA"] and "dpv:hasApplicableLaw" not in se
