"""Record version 2 offline: the auditor's test vectors (docs/audit-log.md) verify, a
mixed chain of versions 1 and 2 verifies end to end, and every way of breaking a
disclosure is refused with a message naming the record and the field."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from cmp.audit.chain import GENESIS, commit, export_line, record_hash
from cmp.audit.lines import parse_fast, parse_line
from cmp.audit.verify import verify_export
from cmp.canonical import canonical_json

DOCS = Path(__file__).resolve().parents[2] / "docs" / "audit-log.md"


def vectors() -> dict[str, Any]:
    """The worked example and the version 2 vectors, as the auditor's page prints them."""
    text = DOCS.read_text("utf-8")
    blocks = re.findall(r"^```\w*\n(.*?)\n```$", text, re.DOTALL | re.MULTILINE)
    v2 = text.split("### Test vectors", 1)[1].split("### Erasure in version 2", 1)[0]
    v2_blocks = re.findall(r"^```\w*\n(.*?)\n```$", v2, re.DOTALL | re.MULTILINE)
    salts = dict(re.findall(r"^\| `(\w+)` \| `([0-9a-f]{32})` \|", v2, re.MULTILINE))
    v1_export = next(b for b in blocks if b.startswith('{"action":"custom"') and "\n" in b)
    return {
        "v1_lines": v1_export.splitlines(),
        "canonical": v2_blocks[0],
        "hash": v2_blocks[1],
        "disclosed": v2_blocks[2],
        "erased": v2_blocks[3],
        "salts": salts,
    }


def test_the_documented_vectors_verify_and_recompute() -> None:
    doc = vectors()
    disclosed = json.loads(doc["disclosed"])
    record = {k: v for k, v in json.loads(doc["canonical"]).items()}
    assert canonical_json(record).decode() == doc["canonical"]
    stated = re.search(r"these (\d+) bytes", DOCS.read_text("utf-8").split("### Test vectors")[1])
    assert stated is not None and len(doc["canonical"].encode()) == int(stated.group(1))
    assert record_hash(disclosed["prev_hash"], record) == doc["hash"] == disclosed["hash"]
    for field, salt in doc["salts"].items():
        # The salts are what the page says they are made of, and open the commitments.
        assert salt == hashlib.sha256(f"example salt {field}".encode()).digest()[:16].hex()
        assert commit(bytes.fromhex(salt), disclosed[field]) == record[f"{field}_sha256"]
    for line in (doc["disclosed"], doc["erased"]):
        parsed = parse_line(line.encode())
        assert parsed[3] == parsed[4] == doc["hash"]
        assert parse_fast(line.encode()) == parsed
    # A mixed chain: the version 1 example (seq 1, 2), then seq 3 in version 2.
    chain = [*doc["v1_lines"], doc["disclosed"]]
    result = verify_export(chain)
    assert result.ok and result.records == 3, result.summary()
    assert verify_export([*doc["v1_lines"], doc["erased"]]).ok


def _broken(line: str, change: Any) -> str:
    row = json.loads(line)
    change(row)
    return canonical_json(row).decode()


def _other_salt(row: dict[str, Any]) -> None:
    row["user_agent_salt"] = row["page_url_salt"]  # another field's (or record's) salt


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda row: row.update(user_agent_sha256="0" * 64),
            "seq 3",  # a tampered commitment breaks the hash of the record
        ),
        (
            lambda row: row.update(page_url="https://kundetelling.no/other"),
            "page_url and page_url_salt do not match page_url_sha256",
        ),
        (
            lambda row: row.update(ip_prefix_salt="00" * 16),
            "ip_prefix and ip_prefix_salt do not match ip_prefix_sha256",
        ),
        (_other_salt, "user_agent and user_agent_salt do not match user_agent_sha256"),
        (
            lambda row: row.update(subject_digest_salt=None),
            "subject_digest is disclosed without subject_digest_salt",
        ),
        (
            lambda row: row.update(user_agent=None),
            "user_agent_salt is given without user_agent",
        ),
        (lambda row: row.update(page_url_salt="xyz"), "page_url_salt must be 32 lowercase hex"),
    ],
)
def test_a_broken_disclosure_is_named_by_record_and_field(change: Any, message: str) -> None:
    doc = vectors()
    line = _broken(doc["disclosed"], change)
    result = verify_export([*doc["v1_lines"], line])
    assert not result.ok
    text = str(result.failure)
    assert message in text and "3" in text, text


def test_a_value_disclosed_with_another_records_salt_is_refused() -> None:
    """Two version 2 records of one chain; the second's page URL opened with the first's
    salt (the same URL, so only the salt is wrong)."""
    doc = vectors()
    first = json.loads(doc["disclosed"])
    salt = bytes.fromhex("11" * 16)
    record = {k: first[k] for k in json.loads(doc["canonical"])}
    record.update(
        seq=4,
        event_id="0e6f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
        page_url_sha256=commit(salt, first["page_url"]),
        subject_digest_sha256=commit(salt, first["subject_digest"]),
        ip_prefix_sha256=None,
        user_agent_sha256=None,
    )
    second = export_line(
        record,
        prev_hash=first["hash"],
        hash=record_hash(first["hash"], record),
        subject_id=None,
        subject_digest=first["subject_digest"],
        subject_digest_salt=salt.hex(),
        page_url=first["page_url"],
        page_url_salt=first["page_url_salt"],  # the first record's salt
    ).decode()[:-1]
    result = verify_export([*doc["v1_lines"], doc["disclosed"], second])
    assert not result.ok
    assert "seq 4" in str(result.failure) or "line 4" in str(result.failure)
    assert "page_url and page_url_salt do not match" in str(result.failure)


def test_genesis_is_what_the_worked_example_starts_from() -> None:
    assert json.loads(vectors()["v1_lines"][0])["prev_hash"] == GENESIS
