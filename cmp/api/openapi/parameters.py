"""Operation parameters: path parameters with the patterns the server checks (fullmatch),
query parameters and headers by operation id."""

from __future__ import annotations

import re
from typing import Any

from cmp.api.keys import KEY_LISTING
from cmp.api.paging import Listing
from cmp.api.policies import POLICY_LISTING
from cmp.values import (
    API_KEY_ID_PATTERN,
    EVENT_ID_PATTERN,
    MAX_USER_ID_CHARS,
    SITE_ID_PATTERN,
    SUBJECT_ID_PATTERN,
    USER_ID_PATTERN,
    VERSION_PATTERN,
)

PARAM = re.compile(r"{(\w+)}")

# Path parameters as the handlers check them (with fullmatch).
PATH_PARAMS: dict[str, dict[str, Any]] = {
    "site_id": {"type": "string", "pattern": SITE_ID_PATTERN},
    "subject_id": {"type": "string", "pattern": SUBJECT_ID_PATTERN},
    "version": {"type": "string", "pattern": f"^(current|{VERSION_PATTERN[1:-1]})$"},
    "key_id": {"type": "string", "pattern": API_KEY_ID_PATTERN},
    # A site's own user id (docs/linked-users.md): checked as sent, then normalised by the
    # server (NFC, trimmed).
    "user_id": {"type": "string", "maxLength": MAX_USER_ID_CHARS, "pattern": USER_ID_PATTERN},
    # Any other text cannot name a receipt: 404, like an unknown one.
    "event_id": {"type": "string", "pattern": EVENT_ID_PATTERN},
}
# Tree sizes and leaf indexes: ASCII digits, below 2^62.
TREE_INT = {"type": "integer", "maximum": (1 << 62) - 1}

# RFC 3339 allows offsets to ±23:59; the server takes ±18:00, as Python and PostgreSQL do.
OFFSET_HOURS = "((0[0-9]|1[0-7]):[0-5][0-9]|18:00)"
OFFSET = f"([Zz]|[+-]{OFFSET_HOURS})$"
# What a URL typed by hand holds and the server takes (cmp/timerange.py): a space for the
# "T" (RFC 3339's note allows it; its grammar and the date-time format do not), and an
# unencoded "+01:00" arriving as " 01:00" after form decoding.
HAND_TYPED = (
    "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3])"
    f":[0-5][0-9]:[0-5][0-9](\\.[0-9]{{1,9}})?([Zz]|[+ -]{OFFSET_HOURS})$"
)
STAMP = {
    "type": "string",
    "anyOf": [
        {"format": "date-time", "pattern": OFFSET},
        {"format": "date"},
        {"pattern": HAND_TYPED},
    ],
    "description": "RFC 3339 timestamp (2026-11-21T10:00:00Z; a space for the T is taken"
    " too) or a date (2026-11-21)",
}
# The export reads an empty value as absent.
STAMP_OR_EMPTY = {**STAMP, "anyOf": [*STAMP["anyOf"], {"const": ""}]}


def query(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def limit(listing: Listing) -> dict[str, Any]:
    """A paginated listing's page size (cmp/api/paging.py)."""
    schema = {"type": "integer", "minimum": 1, "maximum": listing.maximum}
    return query("limit", {**schema, "description": f"default {listing.default}"})


# Query parameters, by operation id.
QUERY: dict[str, list[dict[str, Any]]] = {
    "list_keys": [
        limit(KEY_LISTING),
        query("after", {"type": "string", "pattern": API_KEY_ID_PATTERN}),
    ],
    "list_policies": [
        limit(POLICY_LISTING),
        query("after", {"type": "string", "pattern": VERSION_PATTERN}),
    ],
    "export_events": [
        query("from", STAMP_OR_EMPTY),
        query("to", STAMP_OR_EMPTY),
        query("policy_version", {"type": "string", "pattern": VERSION_PATTERN}),
        query("subject_id", {"type": "string", "pattern": SUBJECT_ID_PATTERN}),
        query("format", {"type": "string", "enum": ["jsonl", "csv", "iso27560"]}),
    ],
    "get_inclusion": [
        query("index", {**TREE_INT, "minimum": 0}, required=True),
        query("size", {**TREE_INT, "minimum": 1}, required=True),
    ],
    "get_consistency": [
        query("from", {**TREE_INT, "minimum": 1}, required=True),
        query("to", {**TREE_INT, "minimum": 1}, required=True),
    ],
    "get_receipt": [
        query("subject_id", {"type": "string", "pattern": SUBJECT_ID_PATTERN}, required=True),
        query("format", {"type": "string", "enum": ["json", "iso27560"]}),
    ],
    "public_key": [query("site_id", {"type": "string", "pattern": SITE_ID_PATTERN})],
    "get_stats": [
        query("from", STAMP),
        query("to", STAMP),
        query("interval", {"type": "string", "enum": ["day", "week", "month"]}),
    ],
    "get_stats_page": [
        query("from", STAMP),
        query("to", STAMP),
        query("interval", {"type": "string", "enum": ["day", "week", "month"]}),
        query("expires", {"type": "string", "pattern": "^[0-9]{1,12}$"}, required=True),
        query("sig", {"type": "string"}, required=True),
    ],
    "get_klaro_config": [query("name", {"type": "string"})],
}

IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
}
HEADERS: dict[str, list[dict[str, Any]]] = {
    "get_consent": [
        IF_NONE_MATCH,
        query("country", {"type": "string", "description": "ISO 3166-1 alpha-2"}),
        query(
            "region", {"type": "string", "description": "ISO 3166-2, or its part after the dash"}
        ),
    ],
    "get_user_consent": [
        IF_NONE_MATCH,
        query("country", {"type": "string", "description": "ISO 3166-1 alpha-2"}),
        query(
            "region", {"type": "string", "description": "ISO 3166-2, or its part after the dash"}
        ),
    ],
    "post_lookup": [IF_NONE_MATCH],
    "get_banner": [IF_NONE_MATCH],
    "get_klaro_config": [IF_NONE_MATCH],
}


def parameters(path: str, name: str) -> list[dict[str, Any]]:
    """The parameters of the operation `name` on `path`: path, then query, then headers."""
    in_path = [
        {"name": p, "in": "path", "required": True, "schema": PATH_PARAMS[p]}
        for p in PARAM.findall(path)
    ]
    return in_path + QUERY.get(name, []) + HEADERS.get(name, [])
