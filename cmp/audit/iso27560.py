"""A log record as an ISO/IEC TS 27560 consent record in W3C DPV terms (JSON-LD).

There is no normative JSON Schema for 27560; the shape follows the DPVCG guide
"Consent Records and Receipts as per ISO/IEC TS 27560:2023 using DPV" (profile
dpv-27560#record). docs/iso27560.md is the field-by-field mapping. The record itself is
carried unchanged under ``cmp:record``, a JSON literal, so the 27560 document of a record
can always be tied back to the hash chain and the Merkle tree. Each document carries its
whole context inline: a JSON-LD processor expands it and turns it into RDF without
fetching anything, and without dropping a field. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

# cmp's own terms, where DPV has none: a URN, never dereferenced, so that no one else's
# vocabulary is claimed (urn:cmp: is the project's naming, not a registered namespace).
CMP_TERMS: Final = "urn:cmp:term:"
_IRI: Final = {"@type": "@id"}
_IRIS: Final = {"@type": "@id", "@container": "@set"}
_DATE_TIME: Final = {"@type": "xsd:dateTime"}
CONTEXT: Final = {
    "@version": 1.1,
    "dpv": "https://w3id.org/dpv#",
    "dct": "http://purl.org/dc/terms/",
    "loc": "https://w3id.org/dpv/loc#",
    "eu-gdpr": "https://w3id.org/dpv/legal/eu/gdpr#",
    "legal-eu": "https://w3id.org/dpv/legal/eu#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "cmp": CMP_TERMS,
    # DPV wants concepts as IRIs, not strings.
    "dpv:hasConsentStatus": _IRI,
    "dpv:hasLegalBasis": _IRI,
    "dpv:hasJurisdiction": _IRIS,
    "dpv:hasApplicableLaw": _IRI,
    "dpv:isExercisedAt": _IRI,
    "dpv:hasProcess": {"@container": "@set"},
    "dct:conformsTo": {"@container": "@set"},
    "dct:source": _IRI,
    "dct:date": _DATE_TIME,
    "cmp:receivedAt": _DATE_TIME,
    "cmp:occurredAt": _DATE_TIME,
    # The chained record, the JSON the chain hashes, as a JSON literal
    # (rdf:JSON), not a node whose keys no vocabulary defines (those expanded to {}).
    "cmp:record": {"@type": "@json"},
}
PROFILE: Final = "https://w3id.org/dpv/schema/dpv-27560#record"
STANDARD: Final = {
    "@id": "https://www.iso.org/standard/80392.html",
    "dct:title": "ISO/IEC TS 27560:2023",
}

# The status a record's action gives the consent as a whole.
STATUS: Final = {
    "accept_all": "dpv:ConsentGiven",
    "custom": "dpv:ConsentGiven",
    "reject_all": "dpv:ConsentRefused",
    "withdraw": "dpv:ConsentWithdrawn",
    "erased": "dpv:ConsentInvalidated",
}
# Where the GDPR applies (EU and EEA, loc:EEA of DPV), for the legal basis and the law.
# fmt: off
EEA: Final = frozenset((
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE",
    "IS", "IT", "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK",
))
# fmt: on
GDPR_CONSENT: Final = "eu-gdpr:A6-1-a"
# Consent given by an action (a banner's button): the DPV concept A6-1-a refines.
EXPRESSED_CONSENT: Final = "dpv:ExpressedConsent"
GDPR: Final = "legal-eu:law-GDPR"


@dataclass(frozen=True, slots=True)
class Controller:
    """The site fields a 27560 record names (each may be unset)."""

    name: str | None = None
    contact: str | None = None
    jurisdiction: str | None = None
    withdrawal_url: str | None = None
    policy_url: str | None = None

    def under_gdpr(self) -> bool:
        return self.jurisdiction is not None and self.jurisdiction.split("-")[0] in EEA


# Printable ASCII that a URL may carry and an IRI may not (RFC 3987): a site's policy and
# withdrawal URLs are only checked for http(s) and no spaces, and N-Quads breaks on `>`.
_NOT_IN_IRI: Final = str.maketrans({c: f"%{ord(c):02X}" for c in '<>"{}|\\^`'})


def iri(url: str) -> str:
    """A URL as an IRI: the characters IRIs exclude, percent-encoded (same resource)."""
    return url.translate(_NOT_IN_IRI)


def site_iri(site_id: str) -> str:
    """The site's own names start here: event ids and purpose keys are only unique
    within a site (a client chooses its event ids), so they are named per site."""
    return f"urn:cmp:site:{site_id}"


def _subject_iri(record: Mapping[str, Any]) -> str:
    """Never the subject id: the keyed digest (version 1), or the record's salted
    commitment to it (version 2), which names no subject outside this one record and
    stays the same after erasure."""
    if record["v"] == 1:
        return f"urn:cmp:subject:{record['subject_digest']}"
    return f"urn:cmp:subject-commitment:{record['subject_digest_sha256']}"


def consent_record(record: Mapping[str, Any], controller: Controller) -> dict[str, Any]:
    """The 27560 document of one log record (the chain fields of its version)."""
    site = site_iri(record["site_id"])
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "@id": f"{site}:event:{record['event_id']}",
        "@type": "dpv:ConsentRecord",
        "dct:identifier": record["event_id"],
        "dct:conformsTo": [STANDARD, {"@id": PROFILE}],
        "dct:date": record["received_at"],
        "dpv:hasDataSubject": {"@id": _subject_iri(record), "@type": "dpv:DataSubject"},
        "dpv:hasLegalBasis": GDPR_CONSENT if controller.under_gdpr() else EXPRESSED_CONSENT,
    }
    status = STATUS.get(record["action"])  # none for a link or unlink: no consent changed
    if status is not None:
        doc["dpv:hasConsentStatus"] = status
    doc.update(_site_facts(controller))
    if record["policy_version"] is not None:
        doc["dpv:hasNotice"] = _notice(record, controller)
    purposes = record["purposes"] or {}
    if purposes:
        doc["dpv:hasProcess"] = [
            {
                "@type": "dpv:Process",
                "dpv:hasPurpose": {
                    "@id": f"{site}:purpose:{key}",
                    "@type": "dpv:Purpose",
                    "dct:title": key,
                },
                "dpv:hasConsentStatus": "dpv:ConsentGiven" if given else "dpv:ConsentRefused",
            }
            for key, given in sorted(purposes.items())
        ]
    doc["cmp:event"] = _event(record)
    doc["cmp:record"] = dict(record)
    return doc


def _site_facts(controller: Controller) -> dict[str, Any]:
    """The controller, jurisdiction, law and withdrawal control the site fields give."""
    facts: dict[str, Any] = {}
    party: dict[str, Any] = {"@type": "dpv:DataController"}
    if controller.name:
        party["dpv:hasName"] = controller.name
    if controller.contact:
        party["dpv:hasContact"] = controller.contact
    if len(party) > 1:
        facts["dpv:hasDataController"] = party
    if controller.jurisdiction:
        facts["dpv:hasJurisdiction"] = [f"loc:{controller.jurisdiction}"]
        if controller.under_gdpr():
            facts["dpv:hasApplicableLaw"] = GDPR
    if controller.withdrawal_url:
        facts["dpv:hasConsentControl"] = {
            "@type": "dpv:WithdrawConsent",
            "dpv:isExercisedAt": iri(controller.withdrawal_url),
        }
    return facts


def _notice(record: Mapping[str, Any], controller: Controller) -> dict[str, Any]:
    notice: dict[str, Any] = {
        "@type": "dpv:ConsentNotice",
        "dct:hasVersion": record["policy_version"],
        "cmp:contentSha256": record["policy_sha256"],
    }
    if record["language"]:
        notice["dct:language"] = record["language"]
    if controller.policy_url:
        notice["dct:source"] = iri(controller.policy_url)
    return notice


def _event(record: Mapping[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = {
        "cmp:action": record["action"],
        "cmp:receivedAt": record["received_at"],
    }
    for name, term in (
        ("occurred_at", "cmp:occurredAt"),
        ("source", "cmp:collectionMethod"),
        ("page_url", "cmp:pageUrl"),  # version 1 only: version 2 commits to it
        ("gpc", "cmp:globalPrivacyControl"),
    ):
        if record.get(name) is not None:
            event[term] = record[name]
    return event
