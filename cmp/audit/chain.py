"""The chain rule of the consent log: what a record is and how it is hashed and linked.

Every site's log is a sequence of records with ``seq`` 1, 2, 3 … and

    hash = sha256(prev_hash.encode("ascii") + canonical_json(record)).hexdigest()

where ``prev_hash`` is the previous record's hash (``GENESIS`` for seq 1) and
``record`` holds exactly the fields `cmp.audit.record.FIELDS` declares. Export rows
add ``prev_hash``, ``hash`` and ``subject_id``, which are not hashed: that is what lets
erasure remove the subject id while the chain still verifies. docs/audit-log.md is the
auditor's description.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final, NamedTuple

from cmp.audit.record import (
    ACTIONS,
    CHAIN_FIELD_SET,
    CHAIN_FIELDS,
    CONSENT_FIELDS,
    FIELDS,
    LINK_FIELDS,
    RECORD_VERSION,
    Field,
)
from cmp.canonical import canonical_json, utc_text

GENESIS: Final = "0" * 64

HEX64_RE: Final = re.compile(r"[0-9a-f]{64}")
TIMESTAMP_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
# Shorter secrets would make the digest of a guessable subject id brute-forceable.
MIN_SECRET_BYTES: Final = 16


class Link(NamedTuple):
    """The two chain fields the server stores with a record."""

    prev_hash: str
    hash: str


def format_ts(ts: datetime) -> str:
    """RFC 3339 UTC with exactly 6 fractional digits: ``2026-11-21T10:00:00.000000Z``.

    Six digits because PostgreSQL keeps microseconds: a record rebuilt from the
    database hashes to the same bytes. Naive datetimes are refused, not guessed.
    """
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware")
    return utc_text(ts)


def subject_digest(secret: bytes, subject_id: str) -> str:
    """Hex HMAC-SHA256 of ``subject_id`` under the site's secret (hashed in place of the id).

    Exactly ``hmac.new(secret, id, sha256).hexdigest()``, with the secret's inner and
    outer pads hashed once per secret (RFC 2104): this runs for every event, and the
    one-shot ``hmac`` sets the key up again each time (loadtest/README.md has the cost).
    """
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"subject secret must be at least {MIN_SECRET_BYTES} bytes")
    inner, outer = _hmac_pads(secret)
    first = inner.copy()
    first.update(subject_id.encode("utf-8"))
    second = outer.copy()
    second.update(first.digest())
    digest: str = second.hexdigest()
    return digest


@functools.lru_cache(maxsize=1024)
def _hmac_pads(secret: bytes) -> tuple[Any, Any]:
    """SHA-256 states after the inner and the outer HMAC pad of ``secret``."""
    if len(secret) > _SHA256_BLOCK:
        secret = hashlib.sha256(secret).digest()
    key = secret.ljust(_SHA256_BLOCK, b"\0")
    return (
        hashlib.sha256(bytes(b ^ 0x36 for b in key)),
        hashlib.sha256(bytes(b ^ 0x5C for b in key)),
    )


_SHA256_BLOCK = 64


def chain_record(**fields: Any) -> dict[str, Any]:
    """Build a checked record holding every chain field (absent ones null).

    ``occurred_at``/``received_at`` may be datetimes and ``event_id`` a UUID; they are
    converted to their record form. Raises TypeError on an unknown field and
    ValueError on a value the contract does not allow.
    """
    unknown = fields.keys() - CHAIN_FIELD_SET
    if unknown:
        raise TypeError(f"unknown chain field(s): {', '.join(sorted(unknown))}")
    record: dict[str, Any] = {}
    for field in FIELDS:
        value = fields.get(field.name, RECORD_VERSION if field.kind == "version" else None)
        if field.kind == "time" and isinstance(value, datetime):
            value = format_ts(value)
        elif field.kind == "uuid" and isinstance(value, uuid.UUID):
            value = str(value)
        record[field.name] = value
    _check(record)
    return record


def erased_record(
    *,
    site_id: str,
    seq: int,
    event_id: str | uuid.UUID,
    subject_digest: str,
    received_at: datetime | str,
) -> dict[str, Any]:
    """The record appended when a subject is erased: digest and time, no consent fields."""
    return chain_record(
        site_id=site_id,
        seq=seq,
        event_id=event_id,
        subject_digest=subject_digest,
        action="erased",
        received_at=received_at,
    )


def _check(record: dict[str, Any]) -> None:
    for field in FIELDS:
        if field.presence == "always" and record[field.name] is None:
            raise ValueError(f"chain field {field.name!r} is required")
    action = record["action"]
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(sorted(ACTIONS))}")
    if action == "erased":
        filled = [name for name in CONSENT_FIELDS if record[name] is not None]
        if filled:
            raise ValueError(f"an erased record has no consent fields: {', '.join(filled)}")
    else:
        for field in FIELDS:
            if field.presence == "consent" and record[field.name] is None:
                raise ValueError(f"chain field {field.name!r} is required for action {action!r}")
    for field in FIELDS:
        value = record[field.name]
        if value is not None and not _fits(field, value):
            raise ValueError(f"{field.name} {_RULES[field.kind]}")


# What a value of each kind must be (cmp.audit.record has the table).
_RULES: Final[dict[str, str]] = {
    "version": f"must be {RECORD_VERSION}",
    "count": "must be a positive integer",
    "text": "must be a string",
    "uuid": "must be a UUID in lowercase hyphenated form",
    "hex64": "must be 64 lowercase hex characters",
    "action": f"must be one of {', '.join(sorted(ACTIONS))}",
    "choices": "must map names to booleans",
    "bool": "must be a boolean",
    "time": "must look like 2026-11-21T10:00:00.000000Z",
}
_UUID_RE: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _fits(field: Field, value: Any) -> bool:
    kind = field.kind
    if kind == "version":
        return type(value) is int and value == RECORD_VERSION
    if kind == "count":
        return type(value) is int and value >= 1
    if kind == "text":
        return isinstance(value, str)
    if kind == "uuid":
        return isinstance(value, str) and _UUID_RE.fullmatch(value) is not None
    if kind == "hex64":
        return _is_hex64(value)
    if kind == "action":
        return value in ACTIONS
    if kind == "choices":
        return isinstance(value, dict) and all(
            isinstance(k, str) and type(v) is bool for k, v in value.items()
        )
    if kind == "bool":
        return type(value) is bool
    return isinstance(value, str) and TIMESTAMP_RE.fullmatch(value) is not None


def _is_hex64(value: object) -> bool:
    return isinstance(value, str) and HEX64_RE.fullmatch(value) is not None


def record_hash(prev_hash: str, record: Mapping[str, Any]) -> str:
    """The chain hash of ``record`` after ``prev_hash``.

    ``record`` must hold exactly the chain fields (as ``chain_record`` builds it). This
    runs for every stored event, so it is one canonical_json and one sha256; the only
    check is a size test, which catches an export row passed by mistake.
    """
    if len(record) != len(CHAIN_FIELDS) or len(prev_hash) != 64:
        raise ValueError("record_hash needs a 64-hex prev_hash and exactly the chain fields")
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(record)).hexdigest()


def link(records: Iterable[Mapping[str, Any]], prev_hash: str) -> list[Link]:
    """Chain a batch of one site's records, in order, after ``prev_hash``.

    The records' seqs must be consecutive; the caller makes sure the first one follows
    the record whose hash is ``prev_hash``.
    """
    links: list[Link] = []
    last_seq: int | None = None
    for record in records:
        seq = record["seq"]
        if last_seq is not None and seq != last_seq + 1:
            raise ValueError(f"seq {seq} does not follow seq {last_seq}")
        digest = record_hash(prev_hash, record)
        links.append(Link(prev_hash, digest))
        prev_hash, last_seq = digest, seq
    return links


def hashed_part(row: Mapping[str, Any]) -> dict[str, Any]:
    """The record inside an export row: exactly the chain fields (KeyError if one is absent)."""
    return {name: row[name] for name in CHAIN_FIELDS}


def export_row(
    record: Mapping[str, Any],
    *,
    prev_hash: str,
    hash: str,
    subject_id: str | None,
    **extra: Any,
) -> dict[str, Any]:
    """One export row: the record, its link fields, the subject id, any further fields."""
    clash = extra.keys() & (CHAIN_FIELD_SET | set(LINK_FIELDS))
    if clash:
        raise ValueError(f"extra export fields clash with chain fields: {sorted(clash)}")
    return {**record, "prev_hash": prev_hash, "hash": hash, "subject_id": subject_id, **extra}


def export_line(
    record: Mapping[str, Any],
    *,
    prev_hash: str,
    hash: str,
    subject_id: str | None,
    **extra: Any,
) -> bytes:
    """One JSONL export line. Canonical JSON, so `cmpd verify` can take its fast path."""
    row = export_row(record, prev_hash=prev_hash, hash=hash, subject_id=subject_id, **extra)
    return canonical_json(row) + b"\n"
