"""Logs hold no personal data (docs/api.md, Operations): no raw client IP, not even in aiohttp's own
parser-error lines; no row contents from database errors; no client-chosen request id
that is not plain and short."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from cmp.app import create_app
from cmp.config import Settings
from cmp.store.keys import ensure_root_key
from cmp.store.migrate import migrate
from tests.factories import ADMIN, ADMIN_KEY, new_site_id, site_body

MALFORMED = [
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-No-Colon-Here\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n",
]


async def _raw_exchange(client: TestClient, request: bytes) -> bytes:
    """Send `request` on a fresh socket; everything the server answers until it closes."""
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", client.port))
        await loop.sock_sendall(sock, request)
        received = b""
        async with asyncio.timeout(30):
            while chunk := await loop.sock_recv(sock, 65536):
                received += chunk
    return received


@pytest.mark.parametrize("request_bytes", MALFORMED, ids=["header-without-colon", "bad-length"])
async def test_malformed_http_is_logged_with_the_network_not_the_address(
    client: TestClient, caplog: pytest.LogCaptureFixture, request_bytes: bytes
) -> None:
    assert client.host == "127.0.0.1"  # the client's address below is the loopback one
    with caplog.at_level(logging.INFO):
        answer = await _raw_exchange(client, request_bytes)
    assert answer.split(b"\r\n")[0].split(b" ")[1] == b"400", answer[:100]
    assert "127.0.0.1" not in caplog.text
    lines = [r for r in caplog.records if "malformed HTTP request" in r.getMessage()]
    assert len(lines) == 1, caplog.text
    assert "from 127.0.0.0/24: 400" in lines[0].getMessage()
    assert lines[0].levelno == logging.INFO and lines[0].exc_info is None


@pytest.fixture
async def guarded_dsn(fresh_database: Any) -> str:
    """A migrated database where the site name 'boom' breaks a CHECK constraint: a
    database error whose DETAIL quotes the whole row, subject key included."""
    dsn: str = await fresh_database()
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await ensure_root_key(conn, ADMIN_KEY)
        await conn.execute(
            "ALTER TABLE sites ADD CONSTRAINT sites_name_not_boom CHECK (name <> 'boom')"
        )
    finally:
        await conn.close()
    return dsn


async def test_a_database_error_is_logged_without_its_detail_or_row(
    aiohttp_client: Any, guarded_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        database_url=SecretStr(guarded_dsn), data_dir=tmp_path, admin_key=SecretStr(ADMIN_KEY)
    )
    client: TestClient = await aiohttp_client(create_app(settings, guarded_dsn))
    site_id = new_site_id()
    with caplog.at_level(logging.INFO):
        r = await client.put(f"/v1/sites/{site_id}", json=site_body(name="boom"), headers=ADMIN)
    assert r.status == 500
    assert "Failing row" not in caplog.text and "DETAIL" not in caplog.text
    assert "23514" in caplog.text and "sites_name_not_boom" in caplog.text
    assert site_id not in caplog.text.replace(f"site_id={site_id}", "")


async def test_a_plain_request_id_is_kept_and_any_other_replaced(client: TestClient) -> None:
    r = await client.get("/healthz", headers={"X-Request-Id": "req-2026.11:ab/c+d="})
    assert r.headers["X-Request-Id"] == "req-2026.11:ab/c+d="
    for hostile in ["a b", "<script>", "x" * 65, "é", "id;drop", ""]:
        r = await client.get("/healthz", headers={"X-Request-Id": hostile})
        given = r.headers["X-Request-Id"]
        assert given != hostile and given
