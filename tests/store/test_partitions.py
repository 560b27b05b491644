"""The log in monthly partitions (issue 12, items 1 and 3): partitions made ahead and on
demand, idempotency across months, purge by the month with every chain still
verifying. Each test that purges or drops months has a database of its own."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from cmp.audit.signing import Signer
from cmp.audit.verify import verify_export
from cmp.maintenance import make_partitions, purge
from cmp.store import audit as audit_store
from cmp.store.audit import ExportFilter
from cmp.store.db import connect
from cmp.store.events import PARTITION_MONTHS_AHEAD
from tests.store.chainrows import append, insert_site, new_event


def month_start(at: datetime, shift: int = 0) -> datetime:
    """First instant (UTC) of the month `shift` months from the one holding `at`."""
    index = at.year * 12 + at.month - 1 + shift
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(at: datetime) -> str:
    return f"consent_events_{at.year:04d}_{at.month:02d}"


async def partitions(conn: asyncpg.Connection) -> list[str]:
    return await audit_store.select_event_partitions(conn)


async def export(conn: asyncpg.Connection, site_id: str) -> list[str]:
    lines: list[str] = []
    async with conn.transaction(), audit_store.export_lines(conn, ExportFilter(site_id)) as chunks:
        async for chunk in chunks:
            lines.extend(chunk)
    return lines


def verified(lines: list[str]) -> bool:
    result = verify_export(lines)
    assert result.ok, result.summary()
    return True


async def test_the_log_is_range_partitioned_by_month_without_a_default(
    fresh: asyncpg.Connection,
) -> None:
    key = await fresh.fetchrow(
        "SELECT p.partstrat::text AS partstrat, a.attname FROM pg_partitioned_table p"
        " JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]"
        " WHERE p.partrelid = 'consent_events'::regclass"
    )
    assert key is not None and (key["partstrat"], key["attname"]) == ("r", "received_at")
    bounds = await fresh.fetch(
        "SELECT pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'consent_events'::regclass"
    )
    assert bounds and not any(b["bound"] == "DEFAULT" for b in bounds)
    now = datetime.now(UTC)
    wanted = [partition_name(month_start(now, k)) for k in range(PARTITION_MONTHS_AHEAD + 1)]
    assert await partitions(fresh) == wanted
    # The idempotency key lives in its own table, unique across all months.
    unique = await fresh.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'consent_event_ids'::regclass AND contype = 'p'"
    )
    assert unique == "PRIMARY KEY (site_id, event_id)"


async def test_an_event_in_a_month_without_a_partition_is_stored(
    fresh: asyncpg.Connection, fresh_dsn: str
) -> None:
    await insert_site(fresh, "far")
    beyond = month_start(datetime.now(UTC), PARTITION_MONTHS_AHEAD + 2) + timedelta(days=3)
    assert partition_name(beyond) not in await partitions(fresh)
    # Two writers hit the missing month at the same moment: both events are stored.
    other = await connect(fresh_dsn)
    try:
        await insert_site(fresh, "far2")
        results = await asyncio.gather(
            append(fresh, [new_event("far", beyond)]),
            append(other, [new_event("far2", beyond + timedelta(seconds=1))]),
        )
    finally:
        await other.close()
    assert results == [["new"], ["new"]]
    assert partition_name(beyond) in await partitions(fresh)
    stored = await fresh.fetchval(
        f"SELECT count(*) FROM {partition_name(beyond)} WHERE site_id = any($1)", ["far", "far2"]
    )
    assert stored == 2
    assert verified(await export(fresh, "far"))


async def test_an_event_id_is_unique_across_months(fresh: asyncpg.Connection) -> None:
    await insert_site(fresh, "ids")
    now = datetime.now(UTC)
    first = new_event("ids", month_start(now, -2) + timedelta(days=1))
    assert await append(fresh, [first]) == ["new"]
    retry = new_event("ids", now)
    retry.event_id, retry.record["event_id"] = first.event_id, first.event_id
    retry.body_digest = first.body_digest
    assert await append(fresh, [retry]) == ["duplicate"]
    retry.body_digest = b"another body...."
    assert await append(fresh, [retry]) == ["conflict"]
    assert await fresh.fetchval("SELECT count(*) FROM consent_events WHERE site_id = 'ids'") == 1


async def test_coming_months_are_made_once_across_instances(
    fresh: asyncpg.Connection, fresh_dsn: str
) -> None:
    now = datetime.now(UTC)
    ahead = [partition_name(month_start(now, k)) for k in range(1, PARTITION_MONTHS_AHEAD + 1)]
    for name in ahead:  # empty: as if the months had never been made
        await fresh.execute(f"DROP TABLE {name}")
    conns = [await connect(fresh_dsn) for _ in range(4)]
    try:
        made = await asyncio.gather(*(make_partitions(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    assert sum(made) == len(ahead)
    assert await partitions(fresh) == [partition_name(now), *ahead]
    assert await make_partitions(fresh) == 0


async def fill_two_sites(conn: asyncpg.Connection) -> dict[str, Any]:
    """Site `sa` (retention 200 days) and `sb` (400), rows in months -12, -11, -1 and now."""
    now = datetime.now(UTC)
    m12, m11, m1 = (month_start(now, k) for k in (-12, -11, -1))
    await insert_site(conn, "sa", retention_days=200, validity_days=30)
    await insert_site(conn, "sb", retention_days=400, validity_days=30)
    rows = [
        *(new_event("sa", m12 + timedelta(days=5, minutes=i)) for i in range(3)),
        *(new_event("sb", m12 + timedelta(days=10, minutes=i)) for i in range(2)),
        *(new_event("sa", m11 + timedelta(days=5, minutes=i)) for i in range(2)),
        *(new_event("sa", m1 + timedelta(days=5, minutes=i)) for i in range(2)),
        *(new_event("sb", m1 + timedelta(days=5, minutes=i)) for i in range(2)),
        new_event("sa", now),
    ]
    for event in rows:  # one at a time: seq follows received_at, as in production
        assert await append(conn, [event]) == ["new"]
    return {"m12": partition_name(m12), "m11": partition_name(m11), "m1": partition_name(m1)}


async def _consistent(conn: asyncpg.Connection, site_id: str) -> list[int]:
    """Every kept record has its id row, every state its record; returns the kept seqs."""
    seqs = [
        r["seq"]
        for r in await conn.fetch(
            "SELECT seq FROM consent_events WHERE site_id = $1 ORDER BY seq", site_id
        )
    ]
    ids = await conn.fetchval("SELECT count(*) FROM consent_event_ids WHERE site_id = $1", site_id)
    assert ids == len(seqs)
    orphans = await conn.fetchval(
        "SELECT count(*) FROM consent_state s WHERE s.site_id = $1 AND NOT EXISTS"
        " (SELECT 1 FROM consent_events e WHERE e.site_id = s.site_id AND e.seq = s.seq)",
        site_id,
    )
    assert orphans == 0
    head = await conn.fetchval("SELECT seq FROM log_heads WHERE site_id = $1", site_id)
    assert not seqs or head == seqs[-1]
    lines = await export(conn, site_id)
    assert len(lines) == len(seqs)
    if lines:
        assert verified(lines)
    return seqs


async def test_purge_deletes_inside_a_month_that_still_holds_kept_records_then_drops_it(
    fresh: asyncpg.Connection,
) -> None:
    months = await fill_two_sites(fresh)
    signer = Signer.generate()
    assert await _consistent(fresh, "sa") == [1, 2, 3, 4, 5, 6, 7, 8]

    done = {p.site_id: p for p in await purge(fresh, signer)}

    # b's rows of month -12 are within its retention: the month stays, a's rows go.
    assert set(done) == {"sa"} and (done["sa"].through_seq, done["sa"].deleted) == (5, 5)
    assert done["sa"].states == 5
    assert months["m12"] in await partitions(fresh)
    assert await _consistent(fresh, "sa") == [6, 7, 8]
    assert await _consistent(fresh, "sb") == [1, 2, 3, 4]

    await fresh.execute("UPDATE sites SET retention_days = 300 WHERE site_id = 'sb'")
    done = {p.site_id: p for p in await purge(fresh, signer)}

    assert set(done) == {"sb"} and (done["sb"].through_seq, done["sb"].deleted) == (2, 2)
    left = await partitions(fresh)
    assert months["m12"] not in left and months["m11"] not in left and months["m1"] in left
    assert await _consistent(fresh, "sa") == [6, 7, 8]
    assert await _consistent(fresh, "sb") == [3, 4]
    anchors = await fresh.fetch(
        "SELECT site_id, seq FROM log_checkpoints WHERE kind = 'anchor' ORDER BY site_id"
    )
    assert [(r["site_id"], r["seq"]) for r in anchors] == [("sa", 5), ("sb", 2)]
    # The chain goes on from the kept records.
    assert await append(fresh, [new_event("sb", datetime.now(UTC))]) == ["new"]
    assert await _consistent(fresh, "sb") == [3, 4, 5]


async def test_purge_deletes_the_rows_of_a_month_it_cannot_lock_in_time(
    fresh: asyncpg.Connection, fresh_dsn: str
) -> None:
    months = await fill_two_sites(fresh)
    await fresh.execute("UPDATE sites SET retention_days = 300 WHERE site_id = 'sb'")
    reader = await connect(fresh_dsn)
    try:
        # A long read (an export, say) holds the log: dropping a month must not queue
        # ingest behind it, so the purge deletes that month's rows instead.
        async with reader.transaction():
            await reader.fetchval("SELECT count(*) FROM consent_events")
            done = {p.site_id: p for p in await purge(fresh, Signer.generate(), lock_wait="50ms")}
    finally:
        await reader.close()
    assert (done["sa"].through_seq, done["sb"].through_seq) == (5, 2)
    assert months["m12"] in await partitions(fresh)
    assert await fresh.fetchval(f"SELECT count(*) FROM {months['m12']}") == 0
    assert await _consistent(fresh, "sa") == [6, 7, 8]
    assert await _consistent(fresh, "sb") == [3, 4]


async def tables(conn: asyncpg.Connection, names: list[str]) -> list[str]:
    """Which of these tables exist at all, attached to the log or not."""
    return [
        r["relname"]
        for r in await conn.fetch(
            "SELECT relname FROM pg_class WHERE relname = any($1) ORDER BY relname", names
        )
    ]


async def test_a_dropped_month_is_gone_and_its_files_go_outside_the_logs_lock(
    fresh: asyncpg.Connection, fresh_dsn: str
) -> None:
    months = await fill_two_sites(fresh)
    await fresh.execute("UPDATE sites SET retention_days = 300 WHERE site_id = 'sb'")
    await purge(fresh, Signer.generate())
    assert await tables(fresh, [months["m12"], months["m11"]]) == []

    # Dropping a detached month locks that table alone: the log stays free meanwhile.
    await fresh.execute(f"ALTER TABLE consent_events DETACH PARTITION {months['m1']}")
    side = await connect(fresh_dsn)
    try:
        async with fresh.transaction():
            assert await audit_store.drop_detached_months(fresh) == [months["m1"]]
            async with side.transaction():
                await side.execute("LOCK TABLE consent_events IN ACCESS EXCLUSIVE MODE NOWAIT")
    finally:
        await side.close()
    assert await tables(fresh, [months["m1"]]) == []

    # A month left detached by a purge that stopped before dropping it (a crash) goes
    # with the next purge, even one that finds nothing to purge.
    ahead = (await partitions(fresh))[-1]
    await fresh.execute(f"ALTER TABLE consent_events DETACH PARTITION {ahead}")
    assert await purge(fresh, Signer.generate()) == []
    assert await tables(fresh, [ahead]) == []
