"""Log maintenance: stored signed checkpoints, the log's coming monthly partitions, and
retention purge.

All run as background tasks in every server process, but only one process at a time
does the work (a PostgreSQL advisory lock); `cmpd purge` runs the purge by hand.
A purge first stores a signed `anchor` checkpoint for the last record it deletes: the
first kept record's prev_hash is that hash, so the shortened chain still verifies and
an auditor can see where it was cut and that the operator signed the cut.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time

import asyncpg

from cmp.audit.signing import Signer
from cmp.catalog import Catalog
from cmp.store import audit as audit_store
from cmp.store import events as events_store
from cmp.store import impressions as impressions_store
from cmp.store import stats as stats_store
from cmp.store.audit import month_after, partition_month
from cmp.store.coordination import CHECKPOINT_LOCK, PARTITION_LOCK, PURGE_LOCK, try_lock
from cmp.store.db import DB_ERRORS, db_error_text
from cmp.store.keys import touch_keys
from cmp.treelog import integrate_through

log = logging.getLogger(__name__)

# How long a purge waits for the log's exclusive lock before deleting a month's rows
# instead of dropping it (ingest queues behind a waiting exclusive lock).
DROP_LOCK_WAIT = "2s"


@dataclass(frozen=True, slots=True)
class Purged:
    site_id: str
    through_seq: int
    deleted: int
    states: int


async def store_checkpoints(
    conn: asyncpg.Connection, signer: Signer, *, min_age_seconds: float = 0
) -> int:
    """Sign and keep a checkpoint for every site whose log grew; returns how many.

    With `min_age_seconds`, only for sites whose newest periodic checkpoint is at least
    that old: every replica runs the timer, and the lock alone only serialises them.
    """
    if not await try_lock(conn, CHECKPOINT_LOCK):
        return 0
    stored = 0
    due = (
        await audit_store.select_sites_due_checkpoint(conn, min_age_seconds)
        if min_age_seconds > 0
        else await audit_store.select_sites_to_checkpoint(conn)
    )
    for site_id, seq, head in due:
        await audit_store.insert_checkpoint(
            conn, signer.sign_checkpoint(site_id, seq, head), "periodic"
        )
        stored += 1
    return stored


async def make_partitions(conn: asyncpg.Connection) -> int:
    """Create the log's partitions for the coming months (one process at a time)."""
    async with conn.transaction():
        if not await try_lock(conn, PARTITION_LOCK):
            return 0
        made = await events_store.make_partitions_ahead(conn)
        return made + await impressions_store.make_partitions_ahead(conn)


async def purge(
    conn: asyncpg.Connection, signer: Signer, *, lock_wait: str = DROP_LOCK_WAIT
) -> list[Purged]:
    """Delete records older than each site's retention, leaving a signed anchor.

    Whole months whose every row is past its site's cut are detached, the oldest first
    and last in the transaction (detaching holds the log's exclusive lock until
    commit), and dropped after it; the other rows through the cut are deleted inside
    their months.
    """
    done = await _purge_records(conn, signer, lock_wait)
    # Out of the log's lock, which the purge's commit released: the detached months'
    # files go now (and those of a purge that crashed before this step).
    await audit_store.drop_detached_months(conn)
    return done


async def _purge_records(conn: asyncpg.Connection, signer: Signer, lock_wait: str) -> list[Purged]:
    done: list[Purged] = []
    async with conn.transaction():
        if not await try_lock(conn, PURGE_LOCK):
            return done
        cuts = await audit_store.select_purge_cuts(conn)
        if not cuts:
            return done
        for cut in cuts:
            if not await integrate_through(conn, cut.site_id, cut.seq):
                # Retention is an obligation the tree cannot hold up; the records it
                # could not take (logged) get no leaves.
                log.error(
                    "purging %s through seq %d ahead of its Merkle tree", cut.site_id, cut.seq
                )
            await audit_store.insert_checkpoint(
                conn, signer.sign_checkpoint(cut.site_id, cut.seq, cut.hash), "anchor"
            )
        months = await _expired_months(conn, cuts)
        kept_from = (
            datetime.combine(month_after(partition_month(months[-1])), time(), UTC)
            if months
            else None
        )
        states: dict[str, int] = {}
        for name in months:
            for site_id, n in (await audit_store.purge_month_states(conn, name)).items():
                states[site_id] = states.get(site_id, 0) + n
        for cut in cuts:
            count = await audit_store.purge_before(conn, cut, kept_from)
            proved = states.get(cut.site_id, 0) + count.states
            await stats_store.forget_purged(conn, cut.site_id, cut.received_at)
            done.append(Purged(cut.site_id, cut.seq, cut.seq - cut.first_seq + 1, proved))
        for name in months:
            if not await audit_store.detach_partition(conn, name, lock_wait):
                log.warning("purge: %s is busy; deleting its rows instead", name)
                for cut in cuts:
                    await audit_store.purge_before(conn, cut)
                break
    return done


async def _expired_months(conn: asyncpg.Connection, cuts: list[audit_store.PurgeCut]) -> list[str]:
    """The oldest partitions, up to the first that still holds a kept record (the
    current month never goes: events are arriving in it)."""
    this_month = datetime.now(UTC).date().replace(day=1)
    expired = []
    for name in await audit_store.select_event_partitions(conn):
        if month_after(partition_month(name)) > this_month:
            break
        if not await audit_store.partition_expired(conn, name, cuts):
            break
        expired.append(name)
    return expired


async def run_periodically(
    pool: asyncpg.Pool,
    signer: Signer,
    *,
    checkpoint_every: float,
    purge_every: float,
    provisional_threshold: int = impressions_store.PROVISIONAL_THRESHOLD,
) -> None:
    """The background loop of a server process; survives database outages."""
    since_purge = purge_every  # purge once soon after start, then daily
    while True:
        await asyncio.sleep(checkpoint_every)
        since_purge += checkpoint_every
        try:
            async with pool.acquire() as conn:
                await make_partitions(conn)
                # The stats' per-day rollup: nothing to do until a day closes.
                await stats_store.roll_up(conn)
                await impressions_store.roll_up(conn)
                # The open day's counts of the big sites, taken again when they are old.
                await impressions_store.refresh_provisional(
                    conn,
                    threshold=provisional_threshold,
                    min_age=impressions_store.PROVISIONAL_EVERY,
                )
                async with conn.transaction():
                    # Timers of replicas drift a little: a tenth of the interval is slack.
                    await store_checkpoints(conn, signer, min_age_seconds=checkpoint_every * 0.9)
                if since_purge >= purge_every:
                    since_purge = 0
                    for p in await purge(conn, signer):
                        log.info(
                            "purged %d records of %s through seq %d, and %d states",
                            p.deleted,
                            p.site_id,
                            p.through_seq,
                            p.states,
                        )
        except DB_ERRORS as exc:
            log.warning("log maintenance skipped: %s", db_error_text(exc))


async def record_key_use(pool: asyncpg.Pool, catalog: Catalog, *, every: float) -> None:
    """Write api_keys.last_used_at in batches: never a write per authenticated request."""
    while True:
        await asyncio.sleep(every)
        used, catalog.used_keys = list(catalog.used_keys), set()
        if not used:
            continue
        try:
            async with pool.acquire() as conn:
                await touch_keys(conn, used)
        except DB_ERRORS as exc:
            catalog.used_keys.update(used)
            log.warning("key use not recorded: %s", db_error_text(exc))
