"""What the tamper-evident chain costs the ingest path, measured both ways in one run.

    python -m loadtest.chaincost [--batches 200] [--size 100]

In a scratch database of the bench PostgreSQL it installs cmp's `cmp_append` and a copy
whose chain line (the sha256 per event, under the site lock) is replaced by a constant,
then stores the same kind of batches through both, alternating, and reports events/s,
wall µs and PostgreSQL CPU µs per event. The Python half of the chain (canonical JSON
of each record, split around its seq, done before the lock) is timed separately.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from cmp.consent import PolicyView
from cmp.ingest.build import build, split_at_seq
from cmp.ingest.facts import request_facts
from cmp.models import EventIn
from cmp.store import events
from cmp.store.db import connect, start_embedded
from cmp.store.events import NewEvent, Submission, write_batch
from cmp.store.migrate import migrate
from cmp.store.sites import StoredSite
from cmp.store.sqlfiles import sql_root

CHAIN_LINE = "cur_hash := encode(sha256(convert_to("


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PURPOSES = {"necessary": True, "statistics": True, "marketing": True}


def _event(site: str) -> NewEvent:
    """An event as the ingest pipeline builds it (`cmp.ingest.build`): the current record
    version, its commitments and salts."""
    stored = StoredSite.model_construct(
        site_id=site, subject_key=b"k" * 32, jurisdictions=None, fallback=None
    )
    view = PolicyView(
        site_id=site,
        version=1,
        material=True,
        content_sha256="0" * 64,
        purposes=tuple(PURPOSES),
        required=frozenset({"necessary"}),
        gpc=frozenset(),
        signals={},
        service_purpose={"google-analytics": "statistics"},
    )
    event = EventIn.model_construct(
        event_id=str(uuid.uuid4()),
        subject_id=f"s-{secrets.token_hex(6)}",
        policy_version=1,
        action="accept_all",
        purposes=None,
        services=None,
        language="nb",
        occurred_at=None,
        source="cmp-banner/1.0",
        page_url="https://shop.example/priser",
        impression_id=None,
        variant=None,
    )
    facts = request_facts(
        origin="https://shop.example",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0",
        client_ip="203.0.113.7",
        sec_gpc=None,
        now=datetime.now(UTC),
    )
    return build(stored, view, event, PURPOSES, {"google-analytics": True}, facts)


async def _run(conn: asyncpg.Connection, site: str, batches: int, size: int) -> float:
    started = time.perf_counter()
    for _ in range(batches):
        await write_batch(conn, [Submission([_event(site)]) for _ in range(size)])
    return time.perf_counter() - started


def _plain_copy() -> str:
    """cmp_append's one live definition (sql/functions/append.sql), renamed, with the
    chain line a constant."""
    marker = "CREATE OR REPLACE FUNCTION cmp_append("
    text = (sql_root() / "functions" / "append.sql").read_text("utf-8")
    function = text[text.index(marker) :]
    function = function[: function.index("END $$;") + len("END $$;")]
    start = function.index(CHAIN_LINE)
    end = function.index(";", start)
    plain = function[:start] + "cur_hash := repeat('0', 64)" + function[end:]
    return plain.replace(marker, "CREATE FUNCTION cmp_append_plain(")


async def main(args: argparse.Namespace) -> dict[str, Any]:
    server = start_embedded(Path(".data/bench"))
    base = str(server.get_uri())
    name = f"chaincost_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(base)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = base.replace("/postgres?", f"/{name}?")
    try:
        conn = await connect(dsn)
        await migrate(conn)
        for site in ("with-chain", "no-chain"):
            await conn.execute(
                "INSERT INTO sites (site_id, name, languages, default_language,"
                " consent_validity_days, retention_days, subject_key)"
                " VALUES ($1, $1, '{nb}', 'nb', 365, 1825, '\\x00')",
                site,
            )
            await conn.execute("INSERT INTO log_heads (site_id) VALUES ($1)", site)
        await conn.execute(_plain_copy())
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        results: dict[str, list[tuple[float, float]]] = {"with-chain": [], "no-chain": []}
        for _ in range(args.rounds):
            for site, function in (("with-chain", "cmp_append"), ("no-chain", "cmp_append_plain")):
                # The named query calls cmp_append; point it at the copy for the baseline.
                saved = events.SQL["append_batch"]
                events.SQL["append_batch"] = saved.replace("cmp_append(", f"{function}(")
                try:
                    cpu0 = _cpu(backend)
                    wall = await _run(conn, site, args.batches, args.size)
                    cpu = _cpu(backend) - cpu0
                finally:
                    events.SQL["append_batch"] = saved
                n = args.batches * args.size
                results[site].append((n / wall, cpu / n * 1e6))
        count = 20_000
        records = [_event("x").record for _ in range(count)]
        t0 = time.process_time()
        for record in records:
            split_at_seq(record)
        python_us = (time.process_time() - t0) / count * 1e6
        await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    summary = {
        site: {
            "events_per_s": round(statistics.median(r[0] for r in rows)),
            "pg_cpu_us_per_event": round(statistics.median(r[1] for r in rows), 1),
        }
        for site, rows in results.items()
    }
    summary["chain_python_us_per_event"] = round(python_us, 1)  # type: ignore[assignment]
    summary["batch_size"] = args.size  # type: ignore[assignment]
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=1))
