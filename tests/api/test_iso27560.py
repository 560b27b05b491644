"""ISO/IEC TS 27560 records: the site fields, the export and the receipt format, the
banner showing the controller and the withdrawal link; the documents as linked data (a
JSON-LD processor, pyld, expands them and turns them into RDF without loss, offline)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from pyld import jsonld

from cmp.appkeys import SIGNER
from cmp.audit.chain import hashed_part
from cmp.audit.iso27560 import CONTEXT, EEA, Controller, consent_record
from cmp.audit.receipt import verify_receipt
from cmp.canonical import canonical_json
from tests.api.test_receipts import post, receipt_of, settle
from tests.factories import ADMIN, event, make_key, make_site, site_body

# The DPV IRIs the documents may use, each looked up in the DPV vocabulary (see the file).
DPV_TERMS = frozenset(
    line.strip()
    for line in (Path(__file__).parents[1] / "fixtures" / "dpv-terms.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)
DPV = "https://w3id.org/dpv"
RDF_JSON = "http://www.w3.org/1999/02/22-rdf-syntax-ns#JSON"
RECORD = "urn:cmp:term:record"


def _no_fetch(url: str, options: Any = None) -> Any:
    raise AssertionError(f"the processor fetched {url}: the context must be inline")


OFFLINE = {"documentLoader": _no_fetch}


def _keys(node: Any, json_literal: str) -> set[str]:
    """Every key of a JSON-LD node at any depth, not inside the JSON literal's value."""
    if isinstance(node, list):
        return set().union(*(_keys(item, json_literal) for item in node))
    if not isinstance(node, dict) or node.get("@type") == "@json":
        return set()
    found = set(node) - {"@context"}
    for key, value in node.items():
        if key not in ("@context", json_literal):
            found |= _keys(value, json_literal)
    return found


def _statements(node: dict[str, Any]) -> int:
    """How many RDF triples an expanded node object stands for."""
    count = len(node.get("@type", []))
    for key, values in node.items():
        if key.startswith("@"):
            continue
        for value in values:
            count += 1
            if "@value" not in value:
                count += _statements(value)
    return count


def linked_data(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Expand a document and turn it into RDF; check that nothing is lost either way and
    that every DPV IRI is a real DPV term. Returns the triples."""
    expanded = jsonld.expand(doc, OFFLINE)
    assert len(expanded) == 1
    # Compacting the expansion again gives the document back: nothing dropped or changed.
    assert jsonld.compact(expanded, CONTEXT, OFFLINE) == doc
    compact_keys = _keys(doc, "cmp:record")
    expanded_keys = _keys(expanded, RECORD)
    for key in compact_keys:
        prefix, _, name = key.partition(":")
        iri = key if key.startswith("@") else str(CONTEXT[prefix]) + name
        assert iri in expanded_keys, key
    triples: list[dict[str, Any]] = jsonld.to_rdf(doc, OFFLINE)["@default"]
    # Every statement of the expansion is a triple: no IRI or literal the RDF could not hold.
    assert len(triples) == _statements(expanded[0])
    iris = {
        part["value"]
        for t in triples
        for part in (t["subject"], t["predicate"], t["object"])
        if part["type"] == "IRI"
    }
    assert {i for i in iris if i.startswith(DPV)} <= DPV_TERMS, iris - DPV_TERMS
    (literal,) = [t["object"] for t in triples if t["predicate"]["value"] == RECORD]
    assert literal["datatype"] == RDF_JSON
    assert json.loads(literal["value"]) == doc["cmp:record"]
    return triples


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
        triples = linked_data(doc)
        # ... and so is the rdf:JSON literal the RDF holds.
        (literal,) = [t["object"]["value"] for t in triples if t["predicate"]["value"] == RECORD]
        literal_hash = hashlib.sha256(
            row["prev_hash"].encode() + canonical_json(json.loads(literal))
        )
        assert literal_hash.hexdigest() == row["hash"]
        assert doc["@type"] == "dpv:ConsentRecord" and doc["dct:identifier"] == row["event_id"]
        assert doc["@id"] == f"urn:cmp:site:{site_id}:event:{row['event_id']}"
        # The record's commitment names the subject: no digest, no personal value.
        subject = f"urn:cmp:subject-commitment:{row['subject_digest_sha256']}"
        assert doc["dpv:hasDataSubject"]["@id"] == subject
        for name in ("subject_id", "subject_digest", "user_agent", "page_url"):
            assert row[name] is None or row[name] not in json.dumps(doc)
        assert doc["dpv:hasDataController"] == {
            "@type": "dpv:DataController",
            "dpv:hasName": "Nettbutikk AS",
            "dpv:hasContact": "personvern@shop.example",
        }
        assert doc["dpv:hasJurisdiction"] == ["loc:NO"]
        assert doc["dpv:hasApplicableLaw"] == "legal-eu:law-GDPR"
        assert doc["dpv:hasLegalBasis"] == "eu-gdpr:A6-1-a"
        assert doc["dpv:hasConsentControl"] == {
            "@type": "dpv:WithdrawConsent",
            "dpv:isExercisedAt": FIELDS["withdrawal_url"],
        }
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
    purpose = docs[2]["dpv:hasProcess"][0]["dpv:hasPurpose"]
    assert purpose["@id"] == f"urn:cmp:site:{site_id}:purpose:marketing"
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
    linked_data(receipt["iso27560"])
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
    linked_data(doc)
    assert doc["dpv:hasConsentStatus"] == "dpv:ConsentInvalidated"
    # Nothing says the GDPR applies: consent given by an action, DPV's own concept.
    assert doc["dpv:hasLegalBasis"] == "dpv:ExpressedConsent"
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
    linked_data(se)


def test_the_gdpr_countries_are_dpv_s_eea() -> None:
    assert {f"{DPV}/loc#{country}" for country in EEA} <= DPV_TERMS


async def test_purposes_are_named_per_site_and_urls_become_valid_iris(
    client: TestClient, db: asyncpg.Connection
) -> None:
    # A withdrawal URL may hold what an IRI may not (`|`, `{`, `}`): the document
    # percent-encodes it instead of writing an IRI that RDF drops or N-Quads breaks on.
    url = "https://shop.example/samtykke?v={a}|b"
    documents = []
    for _ in range(2):
        site_id = await make_site(client, **{**FIELDS, "withdrawal_url": url})
        body = event()
        await post(client, site_id, [body])
        await settle(client, db, site_id)
        r = await client.get(
            f"/v1/sites/{site_id}/receipts/{body['event_id']}",
            params={"subject_id": body["subject_id"], "format": "iso27560"},
        )
        assert r.status == 200, await r.text()
        doc = (await r.json())["iso27560"]
        linked_data(doc)
        documents.append(doc)
    first, second = (
        {p["dpv:hasPurpose"]["dct:title"]: p["dpv:hasPurpose"]["@id"] for p in d["dpv:hasProcess"]}
        for d in documents
    )
    assert first.keys() == second.keys() and "statistics" in first
    assert not set(first.values()) & set(second.values())
    control = documents[0]["dpv:hasConsentControl"]["dpv:isExercisedAt"]
    assert control == "https://shop.example/samtykke?v=%7Ba%7D%7Cb"
