"""The one canonical JSON encoding, used for every content hash and chain hash.

Rule (documented in docs/audit-log.md): UTF-8, object keys sorted by code point,
no insignificant whitespace, non-ASCII characters kept as themselves (not escaped),
integers as integers, no floats. Anyone can reproduce it with
``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``.

Made with orjson, which writes the same bytes faster (loadtest/README.md);
tests/test_canonical.py checks the two agree, every code point included. Keys must be
strings, integers fit in 64 bits (orjson refuses anything else) and no record holds a
float.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson


def canonical_json(obj: Any) -> bytes:
    """Encode ``obj`` canonically as UTF-8 bytes."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def utc_text(value: datetime) -> str:
    """The one timestamp form of records and answers: RFC 3339 UTC, microseconds, Z.

    (`cmp.audit.chain.format_ts` is this plus a refusal of naive datetimes.)

    isoformat is C code, faster than strftime (loadtest/README.md); the first 26
    characters are the date and time with microseconds, whatever the offset suffix.
    """
    if value.tzinfo is not UTC:  # asyncpg and datetime.now(UTC) give UTC already
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")[:26] + "Z"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_sha256(obj: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``obj``."""
    return sha256_hex(canonical_json(obj))
