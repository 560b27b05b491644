"""Three separate `cmpd serve` processes behind Debian's nginx (round robin) on one
PostgreSQL over TCP — and the same through PgBouncer in transaction pooling mode —
behave as one service: nothing acknowledged is lost or doubled, every chain verifies
against a checkpoint signed by any instance, reads see writes made through another
instance, a SIGKILL or a rolling restart costs nothing acknowledged, background jobs
run once, and a key revoked through one instance is refused by all.

Needs nginx and pgbouncer (Debian packages; `.ci/run` installs them): skipped without
them, failed without them under CI=true.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from cmp.audit.signing import parse_public_key, verify_checkpoint
from cmp.audit.verify import verify_export
from loadtest.cluster import Cluster, Instance, missing_tools
from tests.factories import ORIGIN, age_records, event, new_site_id, policy_body, site_body

pytestmark = pytest.mark.timeout(300)

CHECKPOINT_SECONDS = 3
PURGE_SECONDS = 4


def _require_tools() -> None:
    missing = missing_tools()
    if missing:
        reason = f"{', '.join(missing)} not installed (apt-get install nginx pgbouncer)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


async def _cluster(root: Path, *, pgbouncer: bool) -> AsyncIterator[Cluster]:
    _require_tools()
    cluster = Cluster(
        root,
        pgbouncer=pgbouncer,
        env={
            "CMP_CHECKPOINT_INTERVAL_SECONDS": str(CHECKPOINT_SECONDS),
            "CMP_PURGE_INTERVAL_SECONDS": str(PURGE_SECONDS),
        },
    )
    try:
        await cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async for c in _cluster(tmp_path_factory.mktemp("direct"), pgbouncer=False):
        yield c


@pytest.fixture(scope="module")
async def bounced(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async for c in _cluster(tmp_path_factory.mktemp("bounced"), pgbouncer=True):
        yield c


# --- helpers ---------------------------------------------------------------------------


@dataclass
class Site:
    id: str
    admin: dict[str, str]
    read: dict[str, str]
    audit: dict[str, str]


async def make_site(http: aiohttp.ClientSession, cluster: Cluster, **extra: Any) -> Site:
    admin = {"Authorization": f"Bearer {cluster.admin_key}"}
    site_id = new_site_id()
    async with http.put(
        f"{cluster.base}/v1/sites/{site_id}", json=site_body(**extra), headers=admin
    ) as r:
        assert r.status == 201, await r.text()
    async with http.post(
        f"{cluster.base}/v1/sites/{site_id}/policies", json=policy_body(), headers=admin
    ) as r:
        assert r.status == 201, await r.text()
    keys = {}
    for scope in ("read", "audit"):
        async with http.post(
            f"{cluster.base}/v1/sites/{site_id}/keys", json={"scope": scope}, headers=admin
        ) as r:
            assert r.status == 201, await r.text()
            keys[scope] = {"Authorization": f"Bearer {(await r.json())['key']}"}
    return Site(site_id, admin, keys["read"], keys["audit"])


@dataclass
class Traffic:
    """Event posts through the balancer; a failed post is retried with the same event id
    (the idempotency key), as a banner's sendBeacon retry would."""

    cluster: Cluster
    sites: list[Site]
    phase: str = "load"
    acked: dict[str, str] = field(default_factory=dict)  # event id -> site id
    acked_by: dict[str, str] = field(default_factory=dict)  # event id -> instance addr
    unacked: set[str] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)
    with_retry_after: int = 0
    bad: list[str] = field(default_factory=list)  # 5xx other than 503 + Retry-After
    served: Counter[tuple[str, str]] = field(default_factory=Counter)  # (phase, addr)
    stopping: bool = False  # no new posts; those in flight finish

    async def post(self, http: aiohttp.ClientSession, site: Site) -> None:
        body = event()
        for attempt in range(40):
            # The phase a request was sent in: a response read after the phase changed
            # still belongs to the phase it was sent in.
            phase = self.phase
            try:
                async with http.post(
                    f"{self.cluster.base}/v1/sites/{site.id}/events",
                    json=body,
                    headers={"Origin": ORIGIN},
                ) as r:
                    await r.read()
                    self._count(r, phase)
                    if r.status == 201:
                        self.acked[body["event_id"]] = site.id
                        self.acked_by[body["event_id"]] = r.headers.get("X-Upstream", "")
                        return
            except aiohttp.ClientError:
                self.statuses[0] += 1
            await asyncio.sleep(min(0.05 * (attempt + 1), 0.5))
        self.unacked.add(body["event_id"])

    def _count(self, r: aiohttp.ClientResponse, phase: str) -> None:
        self.statuses[r.status] += 1
        upstream = r.headers.get("X-Upstream", "")
        if upstream:
            self.served[(phase, upstream.rsplit(",", 1)[-1].strip())] += 1
        if r.status >= 500:
            if r.status == 503 and "Retry-After" in r.headers:
                self.with_retry_after += 1
            else:
                self.bad.append(f"{r.status} via {upstream or 'nginx'}")

    async def run(self, count: int, concurrency: int = 32) -> None:
        numbers = iter(range(count))
        async with aiohttp.ClientSession() as http:

            async def worker() -> None:
                for n in numbers:
                    if self.stopping:
                        return
                    await self.post(http, self.sites[n % len(self.sites)])

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def until_served(self, inst: Instance) -> None:
        """Until nginx has sent `inst` a request in the current phase (bounded)."""
        deadline = time.monotonic() + 60
        while self.served[(self.phase, inst.addr)] == 0:
            assert time.monotonic() < deadline, f"nginx sent cmp-{inst.index} nothing"
            await asyncio.sleep(0.02)

    async def until_acked(self, count: int) -> None:
        deadline = time.monotonic() + 120
        while len(self.acked) < count:
            assert time.monotonic() < deadline, f"only {len(self.acked)} of {count} acked"
            await asyncio.sleep(0.02)


async def check_logs(cluster: Cluster, traffic: Traffic) -> dict[str, int]:
    """Every acknowledged event is in its site's export exactly once, nothing else is
    there but unacknowledged retries, and each chain verifies against a checkpoint from
    every instance (one signing key shared by all). Returns records per site."""
    stored: dict[str, int] = {}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{cluster.base}/v1/log/public-key") as r:
            public_key = parse_public_key(await r.text())
        for site in traffic.sites:
            async with http.get(
                f"{cluster.base}/v1/sites/{site.id}/events?format=jsonl", headers=site.audit
            ) as r:
                assert r.status == 200
                lines = [line for line in (await r.text()).splitlines() if line]
            import orjson

            ids = Counter(orjson.loads(line)["event_id"] for line in lines)
            doubled = [i for i, n in ids.items() if n > 1]
            assert not doubled, f"{site.id}: {len(doubled)} events stored twice"
            acked = {i for i, s in traffic.acked.items() if s == site.id}
            lost = acked - ids.keys()
            assert not lost, f"{site.id}: {len(lost)} acknowledged events lost"
            assert ids.keys() - acked <= traffic.unacked
            stored[site.id] = len(ids)
            for inst in cluster.instances:
                async with http.get(
                    f"{inst.base}/v1/sites/{site.id}/log/checkpoint", headers=site.audit
                ) as r:
                    checkpoint = await r.json()
                assert verify_checkpoint(checkpoint, public_key)
                result = verify_export(lines, checkpoint=checkpoint, public_key=public_key)
                assert result.ok, f"{site.id} via cmp-{inst.index}: {result.summary()}"
                assert result.records == len(lines)
    return stored


async def read_your_writes(cluster: Cluster, traffic: Traffic, site: Site, checks: int) -> int:
    """Write through the balancer, read at once from an instance that did not take the
    write; returns how many checks ran (each one asserted)."""
    others = itertools.cycle(cluster.instances)
    done = 0
    async with aiohttp.ClientSession() as http:
        for i in range(checks):
            subject = f"ryw-{i % 5}"
            body = event(subject, action="accept_all" if i % 2 else "reject_all")
            async with http.post(
                f"{cluster.base}/v1/sites/{site.id}/events",
                json=body,
                headers={"Origin": ORIGIN},
            ) as r:
                assert r.status == 201, await r.text()
                traffic.acked[body["event_id"]] = site.id
                writer = cluster.instance_at(r.headers["X-Upstream"])
            assert writer is not None
            reader = next(others)
            if reader is writer:
                reader = next(others)
            assert reader is not writer
            async with http.get(
                f"{reader.base}/v1/sites/{site.id}/subjects/{subject}/consent", headers=site.read
            ) as r:
                assert r.status == 200, await r.text()
                state = await r.json()
            assert state["event_id"] == body["event_id"], (
                f"check {i}: cmp-{reader.index} missed a write acknowledged by cmp-{writer.index}"
            )
            done += 1
    return done


def report(name: str, **figures: object) -> None:
    print(f"\n[many-instances] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


# --- the tests -------------------------------------------------------------------------


async def test_every_acknowledged_event_is_stored_once_and_reads_follow_writes(
    cluster: Cluster,
) -> None:
    async with aiohttp.ClientSession() as http:
        sites = [await make_site(http, cluster) for _ in range(3)]
    traffic = Traffic(cluster, sites)
    load = asyncio.create_task(traffic.run(3000, concurrency=48))
    ryw = await read_your_writes(cluster, traffic, sites[0], 90)  # under the load, not after it
    await load
    assert not traffic.unacked
    assert traffic.bad == []
    # Round robin: every instance took a real share of the posts.
    shares = {i.index: traffic.served[("load", i.addr)] for i in cluster.instances}
    assert all(n > 3000 / 3 / 2 for n in shares.values()), shares
    stored = await check_logs(cluster, traffic)
    assert sum(stored.values()) == len(traffic.acked)
    report(
        "full concurrency",
        acked=len(traffic.acked),
        stored=sum(stored.values()),
        lost=0,
        ryw_checks=ryw,
        per_instance=shares,
        retry_after_503=traffic.with_retry_after,
    )


async def test_sigkill_of_one_instance_loses_nothing_it_acknowledged(cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as http:
        sites = [await make_site(http, cluster) for _ in range(2)]
    victim = cluster.instances[1]
    traffic = Traffic(cluster, sites)
    load = asyncio.create_task(traffic.run(4000, concurrency=32))
    await traffic.until_acked(1000)
    cluster.kill(victim)
    traffic.phase = "victim down"
    acked_at_kill = len(traffic.acked)
    await traffic.until_acked(acked_at_kill + 600)
    # The phase moves before the restart: the victim serves again as soon as it is up,
    # while `restart` still waits for its readiness.
    traffic.phase = "rejoined"
    await cluster.restart(victim)
    await load
    # nginx tries a failed server again after fail_timeout: post until the restarted
    # instance has taken some (bounded).
    tail = Traffic(cluster, sites, phase="rejoined")
    deadline = time.monotonic() + 30
    while tail.served[("rejoined", victim.addr)] == 0 and time.monotonic() < deadline:
        await tail.run(30, concurrency=3)
    assert not traffic.unacked and not tail.unacked
    by_victim = [e for e, addr in traffic.acked_by.items() if cluster.instance_at(addr) is victim]
    assert by_victim, "the victim acknowledged nothing before it was killed"
    down = {addr: n for (phase, addr), n in traffic.served.items() if phase == "victim down"}
    assert victim.addr not in down, "nginx sent a request to the killed instance"
    assert sum(down.values()) >= 600
    assert tail.served[("rejoined", victim.addr)] > 0, "the restarted instance did not rejoin"
    traffic.acked.update(tail.acked)
    stored = await check_logs(cluster, traffic)
    assert sum(stored.values()) == len(traffic.acked)
    report(
        "SIGKILL mid-load",
        acked=len(traffic.acked),
        stored=sum(stored.values()),
        lost=0,
        acked_by_victim=len(by_victim),
        served_while_down=sum(down.values()),
        served_by_rejoined=tail.served[("rejoined", victim.addr)],
        non_503_5xx=len(traffic.bad),
    )


async def test_rolling_restart_gives_only_503_with_retry_after_and_loses_nothing(
    cluster: Cluster,
) -> None:
    async with aiohttp.ClientSession() as http:
        sites = [await make_site(http, cluster) for _ in range(2)]
    traffic = Traffic(cluster, sites)
    stop = asyncio.Event()
    reads: Counter[int] = Counter()
    bad_reads: list[int] = []

    async def read_loop() -> None:
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                async with http.get(
                    f"{cluster.base}/v1/sites/{sites[0].id}/subjects/nobody/consent",
                    headers=sites[0].read,
                ) as r:
                    await r.read()
                    reads[r.status] += 1
                    if r.status >= 500 and not (r.status == 503 and "Retry-After" in r.headers):
                        bad_reads.append(r.status)
                await asyncio.sleep(0.005)

    load = asyncio.create_task(traffic.run(100_000, concurrency=32))
    reader = asyncio.create_task(read_loop())
    await traffic.until_acked(300)
    codes = []
    for inst in cluster.instances:
        codes.append(await asyncio.to_thread(cluster.terminate, inst))
        # Sent after the old process exited: only the new one can answer these.
        traffic.phase = f"restarted cmp-{inst.index}"
        await cluster.restart(inst)
        # One replica at a time as nginx sees it: it holds a failed server out for
        # fail_timeout after its last failure, so stopping the next one before nginx
        # sends the restarted one traffic again would leave a single server in the
        # upstream, and its next failure would be a 502 ("no live upstreams").
        await traffic.until_served(inst)
        await traffic.until_acked(len(traffic.acked) + 200)
    stop.set()
    traffic.stopping = True
    await asyncio.gather(load, reader)
    acked_now = len(traffic.acked)
    assert codes == [0, 0, 0], f"exit codes after SIGTERM: {codes}"
    assert traffic.bad == [], traffic.bad[:10]
    assert bad_reads == []
    stored = await check_logs(cluster, traffic)
    assert not traffic.unacked
    assert sum(stored.values()) == acked_now
    report(
        "rolling SIGTERM restart",
        acked=acked_now,
        stored=sum(stored.values()),
        lost=0,
        retry_after_503=traffic.with_retry_after,
        other_5xx=len(traffic.bad),
        reads=dict(reads),
    )


async def test_background_jobs_run_once_across_instances(cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as http:
        site = await make_site(http, cluster, consent_validity_days=1, retention_days=1)
    traffic = Traffic(cluster, [site])
    await traffic.run(40, concurrency=4)
    conn = await asyncpg.connect(cluster.direct_dsn)
    try:
        # Age the first 15 records past retention (a superuser may bypass the
        # append-only trigger; the application cannot).
        await age_records(conn, site.id, through_seq=15)
        # Keep the log growing for a few checkpoint intervals while every instance's
        # timer fires (and purges: each instance every other tick).
        started = time.monotonic()
        while time.monotonic() - started < 5 * CHECKPOINT_SECONDS:
            await traffic.run(20, concurrency=2)
            await asyncio.sleep(0.5)
        anchors = await conn.fetch(
            "SELECT seq FROM log_checkpoints WHERE site_id = $1 AND kind = 'anchor'", site.id
        )
        periodic = await conn.fetch(
            "SELECT signed_at FROM log_checkpoints WHERE site_id = $1 AND kind = 'periodic'"
            " ORDER BY seq",
            site.id,
        )
        remaining = await conn.fetchval(
            "SELECT count(*) FROM consent_events WHERE site_id = $1", site.id
        )
    finally:
        await conn.close()
    purge_lines = [
        line
        for inst in cluster.instances
        for line in inst.child.log_text().splitlines()
        if re.search(rf"purged \d+ records of {site.id} ", line)
    ]
    assert [a["seq"] for a in anchors] == [15]
    assert len(purge_lines) == 1, purge_lines
    assert "purged 15 records" in purge_lines[0]
    assert remaining == len(traffic.acked) - 15
    # One stored checkpoint per interval, whichever instance's timer fired first.
    gaps = [
        (b["signed_at"] - a["signed_at"]).total_seconds() for a, b in itertools.pairwise(periodic)
    ]
    assert len(periodic) >= 3
    assert min(gaps) >= CHECKPOINT_SECONDS * 0.9 - 0.01, gaps
    report(
        "background jobs",
        periodic_checkpoints=len(periodic),
        min_gap_s=round(min(gaps), 2),
        purge_runs_that_deleted=len(purge_lines),
        anchors=len(anchors),
    )


async def test_through_pgbouncer_transaction_pooling(bounced: Cluster) -> None:
    async with aiohttp.ClientSession() as http:
        sites = [await make_site(http, bounced) for _ in range(2)]
    traffic = Traffic(bounced, sites)
    load = asyncio.create_task(traffic.run(2000, concurrency=32))
    ryw = await read_your_writes(bounced, traffic, sites[0], 45)
    await load
    assert not traffic.unacked
    assert traffic.bad == []
    stored = await check_logs(bounced, traffic)
    assert sum(stored.values()) == len(traffic.acked)
    report(
        "through PgBouncer (transaction pooling)",
        acked=len(traffic.acked),
        stored=sum(stored.values()),
        lost=0,
        ryw_checks=ryw,
        non_2xx=sum(n for s, n in traffic.statuses.items() if s != 201),
    )


async def _status_at(
    http: aiohttp.ClientSession, inst: Instance, site: Site, key: dict[str, str]
) -> int:
    async with http.get(
        f"{inst.base}/v1/sites/{site.id}/subjects/nobody/consent", headers=key
    ) as r:
        return r.status


async def test_a_key_revoked_through_one_instance_is_refused_by_every_instance(
    bounced: Cluster,
) -> None:
    async with aiohttp.ClientSession() as http:
        site = await make_site(http, bounced)
        first, second, *_ = bounced.instances
        async with http.post(
            f"{first.base}/v1/sites/{site.id}/keys", json={"scope": "read"}, headers=site.admin
        ) as r:
            created = await r.json()
        key = {"Authorization": f"Bearer {created['key']}"}
        # Every instance has the key in its cache before the revocation.
        for inst in bounced.instances:
            assert await _status_at(http, inst, site, key) == 200
        async with http.delete(
            f"{second.base}/v1/sites/{site.id}/keys/{created['id']}", headers=site.admin
        ) as r:
            assert r.status in (200, 204), await r.text()
        refused_after: dict[int, float] = {}
        started = time.monotonic()
        while len(refused_after) < len(bounced.instances) and time.monotonic() - started < 10:
            for inst in bounced.instances:
                if (
                    inst.index not in refused_after
                    and await _status_at(http, inst, site, key) == 401
                ):
                    refused_after[inst.index] = time.monotonic() - started
            await asyncio.sleep(0.01)
    assert sorted(refused_after) == [i.index for i in bounced.instances], refused_after
    report("revocation through PgBouncer", refused_by=len(refused_after))


async def _failed_queries(pool: asyncpg.Pool, count: int) -> Counter[str]:
    failures: Counter[str] = Counter()

    async def one(i: int) -> None:
        try:
            async with pool.acquire() as conn:
                await conn.fetchval(f"SELECT $1::int + {i % 7}", i)
                async with conn.transaction():
                    await conn.fetchval(f"SELECT $1::int - {i % 5}", i)
        except asyncpg.PostgresError as exc:
            failures[type(exc).__name__] += 1

    await asyncio.gather(*(one(i) for i in range(count)))
    return failures


async def test_statement_cache_0_is_what_makes_transaction_pooling_work(bounced: Cluster) -> None:
    from cmp.store.db import create_pool

    default = await create_pool(bounced.app_dsn, 6)
    try:
        broken = await _failed_queries(default, 600)
    finally:
        await default.close()
    off = await create_pool(bounced.app_dsn, 6, statement_cache=0)
    try:
        working = await _failed_queries(off, 600)
    finally:
        await off.close()
    assert broken["InvalidSQLStatementNameError"] > 0, broken
    assert working == Counter()
    report("prepared statements through PgBouncer", default_cache=dict(broken), cache_0=0)
