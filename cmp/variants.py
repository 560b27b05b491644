"""Which banner variant a subject sees: deterministic from its id, the same in the
banner (cmp/static/banner.js, `variantOf`) and here, so both agree without asking.

u = FNV-1a 32-bit hash of the subject id's UTF-8 bytes / 2**32, a number in [0, 1);
the variants in order of their names, each taking the next `weight` of [0, 1); the
subject sees the one whose share holds u (the last one, should rounding leave a gap).
FNV-1a: a few lines in any language, and well spread over random ids (UUIDv4).
"""

from __future__ import annotations

from collections.abc import Mapping

FNV_OFFSET = 0x811C9DC5
FNV_PRIME = 0x01000193


def fnv1a32(text: str) -> int:
    h = FNV_OFFSET
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * FNV_PRIME) & 0xFFFFFFFF
    return h


def assign(subject_id: str, weights: Mapping[str, float]) -> str | None:
    """The variant of `subject_id` among `weights` (name → weight); None without any."""
    if not weights:
        return None
    u = fnv1a32(subject_id) / 2**32
    edge = 0.0
    names = sorted(weights)
    for name in names:
        edge += weights[name]
        if u < edge:
            return name
    return names[-1]
