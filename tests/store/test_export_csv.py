"""The CSV export in windows of records: the same bytes as one COPY of the whole range, and
no statement that lasts as long as the client takes to read the whole site (one COPY
ran under one command timeout, writes to the client included)."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from cmp.store.audit import ExportFilter, export_csv
from cmp.store.db import connect
from tests.store.chainrows import append, insert_site, new_event

SITE = "csv-site"
RECORDS = 1_000


async def csv_of(
    conn: asyncpg.Connection, where: ExportFilter, window: int, pause_per_kb: float = 0.0
) -> bytes:
    out = bytearray()

    async def write(data: bytes) -> None:
        out.extend(data)
        if pause_per_kb:
            await asyncio.sleep(len(data) / 1024 * pause_per_kb)

    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await export_csv(conn, where, write, window=window)
    return bytes(out)


async def fill(conn: asyncpg.Connection) -> datetime:
    """RECORDS records over the last ten days, subjects coming back; returns the start."""
    start = datetime.now(UTC) - timedelta(days=10)
    await insert_site(conn, SITE)
    events = [
        new_event(SITE, start + timedelta(minutes=14 * n), f"subject-{n % 50}")
        for n in range(RECORDS)
    ]
    for i in range(0, RECORDS, 100):
        await append(conn, events[i : i + 100])
    return start


async def test_windows_give_the_bytes_of_one_copy_for_every_filter(
    fresh: asyncpg.Connection,
) -> None:
    start = await fill(fresh)
    subject = await fresh.fetchval(
        "SELECT subject_digest FROM consent_events WHERE site_id = $1 AND seq = 7", SITE
    )
    filters = [
        ExportFilter(SITE),
        ExportFilter(SITE, since=start + timedelta(days=3), until=start + timedelta(days=6)),
        ExportFilter(SITE, subject_digest=subject),
        ExportFilter(SITE, policy_version=1, since=start + timedelta(days=9, hours=12)),
    ]
    for where in filters:
        whole = await csv_of(fresh, where, window=10**9)
        lines = whole.decode().splitlines()
        assert lines[0].startswith("v,site_id,seq,") and len(lines) > 2, where
        for window in (1, 37, 100, RECORDS - 1, RECORDS):
            assert await csv_of(fresh, where, window) == whole, (where, window)
    # An empty export is its header.
    await insert_site(fresh, "csv-empty")
    empty = await csv_of(fresh, ExportFilter("csv-empty"), window=100)
    assert empty.decode().splitlines() == [lines[0]]


async def test_a_slow_reader_of_a_large_export_outlasts_the_command_timeout(
    fresh: asyncpg.Connection, fresh_dsn: str
) -> None:
    await fill(fresh)
    whole = await csv_of(fresh, ExportFilter(SITE), window=10**9)
    # A client that reads the export in about four times the command timeout.
    timeout = 1.0
    pause = 4 * timeout / (len(whole) / 1024)
    slow = await asyncpg.connect(fresh_dsn, command_timeout=timeout)
    try:
        # A window is a twentieth of the export: about a fifth of the timeout each.
        assert await csv_of(slow, ExportFilter(SITE), window=50, pause_per_kb=pause) == whole
        # One COPY of the whole site (what the export was) is cut off by the timeout.
        with pytest.raises(TimeoutError):
            await csv_of(slow, ExportFilter(SITE), window=10**9, pause_per_kb=pause)
    finally:
        await slow.close()


async def test_the_export_is_one_snapshot(fresh: asyncpg.Connection, fresh_dsn: str) -> None:
    await fill(fresh)
    writer = await connect(fresh_dsn)
    try:
        seen = bytearray()
        appended = False

        async def write(data: bytes) -> None:
            nonlocal appended
            seen.extend(data)
            if not appended:  # records committed while the export runs are not in it
                appended = True
                assert await append(writer, [new_event(SITE, datetime.now(UTC))]) == ["new"]

        async with fresh.transaction(isolation="repeatable_read", readonly=True):
            await export_csv(fresh, ExportFilter(SITE), write, window=100)
    finally:
        await writer.close()
    assert appended
    assert len(seen.decode().splitlines()) == 1 + RECORDS


async def test_a_window_holds_its_count_of_records_however_sparse_the_filter(
    fresh: asyncpg.Connection,
) -> None:
    # One subject's records lie far apart in seq: windows of seqs would be mostly empty
    # statements; windows of records are as many as the records need.
    await fill(fresh)
    subject = await fresh.fetchval(
        "SELECT subject_digest FROM consent_events WHERE site_id = $1 AND seq = 7", SITE
    )
    ends: list[str] = []  # one window-end query per window (COPY itself is not logged)
    fresh.add_query_logger(lambda q: ends.append(q.query) if "OFFSET" in q.query else None)
    where = ExportFilter(SITE, subject_digest=subject)
    lines = (await csv_of(fresh, where, window=5)).splitlines()
    records = RECORDS // 50  # the subject's
    assert len(lines) == 1 + records
    # Four full windows and the last, empty one: not a window per 5 seqs of the site.
    assert len(ends) == records // 5 + 1


# Cells that a spreadsheet would read as a formula (OWASP "CSV Injection"), as texts from
# outside; tab, CR and LF cannot come through a request (header values are stripped and
# made safe, body texts refuse controls) but are neutralised all the same.
FORMULA_STARTS = [
    '=HYPERLINK("http://x")',
    "@SUM(1)",
    "+1",
    "-1",
    "\t=1+1",
    "\r=1+1",
    "\n=1+1",
    "\uff1d1+1",  # full-width =
    "\uff0b1",
    "\uff0d1",
    "\uff20SUM(1)",
]


async def test_no_cell_starts_a_formula_and_texts_from_outside_are_quoted(
    fresh: asyncpg.Connection,
) -> None:
    await insert_site(fresh, SITE)
    now = datetime.now(UTC)
    events = [
        new_event(SITE, now, f"-{n}", user_agent=text, source=text, language=text)
        for n, text in enumerate(FORMULA_STARTS)
    ]
    plain = new_event(SITE, now, "plain", user_agent="Mozilla/5.0 a=b", source=None)
    assert await append(fresh, [*events, plain]) == ["new"] * (len(events) + 1)
    text = (await csv_of(fresh, ExportFilter(SITE), window=5)).decode()
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    for row, value in zip(rows, FORMULA_STARTS, strict=False):
        for column in ("user_agent", "source", "language"):
            assert row[column] == "'" + value, (column, value)
        assert row["subject_id"].startswith("'-")
    last = rows[-1]
    assert last["user_agent"] == "Mozilla/5.0 a=b" and last["subject_id"] == "plain"
    assert last["source"] == ""  # NULL stays an empty, unquoted cell
    for row in rows:
        for cell in row.values():
            assert cell[:1] not in STARTS, (row, cell)
    # Every text from outside is a quoted cell, whatever it starts with.
    lines = text.splitlines()
    assert ',"Mozilla/5.0 a=b",' in lines[-1] and ',"plain"' in lines[-1]
    assert ',"nb",,"https://shop.example/p",' in lines[-1]  # the NULL source: no quotes


STARTS = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")
