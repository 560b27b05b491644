"""Concurrent ingest load for the fault tests, and the checks that follow a fault.

Posters send events for several sites at once and remember every event id that got a
2xx; on a 503 they check Retry-After and resend the same event a few times (as the
banner's retry queue does), then give up on it. Readers read the state of subjects
whose events were acknowledged. Anything but 201/503 for a post (200/503 for a read)
is recorded and fails the test.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp.test_utils import TestClient

from cmp.audit.verify import verify_export
from tests.factories import ORIGIN, event, make_key, make_site

RESENDS = 3
# Every request is answered within this, fault or not: a flush or read waits at most for
# the one in progress and then its own, each bounded by the commit timeout the fault
# tests set (1 s). Generous for a loaded machine, far below the 30 s a stuck
# connection used to hold a flush.
ANSWER_WITHIN = 10.0


@dataclass
class Site:
    site_id: str
    audit: dict[str, str]
    read: dict[str, str]
    acked: set[str] = field(default_factory=set)
    subjects: list[str] = field(default_factory=list)
    last_ack: float = 0.0  # monotonic time of the latest 201


async def make_sites(client: TestClient, count: int) -> list[Site]:
    sites = []
    for _ in range(count):
        site_id = await make_site(client)
        audit = await make_key(client, site_id, "audit")
        read = await make_key(client, site_id, "read")
        sites.append(Site(site_id, audit, read))
    return sites


class Load:
    def __init__(self, client: TestClient, sites: list[Site], posters: int, readers: int) -> None:
        self._client = client
        self.sites = sites
        self._posters = posters
        self._readers = readers
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.statuses: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.abandoned = 0
        self.slowest = 0.0  # seconds, the longest any request took

    def start(self) -> None:
        turn = itertools.cycle(self.sites)
        self._tasks = [asyncio.create_task(self._post(next(turn))) for _ in range(self._posters)]
        self._tasks += [asyncio.create_task(self._read(next(turn))) for _ in range(self._readers)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    @property
    def acked(self) -> int:
        return sum(len(s.acked) for s in self.sites)

    async def wait_acked(self, more: int, within: float = 60) -> None:
        """Until `more` further events were acknowledged."""
        target = self.acked + more
        deadline = time.monotonic() + within
        while self.acked < target:
            assert time.monotonic() < deadline, f"no progress: {self.statuses}"
            await asyncio.sleep(0.02)

    async def wait_recovered(self, since: float, within: float = 30) -> float:
        """Until every site got a 201 for a post sent after `since`; returns the seconds."""
        deadline = since + within
        while any(s.last_ack <= since for s in self.sites):
            assert time.monotonic() < deadline, (
                f"no 201 within {within} s of the fault's end: {self.statuses}"
            )
            await asyncio.sleep(0.02)
        return max(s.last_ack for s in self.sites) - since

    async def _post(self, site: Site) -> None:
        url = f"/v1/sites/{site.site_id}/events"
        while not self._stop.is_set():
            body = event()
            for _ in range(1 + RESENDS):
                sent = time.monotonic()
                r = await self._client.post(url, json=body, headers={"Origin": ORIGIN})
                text = await r.text()
                self.slowest = max(self.slowest, time.monotonic() - sent)
                self.statuses[f"post {r.status}"] += 1
                if r.status == 201:
                    site.acked.add(body["event_id"])
                    site.subjects.append(body["subject_id"])
                    site.last_ack = max(site.last_ack, sent)
                    break
                if r.status == 503 and int(r.headers.get("Retry-After", "0")) >= 1:
                    await asyncio.sleep(random.uniform(0.02, 0.2))
                    continue
                self.unexpected.append(f"POST {r.status} {r.headers.get('Retry-After')} {text}")
                break
            else:
                self.abandoned += 1

    async def _read(self, site: Site) -> None:
        while not self._stop.is_set():
            if not site.subjects:
                await asyncio.sleep(0.05)
                continue
            subject = random.choice(site.subjects)
            sent = time.monotonic()
            r = await self._client.get(
                f"/v1/sites/{site.site_id}/subjects/{subject}/consent", headers=site.read
            )
            text = await r.text()
            self.slowest = max(self.slowest, time.monotonic() - sent)
            self.statuses[f"read {r.status}"] += 1
            if r.status == 200:
                assert json.loads(text)["subject_id"] == subject
            elif r.status == 503 and int(r.headers.get("Retry-After", "0")) >= 1:
                await asyncio.sleep(0.05)
            else:
                self.unexpected.append(f"GET {r.status} {text}")
            await asyncio.sleep(0.01)


async def check_exports(
    client: TestClient, load: Load, scenario: str, report: Callable[[str], None]
) -> dict[str, object]:
    """Every acknowledged event is in its site's export exactly once and each chain
    verifies; prints the counts first, so the CI log shows them pass or fail."""
    acked = stored = lost = 0
    problems: list[str] = []
    for site in load.sites:
        r = await client.get(f"/v1/sites/{site.site_id}/events", headers=site.audit)
        assert r.status == 200, await r.text()
        lines = (await r.text()).splitlines()
        result = verify_export(lines)  # what `cmpd verify` runs
        if not result.ok or result.records != len(lines):
            problems.append(f"{site.site_id}: chain does not verify: {result.failure}")
        ids = [json.loads(line)["event_id"] for line in lines]
        repeated = [i for i, n in Counter(ids).items() if n > 1]
        if repeated:
            problems.append(f"{site.site_id}: stored more than once: {repeated[:5]}")
        missing = site.acked - set(ids)
        if missing:
            problems.append(f"{site.site_id}: acknowledged, not stored: {sorted(missing)[:5]}")
        acked += len(site.acked)
        stored += len(ids)
        lost += len(missing)
    figures: dict[str, object] = {
        "acked": acked,
        "stored": stored,
        "lost": lost,
        "abandoned": load.abandoned,
    }
    figures.update(sorted(load.statuses.items()))
    figures["slowest_s"] = round(load.slowest, 2)
    report(f"{scenario}: " + " ".join(f"{k}={v}" for k, v in figures.items()))
    problems += load.unexpected[:10]
    if load.slowest > ANSWER_WITHIN:
        problems.append(f"a request took {load.slowest:.1f} s (limit {ANSWER_WITHIN} s)")
    assert not problems, problems
    assert acked > 0
    return figures
