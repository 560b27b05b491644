"""`cmpd serve --workers 2`: read-your-writes across processes sharing one port."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import aiohttp
import psutil
import pytest

from tests.factories import ADMIN, ADMIN_KEY, ORIGIN, event, new_site_id, policy_body, site_body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def two_workers(db_dsn: str, tmp_path: object) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "CMP_DATABASE_URL": db_dsn,
        "CMP_PORT": str(port),
        "CMP_ADMIN_KEY": ADMIN_KEY,
        "CMP_DATA_DIR": str(tmp_path),
        "CMP_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen([sys.executable, "-m", "cmp", "serve", "--workers", "2"], env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if len(psutil.Process(proc.pid).children()) == 2:
                    break
        except OSError:
            pass
        assert proc.poll() is None, "cmpd serve exited"
        assert time.monotonic() < deadline, "cmpd serve did not start"
        time.sleep(0.1)
    yield base
    proc.terminate()
    proc.wait(timeout=15)


async def test_a_write_acknowledged_by_one_worker_is_read_by_any(two_workers: str) -> None:
    base = two_workers
    # A fresh connection per request, so the kernel spreads requests over both workers.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(base, connector=connector) as http:
        for _ in range(50):
            async with http.get("/readyz") as r:
                if r.status == 200:
                    break
            await asyncio.sleep(0.1)
        site = new_site_id()
        async with http.put(f"/v1/sites/{site}", json=site_body(), headers=ADMIN) as r:
            assert r.status == 201
        async with http.post(f"/v1/sites/{site}/policies", json=policy_body(), headers=ADMIN) as r:
            assert r.status == 201
        async with http.post(f"/v1/sites/{site}/keys", json={"scope": "read"}, headers=ADMIN) as r:
            read = {"Authorization": f"Bearer {(await r.json())['key']}"}
        subject = "rw-subject"
        for i in range(60):
            body = event(subject, action="accept_all" if i % 2 else "reject_all")
            async with http.post(
                f"/v1/sites/{site}/events", json=body, headers={"Origin": ORIGIN}
            ) as r:
                assert r.status == 201
            async with http.get(f"/v1/sites/{site}/subjects/{subject}/consent", headers=read) as r:
                state = await r.json()
            assert state["event_id"] == body["event_id"], f"stale read at step {i}"
            assert state["action"] == body["action"]
