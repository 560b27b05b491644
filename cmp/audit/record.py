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
| `salt`    | 32 lowercase hex characters (16 random bytes)  | `"5f0c…"`                        |

A field's *presence* says when it may be null: `always` never; `consent` only on an
`erased`, `link` or `unlink` record, which carry no consent; `optional` whenever (and
always on an `erased` record).

A field is *personal* when it says who acted, from where or on which page. Version 1
chains personal values as they are. Version 2 (`RECORD_VERSION`) chains each as a salted
commitment: the record holds `<name>_sha256` = sha256(salt ‖ UTF-8 value) (null for a null
value), and the export row carries the value and `<name>_salt` beside it (the disclosure of
IETF SD-JWT, RFC 9901). Erasure deletes value and salt; the commitment keeps the chain
verifying. Version 2 also has fields of its own (`since=2`): the jurisdiction rule the
event was recorded under, its hash, the visitor's coarse location (not personal), the
showing it answers and its banner variant, and the user a link record names (personal).
`layout(v)` is everything a version's record and export row are made of.

Everything that writes or reads a record is derived from `ALL_FIELDS` or checked against
it: the chain rule (`cmp.audit.chain`: field list, checks, hash), the verifier's fast
path (`cmp.audit.lines`: one pattern per kind), the row the log appends
(`cmp.store.events`, by name), and the record the database writes for the
export, the Merkle leaves and receipts (`cmp_record_text`, sql/functions/record.sql).
tests/store/test_record.py stores generated records through the real write path and
checks every one of those against the canonical JSON of the declaration, byte for byte;
sql/functions/record.sql is generated from it (`python -m cmp.store.recordsql`).
"""

from __future__ import annotations

import functools
from typing import Final, Literal, NamedTuple

Kind = Literal[
    "version", "count", "text", "uuid", "hex64", "action", "choices", "bool", "time", "salt"
]
Presence = Literal["always", "consent", "optional"]

RECORD_VERSION: Final = 2  # what the log writes now
RECORD_VERSIONS: Final = (1, 2)  # what it holds and verifies
ACTIONS: Final = frozenset(
    {"accept_all", "reject_all", "custom", "withdraw", "erased", "link", "unlink"}
)
# Records that carry no consent (null consent fields): bookkeeping of the log.
NO_CONSENT: Final = frozenset({"erased", "link", "unlink"})
# A subject linked to (or unlinked from) one of the site's users (docs/linked-users.md):
# version 2 only, and they name the user (`user_digest`).
LINK_ACTIONS: Final = frozenset({"link", "unlink"})
SALT_BYTES: Final = 16


class Field(NamedTuple):
    name: str
    kind: Kind
    presence: Presence
    personal: bool = False
    since: int = 1  # the first record version that has the field


# Order is the documentation order (docs/audit-log.md); the hash does not depend on it
# (canonical JSON sorts the keys). Every field of every version: `layout(v)` takes those
# `since` v or earlier, and derives version 2's commitments from the personal ones.
ALL_FIELDS: Final[tuple[Field, ...]] = (
    Field("v", "version", "always"),
    Field("site_id", "text", "always"),
    Field("seq", "count", "always"),
    Field("event_id", "uuid", "always"),
    Field("subject_digest", "hex64", "always", personal=True),
    Field("policy_version", "count", "consent"),
    Field("policy_sha256", "hex64", "consent"),
    Field("action", "action", "always"),
    Field("purposes", "choices", "consent"),
    Field("services", "choices", "optional"),
    Field("gpc", "bool", "optional"),
    # Version 2: the jurisdiction rule the event was recorded under (docs/jurisdictions.md),
    # its content hash as it was then, and the visitor's coarse location (not personal).
    Field("rule", "text", "consent", since=2),
    Field("rule_sha256", "hex64", "consent", since=2),
    Field("country", "text", "optional", since=2),
    Field("region", "text", "optional", since=2),
    Field("language", "text", "optional"),
    Field("source", "text", "optional"),
    Field("page_url", "text", "optional", personal=True),
    Field("origin", "text", "optional"),
    Field("ip_prefix", "text", "optional", personal=True),
    Field("user_agent", "text", "optional", personal=True),
    Field("occurred_at", "time", "optional"),
    Field("received_at", "time", "always"),
    # Version 2: the showing a decision answers (time to decision) and the banner
    # variant it showed (docs/api.md, impressions).
    Field("impression_id", "uuid", "optional", since=2),
    Field("variant", "text", "optional", since=2),
    # Version 2: on `link` and `unlink` records, the site's user the subject was linked to
    # or unlinked from, as a keyed digest of the normalised user id (cmp.users).
    Field("user_digest", "hex64", "optional", personal=True, since=2),
)
# Version 1's record, which existing logs are made of.
FIELDS: Final = tuple(f for f in ALL_FIELDS if f.since == 1)
PERSONAL: Final = tuple(f for f in ALL_FIELDS if f.personal)


def commitment_of(name: str) -> str:
    """The record field that commits to personal field `name` (version 2)."""
    return f"{name}_sha256"


def salt_of(name: str) -> str:
    """The export field that carries the salt of personal field `name` (version 2)."""
    return f"{name}_salt"


class Layout(NamedTuple):
    """One record version: the hashed record's fields, and what an export row adds."""

    version: int
    fields: tuple[Field, ...]  # hashed, in documentation order
    links: tuple[Field, ...]  # not hashed: chain links, the subject id, disclosures
    # personal field → (its commitment field, its salt field); empty for version 1
    disclosures: tuple[tuple[Field, str, str], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def link_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.links)


_CHAIN_LINKS: Final = (
    Field("prev_hash", "hex64", "always"),
    Field("hash", "hex64", "always"),
    Field("subject_id", "text", "optional"),
)


@functools.cache
def layout(version: int) -> Layout:
    """Version `version`'s record and export row (KeyError for a version never made)."""
    if version == 1:
        return Layout(1, tuple(f for f in FIELDS if f.since == 1), _CHAIN_LINKS, ())
    if version != 2:
        raise KeyError(version)
    fields, disclosures = [], []
    for f in ALL_FIELDS:
        if f.since > version:
            continue
        if f.personal:
            commitment = commitment_of(f.name)
            fields.append(Field(commitment, "hex64", f.presence))
            disclosures.append((Field(f.name, f.kind, "optional"), commitment, salt_of(f.name)))
        else:
            fields.append(f)
    salts = tuple(Field(salt, "salt", "optional") for _, _, salt in disclosures)
    links = _CHAIN_LINKS + tuple(field for field, _, _ in disclosures) + salts
    return Layout(2, tuple(fields), links, tuple(disclosures))


# Version 1's names, which existing logs are made of.
LINKS: Final = _CHAIN_LINKS
CHAIN_FIELDS: Final = layout(1).names
CHAIN_FIELD_SET: Final = frozenset(CHAIN_FIELDS)
LINK_FIELDS: Final = tuple(f.name for f in LINKS)
# Null on an `erased` record.
CONSENT_FIELDS: Final = tuple(f.name for f in layout(1).fields if f.presence != "always")
# Every column of the log's table that holds a record field (`v` included since both
# versions share the table), and the personal columns erasure empties.
STORED_FIELDS: Final = tuple(
    dict.fromkeys(
        [f.name for f in ALL_FIELDS]
        + [name for _, commitment, salt in layout(2).disclosures for name in (commitment, salt)]
    )
)
