"""The JSON-lines export's cursor (cmp.store.audit.export_lines): it asks for the next
chunk while the caller writes this one, and a caller that stops early still gets its
connection back ready for the next statement of its transaction."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from cmp.audit.verify import verify_export
from cmp.store import audit as audit_store
from cmp.store.audit import EXPORT_CHUNK, ExportFilter
from tests.store.chainrows import append, insert_site, new_event

SITE = "export-site"
RECORDS = 2 * EXPORT_CHUNK + 7


async def fill(conn: asyncpg.Connection) -> None:
    await insert_site(conn, SITE)
    now = datetime.now(UTC)
    for _ in range(RECORDS // 100 + 1):
        await append(conn, [new_event(SITE, now) for _ in range(100)])


async def test_the_chunks_are_the_whole_log_in_seq_order(fresh: asyncpg.Connection) -> None:
    await fill(fresh)
    chunks: list[list[str]] = []
    async with (
        fresh.transaction(isolation="repeatable_read", readonly=True),
        audit_store.export_lines(fresh, ExportFilter(SITE)) as lines_of,
    ):
        async for lines in lines_of:
            chunks.append(lines)
    assert [len(c) for c in chunks[:-1]] == [EXPORT_CHUNK] * (len(chunks) - 1)
    lines = [line for chunk in chunks for line in chunk]
    assert len(lines) == (RECORDS // 100 + 1) * 100
    assert verify_export(lines).ok  # every seq, in order, each chain link


async def test_an_export_stopped_early_hands_its_connection_back_ready(
    fresh: asyncpg.Connection,
) -> None:
    # The client left after the first chunk: the next one was being fetched. Leaving the
    # block waits for it, so the transaction can go on (and end) on that connection;
    # without the wait, asyncpg refuses: "another operation is in progress".
    await fill(fresh)
    async with fresh.transaction(isolation="repeatable_read", readonly=True):
        async with audit_store.export_lines(fresh, ExportFilter(SITE)) as chunks:
            async for lines in chunks:
                assert len(lines) == EXPORT_CHUNK
                break
        assert await fresh.fetchval("SELECT count(*) FROM consent_events") > EXPORT_CHUNK
    assert await fresh.fetchval("SELECT 1") == 1
