"""A record's canonical JSON from the parts the database writes (`cmp_record_text`,
sql/functions/record.sql): the database writes everything but the two choice maps, which jsonb
prints with spaces and in its own key order; they are put in canonical form here."""

from __future__ import annotations

import functools
import json

from cmp.canonical import canonical_json


@functools.lru_cache(maxsize=4096)
def canonical_choices(text: str | None) -> str:
    """Canonical JSON of a purposes/services map given as jsonb text (a log holds a
    handful of distinct maps, millions of times: each is parsed once)."""
    return "null" if text is None else canonical_json(json.loads(text)).decode("utf-8")


def record_text(
    head: str, purposes: str | None, middle: str, services: str | None, tail: str
) -> str:
    """The record (or export row) whose parts `cmp_record_text` returned, in order."""
    return f"{head}{canonical_choices(purposes)}{middle}{canonical_choices(services)}{tail}"
