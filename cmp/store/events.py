"""The consent log: append a group-committed batch, read latest states.

`write_batch` is one statement, `SELECT cmp_append(rows)` (sql/schema/*_partition_events):
it locks the chain heads of the batch's sites, finds retries, gives each new event its
site's next `seq` and chain hash, inserts the events and upserts the states — one round
trip, committed by the statement itself (`synchronous_commit` on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from cmp.consent import StoredChoice
from cmp.store.sqlfiles import queries

SQL = queries("events")

# One appended row (the composite type `cmp_new_event`, sql/schema/0003), in order: the
# record's stored fields (`cmp.audit.record.STORED_FIELDS`, each in its column) with
# the request's number in the batch, the subject id, the body digest and the record's
# canonical JSON split around seq. tests/store/test_record.py checks this list against
# the database's type and the record declaration, and `_row` against this list.
NEW_EVENT_COLUMNS: tuple[str, ...] = (
    "site_id",
    "req",
    "event_id",
    "subject_id",
    "subject_digest",
    "policy_version",
    "policy_sha256",
    "action",
    "purposes",
    "services",
    "gpc",
    "language",
    "source",
    "page_url",
    "origin",
    "user_agent",
    "ip_prefix",
    "occurred_at",
    "received_at",
    "body_digest",
    "head",
    "tail",
)

NEW, DUPLICATE, CONFLICT, SKIPPED = "new", "duplicate", "conflict", "skipped"
# Months of log partitions kept ready beyond the current one (made by `cmpd migrate`
# and the maintenance task), so the append's on-demand creation stays a fallback.
PARTITION_MONTHS_AHEAD = 3


@dataclass(slots=True)
class NewEvent:
    """One validated event ready for the log.

    `record` is its chain record; `head` + str(seq) + `tail` is the record's canonical
    JSON once the database has given it a seq.
    """

    site_id: str
    event_id: str
    subject_id: str
    body_digest: bytes
    record: dict[str, Any]
    occurred_at: datetime | None
    received_at: datetime
    head: str
    tail: str


@dataclass(slots=True)
class Submission:
    """The events of one request: stored all together or not at all."""

    events: Sequence[NewEvent]
    outcomes: list[str] | None = None


def _json_text(value: object) -> str:
    return orjson.dumps(value).decode("utf-8")


def split_repeats(batch: Sequence[Submission]) -> tuple[list[Submission], list[Submission]]:
    """(now, later): a request repeating an event id already in the batch waits for the
    next batch, where the first one is stored and the repeat is a plain retry."""
    now: list[Submission] = []
    later: list[Submission] = []
    seen: set[tuple[str, str]] = set()
    for submission in batch:
        keys = [(e.site_id, e.event_id) for e in submission.events]
        if any(k in seen for k in keys):
            later.append(submission)
        else:
            now.append(submission)
            seen.update(keys)
    return now, later


def _row(number: int, event: NewEvent) -> tuple[Any, ...]:
    """The event as a `cmp_new_event`, in the order of NEW_EVENT_COLUMNS."""
    r = event.record
    return (
        event.site_id,
        number,
        event.event_id,
        event.subject_id,
        r["subject_digest"],
        r["policy_version"],
        r["policy_sha256"],
        r["action"],
        _json_text(r["purposes"]),
        _json_text(r["services"]),
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
        event.head,
        event.tail,
    )


async def write_batch(conn: asyncpg.Connection, batch: Sequence[Submission]) -> list[Submission]:
    """Store a batch in one statement; sets outcomes, returns the submissions deferred."""
    now, later = split_repeats(batch)
    rows = [_row(n, event) for n, submission in enumerate(now) for event in submission.events]
    outcomes: list[str] = await conn.fetchval(SQL["append_batch"], rows)
    at = 0
    for submission in now:
        size = len(submission.events)
        submission.outcomes = outcomes[at : at + size]
        at += size
    return later


async def select_states(
    conn: asyncpg.Connection, site_ids: list[str], subject_ids: list[str]
) -> dict[tuple[str, str], StoredChoice]:
    rows = await conn.fetch(SQL["select_states"], site_ids, subject_ids)
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


async def make_partitions_ahead(
    conn: asyncpg.Connection, months: int = PARTITION_MONTHS_AHEAD
) -> int:
    """Create the log's monthly partitions through `months` from now; returns how many
    were new. A month without one is still made on demand by the append itself."""
    return int(await conn.fetchval(SQL["partitions_ahead"], months))
