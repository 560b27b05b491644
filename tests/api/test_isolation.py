"""One tenant cannot starve another, and a client cannot hold the server (docs/api.md, Operations).

Real server on a real port, raw sockets where a well-behaved client library would not
do what an attacker does (stop reading, stall a body, stall the headers). Nothing here
asserts a duration: bounds are generous deadlines that only a hang exceeds.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from cmp.app import create_app
from cmp.appkeys import POOL
from cmp.config import Settings
from cmp.store.keys import ensure_root_key
from cmp.store.migrate import migrate
from tests.factories import ADMIN, ADMIN_KEY, ORIGIN, event, make_key, make_site

# Enough log that an export cannot fit in the socket buffers between server and a
# client that does not read (a few MB on loopback): the server must block writing.
BIG_EXPORT_BYTES = 12_000_000
HANG = 60  # seconds: only a hang takes this long


def _settings(db_dsn: str, data_dir: Path, **update: Any) -> Settings:
    return Settings(
        database_url=SecretStr(db_dsn),
        data_dir=data_dir,
        admin_key=SecretStr(ADMIN_KEY),
        rate_per_second=100_000,
        rate_burst=100_000,
        **update,
    )


@pytest.fixture(scope="module")
async def big_site(db_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A site whose jsonl export is larger than BIG_EXPORT_BYTES (and its csv close)."""
    app = create_app(_settings(db_dsn, tmp_path_factory.mktemp("big")), db_dsn)
    async with TestClient(TestServer(app)) as client:
        site = await make_site(client)
        agent = {"Origin": ORIGIN, "User-Agent": "Mozilla/5.0 " + "x" * 300}

        async def post(n: int) -> None:
            r = await client.post(
                f"/v1/sites/{site}/events",
                json={"events": [event() for _ in range(n)]},
                headers=agent,
            )
            assert r.status == 201, await r.text()

        await post(100)
        audit = await make_key(client, site, "audit")
        r = await client.get(f"/v1/sites/{site}/events", headers=audit)
        per_record = len(await r.read()) / 100
        batches = int(BIG_EXPORT_BYTES / per_record / 100) + 1
        for start in range(0, batches, 8):
            await asyncio.gather(*(post(100) for _ in range(min(8, batches - start))))
    yield site


class RawClient:
    """An HTTP/1.1 client on a plain socket that reads only when told to."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = b""

    @classmethod
    async def open(cls, client: TestClient, *, small_window: bool = True) -> RawClient:
        sock = socket.socket()
        if small_window:
            # Before connect, so the kernel advertises a small window from the start.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (client.host, client.port))
        return cls(sock)

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def get(self, path: str, headers: dict[str, str]) -> None:
        lines = [
            f"GET {path} HTTP/1.1",
            "Host: 127.0.0.1",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode())

    async def read_some(self, deadline: float = HANG) -> bytes:
        async with asyncio.timeout(deadline):
            data = await asyncio.get_running_loop().sock_recv(self.sock, 65536)
        self.received += data
        return data

    async def read_to_end(self, deadline: float = HANG) -> bytes:
        """Everything until the server closes the connection."""
        async with asyncio.timeout(deadline):
            while await self.read_some():
                pass
        return self.received

    def close(self) -> None:
        self.sock.close()


async def _in_transaction(db: asyncpg.Connection) -> int:
    """Sessions of this database inside a transaction: exports between chunks (jsonl)
    or in their COPY (csv). Nothing else of the app keeps one open while it is idle."""
    return int(
        await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND xact_start IS NOT NULL AND pid <> pg_backend_pid()"
        )
    )


async def _until(check: Any, what: str, deadline: float = HANG) -> None:
    """Poll `check` (the database's view of other sessions: there is no event to wait on)."""
    try:
        async with asyncio.timeout(deadline):
            while not await check():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"still waiting for {what}")


# --- row 9: exports that are never read ------------------------------------------------


async def test_unread_exports_of_one_tenant_leave_ingest_admin_and_readyz_alone(
    aiohttp_client: Any, db_dsn: str, tmp_path: Path, big_site: str, db: asyncpg.Connection
) -> None:
    settings = _settings(db_dsn, tmp_path, acquire_timeout_seconds=1.0)
    client: TestClient = await aiohttp_client(create_app(settings, db_dsn))
    audit = await make_key(client, big_site, "audit")
    hogs = [await RawClient.open(client) for _ in range(9)]
    try:
        for hog in hogs:
            await hog.get(f"/v1/sites/{big_site}/events?format=jsonl", audit)
        # The site's share of export connections is taken and stuck writing.
        await _until(lambda: _long(db, settings.long_reads_per_site), "exports holding connections")
        other = await make_site(client)
        other_audit = await make_key(client, other, "audit")

        async def post() -> int:
            r = await client.post(
                f"/v1/sites/{other}/events", json=event(), headers={"Origin": ORIGIN}
            )
            return r.status

        async def admin() -> int:
            r = await client.post(f"/v1/sites/{other}/keys", json={"scope": "read"}, headers=ADMIN)
            return r.status

        async def ready() -> int:
            return (await client.get("/readyz")).status

        async def export() -> int:
            r = await client.get(f"/v1/sites/{other}/events", headers=other_audit)
            lines = (await r.read()).decode().splitlines()
            assert len(lines) == 20, lines[:2]
            return r.status

        async with asyncio.timeout(HANG):
            posts = await asyncio.gather(*(post() for _ in range(20)))
            others = await asyncio.gather(admin(), admin(), ready(), ready(), export())
        assert posts == [201] * 20
        assert others == [201, 201, 200, 200, 200]
    finally:
        for hog in hogs:
            hog.close()


async def _long(db: asyncpg.Connection, at_least: int) -> bool:
    return await _in_transaction(db) >= at_least


async def test_a_client_that_stops_reading_is_cut_off_and_its_connection_freed(
    aiohttp_client: Any, db_dsn: str, tmp_path: Path, big_site: str, db: asyncpg.Connection
) -> None:
    settings = _settings(db_dsn, tmp_path, export_write_timeout_seconds=1.0)
    client: TestClient = await aiohttp_client(create_app(settings, db_dsn))
    audit = await make_key(client, big_site, "audit")
    for fmt in ("jsonl", "csv"):
        slow = await RawClient.open(client)
        try:
            await slow.get(f"/v1/sites/{big_site}/events?format={fmt}", audit)
            await slow.read_some()  # the headers and the first bytes came
            await _until(lambda: _long(db, 1), "the export stuck writing")
            # Not reading: the server gives up on the client and gives the connection back.
            await _until(lambda: _none_in_transaction(db), "the export's connection released")
            raw = await slow.read_to_end()
        finally:
            slow.close()
        assert raw.startswith(b"HTTP/1.1 200"), raw[:100]
        assert not raw.endswith(b"0\r\n\r\n"), "a cut transfer must not look complete"
    r = await client.get(f"/v1/sites/{big_site}/subjects/nobody/events", headers=audit)
    assert r.status == 200  # the site's long-read share is free again


async def _none_in_transaction(db: asyncpg.Connection) -> bool:
    return await _in_transaction(db) == 0


# --- H: an error after the first byte -----------------------------------------------


async def test_a_database_error_after_the_first_byte_breaks_the_transfer(
    client: TestClient, big_site: str, db: asyncpg.Connection
) -> None:
    audit = await make_key(client, big_site, "audit")
    reader = await RawClient.open(client)
    try:
        await reader.get(f"/v1/sites/{big_site}/events?format=jsonl", audit)
        await reader.read_some()
        assert reader.received.startswith(b"HTTP/1.1 200")
        await _until(lambda: _long(db, 1), "the export between two chunks")
        killed = await db.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND xact_start IS NOT NULL "
            "AND pid <> pg_backend_pid()"
        )
        assert killed == 1
        raw = await reader.read_to_end()
    finally:
        reader.close()
    assert raw.count(b"HTTP/1.1 ") == 1, "no second status line inside the 200"
    assert b"problem+json" not in raw
    assert not raw.endswith(b"0\r\n\r\n"), "the transfer must break, not end cleanly"


# --- row 4: the export range is checked before anything is sent ---------------------


@pytest.mark.parametrize(
    "query",
    [
        "to=0001-01-01T00:00:00%2B14:00",
        "from=0001-01-01T00:00:00%2B00:01",
        "from=9999-12-31T23:59:59-14:00",
        "to=2026-01-01T00:00:00%2B19:00",
    ],
)
async def test_export_range_outside_years_1_to_9999_in_utc_is_422(
    client: TestClient, query: str
) -> None:
    site = await make_site(client)
    audit = await make_key(client, site, "audit")
    r = await client.get(f"/v1/sites/{site}/events?format=jsonl&{query}", headers=audit)
    assert r.status == 422, await r.text()
    body = await r.json()
    name = query.split("=")[0]
    assert [e["pointer"] for e in body["errors"]] == [f"/{name}"]


async def test_export_range_at_the_edges_of_the_window_is_served(client: TestClient) -> None:
    site = await make_site(client)
    audit = await make_key(client, site, "audit")
    r = await client.post(f"/v1/sites/{site}/events", json=event(), headers={"Origin": ORIGIN})
    assert r.status == 201
    query = "from=0001-01-01T00:00:00Z&to=9999-12-31T09:59:59-14:00"
    r = await client.get(f"/v1/sites/{site}/events?{query}", headers=audit)
    assert r.status == 200
    assert len((await r.text()).splitlines()) == 1


async def test_stats_range_with_an_offset_beyond_18_hours_is_422(client: TestClient) -> None:
    site = await make_site(client)
    audit = await make_key(client, site, "audit")
    r = await client.get(f"/v1/sites/{site}/stats?to=2026-01-01T00:00:00%2B19:00", headers=audit)
    assert r.status == 422, await r.text()
    assert [e["pointer"] for e in (await r.json())["errors"]] == ["/to"]


# --- every wait for a connection is bounded -----------------------------------------


async def test_a_full_pool_answers_503_with_retry_after_instead_of_hanging(
    aiohttp_client: Any, db_dsn: str, tmp_path: Path
) -> None:
    settings = _settings(db_dsn, tmp_path, pool_size=2, acquire_timeout_seconds=0.5)
    app = create_app(settings, db_dsn)
    client: TestClient = await aiohttp_client(app)
    site = await make_site(client)
    pool = app[POOL]
    held = []
    while pool.get_idle_size() > 0 or pool.get_size() < pool.get_max_size():
        held.append(await pool.acquire())
    try:
        async with asyncio.timeout(HANG):
            r = await client.get(f"/v1/sites/{site}/policies", headers=ADMIN)
        assert r.status == 503, await r.text()
        assert int(r.headers["Retry-After"]) >= 1
        assert (await r.json())["type"].endswith("/busy")
    finally:
        for conn in held:
            await pool.release(conn)
    r = await client.get(f"/v1/sites/{site}/policies", headers=ADMIN)
    assert r.status == 200


# --- row 10: bodies and headers that stall ------------------------------------------


@pytest.mark.parametrize("admin", [False, True])
async def test_a_stalled_body_is_answered_408(
    aiohttp_client: Any, db_dsn: str, tmp_path: Path, admin: bool
) -> None:
    settings = _settings(db_dsn, tmp_path, body_timeout_seconds=1.0)
    client: TestClient = await aiohttp_client(create_app(settings, db_dsn))
    site = await make_site(client)
    if admin:
        head = f"PUT /v1/sites/{site} HTTP/1.1\r\nAuthorization: {ADMIN['Authorization']}\r\n"
    else:
        head = f"POST /v1/sites/{site}/events HTTP/1.1\r\nOrigin: {ORIGIN}\r\n"
    stalled = await RawClient.open(client, small_window=False)
    try:
        await stalled.send(
            (
                head + "Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
                "Content-Length: 1000\r\n\r\n"
            ).encode()
            + b'{"events":'
        )
        await stalled.read_some()
    finally:
        stalled.close()
    assert stalled.received.startswith(b"HTTP/1.1 408"), stalled.received[:200]


async def test_stalled_headers_are_cut_off_by_the_keepalive_timeout(
    aiohttp_client: Any, db_dsn: str, tmp_path: Path
) -> None:
    settings = _settings(db_dsn, tmp_path, keepalive_timeout_seconds=1.0)
    client: TestClient = await aiohttp_client(create_app(settings, db_dsn))
    stalled = await RawClient.open(client, small_window=False)
    try:
        await stalled.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        assert await stalled.read_to_end() == b""  # closed, never answered
    finally:
        stalled.close()


@pytest.mark.parametrize(
    "query",
    [
        "from=0001-01-01&to=0002-01-01&interval=month",
        "from=0001-01-01T00:00:00Z&to=0001-01-02&interval=day",
        "from=9999-01-01&to=9999-12-31T23:59:59Z&interval=week",
        "to=0001-01-05",
    ],
)
async def test_stats_at_the_ends_of_the_calendar_answer_without_a_5xx(
    client: TestClient, query: str
) -> None:
    site = await make_site(client)
    audit = await make_key(client, site, "audit")
    r = await client.get(f"/v1/sites/{site}/stats?{query}", headers=audit)
    assert r.status in (200, 422), await r.text()


# --- the export's query runs before its headers go ------------------------------------


@pytest.fixture
async def lock_timeout_dsn(fresh_database: Any) -> str:
    """A migrated database whose sessions give up waiting for a lock after 200 ms."""
    dsn: str = await fresh_database()
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await ensure_root_key(conn, ADMIN_KEY)
        name = await conn.fetchval("SELECT current_database()")
        await conn.execute(f"ALTER DATABASE \"{name}\" SET lock_timeout = '200ms'")
    finally:
        await conn.close()
    return dsn


async def test_an_export_whose_query_fails_gets_a_problem_not_a_broken_200(
    aiohttp_client: Any, lock_timeout_dsn: str, tmp_path: Path
) -> None:
    client: TestClient = await aiohttp_client(
        create_app(_settings(lock_timeout_dsn, tmp_path), lock_timeout_dsn)
    )
    site = await make_site(client)
    audit = await make_key(client, site, "audit")
    r = await client.post(f"/v1/sites/{site}/events", json=event(), headers={"Origin": ORIGIN})
    assert r.status == 201
    locker = await asyncpg.connect(lock_timeout_dsn)
    try:
        async with locker.transaction():
            await locker.execute("LOCK TABLE consent_events IN ACCESS EXCLUSIVE MODE")
            for fmt in ("jsonl", "csv"):
                r = await client.get(f"/v1/sites/{site}/events?format={fmt}", headers=audit)
                body = await r.read()
                assert r.status == 503, body[:200]
                assert r.content_type == "application/problem+json"
                assert int(r.headers["Retry-After"]) >= 1
    finally:
        await locker.close()
    r = await client.get(f"/v1/sites/{site}/events", headers=audit)
    assert r.status == 200 and len((await r.text()).splitlines()) == 1
