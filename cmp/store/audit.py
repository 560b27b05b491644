"""The audit side of the log: streaming export, erasure, checkpoints, retention purge
(by the month where it can: the log is partitioned by month of `received_at`)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from cmp.audit.chain import commit, erased_record, record_hash
from cmp.audit.record import SALT_BYTES
from cmp.store.recordtext import record_text
from cmp.store.sqlfiles import queries

SQL = queries("audit")
# Records per fetch of an export's cursor: the next chunk is asked for while the caller
# uses this one, and the database can only run ahead as far as the socket's buffer
# takes its rows (loadtest/README.md has the measurement).
EXPORT_CHUNK = 500
# Records per COPY statement of a CSV export (a window of seqs): each statement, writing
# included, runs under the pool's command timeout, so a window must be written in that
# time even to a slow client.
CSV_WINDOW = 2000
LAST_SEQ = 2**63 - 1
# The export's columns of text from outside: cmp_csv_cell neutralises their formulas and
# COPY quotes each of their cells (OWASP "CSV Injection": prefix and quote).
CSV_OUTSIDE_TEXT = ("language", "source", "page_url", "origin", "user_agent", "subject_id")


@dataclass(frozen=True, slots=True)
class ExportFilter:
    site_id: str
    since: datetime | None = None
    until: datetime | None = None
    policy_version: int | None = None
    subject_digest: str | None = None

    def args(self) -> tuple[Any, ...]:
        return (self.site_id, self.since, self.until, self.policy_version, self.subject_digest)


@asynccontextmanager
async def export_lines(
    conn: asyncpg.Connection, where: ExportFilter
) -> AsyncIterator[AsyncGenerator[list[str], None]]:
    """JSON lines in seq order, in chunks, from a server-side cursor (constant memory):
    `async with export_lines(conn, where) as chunks: async for lines in chunks: ...`

    The caller holds the transaction the cursor lives in. Leaving the block closes the
    chunks, also after an early stop: the next chunk is being fetched meanwhile, and the
    connection runs one operation at a time, so the transaction can only go on (or end)
    once that fetch is done.
    """
    async with aclosing(_chunks(conn, where)) as chunks:
        yield chunks


async def _chunks(conn: asyncpg.Connection, where: ExportFilter) -> AsyncGenerator[list[str], None]:
    await _stream_in_seq_order(conn)
    # A cursor needs a named statement, and asyncpg numbers those per process: behind a
    # transaction-mode pooler, two processes' "__asyncpg_stmt_7__" met on one server
    # connection (DuplicatePreparedStatement). A random name cannot collide.
    statement = await conn.prepare(SQL["export_lines"], name=f"cmp_export_{uuid.uuid4().hex}")
    cursor = await statement.cursor(*where.args())
    ahead = asyncio.ensure_future(cursor.fetch(EXPORT_CHUNK))
    try:
        while rows := await ahead:
            # The database reads the next chunk while these become lines and are written.
            ahead = asyncio.ensure_future(cursor.fetch(EXPORT_CHUNK))
            await asyncio.sleep(0)  # its request goes out before the lines are made
            yield [record_text(*row) for row in rows]
    finally:
        await asyncio.gather(ahead, return_exceptions=True)


async def _stream_in_seq_order(conn: asyncpg.Connection) -> None:
    """Read along the (site_id, seq) index rather than sort the whole site first: the
    planner prefers a sort for a big site, which delays the first byte by seconds and
    needs memory proportional to the log (for this transaction only)."""
    await conn.execute("SET LOCAL enable_sort = off")


async def export_csv(
    conn: asyncpg.Connection,
    where: ExportFilter,
    write: Callable[[bytes], Awaitable[None]],
    *,
    window: int = CSV_WINDOW,
) -> None:
    """CSV with a header row, streamed by COPY … TO STDOUT straight into `write`: one
    COPY per window of `window` records, in seq order. No cell starts a spreadsheet
    formula (CSV_OUTSIDE_TEXT).

    One COPY of a whole site ran under one command timeout, writes to the client
    included, and a large site or a slow client outlived it mid-stream. The caller's
    transaction should be REPEATABLE READ, so the windows read one snapshot.
    """
    await _stream_in_seq_order(conn)
    after = 0
    while True:
        end = await conn.fetchval(SQL["export_csv_window_end"], *where.args(), after, window)
        await conn.copy_from_query(
            SQL["export_csv"].rstrip().rstrip(";"),
            *where.args(),
            after,
            LAST_SEQ if end is None else end,
            output=write,
            format="csv",
            force_quote=list(CSV_OUTSIDE_TEXT),
            header=after == 0,  # the first window; an empty export is its header
        )
        if end is None:
            return
        after = end


async def count_events(conn: asyncpg.Connection, site_id: str) -> int:
    return int(await conn.fetchval(SQL["count_events"], site_id))


async def select_chain_head(conn: asyncpg.Connection, site_id: str) -> tuple[int, str] | None:
    row = await conn.fetchrow(SQL["select_chain_head"], site_id)
    return (row["seq"], row["hash"]) if row else None


@dataclass(frozen=True, slots=True)
class Erasure:
    events: int
    seq: int
    hash: str


async def erase_subject(
    conn: asyncpg.Connection, site_id: str, subject_id: str, digest: str, now: datetime
) -> Erasure | None:
    """Remove the subject from the log and the state and append an `erased` record; None
    (and nothing changed) when the log holds no record or state of the subject to erase.

    Runs in one transaction holding the chain head, like a group-commit batch. Version 2
    records lose every personal value; the erased record holds a commitment to the
    digest, with its salt, so the subject's own access request still finds it.
    """
    async with conn.transaction():
        chain_head = await conn.fetchrow(SQL["lock_chain_head"], site_id)
        assert chain_head is not None
        rows = int(await conn.fetchval(SQL["erase_subject_rows"], site_id, digest))
        status = await conn.execute(SQL["delete_state"], site_id, subject_id)
        await conn.execute(SQL["delete_link"], site_id, subject_id)
        if rows == 0 and status.split()[-1] == "0":
            return None
        await conn.execute(SQL["ensure_partition"], now)
        seq = chain_head["seq"] + 1
        event_id = str(uuid.uuid4())
        salt = secrets.token_bytes(SALT_BYTES)
        commitment = commit(salt, digest)
        record = erased_record(
            site_id=site_id,
            seq=seq,
            event_id=event_id,
            subject_commitment=commitment,
            received_at=now,
        )
        digest_hash = record_hash(chain_head["hash"], record)
        await conn.execute(
            SQL["insert_erased"],
            site_id,
            seq,
            event_id,
            None,
            now,
            chain_head["hash"],
            digest_hash,
            bytes.fromhex(commitment or ""),
            salt,
        )
    return Erasure(events=rows, seq=seq, hash=digest_hash)


async def erasure_lines(conn: asyncpg.Connection, site_id: str, digest: str) -> list[str]:
    """The export lines of the erasure records of the subject whose digest is `digest`."""
    rows = await conn.fetch(SQL["select_erasures"], site_id, digest)
    return [record_text(*row) for row in rows]


async def insert_checkpoint(
    conn: asyncpg.Connection, checkpoint: dict[str, Any], kind: str
) -> None:
    await conn.execute(
        SQL["insert_checkpoint"],
        checkpoint["site_id"],
        checkpoint["seq"],
        checkpoint["hash"],
        datetime.strptime(checkpoint["signed_at"], "%Y-%m-%dT%H:%M:%S.%f%z"),
        checkpoint["key_id"],
        checkpoint["signature"],
        kind,
    )


async def select_checkpoints(
    conn: asyncpg.Connection, site_id: str, limit: int = 100
) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(SQL["select_checkpoints"], site_id, limit)]


async def select_sites_to_checkpoint(conn: asyncpg.Connection) -> list[tuple[str, int, str]]:
    return [
        (r["site_id"], r["seq"], r["hash"])
        for r in await conn.fetch(SQL["select_sites_to_checkpoint"])
    ]


async def select_sites_due_checkpoint(
    conn: asyncpg.Connection, min_age_seconds: float
) -> list[tuple[str, int, str]]:
    rows = await conn.fetch(SQL["select_sites_due_checkpoint"], min_age_seconds)
    return [(r["site_id"], r["seq"], r["hash"]) for r in rows]


@dataclass(frozen=True, slots=True)
class PurgeCut:
    """A site's records from `first_seq` through `seq` are past its retention."""

    site_id: str
    seq: int
    hash: str
    received_at: datetime  # the cut record's
    first_seq: int


async def select_purge_cuts(conn: asyncpg.Connection) -> list[PurgeCut]:
    return [
        PurgeCut(r["site_id"], r["seq"], r["hash"], r["received_at"], r["first_seq"])
        for r in await conn.fetch(SQL["select_purge_cut"])
    ]


def partition_month(name: str) -> date:
    """First day of the month a log partition holds (`consent_events_YYYY_MM`)."""
    year, month = name.rsplit("_", 2)[1:]
    return date(int(year), int(month), 1)


def month_after(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


async def select_event_partitions(conn: asyncpg.Connection) -> list[str]:
    return [r["name"] for r in await conn.fetch(SQL["select_event_partitions"])]


async def partition_expired(conn: asyncpg.Connection, name: str, cuts: list[PurgeCut]) -> bool:
    """Is every row of the partition at or before its site's cut? (One probe per site.)"""
    return bool(
        await conn.fetchval(
            SQL["partition_expired"], name, [c.site_id for c in cuts], [c.seq for c in cuts]
        )
    )


async def detach_partition(conn: asyncpg.Connection, name: str, lock_wait: str) -> bool:
    """Detach a month of the log after deleting its ids (caller's transaction, commit
    right after: it holds the log's exclusive lock); False when the lock was not
    granted within `lock_wait`. `drop_detached_months` removes it after the commit."""
    await _purging(conn)
    return bool(await conn.fetchval(SQL["detach_partition"], name, lock_wait))


async def drop_detached_months(conn: asyncpg.Connection) -> list[str]:
    """Drop the months detached by a purge, in a transaction of its own (it locks only
    those tables: removing their files does not hold the log); returns their names."""
    async with conn.transaction():
        return [r["name"] for r in await conn.fetch(SQL["drop_detached_months"])]


async def _purging(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT set_config('cmp.purge', 'on', true)")


@dataclass(frozen=True, slots=True)
class PurgeCount:
    events: int
    states: int


async def purge_before(
    conn: asyncpg.Connection, cut: PurgeCut, received_from: datetime | None = None
) -> PurgeCount:
    """Delete a site's records through the cut that were received from `received_from`
    on (older months are dropped whole), their ids, and the states and user links they
    proved (the caller's transaction, so neither outlives its proof); returns the counts."""
    await _purging(conn)
    since = received_from or datetime.min.replace(tzinfo=UTC)
    row = await conn.fetchrow(SQL["purge_before"], cut.site_id, cut.seq, since)
    await conn.execute(SQL["purge_links"], cut.site_id, cut.seq)
    return PurgeCount(row["events"], row["states"])


async def purge_month_states(conn: asyncpg.Connection, name: str) -> dict[str, int]:
    """Delete the states proved by the records of a month about to be dropped (the
    caller's transaction); returns how many per site."""
    return {r["site_id"]: r["states"] for r in await conn.fetch(SQL["purge_month_states"], name)}
