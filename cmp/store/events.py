"""The consent log: append a group-committed batch, read latest states.

`write_batch` is one statement, `SELECT cmp_append(rows)` (sql/functions/append.sql):
it locks the chain heads of the batch's sites, finds retries, gives each new event its
site's next `seq` and chain hash, inserts the events and upserts the states — one round
trip, committed by the statement itself (`synchronous_commit` on).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import asyncpg
import orjson

from cmp.audit.chain import SALTED
from cmp.audit.record import FIELDS, PERSONAL, SALT_BYTES, STORED_FIELDS
from cmp.consent import StoredChoice
from cmp.store.sqlfiles import queries

SQL = queries("events")

# One appended row is the composite type `cmp_new_event_v2` (sql/schema/0012, and the
# migrations after it that add a record field): its attributes are read from the
# database once, and each is filled from the event by its name (`_column`), so that a
# field added to the record needs no list here. An attribute nothing here can fill
# stops the first append (tests/store/test_record.py checks every one).
ROW_TYPE = "cmp_new_event_v2"

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
    # Version 2: the personal values the record commits to, their salts (one draw,
    # `cmp.audit.chain.SALTED` says where each starts) and the commitments as bytes, in
    # declaration order; empty in a version 1 event.
    disclosed: dict[str, str | None]
    salts: bytes = b""
    commitments: list[bytes | None] = field(default_factory=list)


Row = TypeVar("Row")


@dataclass(slots=True)
class Submission(Generic[Row]):
    """The rows of one request (events; impressions, cmp.store.impressions): stored all
    together or not at all."""

    events: Sequence[Row]
    outcomes: list[str] | None = None


def _json_text(value: object) -> str:
    return orjson.dumps(value).decode("utf-8")


def split_repeats(
    batch: Sequence[Submission[NewEvent]],
) -> tuple[list[Submission[NewEvent]], list[Submission[NewEvent]]]:
    """(now, later): a request repeating an event id already in the batch waits for the
    next batch, where the first one is stored and the repeat is a plain retry."""
    now: list[Submission[NewEvent]] = []
    later: list[Submission[NewEvent]] = []
    seen: set[tuple[str, str]] = set()
    for submission in batch:
        keys = [(e.site_id, e.event_id) for e in submission.events]
        if any(k in seen for k in keys):
            later.append(submission)
        else:
            now.append(submission)
            seen.update(keys)
    return now, later


def _source(name: str) -> str:
    """The expression that reads one `cmp_new_event_v2` attribute from the event `e`
    numbered `n` (its record `r`, personal values `d`, salts `s`, commitments `c`)."""
    if name == "req":
        return "n"
    if name in _OWN:
        return f"e.{name}"
    if name in _SALTS:  # none in a version 1 event, and none stored for a null value
        value, at = _SALTS[name]
        return f"((s[{at}:{at + SALT_BYTES}] or None) if d[{value!r}] is not None else None)"
    if name in _COMMITMENTS:
        return f"(c[{_COMMITMENTS[name]}] if c else None)"
    if name in _PERSONAL:
        return f"d[{name!r}]"
    if name in _CHOICES:
        return f"_json_text(r[{name!r}])"
    if name in _EVERY_VERSION:
        return f"r[{name!r}]"
    if name in _RECORD:
        return f"r.get({name!r})"  # absent: not a field of the record's version
    raise LookupError(f"{ROW_TYPE} has an attribute {name!r} no record field declares")


# NewEvent's own attributes, which the record does not hold as the columns want them.
_OWN = frozenset(
    [
        "site_id",
        "event_id",
        "subject_id",
        "occurred_at",
        "received_at",
        "body_digest",
        "head",
        "tail",
    ]
)
_SALTS = {salt: (value, at) for value, _, salt, at in SALTED}
_COMMITMENTS = {commitment: i for i, (_, commitment, _, _) in enumerate(SALTED)}
_PERSONAL = frozenset(f.name for f in PERSONAL)
_CHOICES = frozenset(f.name for f in FIELDS if f.kind == "choices")
_RECORD = frozenset(STORED_FIELDS)
_EVERY_VERSION = frozenset(f.name for f in FIELDS) & _RECORD

RowMaker = Callable[[int, NewEvent], tuple[Any, ...]]
_makers: dict[str, RowMaker] = {}


def row_maker(names: Sequence[str]) -> RowMaker:
    """One function that makes a row of these attributes from a numbered event, compiled
    from their sources (this runs for every stored event: a tuple display, not a call
    per attribute)."""
    body = ", ".join(_source(name) for name in names)
    code = (
        "def row(n, e):\n"
        "    r, d, s, c = e.record, e.disclosed, e.salts, e.commitments\n"
        f"    return ({body},)\n"
    )
    scope: dict[str, Any] = {"_json_text": _json_text}
    exec(compile(code, f"<{ROW_TYPE} row>", "exec"), scope)
    maker: RowMaker = scope["row"]
    return maker


async def row_columns(conn: asyncpg.Connection, row_type: str = ROW_TYPE) -> list[str]:
    """The attributes of the append's row type, in order, as the database has them."""
    names: list[str] = await conn.fetchval(SQL["select_row_columns"], row_type)
    return names


async def row_getters(conn: asyncpg.Connection, row_type: str = ROW_TYPE) -> RowMaker:
    """The row maker of `row_type` (its attributes asked of the database once a process)."""
    known = _makers.get(row_type)
    if known is None:
        known = _makers[row_type] = row_maker(await row_columns(conn, row_type))
    return known


def as_row(maker: RowMaker, number: int, event: NewEvent) -> tuple[Any, ...]:
    """The event as a row of the append's type, numbered in its batch."""
    return maker(number, event)


async def write_batch(
    conn: asyncpg.Connection, batch: Sequence[Submission[NewEvent]]
) -> list[Submission[NewEvent]]:
    """Store a batch in one statement; sets outcomes, returns the submissions deferred."""
    now, later = split_repeats(batch)
    make = await row_getters(conn)
    rows = [make(n, event) for n, submission in enumerate(now) for event in submission.events]
    outcomes: list[str] = await conn.fetchval(SQL["append_batch"], rows)
    at = 0
    for submission in now:
        size = len(submission.events)
        submission.outcomes = outcomes[at : at + size]
        at += size
    return later


Pair = tuple[str, str]  # (site id, subject id)
# A linked pair's peers: every subject linked to its user now, itself included, each with
# its latest choice (None: none yet).
Peers = list[tuple[str, StoredChoice | None]]


async def select_states(
    conn: asyncpg.Connection, site_ids: list[str], subject_ids: list[str]
) -> tuple[dict[Pair, StoredChoice], dict[Pair, Peers]]:
    """The latest choice of each (site, subject) pair that has one, and the peers of each
    pair linked to a user now: one statement, one snapshot."""
    choices: dict[Pair, StoredChoice] = {}
    peers: dict[Pair, Peers] = {}
    for r in await conn.fetch(SQL["select_states"], site_ids, subject_ids):
        choice = None if r["event_id"] is None else _choice(r)
        pair = (r["site_id"], r["asked"])
        if r["peer"]:
            peers.setdefault(pair, []).append((r["subject_id"], choice))
        elif choice is not None:
            choices[pair] = choice
    return choices, peers


def _choice(r: asyncpg.Record) -> StoredChoice:
    return StoredChoice(
        event_id=r["event_id"],
        policy_version=r["policy_version"],
        action=r["action"],
        purposes=r["purposes"],
        services=r["services"],
        gpc=r["gpc"],
        recorded_at=r["recorded_at"],
        rule=r["rule"],
    )


async def make_partitions_ahead(
    conn: asyncpg.Connection, months: int = PARTITION_MONTHS_AHEAD
) -> int:
    """Create the log's monthly partitions through `months` from now; returns how many
    were new. A month without one is still made on demand by the append itself."""
    return int(await conn.fetchval(SQL["partitions_ahead"], months))
