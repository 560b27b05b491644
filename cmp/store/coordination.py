"""How server processes coordinate through PostgreSQL: advisory locks, so one process at
a time runs a job, and change notifications, so every process drops a cached copy.

Every lock key is here, so two jobs never share one by accident. A notification is
sent inside the transaction that makes the change, so it is delivered at its commit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal

import asyncpg

from cmp.store.sqlfiles import queries

SQL = queries("coordination")

# Arbitrary constants, the same in every cmp process: "cmp" and three letters in ASCII.
MIGRATION_LOCK: Final = 0x636D70_6D6967  # "cmpmig"
CHECKPOINT_LOCK: Final = 0x636D70_636B70  # "cmpckp"
PURGE_LOCK: Final = 0x636D70_707267  # "cmpprg"
PARTITION_LOCK: Final = 0x636D70_707274  # "cmpprt"
TREE_LOCK: Final = 0x636D70_747265  # "cmptre"
ROLLUP_LOCK: Final = 0x636D70_726F6C  # "cmprol"
PROVISIONAL_LOCK: Final = 0x636D70_707276  # "cmpprv"

CHANNEL: Final = "cmp_invalidate"
Change = Literal["site", "policy", "key"]


async def try_lock(conn: asyncpg.Connection, key: int) -> bool:
    """The lock for the current transaction, or False when another process holds it."""
    return bool(await conn.fetchval(SQL["try_lock"], key))


async def wait_lock(conn: asyncpg.Connection, key: int) -> None:
    """The lock for the current transaction, waiting for it."""
    await conn.execute(SQL["wait_lock"], key)


async def lock_session(conn: asyncpg.Connection, key: int) -> None:
    await conn.execute(SQL["lock_session"], key)


async def unlock_session(conn: asyncpg.Connection, key: int) -> None:
    await conn.execute(SQL["unlock_session"], key)


async def notify_change(conn: asyncpg.Connection, kind: Change, ident: str) -> None:
    """Announce a change of `kind` to `ident`; call inside the transaction that makes it."""
    await conn.execute(SQL["notify_change"], CHANNEL, f"{kind}:{ident}")


async def listen_for_changes(
    dsn: str,
    on_change: Callable[[str], None],
    on_lost: Callable[[object], None],
) -> asyncpg.Connection:
    """A dedicated connection that calls `on_change(payload)` for each announced change
    and `on_lost` when it drops (the changes sent meanwhile are lost)."""

    def deliver(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        on_change(payload)

    conn = await asyncpg.connect(dsn)
    await conn.add_listener(CHANNEL, deliver)
    conn.add_termination_listener(on_lost)
    return conn
