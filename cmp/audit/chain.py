"""The chain rule of the consent log: what a record is and how it is hashed and linked.

Every site's log is a sequence of records with ``seq`` 1, 2, 3 … and

    hash = sha256(prev_hash.encode("ascii") + canonical_json(record)).hexdigest()

where ``prev_hash`` is the previous record's hash (``GENESIS`` for seq 1) and
``record`` holds exactly ``CHAIN_FIELDS``. Export rows add ``prev_hash``, ``hash`` and
``subject_id``, which are not hashed: that is what lets erasure remove the subject id
while the chain still verifies. docs/audit-log.md is the auditor's description.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final, NamedTuple

from cmp.canonical import canonical_json, utc_text

GENESIS: Final = "0" * 64
RECORD_VERSION: Final = 1

# Order is the documentation order; the hash does not depend on it (keys are sorted).
CHAIN_FIELDS: Final[tuple[str, ...]] = (
    "v",
    "site_id",
    "seq",
    "event_id",
    "subject_digest",
    "policy_version",
    "policy_sha256",
    "action",
    "purposes",
    "services",
    "gpc",
    "language",
    "source",
    "page_url",
    "origin",
    "ip_prefix",
    "user_agent",
    "occurred_at",
    "received_at",
)
CHAIN_FIELD_SET: Final = frozenset(CHAIN_FIELDS)
# Fields an export row adds to the record; none of them is hashed.
LINK_FIELDS: Final[tuple[str, ...]] = ("prev_hash", "hash", "subject_id")

ACTIONS: Final = frozenset({"accept_all", "reject_all", "custom", "withdraw", "erased"})
# An `erased` record proves an erasure happened; it carries no consent.
CONSENT_FIELDS: Final[tuple[str, ...]] = (
    "policy_version",
    "policy_sha256",
    "purposes",
    "services",
    "gpc",
    "language",
    "source",
    "page_url",
    "origin",
    "ip_prefix",
    "user_agent",
    "occurred_at",
)
_REQUIRED: Final = ("site_id", "seq", "event_id", "subject_digest", "action", "received_at")
_REQUIRED_FOR_CONSENT: Final = ("policy_version", "policy_sha256", "purposes")
_TEXT_FIELDS: Final = ("language", "source", "page_url", "origin", "ip_prefix", "user_agent")

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
    record = {name: fields.get(name) for name in CHAIN_FIELDS}
    record["v"] = fields.get("v", RECORD_VERSION)
    for name in ("occurred_at", "received_at"):
        value = record[name]
        if isinstance(value, datetime):
            record[name] = format_ts(value)
    if isinstance(record["event_id"], uuid.UUID):
        record["event_id"] = str(record["event_id"])
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
    for name in _REQUIRED:
        if record[name] is None:
            raise ValueError(f"chain field {name!r} is required")
    if record["v"] != RECORD_VERSION or type(record["v"]) is not int:
        raise ValueError(f"v must be {RECORD_VERSION}")
    seq = record["seq"]
    if type(seq) is not int or seq < 1:
        raise ValueError("seq must be a positive integer")
    if not isinstance(record["site_id"], str) or not isinstance(record["event_id"], str):
        raise ValueError("site_id and event_id must be strings")
    if not _is_hex64(record["subject_digest"]):
        raise ValueError("subject_digest must be 64 lowercase hex characters")
    action = record["action"]
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(sorted(ACTIONS))}")
    if action == "erased":
        filled = [name for name in CONSENT_FIELDS if record[name] is not None]
        if filled:
            raise ValueError(f"an erased record has no consent fields: {', '.join(filled)}")
    else:
        for name in _REQUIRED_FOR_CONSENT:
            if record[name] is None:
                raise ValueError(f"chain field {name!r} is required for action {action!r}")
    version = record["policy_version"]
    if version is not None and (type(version) is not int or version < 1):
        raise ValueError("policy_version must be a positive integer")
    if record["policy_sha256"] is not None and not _is_hex64(record["policy_sha256"]):
        raise ValueError("policy_sha256 must be 64 lowercase hex characters")
    for name in ("purposes", "services"):
        choices = record[name]
        if choices is not None and not (
            isinstance(choices, dict)
            and all(isinstance(k, str) and type(v) is bool for k, v in choices.items())
        ):
            raise ValueError(f"{name} must map names to booleans")
    if record["gpc"] is not None and type(record["gpc"]) is not bool:
        raise ValueError("gpc must be a boolean")
    for name in _TEXT_FIELDS:
        if record[name] is not None and not isinstance(record[name], str):
            raise ValueError(f"{name} must be a string")
    for name in ("occurred_at", "received_at"):
        value = record[name]
        if value is not None and not (isinstance(value, str) and TIMESTAMP_RE.fullmatch(value)):
            raise ValueError(f"{name} must look like 2026-11-21T10:00:00.000000Z")


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
