"""The one canonical JSON encoding, used for every content hash and chain hash.

Rule (documented in docs/audit-log.md): UTF-8, object keys sorted by code point,
no insignificant whitespace, non-ASCII characters kept as themselves (not escaped),
integers as integers, no floats. Anyone can reproduce it with
``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> bytes:
    """Encode ``obj`` canonically as UTF-8 bytes."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_sha256(obj: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``obj``."""
    return sha256_hex(canonical_json(obj))
