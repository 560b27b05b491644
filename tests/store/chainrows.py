"""Consent-log rows built as the ingest pipeline builds them, with any `received_at`:
the store tests write them through the real `write_batch` (hence real hash chains)."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from datetime import datetime
from typing import Any

import asyncpg

from cmp.audit.chain import chain_record, export_line
from cmp.audit.record import STORED_FIELDS
from cmp.canonical import utc_text
from cmp.ingest.build import split_at_seq
from cmp.store.events import NewEvent, Submission, write_batch


def new_event(
    site_id: str,
    received_at: datetime,
    subject_id: str | None = None,
    action: str = "accept_all",
    purposes: dict[str, bool] | None = None,
) -> NewEvent:
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
    }
    head, tail = split_at_seq(record)
    body = hashlib.sha256(record["event_id"].encode()).digest()[:16]
    return NewEvent(
        site_id, record["event_id"], subject_id, body, record, None, received_at, head, tail
    )


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


def record_of_row(row: asyncpg.Record) -> dict[str, Any]:
    """The chain record a stored row holds, rebuilt in Python (the definition)."""
    fields = {name: row[name] for name in STORED_FIELDS}
    for name in ("purposes", "services"):
        if isinstance(fields[name], str):  # jsonb without a codec arrives as text
            fields[name] = json.loads(fields[name])
    return chain_record(**fields)


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
        ).decode("utf-8")[:-1]  # the store's lines come without their newline
        for row in rows
    ]
