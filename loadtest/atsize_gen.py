"""The at-size log's contents, made in Python: one site's records with their real chain.

Deterministic from (seed, site): which subject each record is for, its action, its
time within the months, its event id. Each record is the chain record the ingest
pipeline builds (`cmp.ingest.build`: record version `RECORD_VERSION`, the subject digest
by the site's key, each personal value committed to with a fresh random salt by
`cmp.audit.chain.committed`, the purposes and services derived as `cmp.consent` derives
them for the bench policy), hashed by the chain rule of `cmp.audit.chain` (the first
record of every site is checked against `record_hash` itself), and its Merkle leaf put
into tiles by `cmp.audit.tiles`, so the server's tree job finds the tree caught up.
Its row holds every column the declaration gives the log (`EVENT_COLUMNS`).
"""

from __future__ import annotations

import hashlib
import operator
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from cmp.audit import merkle, tiles
from cmp.audit.chain import GENESIS, check_record, committed, record_hash, subject_digest
from cmp.audit.record import PERSONAL, RECORD_VERSION, SALT_BYTES, STORED_FIELDS, layout
from cmp.canonical import canonical_json, utc_text
from cmp.ingest.build import body_digest
from cmp.jurisdiction import DEFAULT_RULE

# The bench policy's purposes (loadtest.seed.policy_body) and their services.
PURPOSES = ("necessary", "preferences", "statistics", "marketing")
SERVICES = {"session": "necessary", "google-analytics": "statistics", "facebook-pixel": "marketing"}
CUSTOM_SENT = {"preferences": True, "statistics": False, "marketing": False}
ACTIONS = ("accept_all", "reject_all", "custom")
SOURCE = "cmp-banner/1.0"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) atsize"
IP_PREFIX = "203.0.113.0/24"
EVENTS_PER_SUBJECT = 3.5
# The big site's subjects with `HEAVY_RECORDS` records each (`SitePlan.heavy`): the ones
# the at-size run erases.
HEAVY_SUBJECTS, HEAVY_RECORDS = 20, 10

SHAPE = layout(RECORD_VERSION)
# The log's columns a record fills: every stored record field (`STORED_FIELDS`, each in
# its column) and the current version's links (chain hashes, subject id; the disclosed
# values and salts are stored fields already). tests/loadtest checks them against the table.
EVENT_COLUMNS = tuple(dict.fromkeys((*STORED_FIELDS, *SHAPE.link_names)))
_ROW = operator.itemgetter(*EVENT_COLUMNS)
# (commitment, salt column, offset of its salt) of each personal field, as `committed`
# slices one draw of salts.
_DISCLOSED = tuple(
    (commitment, salt, i * SALT_BYTES) for i, (_, commitment, salt) in enumerate(SHAPE.disclosures)
)
_SALT_DRAW = SALT_BYTES * len(PERSONAL)

DEFAULT_RULE_SHA256 = DEFAULT_RULE.sha256()


def _choices(action: str) -> tuple[dict[str, bool], dict[str, bool]]:
    if action == "custom":
        purposes = {k: k == "necessary" or CUSTOM_SENT.get(k, False) for k in PURPOSES}
    else:
        purposes = {k: action == "accept_all" or k == "necessary" for k in PURPOSES}
    return purposes, {s: purposes[p] for s, p in SERVICES.items()}


CHOICES = {a: _choices(a) for a in ACTIONS}
CHOICE_TEXT = {
    a: (canonical_json(p).decode(), canonical_json(s).decode()) for a, (p, s) in CHOICES.items()
}


def site_sizes(total: int, sites: int) -> list[int]:
    """Events per site: the first holds a quarter, the rest a Zipf-like tail (s = 0.8)."""
    big = total // 4
    weights = [1 / (i + 1) ** 0.8 for i in range(sites - 1)]
    scale = (total - big) / sum(weights)
    sizes = [big] + [int(w * scale) for w in weights]
    sizes[1] += total - sum(sizes)  # rounding: the total is exact
    return sizes


def subjects_for(events: int) -> int:
    return max(1, int(events / EVENTS_PER_SUBJECT)) if events else 0


@dataclass(frozen=True)
class SitePlan:
    site_id: str
    events: int
    key: bytes  # the site's subject key (sites.subject_key)
    policy_sha256: str
    start: datetime  # first month's start (UTC)
    end: datetime  # the month after the last one
    seed: int
    heavy: int = 0  # subjects with HEAVY_RECORDS records each: the top of the range


@dataclass
class SiteOut:
    """What one site's fill leaves for the tables written after the rows."""

    site_id: str
    seq: int
    hash: str
    root: bytes
    tiles: dict[tiles.TileKey, bytes]
    subjects: int
    heavy: int


def owners(n: int, subjects: int, heavy: int, rng: random.Random) -> list[int]:
    """Whose each of `n` records is: the last `heavy` subjects have `HEAVY_RECORDS`
    each, the others share the rest evenly (3 or 4 each at 3.5), in shuffled order."""
    many = heavy * HEAVY_RECORDS
    if heavy and (heavy >= subjects or n - many < subjects - heavy):
        raise ValueError(f"{n} records cannot give {heavy} of {subjects} subjects {HEAVY_RECORDS}")
    light = subjects - heavy
    owner = [i % light for i in range(n - many)] if n else []
    owner += [light + j for j in range(heavy) for _ in range(HEAVY_RECORDS)]
    rng.shuffle(owner)  # spread over the months
    return owner


def month_key(at: datetime) -> str:
    return f"{at.year:04d}_{at.month:02d}"


def event_uuid(site_id: str, seq: int) -> str:
    """A version-4 UUID from the record's place: the same for a re-made site."""
    h = hashlib.sha256(f"{site_id}/{seq}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


# RFC 9562 variant bits (10xx) over the first hex digit of the fourth group.
VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


class SiteFill:
    """One site's records, state rows and tree, made in one pass."""

    def __init__(self, plan: SitePlan) -> None:
        self.plan = plan
        self.out: SiteOut | None = None
        self.states: list[tuple[Any, ...]] = []

    def rows(self) -> Iterator[tuple[str, tuple[Any, ...], tuple[Any, ...]]]:
        plan = self.plan
        n, site = plan.events, plan.site_id
        rng = random.Random(f"{plan.seed}/{site}")
        k_subjects = subjects_for(n)
        owner = owners(n, k_subjects, plan.heavy, rng)
        last = [0] * k_subjects
        span_us = (plan.end - plan.start) // timedelta(microseconds=1)
        origin = f"https://{site}.example"
        page = f"{origin}/"
        digests: dict[int, str] = {}
        leaves: list[bytes] = []
        prev = GENESIS
        actions = bytearray(n)
        times: list[datetime] = []
        month, next_month = "", plan.start
        for k in range(n):
            s = owner[k]
            last[s] = k
            subject = f"s-{s}"
            digest = digests.get(s)
            if digest is None:
                digest = digests[s] = subject_digest(plan.key, subject)
            r = rng.random()
            a = 0 if r < 0.6 else (1 if r < 0.9 else 2)
            actions[k] = a
            action = ACTIONS[a]
            purposes, services = CHOICES[action]
            at = plan.start + timedelta(microseconds=int((k + rng.random()) * span_us / n))
            times.append(at)
            if at >= next_month:
                month, next_month = month_key(at), month_start(at, -1)
            seq = k + 1
            event_id = event_uuid(site, seq)
            disclosed = {
                "subject_digest": digest,
                "page_url": page,
                "ip_prefix": IP_PREFIX,
                "user_agent": USER_AGENT,
                "user_digest": None,  # only link and unlink records name a user
            }
            salts = secrets.token_bytes(_SALT_DRAW)  # a fresh salt per field, as ingest
            record = {
                "v": RECORD_VERSION,
                "site_id": site,
                "seq": seq,
                "event_id": event_id,
                "policy_version": 1,
                "policy_sha256": plan.policy_sha256,
                "action": action,
                "purposes": purposes,
                "services": services,
                "gpc": False,
                "language": "nb",
                "source": SOURCE,
                "origin": origin,
                "occurred_at": None,
                "received_at": utc_text(at),
                # A site without jurisdictions: everyone under its one opt-in rule.
                "rule": DEFAULT_RULE.id,
                "rule_sha256": DEFAULT_RULE_SHA256,
                "country": None,
                "region": None,
                "impression_id": None,
                "variant": None,
                **committed(disclosed, salts),
            }
            data = canonical_json(record)
            digest_hex = hashlib.sha256(prev.encode("ascii") + data).hexdigest()
            if k == 0:  # the record and the chain rule, from their one definition
                check_record(record)
                assert digest_hex == record_hash(prev, record)
            leaves.append(merkle.leaf_hash(data))
            sent = SimpleNamespace(
                event_id=event_id,
                subject_id=subject,
                policy_version=1,
                action=action,
                purposes=CUSTOM_SENT if a == 2 else None,
                services=None,
                language="nb",
                occurred_at=None,
                source=SOURCE,
                page_url=page,
                impression_id=None,
                variant=None,
            )
            p_text, s_text = CHOICE_TEXT[action]
            row = {
                **record,
                **disclosed,
                "purposes": p_text,
                "services": s_text,
                "received_at": at,
                "subject_id": subject,
                "prev_hash": prev,
                "hash": digest_hex,
            }
            for commitment, salt, at_byte in _DISCLOSED:
                hex_commitment = record[commitment]
                if hex_commitment is None:  # a null value: no commitment, no salt
                    row[salt] = None
                else:
                    row[commitment] = bytes.fromhex(hex_commitment)
                    row[salt] = salts[at_byte : at_byte + SALT_BYTES]
            yield month, _ROW(row), (site, event_id, body_digest(sent))
            prev = digest_hex
        for s in range(k_subjects):
            k = last[s]
            action = ACTIONS[actions[k]]
            p_text, s_text = CHOICE_TEXT[action]
            self.states.append(
                (
                    site,
                    f"s-{s}",
                    k + 1,
                    event_uuid(site, k + 1),
                    1,
                    action,
                    p_text,
                    s_text,
                    False,
                    times[k],
                )
            )
        size, made = tiles.append(0, {}, leaves)
        root = merkle.tree_root(size, lambda lv, ix: tiles.node_from(made, lv, ix))
        self.out = SiteOut(site, n, prev, root, made, k_subjects, plan.heavy)


def months_between(start: datetime, end: datetime) -> list[datetime]:
    found, at = [], start
    while at < end:
        found.append(at)
        at = (at + timedelta(days=32)).replace(day=1)
    return found


def month_start(at: datetime, back: int = 0) -> datetime:
    """First instant of the UTC month `back` months before `at`'s."""
    index = at.year * 12 + at.month - 1 - back
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
