"""The consent record, declared once: its fields in order, each with a kind and a presence.

A field's *kind* fixes the values it takes and how it is written in the record (the
record is then hashed as canonical JSON, `cmp.canonical`):

| kind      | record value                                   | example                          |
|-----------|------------------------------------------------|----------------------------------|
| `version` | the integer `RECORD_VERSION`                   | `1`                              |
| `count`   | an integer ≥ 1                                 | `42`                             |
| `text`    | a string                                       | `"nb"`                           |
| `uuid`    | the UUID's lowercase hyphenated text           | `"2f1c7a3e-1b2c-…-123456789abc"` |
| `hex64`   | 64 lowercase hex characters (a SHA-256)        | `"9f86d0…"`                      |
| `action`  | one of `ACTIONS`                               | `"custom"`                       |
| `choices` | an object of names to booleans                | `{"necessary":true}`             |
| `bool`    | `true` or `false`                              | `false`                          |
| `time`    | RFC 3339 UTC, exactly 6 fraction digits, `Z`   | `"2026-11-21T10:00:00.000000Z"`  |

A field's *presence* says when it may be null: `always` never; `consent` only on an
`erased` record, which carries no consent; `optional` whenever (and always on an
`erased` record).

Everything that writes or reads a record is derived from `FIELDS` or checked against
it: the chain rule (`cmp.audit.chain`: field list, checks, hash), the verifier's fast
path (`cmp.audit.lines`: one pattern per kind), the row the log appends
(`cmp.store.events.NEW_EVENT_COLUMNS`), and the record the database writes for the
export, the Merkle leaves and receipts (`cmp_record_text`, sql/schema/0007).
tests/store/test_record.py stores generated records through the real write path and
checks every one of those against the canonical JSON of `FIELDS`, byte for byte.
"""

from __future__ import annotations

from typing import Final, Literal, NamedTuple

Kind = Literal["version", "count", "text", "uuid", "hex64", "action", "choices", "bool", "time"]
Presence = Literal["always", "consent", "optional"]

RECORD_VERSION: Final = 1
ACTIONS: Final = frozenset({"accept_all", "reject_all", "custom", "withdraw", "erased"})


class Field(NamedTuple):
    name: str
    kind: Kind
    presence: Presence


# Order is the documentation order (docs/audit-log.md); the hash does not depend on it
# (canonical JSON sorts the keys).
FIELDS: Final[tuple[Field, ...]] = (
    Field("v", "version", "always"),
    Field("site_id", "text", "always"),
    Field("seq", "count", "always"),
    Field("event_id", "uuid", "always"),
    Field("subject_digest", "hex64", "always"),
    Field("policy_version", "count", "consent"),
    Field("policy_sha256", "hex64", "consent"),
    Field("action", "action", "always"),
    Field("purposes", "choices", "consent"),
    Field("services", "choices", "optional"),
    Field("gpc", "bool", "optional"),
    Field("language", "text", "optional"),
    Field("source", "text", "optional"),
    Field("page_url", "text", "optional"),
    Field("origin", "text", "optional"),
    Field("ip_prefix", "text", "optional"),
    Field("user_agent", "text", "optional"),
    Field("occurred_at", "time", "optional"),
    Field("received_at", "time", "always"),
)
# What an export row adds to the record; none of it is hashed, which is what lets
# erasure remove the subject id while the chain still verifies.
LINKS: Final[tuple[Field, ...]] = (
    Field("prev_hash", "hex64", "always"),
    Field("hash", "hex64", "always"),
    Field("subject_id", "text", "optional"),
)

CHAIN_FIELDS: Final = tuple(f.name for f in FIELDS)
CHAIN_FIELD_SET: Final = frozenset(CHAIN_FIELDS)
LINK_FIELDS: Final = tuple(f.name for f in LINKS)
# Null on an `erased` record.
CONSENT_FIELDS: Final = tuple(f.name for f in FIELDS if f.presence != "always")
# The record's fields the log stores in a column of the same name (`v` is implied by
# the schema, which holds records of one version).
STORED_FIELDS: Final = tuple(f.name for f in FIELDS if f.kind != "version")
