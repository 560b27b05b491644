"""EXPLAIN (ANALYZE, BUFFERS) of every request-path query on the at-size log.

The queries are read from `sql/queries/*.sql` (what the server runs), with arguments
of the big site: a subject, a record, the newest full month. Each plan is written out
as text, and checked from its JSON form: a sequential scan of one of the log's tables
that holds more than one page is flagged (the months ahead are empty, and an empty
table is read sequentially at no cost). Statements that change data run in a
transaction that is rolled back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from cmp.store.sqlfiles import queries
from cmp.store.stats import stats_args

OURS = (
    "consent_events",
    "consent_state",
    "consent_event_ids",
    "log_tiles",
    "stats_days",
    "impressions",
    "impression_days",
)
# The retry check inside cmp_append (a statement of the plpgsql function).
RETRY_CHECK = (
    "SELECT k.i, e.body_digest FROM unnest($1::text[], $2::uuid[]) WITH ORDINALITY"
    " AS k (site_id, event_id, i) JOIN consent_event_ids e"
    " ON e.site_id = k.site_id AND e.event_id = k.event_id"
)


@dataclass(frozen=True)
class Case:
    name: str
    sql: str
    args: tuple[Any, ...]
    no_sort: bool = False  # the export sets enable_sort = off for its transaction
    writes: bool = False


@dataclass(frozen=True)
class Target:
    site: str
    subjects: list[str]  # 100 subject ids of the site
    digest: str  # one subject's digest
    event_id: str
    event_digest: str  # the subject digest of that record
    head_seq: int
    since: datetime
    until: datetime
    tile_levels: list[int]
    tile_indexes: list[int]
    stats_rollup: tuple[date, date] | None = None  # the site's rolled-up days


def cases(t: Target) -> list[Case]:
    ev, au, tr, st = (queries(n) for n in ("events", "audit", "tree", "stats"))
    return [
        Case("append: retry check (cmp_append)", RETRY_CHECK, ([t.site], [t.event_id])),
        Case(
            "state read / 100-id lookup (events.select_states)",
            ev["select_states"],
            ([t.site] * len(t.subjects), t.subjects),
        ),
        Case(
            "subject history (audit.export_lines, subject)",
            au["export_lines"],
            (t.site, None, None, None, t.digest),
            no_sort=True,
        ),
        # The erasure's UPDATE runs inside cmp_erase_subject_rows (its plan is checked
        # by tests/store/test_plans.py); the erased subject's access request finds its
        # erasure records here.
        Case(
            "erasure records of a subject (audit.select_erasures)",
            au["select_erasures"],
            (t.site, t.digest),
        ),
        Case(
            "export, newest month (audit.export_lines)",
            au["export_lines"],
            (t.site, t.since, t.until, None, None),
            no_sort=True,
        ),
        Case(
            "export CSV, newest month, a window of 2,000 seqs (audit.export_csv)",
            au["export_csv"],
            (t.site, t.since, t.until, None, None, t.head_seq - 2000, t.head_seq),
            no_sort=True,
        ),
        Case(
            "export, whole site (audit.export_lines)",
            au["export_lines"],
            (t.site, None, None, None, None),
            no_sort=True,
        ),
        Case(
            "stats by day, newest month (stats.select_stats)",
            st["select_stats"],
            stats_args(t.site, t.since, t.until, t.stats_rollup),
        ),
        Case(
            "receipt record (tree.select_receipt_record)",
            tr["select_receipt_record"],
            (t.site, t.event_id, t.event_digest),
        ),
        Case(
            "tree job: leaves after the tree (tree.select_leaves)",
            tr["select_leaves"],
            (t.site, t.head_seq - 100, 5000),
        ),
        Case(
            "proof tiles (tree.select_tiles)",
            tr["select_tiles"],
            (t.site, t.tile_levels, t.tile_indexes),
        ),
        Case("purge: where to cut (audit.select_purge_cut)", au["select_purge_cut"], ()),
    ]


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


# A scan of a raw impression day in EXPLAIN ANALYZE's text, and whether it ran.
RAW_SCAN = re.compile(r"Scan (?:using \S+ )?on (impressions_\d{8})\b.*?(\(never executed\))?$")


def raw_days_read(text: str, empty: set[str]) -> set[str]:
    """The raw impression days (partitions) a plan did read: runtime pruning leaves the
    others in the plan, never executed."""
    found = set()
    for line in text.splitlines():
        m = RAW_SCAN.search(line)
        if m and not m.group(2) and m.group(1) not in empty:
            found.add(m.group(1))
    return found


async def explain_one(
    conn: asyncpg.Connection, case: Case, empty: set[str]
) -> tuple[str, dict[str, Any]]:
    sql = case.sql.rstrip().rstrip(";")
    tx = conn.transaction()
    await tx.start()
    try:
        if case.no_sort:
            await conn.execute("SET LOCAL enable_sort = off")
        shape = json.loads(await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *case.args))
        lines = [r[0] for r in await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *case.args)]
    finally:
        await tx.rollback()
    scans: dict[str, set[str]] = {}
    for node in _nodes(shape[0]["Plan"]):
        if "Relation Name" in node:
            scans.setdefault(node["Relation Name"], set()).add(node["Node Type"])
    seq = sorted(
        r
        for r, kinds in scans.items()
        if "Seq Scan" in kinds and r.startswith(OURS) and r not in empty
    )
    text = "\n".join(lines)
    took = re.search(r"Execution Time: ([\d.]+) ms", text)
    summary = {
        "query": case.name,
        "seq_scans": seq,
        "kinds": sorted({k for kinds in scans.values() for k in kinds}),
        "months_read": len(
            [r for r in scans if r.startswith("consent_events_") and r not in empty]
        ),
        "raw_days_read": len(raw_days_read(text, empty)),
        "ms": float(took.group(1)) if took else None,
        "sort": any(n["Node Type"] == "Sort" for n in _nodes(shape[0]["Plan"])),
    }
    return f"### {case.name}\n{sql}\n-- args: {case.args!r}\n\n{text}\n", summary


async def empty_tables(conn: asyncpg.Connection) -> set[str]:
    """Tables of at most one page: read sequentially at no cost."""
    return {
        r["relname"]
        for r in await conn.fetch(
            "SELECT relname FROM pg_class WHERE relkind = 'r'"
            " AND pg_relation_size(oid) <= current_setting('block_size')::int"
        )
    }


async def explain_all(conn: asyncpg.Connection, target: Target) -> tuple[str, list[dict[str, Any]]]:
    empty = await empty_tables(conn)
    texts, rows = [], []
    for case in cases(target):
        text, row = await explain_one(conn, case, empty)
        texts.append(text)
        rows.append(row)
    return "\n".join(texts), rows


def table(rows: list[dict[str, Any]], raw_days: bool = False) -> str:
    """One line per query; `raw_days` adds the raw impression days each read."""
    extra = " raw impression days read |" if raw_days else ""
    out = [
        f"| query | scans | months read |{extra} sort | seq scan of a non-empty table | ms |",
        "|---|---|---:|" + ("---:|" if raw_days else "") + "---|---|---:|",
    ]
    for r in rows:
        days = f" {r.get('raw_days_read', 0)} |" if raw_days else ""
        out.append(
            f"| {r['query']} | {', '.join(k for k in r['kinds'] if 'Scan' in k)} "
            f"| {r['months_read']} |{days} {'yes' if r['sort'] else 'no'} "
            f"| {', '.join(r['seq_scans']) or 'none'} | {r['ms']} |"
        )
    return "\n".join(out)
