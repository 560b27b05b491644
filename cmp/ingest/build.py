"""Step 3 of the pipeline: a validated event and the request's facts → the log row.

The chain record (`cmp.audit.chain.CHAIN_FIELDS`) is made here, with its canonical JSON
split around `seq` for the database to splice in; `body_digest` is what tells a retry
(same body: a duplicate) from a reused event id (another body: 409).
"""

from __future__ import annotations

import hashlib
from typing import Any

from cmp.audit.chain import commitment_fields, commitments, draw_salts, subject_digest
from cmp.audit.record import RECORD_VERSION
from cmp.canonical import canonical_json, utc_text
from cmp.consent import PolicyView
from cmp.ingest.facts import Facts
from cmp.jurisdiction import site_rules
from cmp.models import EventIn
from cmp.store.events import NewEvent
from cmp.store.sites import StoredSite


def body_digest(event: EventIn) -> bytes:
    """Digest of the event as the client meant it: a retry matches, a reuse does not.

    Every field in a fixed order, choices sorted, so key order and whitespace of a
    retried body do not matter.
    """
    occurred = event.occurred_at.isoformat() if event.occurred_at else ""
    # Record version 2's fields join only when sent, so an event stored before them
    # keeps its digest (its retry stays a duplicate).
    added = (event.impression_id, event.variant)
    text = repr(
        (
            event.event_id,
            event.subject_id,
            event.policy_version,
            event.action,
            sorted(event.purposes.items()) if event.purposes is not None else None,
            sorted(event.services.items()) if event.services is not None else None,
            event.language,
            occurred,
            event.source,
            event.page_url,
        )
        + (added if added != (None, None) else ())
    )
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def build(
    site: StoredSite,
    view: PolicyView,
    event: EventIn,
    purposes: dict[str, bool],
    services: dict[str, bool],
    facts: Facts,
) -> NewEvent:
    site_id = site.site_id
    rules = site_rules(site)
    rule = rules.match(facts.location)
    occurred = event.occurred_at  # in UTC already (cmp.models.OccurredAt)
    disclosed = {
        "subject_digest": subject_digest(site.subject_key, event.subject_id),
        "page_url": event.page_url,  # stored form already (cmp.models.page_url)
        "ip_prefix": facts.ip_prefix,
        "user_agent": facts.user_agent,
        "user_digest": None,  # only link and unlink records name a user
    }
    salts = draw_salts()  # a fresh salt per field
    digests = commitments(disclosed, salts)
    record: dict[str, Any] = {
        "v": RECORD_VERSION,
        "site_id": site_id,
        "seq": SEQ_MARK,
        "event_id": event.event_id,
        "policy_version": view.version,
        "policy_sha256": view.content_sha256,
        "action": event.action,
        "purposes": purposes,
        "services": services,
        "gpc": facts.gpc,
        "rule": rule.id,
        "rule_sha256": rules.digests[rule.id],
        "country": facts.location.country,
        "region": facts.location.region,
        "language": event.language,
        "source": event.source,
        "origin": facts.origin,
        "occurred_at": utc_text(occurred) if occurred else None,
        "received_at": facts.received_text,
        "impression_id": event.impression_id,
        "variant": event.variant,
        **commitment_fields(digests),
    }
    head, tail = split_at_seq(record)
    return NewEvent(
        site_id=site_id,
        event_id=event.event_id,
        subject_id=event.subject_id,
        body_digest=body_digest(event),
        record=record,
        occurred_at=occurred,
        received_at=facts.received_at,
        head=head,
        tail=tail,
        disclosed=disclosed,
        salts=salts,
        commitments=digests,
    )


# The record's seq is only known under the site's chain lock, in the database: the
# canonical JSON is made here (off the hot lock) with a marker where seq goes, and the
# database splices the number in: head + str(seq) + tail == canonical_json(record).
SEQ_MARK = -1
_SEQ_TOKEN = f'"seq":{SEQ_MARK}'


def split_at_seq(record: dict[str, Any]) -> tuple[str, str]:
    text = canonical_json(record).decode("utf-8")
    # Quotes inside string values are escaped, so the token can only be the real key.
    head, found, tail = text.partition(_SEQ_TOKEN)
    assert found, "chain record without seq"
    return head + '"seq":', tail
