"""The consent log: append a group-committed batch, read latest states.

`write_batch` runs inside one transaction: lock the chain heads of the batch's sites,
find retries, give each new event its site's next `seq` and chain hash, then insert
events, upsert states and advance heads in one statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from cmp.audit.chain import record_hash
from cmp.consent import StoredChoice
from cmp.store.sqlfiles import queries

Q = queries("events")

NEW, DUPLICATE, CONFLICT = "new", "duplicate", "conflict"


@dataclass(slots=True)
class NewEvent:
    """One validated event ready for the log. `record` is its chain record without seq."""

    site_id: str
    event_id: str
    subject_id: str
    body_digest: bytes
    record: dict[str, Any]
    occurred_at: datetime | None
    received_at: datetime


@dataclass(slots=True)
class Submission:
    """The events of one request: stored all together or not at all."""

    events: Sequence[NewEvent]
    outcomes: list[str] | None = None


async def write_batch(conn: asyncpg.Connection, batch: Sequence[Submission]) -> None:
    """Store a batch (caller holds the transaction); sets each submission's outcomes."""
    sites = sorted({e.site_id for s in batch for e in s.events})
    heads = {r["site_id"]: (r["seq"], r["hash"]) for r in await conn.fetch(Q["lock_heads"], sites)}
    keys_site = [e.site_id for s in batch for e in s.events]
    keys_id = [e.event_id for s in batch for e in s.events]
    seen: dict[tuple[str, str], bytes] = {
        (r["site_id"], r["event_id"]): bytes(r["body_digest"] or b"")
        for r in await conn.fetch(Q["select_existing"], keys_site, keys_id)
    }
    fresh: list[NewEvent] = []
    for submission in batch:
        outcomes = _classify(submission.events, seen)
        submission.outcomes = outcomes
        if CONFLICT in outcomes:
            continue
        for event, outcome in zip(submission.events, outcomes, strict=True):
            if outcome == NEW:
                seen[(event.site_id, event.event_id)] = event.body_digest
                fresh.append(event)
    if not fresh:
        return
    columns: list[list[Any]] = [[] for _ in range(22)]
    for event in fresh:
        seq, prev = heads[event.site_id]
        seq += 1
        record = event.record
        record["seq"] = seq
        digest = record_hash(prev, record)
        heads[event.site_id] = (seq, digest)
        for column, value in zip(columns, _row(event, seq, prev, digest), strict=True):
            column.append(value)
    head_sites = list(heads)
    await conn.execute(
        Q["insert_batch"],
        *columns,
        head_sites,
        [heads[s][0] for s in head_sites],
        [heads[s][1] for s in head_sites],
    )


def _classify(events: Sequence[NewEvent], seen: dict[tuple[str, str], bytes]) -> list[str]:
    outcomes = []
    for event in events:
        stored = seen.get((event.site_id, event.event_id))
        if stored is None:
            outcomes.append(NEW)
        elif stored == event.body_digest:
            outcomes.append(DUPLICATE)
        else:
            outcomes.append(CONFLICT)
    return outcomes


def _row(event: NewEvent, seq: int, prev: str, digest: str) -> tuple[Any, ...]:
    r = event.record
    return (
        event.site_id,
        seq,
        event.event_id,
        event.subject_id,
        r["subject_digest"],
        r["policy_version"],
        r["policy_sha256"],
        r["action"],
        r["purposes"],
        r["services"],
        r["gpc"],
        r["language"],
        r["source"],
        r["page_url"],
        r["origin"],
        r["user_agent"],
        r["ip_prefix"],
        event.occurred_at,
        event.received_at,
        event.body_digest,
        prev,
        digest,
    )


async def select_states(
    conn: asyncpg.Connection, site_ids: list[str], subject_ids: list[str]
) -> dict[tuple[str, str], StoredChoice]:
    rows = await conn.fetch(Q["select_states"], site_ids, subject_ids)
    return {
        (r["site_id"], r["subject_id"]): StoredChoice(
            event_id=r["event_id"],
            policy_version=r["policy_version"],
            action=r["action"],
            purposes=r["purposes"],
            services=r["services"],
            gpc=r["gpc"],
            recorded_at=r["recorded_at"],
        )
        for r in rows
    }
