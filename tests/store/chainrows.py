"""Consent-log rows built as the ingest pipeline builds them, with any `received_at`:
the store tests write them through the real `write_batch` (hence real hash chains)."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from cmp.audit.chain import chain_record, commitment_fields, commitments, export_line
from cmp.audit.record import ALL_FIELDS, PERSONAL, RECORD_VERSION, SALT_BYTES, layout
from cmp.canonical import utc_text
from cmp.ingest.build import split_at_seq
from cmp.jurisdiction import DEFAULT_RULE
from cmp.store.events import NewEvent, Submission, as_row, row_getters, write_batch

FIELD_NAMES = frozenset(f.name for f in ALL_FIELDS)

# Record version 2's own fields, which a version 1 record does not have, and their values
# for a site without jurisdictions (everyone under the one opt-in rule, location unknown).
LATER = frozenset(f.name for f in ALL_FIELDS if f.since > 1)
LATER_DEFAULTS: dict[str, Any] = {
    "rule": DEFAULT_RULE.id,
    "rule_sha256": DEFAULT_RULE.sha256(),
    "country": None,
    "region": None,
}


def new_event(
    site_id: str,
    received_at: datetime,
    subject_id: str | None = None,
    action: str = "accept_all",
    purposes: dict[str, bool] | None = None,
    version: int = RECORD_VERSION,
    **fields: Any,
) -> NewEvent:
    """An event as the pipeline builds it; `fields` replace record fields (the texts
    from outside, say, as no request could send them)."""
    subject_id = subject_id or f"s-{secrets.token_hex(6)}"
    record: dict[str, Any] = {
        "v": 1,
        "site_id": site_id,
        "seq": -1,
        "event_id": str(uuid.uuid4()),
        "subject_digest": hashlib.sha256(f"{site_id}/{subject_id}".encode()).hexdigest(),
        "policy_version": 1,
        "policy_sha256": "0" * 64,
        "action": action,
        "purposes": purposes
        if purposes is not None
        else {"necessary": True, "statistics": action == "accept_all"},
        "services": {"google-analytics": action == "accept_all"},
        "gpc": False,
        "language": "nb",
        "source": "cmp-banner/1.0",
        "page_url": "https://shop.example/p",
        "origin": "https://shop.example",
        "ip_prefix": "203.0.113.0/24",
        "user_agent": "test",
        "occurred_at": None,
        "received_at": utc_text(received_at),
        **fields,
    }
    body = hashlib.sha256(record["event_id"].encode()).digest()[:16]
    return event_of(record, subject_id, body, received_at, None, version)


def event_of(
    full: dict[str, Any],
    subject_id: str,
    body: bytes,
    received_at: datetime,
    occurred_at: datetime | None,
    version: int = RECORD_VERSION,
) -> NewEvent:
    """A NewEvent of record `version` from every declared field's value (each personal
    value in the clear; a field `full` lacks is null), as the ingest pipeline builds it."""
    if version > 1:
        full = {**LATER_DEFAULTS, **full}
    disclosed = {f.name: full.get(f.name) for f in PERSONAL}
    plain = {f.name: full.get(f.name) for f in layout(version).fields if f.name in FIELD_NAMES}
    salts: bytes = b""
    digests: list[bytes | None] = []
    if version == 1:
        record = {**plain, "v": 1}
    else:
        salts = secrets.token_bytes(SALT_BYTES * len(PERSONAL))
        digests = commitments(disclosed, salts)
        record = {**plain, "v": version, **commitment_fields(digests)}
    head, tail = split_at_seq(record)
    return NewEvent(
        full["site_id"],
        full["event_id"],
        subject_id,
        body,
        record,
        occurred_at,
        received_at,
        head,
        tail,
        disclosed=disclosed,
        salts=salts,
        commitments=digests,
    )


async def append_before_v2(conn: asyncpg.Connection, events: list[NewEvent]) -> list[str]:
    """Store version 1 events as the previous release does (before 0012, or during a
    rolling upgrade): through `cmp_append(cmp_new_event[])`."""
    assert all(e.record["v"] == 1 for e in events)
    getters = await row_getters(conn, "cmp_new_event")  # the type before 0012
    rows = [as_row(getters, n, e) for n, e in enumerate(events)]
    outcomes: list[str] = await conn.fetchval("SELECT cmp_append($1::cmp_new_event[])", rows)
    return outcomes


async def append(conn: asyncpg.Connection, events: list[NewEvent]) -> list[str]:
    """Store events as one request each, in one batch; returns their outcomes."""
    submissions = [Submission([e]) for e in events]
    deferred = await write_batch(conn, submissions)
    assert not deferred
    return [o for s in submissions for o in (s.outcomes or [])]


async def insert_site(
    conn: asyncpg.Connection,
    site_id: str,
    *,
    retention_days: int = 1825,
    validity_days: int = 365,
    head: bool = True,
) -> None:
    """A site row as an older cmp (or a hand edit) may have left it."""
    await conn.execute(
        "INSERT INTO sites (site_id, name, languages, default_language,"
        " consent_validity_days, retention_days, subject_key)"
        " VALUES ($1, $1, '{nb}', 'nb', $2, $3, '\\x00')",
        site_id,
        validity_days,
        retention_days,
    )
    if head:
        await conn.execute("INSERT INTO log_heads (site_id) VALUES ($1)", site_id)


def record_of_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The chain record a stored row holds, rebuilt in Python (the definition)."""
    fields: dict[str, Any] = {}
    version = row.get("v", 1)  # a table older than record version 2 holds version 1
    for field in layout(version).fields:
        value = version if field.kind == "version" else row[field.name]
        fields[field.name] = value.hex() if isinstance(value, bytes) else value
    for name in ("purposes", "services"):
        if isinstance(fields[name], str):  # jsonb without a codec arrives as text
            fields[name] = json.loads(fields[name])
    return chain_record(**fields)


def disclosures_of_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """What an export row adds for the personal values of a stored row's version: each
    value, and its salt while the value is kept."""
    out: dict[str, Any] = {}
    for field, _, salt in layout(row.get("v", 1)).disclosures:
        out[field.name] = row[field.name]
        out[salt] = None if row[field.name] is None else row[salt].hex()
    return out


async def export_in_python(conn: asyncpg.Connection, site_id: str) -> list[str]:
    """A site's export lines as `cmp.audit.chain.export_line` writes them from its rows:
    what the database's export must equal, whatever the schema it is read from."""
    rows = await conn.fetch("SELECT * FROM consent_events WHERE site_id = $1 ORDER BY seq", site_id)
    return [
        export_line(
            record_of_row(row),
            prev_hash=row["prev_hash"],
            hash=row["hash"],
            subject_id=row["subject_id"],
            **disclosures_of_row(row),
        ).decode("utf-8")[:-1]  # the store's lines come without their newline
        for row in rows
    ]
