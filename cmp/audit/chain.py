"""The chain rule of the consent log: what a record is and how it is hashed and linked.

Every site's log is a sequence of records with ``seq`` 1, 2, 3 … and

    hash = sha256(prev_hash.encode("ascii") + canonical_json(record)).hexdigest()

where ``prev_hash`` is the previous record's hash (``GENESIS`` for seq 1) and
``record`` holds exactly the fields its version's layout declares
(`cmp.audit.record.layout`). Export rows add ``prev_hash``, ``hash``, ``subject_id`` and,
in version 2, each personal value with its salt, none of them hashed: that is what lets
erasure remove them while the chain still verifies. docs/audit-log.md is the
auditor's description.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final, NamedTuple

from cmp.audit.record import (
    ACTIONS,
    LINK_ACTIONS,
    RECORD_VERSION,
    RECORD_VERSIONS,
    SALT_BYTES,
    Field,
    Layout,
    layout,
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


def chain_record(*, v: int = 1, **fields: Any) -> dict[str, Any]:
    """Build a checked record of version `v` holding every chain field (absent ones null).

    ``occurred_at``/``received_at`` may be datetimes and ``event_id`` a UUID; they are
    converted to their record form. Raises TypeError on an unknown field and
    ValueError on a value the contract does not allow (or a version never made).
    """
    shape = _layout(v)
    unknown = fields.keys() - set(shape.names)
    if unknown:
        raise TypeError(f"unknown chain field(s): {', '.join(sorted(unknown))}")
    record: dict[str, Any] = {}
    for field in shape.fields:
        value = fields.get(field.name, v if field.kind == "version" else None)
        if field.kind == "time" and isinstance(value, datetime):
            value = format_ts(value)
        elif field.kind == "uuid" and isinstance(value, uuid.UUID):
            value = str(value)
        record[field.name] = value
    check_record(record)
    return record


def _layout(v: object) -> Layout:
    if type(v) is not int or v not in RECORD_VERSIONS:
        raise ValueError(f"unsupported record version v={v!r}")
    return layout(v)


def commit(salt: bytes, value: str | None) -> str | None:
    """The commitment to a personal value: hex sha256(salt ‖ UTF-8 value); None for None."""
    if value is None:
        return None
    return hashlib.sha256(salt + value.encode("utf-8")).hexdigest()


def commitments(values: Mapping[str, str | None], salts: bytes) -> list[bytes | None]:
    """Each personal field's commitment as bytes, in declaration order (None for a null
    value), from its value and its salt: consecutive `SALT_BYTES` slices of `salts`."""
    return [
        None
        if (value := values[name]) is None
        else _sha256(salts[at : at + SALT_BYTES] + value.encode("utf-8")).digest()
        for name, _, _, at in SALTED
    ]


def committed(values: Mapping[str, str | None], salts: bytes) -> dict[str, Any]:
    """A version 2 record's personal part: each commitment field with its hex `commit`."""
    return commitment_fields(commitments(values, salts))


def commitment_fields(digests: Iterable[bytes | None]) -> dict[str, str | None]:
    """The record's commitment fields of `commitments`' digests."""
    return dict(
        zip(COMMITMENT_FIELDS, [None if d is None else d.hex() for d in digests], strict=True)
    )


def salt_slices(salts: bytes) -> dict[str, bytes]:
    """Each personal field's salt by its column, as `commitments` sliced them."""
    return {salt: salts[at : at + SALT_BYTES] for _, _, salt, at in SALTED}


def draw_salts() -> bytes:
    """Fresh random salts for one record's personal fields (`SALT_DRAW` bytes).

    Cut from a buffer of `os.urandom` (one system call per `_POOL_BYTES`, not per record);
    a forked child empties its copy, so no two processes hand out the same bytes."""
    global _pool, _pool_at
    if _pool_at + SALT_DRAW > len(_pool):
        _pool, _pool_at = os.urandom(_POOL_BYTES), 0
    at, _pool_at = _pool_at, _pool_at + SALT_DRAW
    return _pool[at : at + SALT_DRAW]


def _forget_pool() -> None:
    global _pool, _pool_at
    _pool, _pool_at = b"", 0


# Per personal field of version 2 (this runs for every stored event): its name, its
# commitment field, its salt field and where its salt starts in the drawn salts.
SALTED: Final = tuple(
    (field.name, commitment, salt, i * SALT_BYTES)
    for i, (field, commitment, salt) in enumerate(layout(2).disclosures)
)
COMMITMENT_FIELDS: Final = tuple(commitment for _, commitment, _, _ in SALTED)
SALT_DRAW: Final = SALT_BYTES * len(SALTED)
_POOL_BYTES = SALT_DRAW * 64
_pool, _pool_at = b"", 0
os.register_at_fork(after_in_child=_forget_pool)
_sha256 = hashlib.sha256


def erased_record(
    *,
    site_id: str,
    seq: int,
    event_id: str | uuid.UUID,
    received_at: datetime | str,
    subject_digest: str | None = None,
    subject_commitment: str | None = None,
) -> dict[str, Any]:
    """The record appended when a subject is erased: who (the digest in version 1, a
    commitment to it in version 2) and when, no consent fields."""
    if subject_commitment is not None:
        return chain_record(
            v=2,
            site_id=site_id,
            seq=seq,
            event_id=event_id,
            subject_digest_sha256=subject_commitment,
            action="erased",
            received_at=received_at,
        )
    return chain_record(
        site_id=site_id,
        seq=seq,
        event_id=event_id,
        subject_digest=subject_digest,
        action="erased",
        received_at=received_at,
    )


def link_record(
    *,
    site_id: str,
    seq: int,
    event_id: str | uuid.UUID,
    action: str,
    received_at: datetime | str,
    subject_commitment: str,
    user_commitment: str,
    origin: str | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """The record appended when a subject is linked to a site's user or unlinked from it:
    commitments to the subject's digest and the user's digest, when, and through what."""
    if action not in LINK_ACTIONS:
        raise ValueError(f"a link record's action is one of {', '.join(sorted(LINK_ACTIONS))}")
    return chain_record(
        v=2,
        site_id=site_id,
        seq=seq,
        event_id=event_id,
        subject_digest_sha256=subject_commitment,
        user_digest_sha256=user_commitment,
        action=action,
        origin=origin,
        source=source,
        received_at=received_at,
    )


def check_record(record: Mapping[str, Any]) -> None:
    """ValueError naming the first field of `record` its version does not allow."""
    shape = _layout(record.get("v"))
    for field in shape.fields:
        if field.presence == "always" and record.get(field.name) is None:
            raise ValueError(f"chain field {field.name!r} is required")
    action = record["action"]
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(sorted(ACTIONS))}")
    if action == "erased":
        filled = [
            f.name
            for f in shape.fields
            if f.presence != "always" and record.get(f.name) is not None
        ]
        if filled:
            raise ValueError(f"an erased record has no consent fields: {', '.join(filled)}")
    elif action in LINK_ACTIONS:
        _check_link_record(record, shape)
    else:
        for field in shape.fields:
            if field.presence == "consent" and record.get(field.name) is None:
                raise ValueError(f"chain field {field.name!r} is required for action {action!r}")
    for field in shape.fields:
        value = record.get(field.name)
        if value is not None and not _fits(field, value, shape.version):
            raise ValueError(f"{field.name} {_rule(field.kind, shape.version)}")


USER_COMMITMENT: Final = "user_digest_sha256"


def _check_link_record(record: Mapping[str, Any], shape: Layout) -> None:
    """A `link` or `unlink` record: version 2, a user, and no consent."""
    action = record["action"]
    if shape.version < 2:
        raise ValueError(f"a {action} record is version 2 or later")
    if record.get(USER_COMMITMENT) is None:
        raise ValueError(f"a {action} record names its user ({USER_COMMITMENT})")
    consent = (f.name for f in shape.fields if f.presence == "consent")
    filled = [name for name in consent if record.get(name) is not None]
    if filled:
        raise ValueError(f"a {action} record has no consent fields: {', '.join(filled)}")


# What a value of each kind must be (cmp.audit.record has the table).
_RULES: Final[dict[str, str]] = {
    "count": "must be a positive integer",
    "text": "must be a string",
    "uuid": "must be a UUID in lowercase hyphenated form",
    "hex64": "must be 64 lowercase hex characters",
    "action": f"must be one of {', '.join(sorted(ACTIONS))}",
    "choices": "must map names to booleans",
    "bool": "must be a boolean",
    "time": "must look like 2026-11-21T10:00:00.000000Z",
    "salt": f"must be {2 * SALT_BYTES} lowercase hex characters",
}


def _rule(kind: str, version: int) -> str:
    return f"must be {version}" if kind == "version" else _RULES[kind]


_UUID_RE: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SALT_RE: Final = re.compile(f"[0-9a-f]{{{2 * SALT_BYTES}}}")


def _fits(field: Field, value: Any, version: int = RECORD_VERSION) -> bool:
    kind = field.kind
    if kind == "version":
        return type(value) is int and value == version
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
    if kind == "salt":
        return isinstance(value, str) and SALT_RE.fullmatch(value) is not None
    return isinstance(value, str) and TIMESTAMP_RE.fullmatch(value) is not None


def _is_hex64(value: object) -> bool:
    return isinstance(value, str) and HEX64_RE.fullmatch(value) is not None


def record_hash(prev_hash: str, record: Mapping[str, Any]) -> str:
    """The chain hash of ``record`` after ``prev_hash``.

    ``record`` must hold exactly the chain fields of its version (as ``chain_record``
    builds it). This runs for every stored event, so it is one canonical_json and one
    sha256; the only check is a size test, which catches an export row passed by mistake.
    """
    if len(prev_hash) != 64 or len(record) != len(_layout(record.get("v")).fields):
        raise ValueError("record_hash needs a 64-hex prev_hash and exactly the chain fields")
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(record)).hexdigest()


def disclosure_problem(row: Mapping[str, Any]) -> str | None:
    """What is wrong with a version 2 export row's disclosures, naming the field, or None.

    A personal field is either disclosed (value and salt, and sha256(salt ‖ value) is the
    record's commitment) or erased (neither; the commitment alone stays). A null value
    has a null commitment and no salt.
    """
    for field, commitment, salt_name in _layout(row.get("v")).disclosures:
        name = field.name
        value, salt, committed_to = row.get(name), row.get(salt_name), row.get(commitment)
        if value is None:
            if salt is not None:
                return f"{salt_name} is given without {name}"
            continue
        if not _fits(field, value):
            return f"{name} {_RULES[field.kind]}"
        if salt is None:
            return f"{name} is disclosed without {salt_name}"
        if not isinstance(salt, str) or SALT_RE.fullmatch(salt) is None:
            return f"{salt_name} {_RULES['salt']}"
        if committed_to is None or commit(bytes.fromhex(salt), value) != committed_to:
            return f"{name} and {salt_name} do not match {commitment}"
    return None


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


def disclosures_of(row: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """The disclosed personal values of an export row: name → {value, salt} (a receipt's
    `disclosures`; empty for version 1 and for what was erased)."""
    return {
        field.name: {"value": row[field.name], "salt": row[salt]}
        for field, _, salt in _layout(row.get("v")).disclosures
        if row.get(field.name) is not None
    }


def receipt_disclosure_problem(record: Mapping[str, Any], disclosures: object) -> str | None:
    """What is wrong with a receipt's `disclosures` for its record, naming the field."""
    shape = _layout(record.get("v"))
    if not isinstance(disclosures, dict):
        return "disclosures must be an object"
    known = {field.name: salt for field, _, salt in shape.disclosures}
    row: dict[str, Any] = dict(record)
    for name, disclosed in disclosures.items():
        if name not in known:
            return f"{name!r} is not a personal field of a version {shape.version} record"
        if not isinstance(disclosed, dict) or disclosed.keys() != {"value", "salt"}:
            return f"the disclosure of {name} must be {{value, salt}}"
        row[name], row[known[name]] = disclosed["value"], disclosed["salt"]
        if disclosed["value"] is None:
            return f"the disclosure of {name} has no value"
    return disclosure_problem(row)


def hashed_part(row: Mapping[str, Any]) -> dict[str, Any]:
    """The record inside an export row: exactly the chain fields of its version
    (KeyError if one is absent, ValueError for an unknown version)."""
    return {name: row[name] for name in _layout(row.get("v")).names}


def export_row(
    record: Mapping[str, Any],
    *,
    prev_hash: str,
    hash: str,
    subject_id: str | None,
    **extra: Any,
) -> dict[str, Any]:
    """One export row: the record, its link fields (disclosures of version 2 among the
    `extra`, absent ones null), any further fields."""
    shape = _layout(record.get("v"))
    clash = extra.keys() & {*shape.names, "prev_hash", "hash", "subject_id"}
    if clash:
        raise ValueError(f"extra export fields clash with chain fields: {sorted(clash)}")
    links: dict[str, Any] = {f.name: None for f in shape.links}
    links.update(prev_hash=prev_hash, hash=hash, subject_id=subject_id)
    return {**record, **links, **extra}


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
