"""Linked users in the store: append `link` and `unlink` records to a site's chain, the
current link of each subject (`subject_links`), and the subjects of a user."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from cmp.audit.chain import commit, link_record, record_hash
from cmp.audit.record import SALT_BYTES
from cmp.store.recordtext import record_text
from cmp.store.sqlfiles import queries

SQL = queries("links")
AUDIT_SQL = queries("audit")

Outcome = Literal["new", "duplicate", "conflict", "unchanged", "not-linked"]


@dataclass(frozen=True, slots=True)
class LinkChange:
    """One link or unlink: the subject (id and digest), the user's digest, which event."""

    site_id: str
    subject_id: str
    subject_digest: str
    user_digest: str | None  # None: unlink from whichever user it is linked to
    event_id: str
    received_at: datetime
    origin: str | None = None


@dataclass(frozen=True, slots=True)
class LinkResult:
    outcome: Outcome
    seq: int | None = None  # the record appended, or the link in force when unchanged


def _body_digest(action: str, change: LinkChange) -> bytes:
    """What tells a retried link (same subject and user: a duplicate) from a reused id."""
    text = repr((action, change.subject_id, change.user_digest))
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


async def append_link(conn: asyncpg.Connection, change: LinkChange) -> LinkResult:
    """Link the subject to the user (or, with no user, unlink it), appending the record
    holding the site's chain head, like erasure; nothing is appended for a retry, a link
    already in force, or an unlink of a subject linked to no one."""
    action = "link" if change.user_digest is not None else "unlink"
    digest = _body_digest(action, change)
    async with conn.transaction():
        head = await conn.fetchrow(AUDIT_SQL["lock_chain_head"], change.site_id)
        assert head is not None
        stored = await conn.fetchval(SQL["select_event_digest"], change.site_id, change.event_id)
        if stored is not None:
            return LinkResult("duplicate" if bytes(stored) == digest else "conflict")
        current = await conn.fetchrow(SQL["select_link"], change.site_id, change.subject_id)
        user = change.user_digest
        if user is None:
            if current is None:
                return LinkResult("not-linked")
            user = current["user_digest"]
        elif current is not None and current["user_digest"] == user:
            return LinkResult("unchanged", current["seq"])
        seq = head["seq"] + 1
        await _insert(conn, change, action, user, seq, head["hash"], digest)
        if action == "link":
            await conn.execute(
                SQL["upsert_link"],
                change.site_id,
                change.subject_id,
                user,
                seq,
                change.received_at,
            )
        else:
            await conn.execute(SQL["delete_link"], change.site_id, change.subject_id)
    return LinkResult("new", seq)


async def _insert(
    conn: asyncpg.Connection,
    change: LinkChange,
    action: str,
    user: str,
    seq: int,
    prev_hash: str,
    body_digest: bytes,
) -> None:
    subject_salt, user_salt = secrets.token_bytes(SALT_BYTES), secrets.token_bytes(SALT_BYTES)
    subject_commitment = commit(subject_salt, change.subject_digest)
    user_commitment = commit(user_salt, user)
    assert subject_commitment is not None and user_commitment is not None
    record = link_record(
        site_id=change.site_id,
        seq=seq,
        event_id=change.event_id,
        action=action,
        received_at=change.received_at,
        subject_commitment=subject_commitment,
        user_commitment=user_commitment,
        origin=change.origin,
    )
    await conn.execute(AUDIT_SQL["ensure_partition"], change.received_at)
    await conn.execute(
        SQL["insert_link_record"],
        change.site_id,
        seq,
        uuid.UUID(change.event_id),
        change.subject_id,
        change.subject_digest,
        action,
        change.received_at,
        prev_hash,
        record_hash(prev_hash, record),
        bytes.fromhex(subject_commitment),
        subject_salt,
        user,
        bytes.fromhex(user_commitment),
        user_salt,
        change.origin,
        body_digest,
    )


async def linked_subjects(conn: asyncpg.Connection, site_id: str, user: str) -> list[str]:
    """The subjects linked to the user now, in the order they were linked."""
    return [r["subject_id"] for r in await conn.fetch(SQL["select_linked_subjects"], site_id, user)]


async def subjects_ever_linked(
    conn: asyncpg.Connection, site_id: str, user: str
) -> list[tuple[str, str]]:
    """(subject id, digest) of every subject the user's link records still name (erasure
    empties them), by subject id."""
    rows = await conn.fetch(SQL["select_user_subject_pairs"], site_id, user)
    return [(r["subject_id"], r["subject_digest"]) for r in rows]


async def subjects_lines(conn: asyncpg.Connection, site_id: str, digests: list[str]) -> list[str]:
    """The export lines of every record of the subjects with these digests, in seq order."""
    rows = await conn.fetch(SQL["export_subjects_lines"], site_id, digests)
    return [record_text(*row) for row in rows]


async def delete_link(conn: asyncpg.Connection, site_id: str, subject_id: str) -> None:
    """The subject's current link goes (erasure; the records say the rest)."""
    await conn.execute(SQL["delete_link"], site_id, subject_id)
