"""Every copy of the record agrees with its one declaration (`cmp.audit.record`).

Hypothesis draws records field by field from the declaration (each kind's whole range:
any text, any choice map, any time from year 1 to 9999, erased records), stores them
through the real write path (`write_batch` → `cmp_append`) and reads them back every way
the server does. Each must give exactly the Python canonical JSON of the record: the
row's columns, the Merkle leaf and the receipt record (`cmp_record_text`), the export
line (`cmp_record_text` with the links), and the verifier's answer on that line (the
definition and the fast path). A field added, renamed, re-kinded or rendered otherwise in
any one place fails here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmp.audit.chain import (
    GENESIS,
    commit,
    disclosures_of,
    erased_record,
    export_line,
    record_hash,
    salt_slices,
)
from cmp.audit.lines import parse_fast, parse_line
from cmp.audit.record import (
    ACTIONS,
    ALL_FIELDS,
    CHAIN_FIELDS,
    LINK_FIELDS,
    NO_CONSENT,
    RECORD_VERSIONS,
    SALT_BYTES,
    STORED_FIELDS,
    Field,
    layout,
)
from cmp.audit.verify import verify_export
from cmp.canonical import canonical_json, utc_text
from cmp.ingest.build import SEQ_MARK
from cmp.store import recordsql
from cmp.store import tree as tree_store
from cmp.store.audit import ExportFilter, erase_subject, export_lines
from cmp.store.events import NewEvent, Submission, as_row, row_columns, row_getters, write_batch
from cmp.store.sqlfiles import queries
from tests.store.chainrows import event_of, insert_site, record_of_row

DOCS = Path(__file__).resolve().parents[2] / "docs" / "audit-log.md"
SIMPLE_NAME = re.compile(r"[a-z0-9_.:-]+")
# PostgreSQL text holds any character but NUL.
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
any_time = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


# received_at picks the log's monthly partition: stay within the month migrate made
# (fixed once, so that Hypothesis can replay an example).
_NOW = datetime.now(UTC).replace(tzinfo=None)
recent_time = st.datetimes(
    min_value=_NOW.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
    max_value=_NOW,
    timezones=st.just(UTC),
)


def hex64() -> st.SearchStrategy[str]:
    return st.binary(min_size=32, max_size=32).map(bytes.hex)


def value_of(field: Field) -> st.SearchStrategy[Any]:
    """Any value of the field's kind (cmp.audit.record), in record form."""
    kind = field.kind
    if kind == "count":
        return st.integers(1, 2**31 - 1)
    if kind == "text":
        return texts
    if kind == "uuid":
        return st.uuids().map(str)
    if kind == "hex64":
        return hex64()
    if kind == "choices":
        names = st.from_regex(SIMPLE_NAME, fullmatch=True) | texts
        return st.dictionaries(names, st.booleans(), max_size=6)
    if kind == "bool":
        return st.booleans()
    if kind == "time":
        return (recent_time if field.name == "received_at" else any_time).map(utc_text)
    raise AssertionError(f"no strategy for kind {kind!r}")


# The append path stores consent records only (`erased`, `link` and `unlink` records are
# appended by erasure and linking themselves), and always with these: the subject's state
# row needs them.
ALWAYS_ON_APPEND = frozenset({"services", "gpc"})


@st.composite
def records(draw: st.DrawFn, site_id: str) -> dict[str, Any]:
    """A consent record of `site_id` as ingest builds it (seq still to come), drawn
    field by field from the declaration."""
    action = draw(st.sampled_from(sorted(ACTIONS - NO_CONSENT)))
    record: dict[str, Any] = {}
    for field in ALL_FIELDS:  # a version 1 event leaves version 2's own out (event_of)
        if field.kind == "version":
            record[field.name] = 1
        elif field.name == "site_id":
            record[field.name] = site_id
        elif field.name == "seq":
            record[field.name] = SEQ_MARK
        elif field.name == "action":
            record[field.name] = action
        elif field.presence == "optional" and field.name not in ALWAYS_ON_APPEND:
            record[field.name] = draw(st.none() | value_of(field))
        else:
            record[field.name] = draw(value_of(field))
    return record


def new_event(record: dict[str, Any], subject_id: str, version: int) -> NewEvent:
    """The event of `version` for a record drawn in version 1's shape."""

    def at(name: str) -> datetime | None:
        text = record[name]
        return None if text is None else datetime.fromisoformat(text)

    received = at("received_at")
    assert received is not None
    body = hashlib.sha256(canonical_json(record)).digest()[:16]
    return event_of(record, subject_id, body, received, at("occurred_at"), version)


def expected_line(event: NewEvent, seq: int, prev: str, digest: str, erased: bool) -> bytes:
    """The export line of a stored event: its record, its links and (version 2) each
    personal value with its salt, unless erased."""
    record = {**event.record, "seq": seq}
    extra: dict[str, Any] = {}
    salts = salt_slices(event.salts)
    for field, _, salt in layout(record["v"]).disclosures:
        value = None if erased else event.disclosed[field.name]
        extra[field.name] = value
        extra[salt] = None if value is None else salts[salt].hex()
    subject = None if erased else event.subject_id
    return export_line(record, prev_hash=prev, hash=digest, subject_id=subject, **extra)


async def read_back(dsn: str, events: list[NewEvent], erase: bool) -> None:
    """Store the events as one batch on a fresh site, erase the first one's subject if
    asked (which appends an `erased` record), then read the log every way."""
    conn = await asyncpg.connect(dsn)
    try:
        site_id = events[0].site_id
        await insert_site(conn, site_id)
        submissions = [Submission([e]) for e in events]
        assert await write_batch(conn, submissions) == []
        assert [s.outcomes for s in submissions] == [["new"]] * len(events)
        gone = events[0].disclosed["subject_digest"]
        erased_too = [erase and e.disclosed["subject_digest"] == gone for e in events]
        erasure = None
        if erase:
            erasure = await erase_subject(
                conn, site_id, events[0].subject_id, gone, datetime.now(UTC)
            )
            assert erasure is not None

        rows = await conn.fetch(
            "SELECT * FROM consent_events WHERE site_id = $1 ORDER BY seq", site_id
        )
        leaves = await tree_store.select_leaves(conn, site_id, 0, len(rows) + 1)
        async with conn.transaction(), export_lines(conn, ExportFilter(site_id)) as chunks:
            lines = [line async for chunk in chunks for line in chunk]
        assert len(rows) == len(leaves) == len(lines) == len(events) + erase

        prev = GENESIS
        for n, (row, leaf, line) in enumerate(zip(rows, leaves, lines, strict=True)):
            if n < len(events):
                event = events[n]
                record = {**event.record, "seq": n + 1}
                want = expected_line(event, n + 1, prev, row["hash"], erased_too[n])
            else:  # the erasure: a commitment to the digest, whose salt only it keeps
                assert erasure is not None and row["seq"] == erasure.seq
                commitment = row["subject_digest_sha256"].hex()
                assert commit(row["subject_digest_salt"], gone) == commitment
                record = erased_record(
                    site_id=site_id,
                    seq=erasure.seq,
                    event_id=row["event_id"],
                    subject_commitment=commitment,
                    received_at=row["received_at"],
                )
                want = export_line(record, prev_hash=prev, hash=row["hash"], subject_id=None)
            hashed = canonical_json(record)
            # What the database hashed (the Python bytes) is what it stored, column by column.
            assert row["prev_hash"] == prev
            assert row["hash"] == record_hash(prev, record)
            assert record_of_row(row) == record
            # The record the database writes: Merkle leaf, receipt record, export line.
            assert leaf.data == hashed
            if n < len(events):
                receipt = await tree_store.select_receipt_record(
                    conn, site_id, uuid.UUID(record["event_id"]), event.disclosed["subject_digest"]
                )
                if erased_too[n]:
                    assert receipt is None  # an erased subject has no receipts
                else:
                    assert receipt is not None and receipt[0].data == hashed
                    assert receipt[1] == disclosures_of(json.loads(want))
            assert line.encode() + b"\n" == want
            # The verifier: the definition, and the fast path wherever it applies (a
            # line without escapes, whose choice maps have simple names).
            parsed = (record["seq"], site_id, prev, row["hash"], row["hash"])
            assert parse_line(line.encode()) == parsed
            names = [*(record["purposes"] or ()), *(record["services"] or ())]
            if "\\" not in line and all(SIMPLE_NAME.fullmatch(n) for n in names):
                assert parse_fast(line.encode()) == parsed
            else:
                assert parse_fast(line.encode()) in (None, parsed)
            prev = row["hash"]
        assert verify_export(lines).ok
    finally:
        await conn.close()


@st.composite
def batches(draw: st.DrawFn) -> list[NewEvent]:
    site_id = f"rec-{uuid.uuid4().hex[:12]}"
    size = draw(st.integers(1, 6))
    versions = st.sampled_from(RECORD_VERSIONS)  # one chain may hold both
    return [new_event(draw(records(site_id)), draw(texts), draw(versions)) for _ in range(size)]


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=batches(), erase=st.booleans())
def test_every_copy_of_the_record_writes_the_declared_bytes(
    db_dsn: str, events: list[NewEvent], erase: bool
) -> None:
    asyncio.run(read_back(db_dsn, events, erase))


async def test_the_appended_row_is_the_declared_record_plus_the_requests_own(
    db: asyncpg.Connection,
) -> None:
    """The append's row type and the log's table hold every stored field of the
    declaration; the write path fills each attribute of the type from its source."""
    type_columns = await row_columns(db)
    table_columns = await db.fetchval(
        "SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute"
        " WHERE attrelid = 'consent_events'::regclass AND attnum > 0 AND NOT attisdropped"
    )
    # One append over those rows (sql/functions/append.sql).
    appends = await db.fetch(
        "SELECT pg_get_function_identity_arguments(p.oid) AS args, l.lanname AS lang"
        " FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang WHERE p.proname = 'cmp_append'"
    )
    # The previous release's overload stays for its processes during a rolling upgrade.
    assert sorted((r["args"], r["lang"]) for r in appends) == [
        ("p_rows cmp_new_event[]", "plpgsql"),
        ("p_rows cmp_new_event_v2[]", "plpgsql"),
    ]
    # seq comes from the database; the request brings the rest.
    own = {"req", "subject_id", "body_digest", "head", "tail"}
    assert set(type_columns) == set(STORED_FIELDS) - {"seq"} | own
    assert set(table_columns) == set(STORED_FIELDS) | set(LINK_FIELDS)

    # Every source a distinct value: each column must hold its own.
    record = {name: f"<{name}>" for name in STORED_FIELDS}
    commitments = [c for _, c, _ in layout(2).disclosures]
    salts = [s for _, _, s in layout(2).disclosures]
    personal = {f.name for f, _, _ in layout(2).disclosures}
    # The salts are one draw, the commitments bytes in declaration order, as build makes them.
    salt_draw = secrets.token_bytes(SALT_BYTES * len(salts))
    digests: list[bytes | None] = [secrets.token_bytes(32) for _ in commitments]
    record.update(zip(commitments, (d.hex() for d in digests if d), strict=True))
    event = NewEvent(
        *(f"<event.{name}>" for name in ("site_id", "event_id", "subject_id", "body_digest")),
        record=record,
        occurred_at="<event.occurred_at>",
        received_at="<event.received_at>",
        head="<event.head>",
        tail="<event.tail>",
        disclosed={name: f"<disclosed.{name}>" for name in personal},
        salts=salt_draw,
        commitments=digests,
    )
    expected: list[Any] = []
    for name in type_columns:
        if name == "req":
            expected.append(7)
        elif name in personal:  # version 2: the value beside the record, not in it
            expected.append(event.disclosed[name])
        elif name in salts:
            at = salts.index(name) * SALT_BYTES
            expected.append(salt_draw[at : at + SALT_BYTES])
        elif name in commitments:  # stored as bytes
            expected.append(bytes.fromhex(record[name]))
        elif hasattr(event, name):  # the event's own, or the record's field as a column
            expected.append(getattr(event, name))
        elif name in ("purposes", "services"):
            expected.append(f'"<{name}>"')  # as JSON text
        else:
            expected.append(record[name])
    assert as_row(await row_getters(db), 7, event) == tuple(expected)
    # A null personal value has no salt stored (the export shows none, and it opens nothing).
    event.disclosed = {**event.disclosed, "page_url": None}
    row = dict(zip(type_columns, as_row(await row_getters(db), 7, event), strict=True))
    assert row["page_url"] is None and row["page_url_salt"] is None
    assert row["ip_prefix_salt"] == expected[type_columns.index("ip_prefix_salt")]


@pytest.mark.parametrize(
    ("file", "query"),
    [
        ("audit", "export_lines"),
        ("audit", "export_csv"),
        ("tree", "select_leaves"),
        ("tree", "select_receipt_record"),
        ("tree", "select_tree_head_at"),
    ],
)
async def test_the_record_functions_are_inlined_not_called_per_row(
    db: asyncpg.Connection, file: str, query: str
) -> None:
    """The plan holds the concatenation itself: no function call per row."""
    name = f"inlined_{query}"
    await db.execute(f"PREPARE {name} AS {queries(file)[query].rstrip(';')}")
    try:
        count = await db.fetchval(
            "SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = $1",
            name,
        )
        await db.execute("SET plan_cache_mode = force_generic_plan")
        nulls = ", ".join(["NULL"] * count)
        plan = "\n".join(
            r[0] for r in await db.fetch(f"EXPLAIN (VERBOSE) EXECUTE {name} ({nulls})")
        )
    finally:
        await db.execute(f"DEALLOCATE {name}")
        await db.execute("RESET plan_cache_mode")
    assert "to_char" in plan, plan
    assert "cmp_record_text" not in plan and "cmp_utc_text" not in plan, plan


def test_the_auditors_table_lists_the_declared_fields_in_order() -> None:
    """docs/audit-log.md's table of record fields is the declaration, for people."""
    text = DOCS.read_text("utf-8")
    table = text.split("| field | type | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE)
    assert tuple(documented) == CHAIN_FIELDS
    assert f"exactly these {len(CHAIN_FIELDS)} keys" in text


def test_the_generated_sql_is_what_the_declaration_generates() -> None:
    """sql/functions/record.sql is `python -m cmp.store.recordsql`'s output: a field added
    to the declaration without regenerating it fails here."""
    generated = DOCS.parents[1] / "sql" / "functions" / "record.sql"
    assert generated.read_text("utf-8") == recordsql.generated()
