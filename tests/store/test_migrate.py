"""The migration runner on real, fresh databases."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import cmp.store.migrate as migrate_module
from cmp.audit.verify import verify_export
from cmp.store import audit as audit_store
from cmp.store.audit import ExportFilter
from cmp.store.migrate import SchemaAheadError, migrate, schema_status, stale_functions
from cmp.store.sqlfiles import function_files, migration_files
from tests.store.chainrows import (
    append,
    append_before_v2,
    export_in_python,
    insert_site,
    new_event,
)


async def test_fresh_database_gets_every_migration_then_rerun_is_a_noop(
    fresh_database: Any,
) -> None:
    conn = await asyncpg.connect(await fresh_database())
    try:
        applied = await migrate(conn)
        functions = [path.name for path in function_files()]
        assert applied == [name for _, name, _ in migration_files()] + functions
        assert await migrate(conn) == []
        assert await schema_status(conn) == ([], [])
    finally:
        await conn.close()


async def test_concurrent_runners_take_turns(fresh_database: Any) -> None:
    dsn = await fresh_database()
    conns = [await asyncpg.connect(dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        everything = len(migration_files()) + len(function_files())
        assert sorted(len(r) for r in results) == [0, 0, 0, everything]
        count = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(migration_files())
    finally:
        for c in conns:
            await c.close()


async def test_a_changed_function_file_is_applied_again_and_alone(
    fresh_database: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Functions live in sql/functions/, one live definition each, applied after the
    migrations whenever a file's text changed (and only then)."""
    conn = await asyncpg.connect(await fresh_database())
    try:
        await migrate(conn)
        files = function_files()
        copies = []
        for path in files:
            copy = tmp_path / path.name
            copy.write_text(path.read_text("utf-8"), "utf-8")
            copies.append(copy)
        changed = copies[0]
        changed.write_text(
            changed.read_text("utf-8")
            + "\nCREATE OR REPLACE FUNCTION cmp_probe() RETURNS int LANGUAGE sql AS 'SELECT 7';\n",
            "utf-8",
        )
        monkeypatch.setattr(migrate_module, "function_files", lambda: copies)
        assert await migrate(conn) == [changed.name]
        assert await conn.fetchval("SELECT cmp_probe()") == 7
        assert await migrate(conn) == []
        # A migration may drop what a function needs (a type, CASCADE): after one, every
        # file is applied again, changed or not.
        dropping = tmp_path / "9999_drop_probe.sql"
        dropping.write_text("DROP FUNCTION cmp_probe();", "utf-8")
        files = [*migration_files(), (9999, dropping.stem, dropping)]
        monkeypatch.setattr(migrate_module, "migration_files", lambda: files)
        assert await migrate(conn) == [dropping.stem] + [path.name for path in copies]
        assert await conn.fetchval("SELECT cmp_probe()") == 7
    finally:
        await conn.close()


async def test_database_ahead_of_code_is_refused(fresh_database: Any) -> None:
    conn = await asyncpg.connect(await fresh_database())
    try:
        await migrate(conn)
        await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (9999, 'future')")
        with pytest.raises(SchemaAheadError, match="9999"):
            await migrate(conn)
        assert (await schema_status(conn))[1] == [9999]
    finally:
        await conn.close()


async def _migrate_before(conn: asyncpg.Connection, stem_suffix: str) -> None:
    """Apply the migrations older than the one named `*_<stem_suffix>` (by name, not
    number: numbers may change when branches merge), as the runner would."""
    await conn.execute(
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for number, name, path in migration_files():
        if name.endswith(stem_suffix):
            return
        await conn.execute(path.read_text("utf-8"))
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", number, name
        )
    raise AssertionError(f"no migration named *_{stem_suffix}")


async def _export(conn: asyncpg.Connection, site_id: str) -> list[str]:
    lines: list[str] = []
    async with conn.transaction(), audit_store.export_lines(conn, ExportFilter(site_id)) as chunks:
        async for chunk in chunks:
            lines.extend(chunk)
    return lines


async def test_partitioning_a_populated_log_keeps_every_chain(fresh_database: Any) -> None:
    conn = await asyncpg.connect(await fresh_database())
    try:
        await _migrate_before(conn, "partition_events")
        sites = ["shop-a", "shop-b", "shop-c"]
        for site_id in sites:
            await insert_site(conn, site_id)
        now = datetime.now(UTC)
        written = []
        for days in (95, 60, 31, 2, 0):  # several months, every site in each
            batch = [
                new_event(s, now - timedelta(days=days, minutes=i), version=1)
                for s in sites
                for i in range(4)
            ]
            assert await append_before_v2(conn, batch) == ["new"] * len(batch)
            written.extend(batch)
        # The export's functions come with a later migration: the lines as the chain
        # rule writes them from the rows stand for the export before.
        before = {s: await export_in_python(conn, s) for s in sites}
        for site_id in sites:
            assert len(before[site_id]) == 20
            assert verify_export(before[site_id]).ok

        applied = await migrate(conn)

        assert any(name.endswith("partition_events") for name in applied)
        assert await conn.fetchval("SELECT to_regclass('consent_events_single')") is None
        months = await conn.fetchval(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'consent_events'::regclass"
        )
        assert months >= 5  # the months of the data (4 or 5 of them) and 3 ahead
        for site_id in sites:
            after = await _export(conn, site_id)
            assert after == before[site_id]
            result = verify_export(after)
            assert result.ok, result.summary()
        assert await conn.fetchval("SELECT count(*) FROM consent_event_ids") == len(written)
        # Retries of events stored before the migration are still recognised ...
        assert await append(conn, written[:3]) == ["duplicate"] * 3
        # ... and every chain goes on where it stood, in record version 2, while a process
        # of the previous release (a rolling upgrade) still appends version 1 records.
        assert await append(conn, [new_event(s, datetime.now(UTC)) for s in sites]) == ["new"] * 3
        old = [new_event(s, datetime.now(UTC), version=1) for s in sites]
        assert await append_before_v2(conn, old) == ["new"] * 3
        for site_id in sites:
            lines = await _export(conn, site_id)
            assert [json.loads(line)["v"] for line in lines[-3:]] == [1, 2, 1]
            assert len(lines) == 22 and verify_export(lines).ok
    finally:
        await conn.close()


async def test_function_files_the_database_lacks_are_not_current(
    fresh_database: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New code whose function files `cmpd migrate` has not applied (no migration among
    them) is refused at start and by /readyz, as missing migrations are."""
    conn = await asyncpg.connect(await fresh_database())
    try:
        await migrate(conn)
        assert await stale_functions(conn) == []
        newer = tmp_path / "zz_newer.sql"
        newer.write_text(
            "CREATE OR REPLACE FUNCTION cmp_newer() RETURNS int LANGUAGE sql AS 'SELECT 1';"
        )
        monkeypatch.setattr(migrate_module, "function_files", lambda: [*function_files(), newer])
        assert await stale_functions(conn) == ["zz_newer.sql"]
        assert await migrate(conn) == ["zz_newer.sql"]
        assert await stale_functions(conn) == []
    finally:
        await conn.close()
