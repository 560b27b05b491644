"""A client that hangs up in the middle of its request body, over a real socket.

The app runs as `cmpd serve` runs it (`web.run_app`'s defaults: a handler is not
cancelled when its client goes away, so it sees the lost connection while reading);
aiohttp's test server cancels handlers instead and would hide what production does.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from cmp.app import create_app
from tests.factories import ADMIN_KEY, ORIGIN, make_site, new_site_id


@pytest.fixture
async def base(settings: Any, db_dsn: str) -> AsyncIterator[str]:
    runner = web.AppRunner(create_app(settings, db_dsn), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"127.0.0.1:{port}"
    await runner.cleanup()


async def metric_lines(base: str) -> list[str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://{base}/metrics") as r:
        return (await r.text()).splitlines()


async def hang_up_mid_body(base: str, head: str) -> None:
    """Headers that promise 1,000 bytes, the first few of them, then close."""
    host, port = base.split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"{head}Content-Length: 1000\r\n\r\n".encode() + b'{"event_id": "')
    await writer.drain()
    await asyncio.sleep(0.2)  # the handler is reading the body by now
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize(
    ("method", "route", "headers"),
    [
        ("POST", "/v1/sites/{site_id}/events", f"Origin: {ORIGIN}\r\n"),
        ("PUT", "/v1/sites/{site_id}", f"Authorization: Bearer {ADMIN_KEY}\r\n"),
    ],
)
async def test_a_client_that_hangs_up_mid_body_is_an_abort_not_a_server_error(
    client: TestClient,
    base: str,
    caplog: pytest.LogCaptureFixture,
    method: str,
    route: str,
    headers: str,
) -> None:
    site_id = await make_site(client) if method == "POST" else new_site_id()
    path = route.replace("{site_id}", site_id)
    caplog.set_level(logging.DEBUG)
    head = f"{method} {path} HTTP/1.1\r\nHost: {base}\r\n{headers}"
    await hang_up_mid_body(base, head + "Content-Type: application/json\r\n")
    counted = f'cmp_http_client_aborts_total{{method="{method}",route="{route}"}} 1.0'
    answered = re.compile(
        rf'^cmp_http_requests_total{{method="{method}",route="{re.escape(route)}",status="(\d+)"}}'
    )
    for _ in range(100):  # until the request is counted as something
        lines = await metric_lines(base)
        statuses = [m.group(1) for line in lines if (m := answered.match(line))]
        if counted in lines or statuses:
            break
        await asyncio.sleep(0.05)
    assert not [s for s in statuses if s.startswith("5")], statuses
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert counted in lines
    assert any("client went away" in r.getMessage() for r in caplog.records)
