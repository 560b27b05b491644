"""A log record as an ISO/IEC TS 27560 consent record in W3C DPV terms (JSON-LD).

There is no normative JSON Schema for 27560; the shape follows the DPVCG guide
"Consent Records and Receipts as per ISO/IEC TS 27560:2023 using DPV" (profile
dpv-27560#record). docs/iso27560.md is the field-by-field mapping. The record itself is
carried unchanged under ``cmp:record``, so the 27560 document of a record can always be
tied back to the hash chain and the Merkle tree. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

CONTEXT: Final = {
    "dpv": "https://w3id.org/dpv#",
    "dct": "http://purl.org/dc/terms/",
    "loc": "https://w3id.org/dpv/loc#",
    "eu-gdpr": "https://w3id.org/dpv/legal/eu/gdpr#",
    "cmp": "https://w3id.org/cmp/ns#",
}
PROFILE: Final = "https://w3id.org/dpv/schema/dpv-27560#record"
STANDARD: Final = "ISO/IEC TS 27560:2023"

# The status a record's action gives the consent as a whole.
STATUS: Final = {
    "accept_all": "dpv:ConsentGiven",
    "custom": "dpv:ConsentGiven",
    "reject_all": "dpv:ConsentRefused",
    "withdraw": "dpv:ConsentWithdrawn",
    "erased": "dpv:ConsentInvalidated",
}
# Where the GDPR applies (EU and EEA), for dpv:hasApplicableLaw.
# fmt: off
EEA: Final = frozenset((
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE",
    "IS", "IT", "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK",
))
# fmt: on


@dataclass(frozen=True, slots=True)
class Controller:
    """The site fields a 27560 record names (each may be unset)."""

    name: str | None = None
    contact: str | None = None
    jurisdiction: str | None = None
    withdrawal_url: str | None = None
    policy_url: str | None = None


def consent_record(record: Mapping[str, Any], controller: Controller) -> dict[str, Any]:
    """The 27560 document of one log record (the 19 chain fields)."""
    action = record["action"]
    status = STATUS[action]
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "@id": f"urn:uuid:{record['event_id']}",
        "@type": "dpv:ConsentRecord",
        "dct:identifier": record["event_id"],
        "dct:conformsTo": [STANDARD, PROFILE],
        "dct:date": record["received_at"],
        "dpv:hasDataSubject": {
            # The keyed digest, never the subject id: the record stays pseudonymous.
            "@id": f"urn:cmp:subject:{record['subject_digest']}",
            "@type": "dpv:DataSubject",
        },
        "dpv:hasConsentStatus": status,
        "dpv:hasLegalBasis": "eu-gdpr:A6-1-a",
    }
    party: dict[str, Any] = {"@type": "dpv:DataController"}
    if controller.name:
        party["dpv:hasName"] = controller.name
    if controller.contact:
        party["dpv:hasContact"] = controller.contact
    if len(party) > 1:
        doc["dpv:hasDataController"] = party
    if controller.jurisdiction:
        doc["dpv:hasJurisdiction"] = [f"loc:{controller.jurisdiction}"]
        if controller.jurisdiction.split("-")[0] in EEA:
            doc["dpv:hasApplicableLaw"] = "eu-gdpr:GDPR"
    if record["policy_version"] is not None:
        notice: dict[str, Any] = {
            "@type": "dpv:ConsentNotice",
            "dct:hasVersion": record["policy_version"],
            "cmp:contentSha256": record["policy_sha256"],
        }
        if record["language"]:
            notice["dct:language"] = record["language"]
        if controller.policy_url:
            notice["dct:source"] = controller.policy_url
        doc["dpv:hasNotice"] = notice
    purposes = record["purposes"] or {}
    if purposes:
        doc["dpv:hasProcess"] = [
            {
                "@type": "dpv:Process",
                "dpv:hasPurpose": {"@id": f"cmp:purpose/{key}", "dct:title": key},
                "dpv:hasConsentStatus": "dpv:ConsentGiven" if given else "dpv:ConsentRefused",
            }
            for key, given in sorted(purposes.items())
        ]
    event: dict[str, Any] = {"cmp:action": action, "cmp:receivedAt": record["received_at"]}
    for name, term in (
        ("occurred_at", "cmp:occurredAt"),
        ("source", "cmp:collectionMethod"),
        ("page_url", "cmp:pageUrl"),
        ("gpc", "cmp:globalPrivacyControl"),
    ):
        if record[name] is not None:
            event[term] = record[name]
    doc["cmp:event"] = event
    if controller.withdrawal_url:
        doc["cmp:withdrawalUrl"] = controller.withdrawal_url
    doc["cmp:record"] = dict(record)
    return doc
