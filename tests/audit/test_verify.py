"""The offline verifier: real chains built with cmp.audit.chain, then tampered with."""

from __future__ import annotations

import copy
import gzip
import io
import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import cmp.audit.lines as lines_module
import cmp.audit.parallel as parallel_module
from cmp.audit.chain import (
    GENESIS,
    chain_record,
    erased_record,
    export_row,
    hashed_part,
    record_hash,
    subject_digest,
)
from cmp.audit.record import CHAIN_FIELDS
from cmp.audit.signing import Signer
from cmp.audit.verify import Result, verify_export
from cmp.canonical import canonical_json, sha256_hex
from cmp.cli import main as cli_main

SECRET = b"test-site-secret-0123456789abcdef"


def main(argv: list[str]) -> int:
    """`cmpd verify ARGV` through the one CLI parser (usage errors exit 2, as argparse's)."""
    try:
        return cli_main(["verify", *argv])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2


T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
ACTIONS = ("accept_all", "reject_all", "custom", "withdraw")
Style = Literal["canonical", "plain"]
STYLES: tuple[Style, ...] = ("canonical", "plain")
SIGNER = Signer.generate()


# --- building exports --------------------------------------------------------------------


def make_rows(n: int, *, site: str = "kundetelling") -> list[dict[str, Any]]:
    """A valid chain of ``n`` export rows (seq 1..n) with varied, realistic records."""
    rows: list[dict[str, Any]] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        subject = f"visitor-{seq % 7}"
        statistics = seq % 3 == 0
        record = chain_record(
            site_id=site,
            seq=seq,
            event_id=str(uuid.UUID(int=seq, version=4)),
            subject_digest=subject_digest(SECRET, subject),
            policy_version=1 + seq // 20,
            policy_sha256=sha256_hex(b"policy %d" % (1 + seq // 20)),
            action=ACTIONS[seq % 4],
            purposes={"necessary": True, "statistics": statistics, "marketing": seq % 5 == 0},
            services={"google-analytics": statistics} if seq % 2 else None,
            gpc=seq % 11 == 0,
            language="nb" if seq % 2 else "en",
            source="cmp-banner/1.0",
            page_url="https://kundetelling.no/tjenester/rådgivning",
            origin="https://kundetelling.no",
            ip_prefix="203.0.113.0/24" if seq % 4 else "2001:db8:1234::/48",
            # A quote forces escaping: such lines take the verifier's plain path.
            user_agent='Mozilla/5.0 "Quoted"' if seq % 10 == 3 else "Mozilla/5.0 (X11; Linux)",
            occurred_at=T0 + timedelta(seconds=seq) if seq % 3 else None,
            received_at=T0 + timedelta(seconds=seq, microseconds=seq),
        )
        digest = record_hash(prev, record)
        rows.append(export_row(record, prev_hash=prev, hash=digest, subject_id=subject))
        prev = digest
    return rows


def rehash(rows: list[dict[str, Any]], start: int = 0) -> list[dict[str, Any]]:
    """Recompute prev_hash/hash from index ``start`` on, as a forger would."""
    prev = rows[start - 1]["hash"] if start else rows[0]["prev_hash"]
    for row in rows[start:]:
        row["prev_hash"] = prev
        row["hash"] = prev = record_hash(prev, hashed_part(row))
    return rows


def to_line(row: dict[str, Any], style: Style) -> bytes:
    if style == "canonical":  # what chain.export_line writes: the verifier's fast path
        return canonical_json(row) + b"\n"
    return json.dumps(row).encode() + b"\n"  # key order, spaces, \u escapes: plain path


def write_export(
    tmp_path: Path,
    rows: list[dict[str, Any]],
    *,
    style: Style = "canonical",
    gz: bool = False,
    name: str = "export.jsonl",
) -> Path:
    path = tmp_path / (name + (".gz" if gz else ""))
    data = b"".join(to_line(row, style) for row in rows)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_json(tmp_path: Path, name: str, obj: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def checkpoint_at(rows: list[dict[str, Any]], seq: int, signer: Signer = SIGNER) -> dict[str, Any]:
    row = next(r for r in rows if r["seq"] == seq)
    return signer.sign_checkpoint(row["site_id"], seq, row["hash"], "2026-11-22T00:00:00.000000Z")


def check(
    tmp_path: Path, rows: list[dict[str, Any]], style: Style = "canonical", **kwargs: Any
) -> Result:
    return verify_export(write_export(tmp_path, rows, style=style), **kwargs)


def failed_at(result: Result) -> tuple[int | None, int | None, str]:
    assert not result.ok and result.failure is not None
    return result.failure.line, result.failure.seq, result.failure.reason


# --- full exports ------------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_a_valid_export_verifies(tmp_path: Path, style: Style) -> None:
    rows = make_rows(40)
    result = check(tmp_path, rows, style)
    assert result.ok, result.summary()
    assert (result.records, result.first_seq, result.last_seq) == (40, 1, 40)
    assert result.last_hash == rows[-1]["hash"]
    assert result.anchor_seq is None and result.links_checked == 39
    assert result.summary() == (
        f"OK: 40 records of site kundetelling, seq 1..40, from genesis, "
        f"last hash {rows[-1]['hash']}"
    )


def test_lines_can_be_given_as_strings_or_bytes() -> None:
    rows = make_rows(5)
    assert verify_export([to_line(r, "plain").decode() for r in rows]).ok
    assert verify_export([to_line(r, "canonical") for r in rows]).ok


def test_a_gzip_export_verifies(tmp_path: Path) -> None:
    path = write_export(tmp_path, make_rows(30), gz=True)
    assert verify_export(path).records == 30


def test_an_empty_export_verifies_as_zero_records(tmp_path: Path) -> None:
    assert check(tmp_path, []).summary() == "OK: 0 records"


def test_blank_lines_are_ignored_but_counted(tmp_path: Path) -> None:
    rows = make_rows(4)
    rows[2]["action"] = "reject_all" if rows[2]["action"] != "reject_all" else "custom"
    lines = [to_line(r, "canonical") for r in rows]
    lines.insert(1, b"\n")
    assert failed_at(verify_export(lines))[:2] == (4, 3)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(
    "field", ["action", "purposes", "page_url", "received_at", "policy_sha256"]
)
def test_an_edited_field_is_named_by_its_line(tmp_path: Path, style: Style, field: str) -> None:
    rows = make_rows(20)
    row = rows[6]
    row[field] = {"marketing": True} if field == "purposes" else "x" + str(row[field])[1:]
    line, seq, reason = failed_at(check(tmp_path, rows, style))
    assert (line, seq) == (7, 7)
    assert reason.startswith("hash mismatch")


def test_an_edited_subject_digest_is_detected(tmp_path: Path) -> None:
    rows = make_rows(10)
    rows[4]["subject_digest"] = subject_digest(SECRET, "someone-else")
    assert failed_at(check(tmp_path, rows))[:2] == (5, 5)


def test_an_edited_hash_field_is_detected(tmp_path: Path) -> None:
    rows = make_rows(10)
    rows[4]["hash"] = "f" * 64
    line, _, reason = failed_at(check(tmp_path, rows))
    assert line == 5 and reason.startswith("hash mismatch")


@pytest.mark.parametrize("style", STYLES)
def test_a_deleted_record_is_a_seq_gap(tmp_path: Path, style: Style) -> None:
    rows = make_rows(10)
    del rows[4]
    line, seq, reason = failed_at(check(tmp_path, rows, style))
    assert (line, seq) == (5, 6)
    assert reason == "seq gap after seq 4 (seq 5 missing: deleted records?)"


def test_a_deleted_record_with_renumbered_successors_is_detected(tmp_path: Path) -> None:
    rows = make_rows(10)
    del rows[4]
    for row in rows[4:]:
        row["seq"] -= 1
    line, seq, reason = failed_at(check(tmp_path, rows))
    assert (line, seq) == (5, 5)
    assert "prev_hash does not link" in reason


def test_two_swapped_records_are_detected(tmp_path: Path) -> None:
    rows = make_rows(10)
    rows[3], rows[4] = rows[4], rows[3]
    line, seq, reason = failed_at(check(tmp_path, rows))
    assert (line, seq) == (4, 5) and reason.startswith("seq gap")


def test_an_inserted_record_is_detected(tmp_path: Path) -> None:
    rows = make_rows(10)
    forged = copy.deepcopy(rows[3])
    forged["event_id"] = str(uuid.uuid4())
    forged["prev_hash"] = rows[3]["hash"]
    forged["hash"] = record_hash(forged["prev_hash"], hashed_part(forged))
    rows.insert(4, forged)  # a perfect-looking seq 4 twin after the real seq 4
    line, seq, reason = failed_at(check(tmp_path, rows))
    assert (line, seq) == (5, 4) and reason.startswith("seq out of order")


def test_a_duplicated_line_is_detected(tmp_path: Path) -> None:
    rows = make_rows(6)
    rows.insert(3, rows[2])
    assert failed_at(check(tmp_path, rows))[:3] == (4, 3, "seq out of order (comes after seq 3)")


def test_a_changed_prev_hash_is_detected(tmp_path: Path) -> None:
    rows = make_rows(10)
    rows[5]["prev_hash"] = "a" * 64
    line, seq, reason = failed_at(check(tmp_path, rows))
    assert (line, seq) == (6, 6)
    assert reason == "prev_hash does not link to the hash of seq 5"


def test_a_changed_record_rehashed_by_the_forger_breaks_the_next_link(tmp_path: Path) -> None:
    rows = make_rows(10)
    rows[5]["action"] = "accept_all" if rows[5]["action"] != "accept_all" else "withdraw"
    rows[5]["hash"] = record_hash(rows[5]["prev_hash"], hashed_part(rows[5]))
    assert failed_at(check(tmp_path, rows))[:2] == (7, 7)


def test_seq_one_must_start_from_genesis(tmp_path: Path) -> None:
    rows = rehash(make_rows(3))
    rows[0]["prev_hash"] = "1" * 64
    rehash(rows, 0)
    line, _, reason = failed_at(check(tmp_path, rows))
    assert line == 1 and "genesis" in reason


def test_records_of_two_sites_in_one_export_are_refused(tmp_path: Path) -> None:
    rows = make_rows(5)
    rows[3]["site_id"] = "other-site"
    rehash(rows, 3)
    line, _, reason = failed_at(check(tmp_path, rows))
    assert line == 4 and "site_id 'other-site' differs" in reason


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda line: line[:-20] + b"\n", "malformed JSON"),
        (lambda line: b"[1, 2]\n", "malformed JSON (not an object)"),
        (
            lambda line: line.replace(b'"v":1}', b'"v":1,"v":2}'),
            "malformed JSON (duplicate key 'v'",
        ),
        (lambda line: line.replace(b'"language":"nb"', b'"language":NaN'), "malformed JSON"),
        (lambda line: line.replace(b'"v":1', b'"v":1.0'), "unsupported record version"),
        (lambda line: line.replace(b'"v":1', b'"v":3'), "unsupported record version v=3"),
        (lambda line: line.replace(b'"policy_version":1', b'"policy_version":1.5'), "float"),
        (lambda line: line.replace(b'"seq":3', b'"seq":"3"'), "seq must be a positive integer"),
        (lambda line: line.replace(b'"hash":"', b'"hash":"X'), "hash must be 64 lowercase hex"),
        (lambda line: line.replace(b'"gpc":false,', b""), "missing field 'gpc'"),
        (lambda line: line.replace(b'"prev_hash":', b'"prev_hesh":'), "missing field 'prev_hash'"),
        (lambda line: line.replace(b"r\xc3\xa5d", b"r\xe5d"), "malformed JSON"),
    ],
)
def test_a_broken_line_is_named_with_what_is_wrong(
    tmp_path: Path, damage: Any, reason: str
) -> None:
    lines = [to_line(r, "canonical") for r in make_rows(5)]
    lines[2] = damage(lines[2])
    assert lines[2] != to_line(make_rows(5)[2], "canonical")
    path = tmp_path / "export.jsonl"
    path.write_bytes(b"".join(lines))
    line, _, text = failed_at(verify_export(path))
    assert line == 3
    assert reason in text


# --- anchors, partial exports, erasure ---------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_an_export_anchored_after_retention_verifies(tmp_path: Path, style: Style) -> None:
    rows = make_rows(30)[10:]  # records 1..10 were purged
    result = check(tmp_path, rows, style)
    assert result.ok, result.summary()
    assert (result.anchor_seq, result.anchor_hash) == (10, rows[0]["prev_hash"])
    assert f"seq 11..30, anchored at seq 10 (hash {rows[0]['prev_hash']})" in result.summary()


def test_a_checkpoint_covering_the_anchor_checks_it(tmp_path: Path) -> None:
    full = make_rows(30)
    kept = full[10:]
    checkpoint = checkpoint_at(full, 10)
    assert check(tmp_path, kept, checkpoint=checkpoint, public_key=SIGNER.public_key).ok
    forged = copy.deepcopy(kept)
    forged[0]["prev_hash"] = "e" * 64
    rehash(forged, 0)
    line, seq, reason = failed_at(
        check(tmp_path, forged, checkpoint=checkpoint, public_key=SIGNER.public_key)
    )
    assert (line, seq) == (1, 11) and "signed checkpoint" in reason


def test_a_checkpoint_before_the_anchor_cannot_be_checked(tmp_path: Path) -> None:
    full = make_rows(30)
    result = check(
        tmp_path, full[10:], checkpoint=checkpoint_at(full, 5), public_key=SIGNER.public_key
    )
    assert failed_at(result)[2] == "checkpoint: the export has no record at seq 5 or 6 to check it"


@pytest.mark.parametrize("style", STYLES)
def test_a_partial_export_verifies_with_partial(tmp_path: Path, style: Style) -> None:
    full = make_rows(60)
    subset = [r for r in full if r["seq"] % 7 == 0 or r["seq"] in (30, 31, 32)]
    result = check(tmp_path, subset, style, partial=True)
    assert result.ok, result.summary()
    assert result.links_checked == 2  # 30->31 and 31->32 are consecutive
    assert result.summary().startswith("OK: partial export, 11 records")
    assert not check(tmp_path, subset, style).ok  # gaps are deletions in a full export


def test_a_partial_export_still_detects_edits_and_disorder(tmp_path: Path) -> None:
    full = make_rows(40)
    subset = [r for r in full if r["subject_id"] == "visitor-3"]
    subset[2]["purposes"] = {"necessary": True, "statistics": True, "marketing": True}
    assert failed_at(check(tmp_path, subset, partial=True))[0] == 3
    subset = [r for r in make_rows(40) if r["subject_id"] == "visitor-3"]
    subset[1], subset[2] = subset[2], subset[1]
    assert failed_at(check(tmp_path, subset, partial=True))[2].startswith("seq out of order")


def test_a_partial_export_checks_a_link_between_consecutive_seqs(tmp_path: Path) -> None:
    subset = [r for r in make_rows(20) if r["seq"] in (3, 9, 10)]
    subset[2]["prev_hash"] = "b" * 64  # self-consistent, but does not follow seq 9
    subset[2]["hash"] = record_hash(subset[2]["prev_hash"], hashed_part(subset[2]))
    assert failed_at(check(tmp_path, subset, partial=True))[:2] == (3, 10)


def test_an_erased_subject_still_verifies(tmp_path: Path) -> None:
    rows = make_rows(20)
    erased = "visitor-3"
    for row in rows:
        if row["subject_id"] == erased:
            row["subject_id"] = None  # the id leaves, the hashed digest stays
    record = erased_record(
        site_id="kundetelling",
        seq=21,
        event_id=uuid.uuid4(),
        subject_digest=subject_digest(SECRET, erased),
        received_at=T0 + timedelta(days=3),
    )
    digest = record_hash(rows[-1]["hash"], record)
    rows.append(export_row(record, prev_hash=rows[-1]["hash"], hash=digest, subject_id=None))
    for style in STYLES:
        result = check(tmp_path, rows, style)
        assert result.ok and result.records == 21, result.summary()
    assert sum(r["subject_id"] is None for r in rows) == 4


def test_extra_export_fields_are_not_hashed(tmp_path: Path) -> None:
    rows = [{**r, "recorded_at": "2026-11-21T10:00:00Z", "note": [1, 2]} for r in make_rows(5)]
    assert check(tmp_path, rows).ok


# --- checkpoints -------------------------------------------------------------------------


@pytest.mark.parametrize("at", [1, 17, 25])
def test_a_signed_checkpoint_inside_the_export_verifies(tmp_path: Path, at: int) -> None:
    rows = make_rows(25)
    result = check(tmp_path, rows, checkpoint=checkpoint_at(rows, at), public_key=SIGNER.public_key)
    assert result.ok and result.checkpoint_ok, result.summary()
    assert result.summary().endswith(
        f"; checkpoint seq {at} signed 2026-11-22T00:00:00.000000Z by key {SIGNER.key_id}: ok"
    )


def test_a_rewritten_tail_verifies_alone_but_not_against_a_checkpoint(tmp_path: Path) -> None:
    rows = make_rows(25)
    checkpoint = checkpoint_at(rows, 20)
    rows[14]["action"] = "accept_all" if rows[14]["action"] != "accept_all" else "withdraw"
    rehash(rows, 14)  # a forger who recomputes every later hash
    assert check(tmp_path, rows).ok
    result = check(tmp_path, rows, checkpoint=checkpoint, public_key=SIGNER.public_key)
    assert failed_at(result) == (20, 20, "hash differs from the signed checkpoint at seq 20")


def test_a_checkpoint_with_an_edited_hash_fails(tmp_path: Path) -> None:
    rows = make_rows(10)
    checkpoint = checkpoint_at(rows, 8)
    checkpoint["hash"] = rows[8]["hash"]
    result = check(tmp_path, rows, checkpoint=checkpoint, public_key=SIGNER.public_key)
    assert failed_at(result)[0] is None
    assert str(result.failure).startswith("checkpoint: signature does not verify")


def test_a_checkpoint_signed_with_another_key_fails(tmp_path: Path) -> None:
    rows = make_rows(10)
    forged = checkpoint_at(rows, 8, signer=Signer.generate())
    result = check(tmp_path, rows, checkpoint=forged, public_key=SIGNER.public_key)
    assert "checkpoint: signed by key" in str(result.failure)
    forged["key_id"] = SIGNER.key_id
    result = check(tmp_path, rows, checkpoint=forged, public_key=SIGNER.public_key)
    assert "signature does not verify" in str(result.failure)


def test_a_checkpoint_beyond_the_export_fails(tmp_path: Path) -> None:
    rows = make_rows(30)
    result = check(
        tmp_path, rows[:20], checkpoint=checkpoint_at(rows, 25), public_key=SIGNER.public_key
    )
    assert (
        str(result.failure)
        == "checkpoint: the export stops (seq 20) before the checkpoint at seq 25"
    )


def test_a_checkpoint_of_another_site_fails(tmp_path: Path) -> None:
    rows, others = make_rows(5), make_rows(5, site="annen-side")
    result = check(
        tmp_path, rows, checkpoint=checkpoint_at(others, 3), public_key=SIGNER.public_key
    )
    assert failed_at(result)[0] == 1 and "checkpoint's site 'annen-side'" in str(result.failure)


def test_a_checkpoint_needs_a_public_key(tmp_path: Path) -> None:
    rows = make_rows(3)
    with pytest.raises(ValueError, match="public key"):
        check(tmp_path, rows, checkpoint=checkpoint_at(rows, 2))


# --- parallel checking -------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_workers_find_the_same_first_failure_as_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gz: bool
) -> None:
    monkeypatch.setattr(parallel_module, "BLOCK_BYTES", 3000)  # a few lines per block
    rows = make_rows(120)
    path = write_export(tmp_path, rows, gz=gz)
    assert verify_export(path, workers=2).records == 120
    for index in (0, 37, 38, 39, 40, 119):
        tampered = copy.deepcopy(rows)
        tampered[index]["gpc"] = not tampered[index]["gpc"]
        path = write_export(tmp_path, tampered, gz=gz, name=f"t{index}")
        one, many = verify_export(path, workers=1), verify_export(path, workers=3)
        assert many.failure == one.failure and one.failure is not None
        assert one.failure.line == index + 1
    deleted = rows[:50] + rows[51:]
    path = write_export(tmp_path, deleted, gz=gz, name="deleted")
    assert verify_export(path, workers=2).failure == verify_export(path, workers=1).failure


def test_workers_check_an_anchor_and_a_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel_module, "BLOCK_BYTES", 2048)
    full = make_rows(80)
    path = write_export(tmp_path, full[9:])
    result = verify_export(
        path, workers=2, checkpoint=checkpoint_at(full, 60), public_key=SIGNER.public_key
    )
    assert result.ok and result.anchor_seq == 9 and result.records == 71, result.summary()


# --- property: any edit of a hashed value is caught --------------------------------------

PROPERTY_ROWS = make_rows(6)


def member_spans(row: dict[str, Any], style: Style) -> tuple[bytes, dict[str, tuple[int, int]]]:
    """The line of ``row`` and where each field's value sits in it."""
    keys = sorted(row) if style == "canonical" else list(row)
    parts, spans, offset = [b"{"], {}, 1
    for index, key in enumerate(keys):
        sep = b"" if index == 0 else (b"," if style == "canonical" else b", ")
        head = sep + json.dumps(key).encode() + (b":" if style == "canonical" else b": ")
        value = (
            to_line(row[key], style)[:-1]
            if isinstance(row[key], dict)
            else (
                canonical_json(row[key]) if style == "canonical" else json.dumps(row[key]).encode()
            )
        )
        spans[key] = (offset + len(head), offset + len(head) + len(value))
        parts += [head, value]
        offset += len(head) + len(value)
    line = b"".join(parts) + b"}"
    assert line + b"\n" == to_line(row, style)
    return line, spans


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(0, len(PROPERTY_ROWS) - 1),
    field=st.sampled_from(CHAIN_FIELDS),
    style=st.sampled_from(STYLES),
    where=st.floats(0, 1, exclude_max=True),
    byte=st.integers(0, 255),
)
def test_any_single_byte_edit_of_a_hashed_value_is_caught(
    index: int, field: str, style: Style, where: float, byte: int
) -> None:
    lines = [to_line(r, style)[:-1] for r in PROPERTY_ROWS]
    line, spans = member_spans(PROPERTY_ROWS[index], style)
    start, end = spans[field]
    position = start + int(where * (end - start))
    assume(line[position] != byte and byte != ord("\n"))
    edited = line[:position] + bytes([byte]) + line[position + 1 :]
    try:  # an edit that decodes to the same record is no edit (e.g. a space in plain JSON)
        same = hashed_part(json.loads(edited)) == hashed_part(PROPERTY_ROWS[index])
    except (ValueError, KeyError):
        same = False
    assume(not same)
    lines[index] = edited
    result = verify_export(lines)
    assert result.failure is not None and result.failure.line == index + 1


@settings(max_examples=400, deadline=None)
@given(
    index=st.integers(0, len(PROPERTY_ROWS) - 1),
    position=st.floats(0, 1, exclude_max=True),
    byte=st.integers(0, 255),
)
def test_the_fast_path_agrees_with_the_plain_path(index: int, position: float, byte: int) -> None:
    # The fast path may decline a line, but what it accepts must equal the definition.
    line = to_line(PROPERTY_ROWS[index], "canonical")[:-1]
    at = int(position * len(line))
    edited = line[:at] + bytes([byte]) + line[at + 1 :]
    fast = lines_module.parse_fast(edited)
    if fast is not None:
        assert fast == lines_module.parse_line(edited)


def test_canonical_lines_without_escapes_take_the_fast_path() -> None:
    rows = make_rows(4)
    line = to_line(rows[1], "canonical")[:-1]
    assert lines_module.parse_fast(line) == lines_module.parse_line(line)
    quoted = to_line(rows[2], "canonical")[:-1]  # its user agent holds a quote
    assert lines_module.parse_fast(quoted) is None
    unsorted = line.replace(
        b'"marketing":false,"necessary":true', b'"necessary":true,"marketing":false'
    )
    assert lines_module.parse_fast(unsorted) is None
    # A choice name may start with a colon: the order check reads the key after its quote.
    (colon,) = make_rows(1)
    colon["services"] = {"0": False, ":": True}
    line = to_line(rehash([colon])[0], "canonical")[:-1]
    assert lines_module.parse_fast(line) == lines_module.parse_line(line)


# --- command line ------------------------------------------------------------------------


def test_cli_prints_a_summary_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_export(tmp_path, make_rows(12))
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: 12 records of site kundetelling, seq 1..12, from genesis")


def test_cmpd_verify_takes_every_option_of_the_verifier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One parser: `--workers` reaches the verifier (it once was refused by `cmpd`)."""
    path = write_export(tmp_path, make_rows(12))
    assert main([str(path), "--workers", "2", "--partial"]) == 0
    assert capsys.readouterr().out.startswith("OK: partial export, 12 records")


def test_cli_names_the_first_failing_line_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = make_rows(12)
    rows[8]["language"] = "sv"
    rows[10]["language"] = "sv"
    assert main([str(write_export(tmp_path, rows))]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED: line 9, seq 9: hash mismatch")


def test_cli_checks_a_checkpoint_with_a_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = make_rows(12)
    path = write_export(tmp_path, rows)
    checkpoint = write_json(tmp_path, "cp.json", checkpoint_at(rows, 12))
    key = write_json(tmp_path, "key.json", SIGNER.public_key_document())
    assert main([str(path), "--checkpoint", str(checkpoint), "--public-key", str(key)]) == 0
    assert "checkpoint seq 12" in capsys.readouterr().out
    beyond = write_json(tmp_path, "cp2.json", checkpoint_at(make_rows(20), 20))
    assert main([str(path), "--checkpoint", str(beyond), "--public-key", str(key)]) == 1
    assert "before the checkpoint at seq 20" in capsys.readouterr().out


def test_cli_accepts_partial_and_gzip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    subset = [r for r in make_rows(30) if r["seq"] % 4 == 1]
    path = write_export(tmp_path, subset, gz=True)
    assert main([str(path), "--partial"]) == 0
    assert main([str(path)]) == 1
    assert "seq gap" in capsys.readouterr().out


def test_cli_reads_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = b"".join(to_line(r, "canonical") for r in make_rows(3))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["-"]) == 0
    assert capsys.readouterr().out.startswith("OK: 3 records")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--partial"],
        ["missing.jsonl"],
        ["export.jsonl", "--checkpoint", "cp.json"],
        ["export.jsonl", "--checkpoint", "missing.json", "--public-key", "key.json"],
        ["export.jsonl", "--checkpoint", "cp.json", "--public-key", "export.jsonl"],
        ["export.jsonl", "--checkpoint", "export.jsonl", "--public-key", "key.json"],
        ["export.jsonl", "--workers", "0"],
        ["broken.gz"],
    ],
)
def test_cli_exits_2_on_usage_errors_and_unreadable_files(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    rows = make_rows(3)
    write_export(tmp_path, rows)
    write_json(tmp_path, "cp.json", checkpoint_at(rows, 2))
    write_json(tmp_path, "key.json", SIGNER.public_key_document())
    (tmp_path / "broken.gz").write_bytes(b"\x1f\x8b not really gzip")
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err and not captured.out.startswith("OK")


# --- the auditor's verifier in docs/audit-log.md ------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "audit-log.md"


def docs_verifier() -> str:
    text = DOCS.read_text(encoding="utf-8").split("## A verifier in 15 lines", 1)[1]
    return text.split("```python\n", 1)[1].split("```", 1)[0]


def run_docs_verifier(tmp_path: Path, rows: list[dict[str, Any]], style: Style) -> int:
    import subprocess

    script = tmp_path / "verifier.py"
    script.write_text(docs_verifier(), encoding="utf-8")
    path = write_export(tmp_path, rows, style=style)
    return subprocess.run([sys.executable, str(script), str(path)], capture_output=True).returncode


@pytest.mark.parametrize("style", STYLES)
def test_the_docs_verifier_agrees_with_cmpd_verify(tmp_path: Path, style: Style) -> None:
    rows = make_rows(25)
    assert run_docs_verifier(tmp_path, rows, style) == 0
    assert run_docs_verifier(tmp_path, rows[5:], style) == 0  # anchored
    edited = copy.deepcopy(rows)
    edited[7]["purposes"] = {"necessary": True, "statistics": True, "marketing": True}
    assert run_docs_verifier(tmp_path, edited, style) != 0
    assert run_docs_verifier(tmp_path, rows[:10] + rows[11:], style) != 0
