"""The chain rule: record shape, timestamps, subject digest, hash and linking."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cmp.audit.chain import (
    GENESIS,
    chain_record,
    erased_record,
    export_line,
    export_row,
    format_ts,
    hashed_part,
    link,
    record_hash,
    subject_digest,
)
from cmp.audit.record import CHAIN_FIELDS

SECRET = b"site-secret-0123456789abcdef"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "audit-log.md"


def consent(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "site_id": "kundetelling",
        "seq": 1,
        "event_id": "2f1c7a3e-1b2c-4d5e-8f90-123456789abc",
        "subject_digest": subject_digest(SECRET, "a327dfec-5a4b-4c7e-9d1f-0e2b3c4d5e6f"),
        "policy_version": 2,
        "policy_sha256": hashlib.sha256(b"policy v2").hexdigest(),
        "action": "custom",
        "purposes": {"necessary": True, "statistics": True, "marketing": False},
        "services": {"google-analytics": True},
        "gpc": False,
        "language": "nb",
        "source": "cmp-banner/1.0",
        "page_url": "https://kundetelling.no/priser",
        "origin": "https://kundetelling.no",
        "ip_prefix": "203.0.113.0/24",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "occurred_at": "2026-11-21T10:00:00.000000Z",
        "received_at": "2026-11-21T10:00:00.250000Z",
    }
    fields.update(overrides)
    return chain_record(**fields)


def independent_hash(prev_hash: str, record: dict[str, Any]) -> str:
    # Written from the documented rule, not from cmp.canonical, so the two are compared.
    body = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(prev_hash.encode("ascii") + body.encode("utf-8")).hexdigest()


def test_genesis_is_64_zeros() -> None:
    assert GENESIS == "0" * 64


def test_format_ts_writes_utc_with_six_fractional_digits() -> None:
    assert format_ts(datetime(2026, 11, 21, 10, tzinfo=UTC)) == "2026-11-21T10:00:00.000000Z"
    assert (
        format_ts(datetime(2026, 11, 21, 10, 0, 0, 1234, tzinfo=UTC))
        == "2026-11-21T10:00:00.001234Z"
    )


def test_format_ts_converts_other_offsets_to_utc() -> None:
    oslo = timezone(timedelta(hours=1))
    assert format_ts(datetime(2026, 11, 21, 11, 30, tzinfo=oslo)) == "2026-11-21T10:30:00.000000Z"


def test_format_ts_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_ts(datetime(2026, 11, 21, 10))


def test_subject_digest_is_hmac_sha256_of_the_subject_id() -> None:
    expected = hmac.new(SECRET, b"a327dfec", hashlib.sha256).hexdigest()
    assert subject_digest(SECRET, "a327dfec") == expected


@given(st.binary(min_size=16, max_size=200), st.text(max_size=40))
def test_subject_digest_equals_hmac_for_any_secret_and_id(secret: bytes, subject: str) -> None:
    expected = hmac.new(secret, subject.encode("utf-8"), hashlib.sha256).hexdigest()
    assert subject_digest(secret, subject) == expected
    assert subject_digest(secret, subject) == expected  # the cached pads stay unchanged


def test_subject_digest_depends_on_the_site_secret_and_hides_the_id() -> None:
    one = subject_digest(SECRET, "visitor-1")
    assert one != subject_digest(SECRET + b"x", "visitor-1")
    assert "visitor-1" not in one
    assert one == subject_digest(SECRET, "visitor-1")


def test_subject_digest_refuses_a_short_secret() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        subject_digest(b"short", "visitor-1")


def test_chain_record_holds_every_field_with_null_for_absent_ones() -> None:
    record = consent(services=None, gpc=None)
    assert tuple(record) == CHAIN_FIELDS
    assert record["v"] == 1
    assert record["services"] is None and record["gpc"] is None


def test_chain_record_refuses_unknown_fields() -> None:
    with pytest.raises(TypeError, match="subject_id"):
        consent(subject_id="a327dfec")


@pytest.mark.parametrize("missing", ["site_id", "seq", "event_id", "subject_digest", "received_at"])
def test_chain_record_refuses_a_missing_required_field(missing: str) -> None:
    with pytest.raises(ValueError, match=missing):
        consent(**{missing: None})


def test_chain_record_formats_datetimes_and_uuids() -> None:
    event_id = uuid.UUID("2f1c7a3e-1b2c-4d5e-8f90-123456789abc")
    record = consent(
        event_id=event_id,
        received_at=datetime(2026, 11, 21, 10, 0, 0, 5, tzinfo=UTC),
        occurred_at=None,
    )
    assert record["event_id"] == str(event_id)
    assert record["received_at"] == "2026-11-21T10:00:00.000005Z"
    assert record["occurred_at"] is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("action", "maybe"),
        ("seq", 0),
        ("seq", True),
        ("v", 3),
        ("v", True),
        ("subject_digest", "A" * 64),
        ("policy_sha256", "abc"),
        ("purposes", {"statistics": "yes"}),
        ("gpc", 1),
        ("received_at", "2026-11-21T10:00:00Z"),
        ("occurred_at", "2026-11-21 10:00:00.000000+00:00"),
        ("policy_version", None),
    ],
)
def test_chain_record_refuses_values_outside_the_contract(field: str, value: Any) -> None:
    with pytest.raises(ValueError):
        consent(**{field: value})


def test_erased_record_keeps_the_digest_and_nulls_the_consent_fields() -> None:
    digest = subject_digest(SECRET, "visitor-1")
    record = erased_record(
        site_id="kundetelling",
        seq=9,
        event_id=uuid.UUID(int=9, version=4),
        subject_digest=digest,
        received_at=datetime(2026, 11, 22, tzinfo=UTC),
    )
    assert record["action"] == "erased"
    assert record["subject_digest"] == digest
    assert record["purposes"] is None and record["policy_version"] is None
    assert record["received_at"] == "2026-11-22T00:00:00.000000Z"


def test_an_erased_record_may_not_carry_consent() -> None:
    with pytest.raises(ValueError, match="purposes"):
        consent(action="erased", policy_version=None, policy_sha256=None)


def test_record_hash_follows_the_documented_rule() -> None:
    record = consent(page_url="https://kundetelling.no/personvern-øæå")
    assert record_hash(GENESIS, record) == independent_hash(GENESIS, record)
    prev = "ab" * 32
    assert record_hash(prev, record) == independent_hash(prev, record)


def test_record_hash_does_not_depend_on_key_order() -> None:
    record = consent()
    reordered = dict(reversed(list(record.items())))
    assert record_hash(GENESIS, record) == record_hash(GENESIS, reordered)


@pytest.mark.parametrize("field", [f for f in CHAIN_FIELDS if f not in ("v",)])
def test_record_hash_changes_when_any_field_changes(field: str) -> None:
    record = consent()
    edited = dict(record)
    edited[field] = "something else" if record[field] != "something else" else None
    assert record_hash(GENESIS, record) != record_hash(GENESIS, edited)


def test_record_hash_changes_with_the_previous_hash() -> None:
    record = consent()
    assert record_hash(GENESIS, record) != record_hash("1" * 64, record)


def test_record_hash_refuses_an_export_row() -> None:
    row = export_row(consent(), prev_hash=GENESIS, hash="1" * 64, subject_id="visitor-1")
    with pytest.raises(ValueError):
        record_hash(GENESIS, row)


def test_link_chains_a_batch_in_order() -> None:
    records = [consent(seq=seq) for seq in (5, 6, 7)]
    start = "c" * 64
    links = link(records, start)
    assert [x.prev_hash for x in links] == [start, links[0].hash, links[1].hash]
    assert links[2].hash == record_hash(links[1].hash, records[2])


def test_link_refuses_a_batch_with_a_seq_gap() -> None:
    with pytest.raises(ValueError, match="does not follow"):
        link([consent(seq=1), consent(seq=3)], GENESIS)


def test_the_subject_id_in_an_export_row_is_not_hashed() -> None:
    record = consent()
    digest = record_hash(GENESIS, record)
    kept = export_row(record, prev_hash=GENESIS, hash=digest, subject_id="visitor-1")
    erased = export_row(record, prev_hash=GENESIS, hash=digest, subject_id=None)
    assert record_hash(GENESIS, hashed_part(kept)) == digest
    assert record_hash(GENESIS, hashed_part(erased)) == digest


def test_export_line_is_canonical_json_of_the_row() -> None:
    record = consent()
    line = export_line(record, prev_hash=GENESIS, hash="1" * 64, subject_id="v", note="x")
    row = json.loads(line)
    assert (
        line
        == json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        + b"\n"
    )
    assert row["note"] == "x" and hashed_part(row) == record


def test_export_rows_cannot_override_chain_fields() -> None:
    with pytest.raises(ValueError, match="clash"):
        export_row(consent(), prev_hash=GENESIS, hash="1" * 64, subject_id=None, seq=9)


# The worked example of docs/audit-log.md; if the rule ever changes, the docs must too.
WORKED_RECORD: dict[str, Any] = {
    "v": 1,
    "site_id": "kundetelling",
    "seq": 1,
    "event_id": "2f1c7a3e-1b2c-4d5e-8f90-123456789abc",
    "subject_digest": "0d9e31ac8eb490001c8061a5a092b28af1026ac1d63f08b1e7a49bb011357700",
    "policy_version": 2,
    "policy_sha256": "d81a81bd66c39c151b5767de4201ed85b41fe37e5c4c60df94a14888493cefdc",
    "action": "custom",
    "purposes": {"necessary": True, "statistics": True, "marketing": False},
    "services": {"google-analytics": True},
    "gpc": False,
    "language": "nb",
    "source": "cmp-banner/1.0",
    "page_url": "https://kundetelling.no/tjenester/rådgivning",
    "origin": "https://kundetelling.no",
    "ip_prefix": "203.0.113.0/24",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
    "occurred_at": "2026-11-21T10:00:00.000000Z",
    "received_at": "2026-11-21T10:00:00.250000Z",
}
WORKED_HASH = "bfc8de521a80383ab17ed0401ba3680a4fda94ec3ce5fdaa14358136d6573858"
WORKED_ERASED_HASH = "a17aa1bf79ca5141f49c650905843736901bb2faf4f681e07881f9d04dc1cec5"


def test_the_worked_example_in_the_docs_still_holds() -> None:
    assert chain_record(**WORKED_RECORD) == WORKED_RECORD
    assert record_hash(GENESIS, WORKED_RECORD) == WORKED_HASH
    erased = erased_record(
        site_id="kundetelling",
        seq=2,
        event_id="7d0e5b8c-3f4a-4b6d-9e1f-2a3b4c5d6e7f",
        subject_digest=WORKED_RECORD["subject_digest"],
        received_at="2026-12-01T08:30:00.000000Z",
    )
    assert record_hash(WORKED_HASH, erased) == WORKED_ERASED_HASH
    docs = DOCS.read_text(encoding="utf-8")
    assert WORKED_HASH in docs and WORKED_ERASED_HASH in docs
