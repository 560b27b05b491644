"""sql/functions/: one live definition of every SQL function, applied after the migrations."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import cmp.store.migrate as migrate_module
from cmp.store.migrate import apply_functions, migrate
from cmp.store.sqlfiles import function_files

# Frozen as sql/schema/0008 left it: the previous release's processes append through it
# during a rolling upgrade (0012_record_v2.sql), and a later migration drops it.
LEGACY = {"cmp_append(cmp_new_event[])"}

# The functions moved out of the migrations that last defined them, unchanged. One that
# is changed on purpose later leaves this list: its file is then its only definition.
MOVED = (
    "cmp_forbid_change",
    "cmp_guard_tiles",
    "cmp_guard_event_ids",
    # cmp_event_partition was moved too, and has changed since: it calls cmp_partition,
    # the create-and-attach it shares with the impressions' days.
    "cmp_event_partitions_ahead",
    "cmp_event_partition_expired",
    "cmp_detach_event_partition",
    "cmp_drop_detached_months",
    "cmp_purge_records",
    "cmp_purge_month_states",
    # cmp_stats_days was moved too, and has changed since (0018: per rule and variant).
    "cmp_utc_text",
)

_DEFINED = re.compile(r"CREATE\s+OR\s+REPLACE\s+(FUNCTION|VIEW)\s+(\w+)\s*[(\s]", re.IGNORECASE)
_CREATE = re.compile(r"^\s*CREATE\s+(?!OR\s+REPLACE\b)", re.IGNORECASE | re.MULTILINE)

_FUNCTIONS = """
SELECT p.oid::regprocedure::text AS signature, p.proname AS name,
       pg_get_functiondef(p.oid) AS definition
FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
"""
_VIEWS = """
SELECT c.relname FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('v', 'm')
"""


def _defined_in_files() -> Counter[str]:
    """How many times the files define each function or view, by name."""
    found: Counter[str] = Counter()
    for path in function_files():
        found.update(name for _, name in _DEFINED.findall(path.read_text("utf-8")))
    return found


async def _definitions(conn: asyncpg.Connection) -> dict[str, str]:
    return {r["signature"]: r["definition"] for r in await conn.fetch(_FUNCTIONS)}


async def test_every_function_and_view_is_defined_in_exactly_one_file(
    fresh_database: Any,
) -> None:
    conn = await asyncpg.connect(await fresh_database())
    try:
        await migrate(conn)
        rows = await conn.fetch(_FUNCTIONS)
        views = [r["relname"] for r in await conn.fetch(_VIEWS)]
    finally:
        await conn.close()
    defined = _defined_in_files()
    live = {r["name"] for r in rows if r["signature"] not in LEGACY} | set(views)
    assert {name: defined[name] for name in sorted(live) if defined[name] != 1} == {}
    # A file defines only what the database has (nothing stale left behind).
    assert set(defined) <= live


def test_the_files_only_create_or_replace() -> None:
    """A file is applied again whenever it changes: a plain CREATE would fail the second
    time (a table, type or index belongs in a migration)."""
    for path in function_files():
        assert not _CREATE.search(path.read_text("utf-8")), path.name


async def _none(conn: asyncpg.Connection) -> int:
    return 0


async def test_the_moved_functions_are_what_the_migrations_defined(
    fresh_database: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An existing install has these functions from its migrations; applying the files
    to it changes none of them."""
    conn = await asyncpg.connect(await fresh_database())
    try:
        monkeypatch.setattr(migrate_module, "function_files", lambda: [])
        # Impressions' partitions are made by a function that only a file defines.
        monkeypatch.setattr(migrate_module.impressions_store, "make_partitions_ahead", _none)
        await migrate(conn)
        before = await _definitions(conn)
        monkeypatch.undo()
        applied = await apply_functions(conn)
        after = await _definitions(conn)
    finally:
        await conn.close()
    assert applied == [path.name for path in function_files()]
    moved = sorted(sig for sig in after if sig.split("(")[0] in MOVED)
    assert len(moved) == len(MOVED)
    assert {sig: after[sig] for sig in moved} == {sig: before.get(sig) for sig in moved}


async def test_a_function_may_call_one_of_a_later_file(
    fresh_database: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files are named by concern, not by dependency: a LANGUAGE sql body that calls a
    function defined by a file sorting after its own still applies."""
    conn = await asyncpg.connect(await fresh_database())
    try:
        await migrate(conn)
        caller, callee = tmp_path / "a.sql", tmp_path / "b.sql"
        caller.write_text(
            "CREATE OR REPLACE FUNCTION cmp_probe_caller() RETURNS int LANGUAGE sql"
            " AS 'SELECT cmp_probe_callee() + 1';\n",
            "utf-8",
        )
        callee.write_text(
            "CREATE OR REPLACE FUNCTION cmp_probe_callee() RETURNS int LANGUAGE sql"
            " AS 'SELECT 6';\n",
            "utf-8",
        )
        monkeypatch.setattr(migrate_module, "function_files", lambda: [caller, callee])
        assert await apply_functions(conn) == ["a.sql", "b.sql"]
        assert await conn.fetchval("SELECT cmp_probe_caller()") == 7
    finally:
        await conn.close()


async def test_every_body_is_valid(fresh_database: Any) -> None:
    """The runner creates bodies unchecked; here each file is created again with the
    checks on, every function it may call being there by now."""
    conn = await asyncpg.connect(await fresh_database())
    try:
        await migrate(conn)
        for path in function_files():
            tx = conn.transaction()
            await tx.start()
            try:
                await conn.execute("SET LOCAL check_function_bodies = on")
                await conn.execute(path.read_text("utf-8"))
            finally:
                await tx.rollback()
    finally:
        await conn.close()
