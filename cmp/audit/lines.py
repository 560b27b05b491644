"""One export line → (seq, site_id, prev_hash, hash, the hash its fields recompute to).

`parse_line` is the definition: decode the row as strict JSON, take exactly the chain
fields of its version (`cmp.audit.record.layout`), check a version 2 row's disclosures
against their commitments, hash the record's canonical JSON after `prev_hash`.
`parse_fast` is a shortcut for lines already in the exact canonical form of
`chain.export_line`: it hashes the line's own bytes instead of decoding and re-encoding
them (its pattern is made from the record's declaration, `cmp.audit.record`, one value
pattern per kind), accepts only what `parse_line` would accept with the same answer
(tests/audit/test_verify.py checks the two agree), and returns None for every other line.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from typing import Any, Final

from cmp.audit.chain import HEX64_RE, disclosure_problem
from cmp.audit.record import RECORD_VERSIONS, Field, Layout, layout
from cmp.canonical import canonical_json

Parsed = tuple[int, str, str, str, str]  # seq, site_id, prev_hash, hash, recomputed hash


class LineError(Exception):
    def __init__(self, reason: str, seq: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.seq = reason, seq


def parse(raw: bytes) -> Parsed:
    """A line's parts: the fast path when it applies, else the definition."""
    return parse_fast(raw) or parse_line(raw)


# --- the definition ----------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Floats are rare and only wrong inside the record: count them while decoding, and only
# look where they are when this count moved.
_floats_decoded = [0]


def _note_float(text: str) -> float:
    _floats_decoded[0] += 1
    return float(text)


_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_note_float
)


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return False


def parse_line(raw: bytes) -> Parsed:
    """The definition: decode the row, take the chain fields, hash their canonical JSON."""
    floats_before = _floats_decoded[0]
    try:
        row = _DECODER.decode(raw.decode("utf-8"))
    except ValueError as exc:  # includes JSONDecodeError and UnicodeDecodeError
        raise LineError(f"malformed JSON ({exc})") from None
    if not isinstance(row, dict):
        raise LineError("malformed JSON (not an object)")
    seq = row.get("seq")
    known_seq = seq if type(seq) is int else None
    version = row.get("v")
    if type(version) is not int or version not in RECORD_VERSIONS:
        raise LineError(f"unsupported record version v={version!r}", known_seq)
    shape = layout(version)
    for name in (*shape.names, "prev_hash", "hash"):
        if name not in row:
            raise LineError(f"missing field {name!r}", known_seq)
    if known_seq is None or known_seq < 1:
        raise LineError("seq must be a positive integer")
    seq = known_seq
    site_id, prev, digest = row["site_id"], row["prev_hash"], row["hash"]
    if not isinstance(site_id, str):
        raise LineError("site_id must be a string", seq)
    for name, value in (("prev_hash", prev), ("hash", digest)):
        if not isinstance(value, str) or not HEX64_RE.fullmatch(value):
            raise LineError(f"{name} must be 64 lowercase hex characters", seq)
    record = {name: row[name] for name in shape.names}
    problem = disclosure_problem(row)
    if problem is not None:
        raise LineError(problem, seq)
    if _floats_decoded[0] != floats_before:
        floats = [name for name, value in record.items() if _has_float(value)]
        if floats:
            raise LineError(f"field {floats[0]!r} holds a float; canonical JSON has none", seq)
    actual = hashlib.sha256(prev.encode("ascii") + canonical_json(record)).hexdigest()
    return seq, site_id, prev, digest, actual


# --- the fast path -----------------------------------------------------------------------


_STR = rb'"[^"\\\x00-\x1f]*+"'  # a JSON string without escapes encodes as itself
_CHOICE = rb'"[a-z0-9_.:-]++":(?:true|false)'
# Per kind (cmp.audit.record), a value that is already in canonical form: its bytes
# are the bytes canonical_json would write for it.
_FAST_KINDS: Final[dict[str, bytes]] = {
    "count": rb"[1-9][0-9]*+",
    "text": _STR,
    "uuid": _STR,
    "hex64": rb'"[0-9a-f]{64}"',
    "action": _STR,
    "choices": rb"\{(?:" + _CHOICE + rb"(?:," + _CHOICE + rb")*+)?\}",
    "bool": rb"(?:true|false)",
    "time": _STR,
    "salt": rb'"[0-9a-f]{32}"',
}
# Fields whose value parse_fast reads, so the pattern captures them.
_CAPTURED: Final = frozenset({"site_id", "seq", "purposes", "services", "prev_hash", "hash"})


def _group(name: str) -> str:
    return name.replace("_", "")  # group names: letters and digits suffice


def _fast_value(field: Field, version: int, captured: frozenset[str]) -> bytes:
    if field.kind == "version":
        return str(version).encode()
    value = _FAST_KINDS[field.kind]
    if field.presence != "always":
        value = b"(?:null|" + value + b")"
    if field.name in captured:
        value = b"(?P<%s>%s)" % (_group(field.name).encode(), value)
    return value


class _Fast:
    """The fast pattern of one record version: it matches exactly canonical_json of an
    export row with no extra fields, whose strings need no escaping and whose choice maps
    have simple keys. The runs of members between the fields that are not hashed are the
    groups keep0, keep1 …: together, the record's bytes."""

    def __init__(self, shape: Layout) -> None:
        self.disclosures = [
            (_group(f.name), _group(commitment), _group(salt))
            for f, commitment, salt in shape.disclosures
        ]
        captured = _CAPTURED | {
            name for f, commitment, salt in shape.disclosures for name in (f.name, commitment, salt)
        }
        pattern, run, keep = b"", b"\\{", 0
        links = {field.name for field in shape.links}
        for index, field in enumerate(sorted(shape.fields + shape.links, key=lambda f: f.name)):
            value = _fast_value(field, shape.version, frozenset(captured))
            member = b'%s"%s":%s' % (b"," if index else b"", field.name.encode(), value)
            if field.name in links:
                if run:
                    pattern += b"(?P<keep%d>%s)" % (keep, run)
                    keep += 1
                pattern += member
                run = b""
            else:
                run += member
        self.keeps = [f"keep{i}" for i in range(keep + 1)]
        self.pattern = re.compile(pattern + b"(?P<keep%d>%s\\})" % (keep, run))


# One pattern per version, told apart by the record's `v` (its last member).
_FAST: Final = {version: _Fast(layout(version)) for version in RECORD_VERSIONS}
_VERSION_AT_END: Final = re.compile(rb',"v":(\d+)\}$')
# From version 2 on, `variant` sorts after `v`: the version is the member before it.
_VERSION_BEFORE_VARIANT: Final = re.compile(rb',"v":(\d+),"variant":')


# A log repeats a handful of choice maps millions of times: remember the verdicts.
_choices_seen: dict[bytes, bool] = {}


def _sorted_keys(choices: bytes) -> bool:
    # Canonical JSON sorts keys; the pattern cannot, so check order (and uniqueness) here.
    known = _choices_seen.get(choices)
    if known is None:
        # After the opening quote, a key runs to the first `":` (a key may start with `:`).
        keys = [item[1:].split(b'":', 1)[0] for item in choices[1:-1].split(b",")]
        known = all(a < b for a, b in itertools.pairwise(keys))
        if len(_choices_seen) >= 4096:
            _choices_seen.clear()
        _choices_seen[choices] = known
    return known


def _disclosed(fast: _Fast, m: re.Match[bytes]) -> bool:
    """Every disclosure of the row either matches its commitment or is absent whole (a
    row that fails here takes the definition, which names what is wrong)."""
    for value, commitment, salt in fast.disclosures:
        v, c, s = m.group(value, commitment, salt)
        if v == b"null":
            if s != b"null":
                return False
            continue
        if s == b"null" or c == b"null":
            return False
        if (
            hashlib.sha256(bytes.fromhex(s[1:-1].decode()) + v[1:-1]).hexdigest().encode()
            != c[1:-1]
        ):
            return False
    return True


def parse_fast(raw: bytes) -> Parsed | None:
    version = _VERSION_AT_END.search(raw[-12:])
    if version is None:
        # Found by its last occurrence; one inside a string value has escapes, which the
        # version's pattern refuses, so such a line takes the definition.
        version = _VERSION_BEFORE_VARIANT.match(raw, max(raw.rfind(b',"v":'), 0))
    fast = _FAST.get(int(version.group(1))) if version else None
    if fast is None:
        return None
    m = fast.pattern.fullmatch(raw)
    if m is None:
        return None
    seq, site_id, prev, digest, purposes, services = m.group(
        "seq", "siteid", "prevhash", "hash", "purposes", "services"
    )
    if not (_sorted_keys(purposes) and _sorted_keys(services)):
        return None
    try:
        raw.decode("utf-8")  # the pattern admits any byte >= 0x20; JSON needs UTF-8
    except UnicodeDecodeError:
        return None
    if fast.disclosures and not _disclosed(fast, m):
        return None
    prev = prev[1:-1]  # the captured values are JSON strings: drop the quotes
    return (
        int(seq),
        site_id[1:-1].decode("utf-8"),
        prev.decode("ascii"),
        digest[1:-1].decode("ascii"),
        hashlib.sha256(prev + b"".join([m[keep] for keep in fast.keeps])).hexdigest(),
    )
