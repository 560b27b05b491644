"""What the server keeps in memory for connections that idle and requests that wait.

- An idle keep-alive connection does not hold its last answer (cmp/api/bodies.py).
  aiohttp keeps a connection's last request and response until its next request. Here
  12 clients each take a 100-id lookup and stay connected. The test counts, with
  tracemalloc, the memory still allocated by the lookup handler's module, against one
  answer's size.
- A request waiting for its commit keeps its rows, not its parsed events
  (cmp/ingest/pipeline.py). Every waiting event is in memory at once.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Callable

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient
from prometheus_client import Gauge

from cmp.appkeys import METRICS
from tests.factories import ADMIN, ORIGIN, event, make_key, make_site

CLIENTS = 12
IDS = [f"idle-{i:03d}-" + "x" * 40 for i in range(100)]


def _held_by(snapshot: tracemalloc.Snapshot, module: str) -> int:
    return sum(
        s.size for s in snapshot.statistics("filename") if s.traceback[0].filename.endswith(module)
    )


async def test_idle_keep_alive_connections_hold_no_answer_bodies(client: TestClient) -> None:
    site_id = await make_site(client)
    read = await make_key(client, site_id, "read")
    url = client.make_url(f"/v1/sites/{site_id}/consent/lookup")
    sessions = [aiohttp.ClientSession() for _ in range(CLIENTS)]
    tracemalloc.start()
    try:
        sizes = []
        for session in sessions:
            async with session.post(url, json={"subject_ids": IDS}, headers=read) as r:
                assert r.status == 200, await r.text()
                sizes.append(len(await r.read()))
        server = client.server.runner.server  # type: ignore[union-attr]
        assert server is not None and len(server.connections) >= CLIENTS  # all still open
        gc.collect()
        held = _held_by(tracemalloc.take_snapshot(), "cmp/api/consent.py")
    finally:
        tracemalloc.stop()
        for session in sessions:
            await session.close()
    assert min(sizes) > 40_000  # an answer worth keeping an eye on
    # Before the fix: one whole answer per idle connection (12 × ~60 KB).
    assert held < min(sizes), f"{held:,} bytes still held for {CLIENTS} idle connections"


async def test_a_metrics_scrape_and_a_json_answer_let_go_of_their_bodies_too(
    client: TestClient,
) -> None:
    scraper, reader = aiohttp.ClientSession(), aiohttp.ClientSession()
    tracemalloc.start()
    try:
        r = await scraper.get(client.make_url("/metrics"), headers=ADMIN)
        assert r.status == 200 and len(await r.read()) > 1000
        r = await reader.get(client.make_url("/openapi.json"))
        assert r.status == 200 and len(await r.read()) > 10_000
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
        await scraper.close()
        await reader.close()
    assert _held_by(snapshot, "prometheus_client/exposition.py") < 1000
    assert _held_by(snapshot, "cmp/api/json.py") < 1000


# Requests of 10 events each, queued behind a flush the database holds up: fewer than
# cmp.commit.OVERLAP_EVENTS, so that no second flush takes them.
WAITING = 9
LOCK_WAITS = """SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'"""


async def test_requests_waiting_for_their_commit_hold_no_parsed_events(
    client: TestClient, db_dsn: str
) -> None:
    site_id = await make_site(client)
    path = f"/v1/sites/{site_id}/events"
    depth = client.app[METRICS].queue_depth  # type: ignore[index]

    async def post() -> int:
        r = await client.post(
            path, json={"events": [event() for _ in range(10)]}, headers={"Origin": ORIGIN}
        )
        return r.status

    locker, watcher = await asyncpg.connect(db_dsn), await asyncpg.connect(db_dsn)
    tracemalloc.start(25)
    try:
        async with locker.transaction():
            await locker.execute("LOCK TABLE consent_events IN ACCESS EXCLUSIVE MODE")
            first = asyncio.create_task(post())  # its flush takes it, then waits on the lock
            while not await watcher.fetchval(LOCK_WAITS):
                assert not first.done(), await first
                await asyncio.sleep(0.01)
            waiting = [asyncio.create_task(post()) for _ in range(WAITING)]
            await _until(lambda: _value(depth) == WAITING * 10)
            gc.collect()
            snapshot = tracemalloc.take_snapshot()
        statuses = await asyncio.gather(first, *waiting)
    finally:
        tracemalloc.stop()
        await locker.close()
        await watcher.close()
    assert statuses == [201] * (WAITING + 1)
    parsed = sum(
        s.size
        for s in snapshot.statistics("traceback")
        if any(f.filename.endswith("cmp/ingest/parse.py") for f in s.traceback)
    )
    built = sum(
        s.size
        for s in snapshot.statistics("traceback")
        if any(f.filename.endswith("cmp/ingest/build.py") for f in s.traceback)
    )
    assert built > WAITING * 10 * 1000  # the rows are there: the snapshot saw them wait
    # Before the change: ~1.1 KB of parsed event per waiting event (99 KB here); what
    # stays is the ids the parser made, which the rows hold (~190 bytes an event).
    assert parsed < WAITING * 10 * 400, f"{parsed:,} bytes of parsed events held"


def _value(gauge: Gauge) -> float:
    return float(next(iter(gauge.collect())).samples[0].value)


async def _until(ready: Callable[[], bool], within_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not ready():
        assert asyncio.get_running_loop().time() < deadline, "the requests never queued"
        await asyncio.sleep(0.01)
