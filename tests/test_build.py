"""The write path's record (`cmp.ingest.build`) against the record's one declaration.

`tests/store/test_record.py` checks every reader of a stored record against
`cmp.audit.record`; this checks the one writer, without a database: the fields it
builds are the declared ones, each passes the declaration's checks, and the two halves
the database splices `seq` between are exactly the canonical JSON of the record.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from cmp.audit.chain import (
    SALT_DRAW,
    chain_record,
    commit,
    disclosure_problem,
    draw_salts,
    export_row,
    salt_slices,
)
from cmp.audit.record import RECORD_VERSION, SALT_BYTES, layout
from cmp.canonical import canonical_json
from cmp.consent import PolicyView
from cmp.ingest.build import SEQ_MARK, build
from cmp.ingest.facts import request_facts
from cmp.models import EventIn, PolicyVersion
from cmp.store.sites import StoredSite
from tests.factories import policy_body, site_body

NOW = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)


def _site() -> StoredSite:
    return StoredSite.model_validate(
        {
            **site_body(),
            "site_id": "shop",
            "created_at": NOW,
            "updated_at": NOW,
            "subject_key": b"k" * 32,
            "stats_link_key": b"l" * 32,
        }
    )


def _view() -> PolicyView:
    body = policy_body()
    policy = PolicyVersion.model_validate(
        {
            **body,
            "site_id": "shop",
            "version": 1,
            "material": True,
            "content_sha256": "a" * 64,
            "published_at": NOW,
        }
    )
    return PolicyView.of(policy)


@pytest.mark.parametrize(
    "optional",
    [
        {},
        {
            "language": "nb",
            "source": 'banner "v2" ✓',
            "page_url": "https://shop.example/p",
            "occurred_at": (NOW - timedelta(seconds=3)).isoformat(),
        },
    ],
)
def test_the_built_record_is_the_declared_record(optional: dict[str, str]) -> None:
    view = _view()
    event = EventIn.model_validate(
        {
            "event_id": "0b9f6f0e-7d1c-4c49-9d55-2f7c2f8f5a11",
            "subject_id": "visitor-1",
            "policy_version": 1,
            "action": "accept_all",
            **optional,
        }
    )
    facts = request_facts(
        origin="https://shop.example",
        user_agent="Mozilla/5.0 ✓",
        client_ip="192.0.2.77",
        sec_gpc="1",
        now=NOW,
    )
    purposes = {p: True for p in view.purposes}
    new = build(_site(), view, event, purposes, {}, facts)

    assert tuple(sorted(new.record)) == tuple(sorted(layout(RECORD_VERSION).names))
    stored = {**new.record, "seq": 7}
    assert chain_record(**stored) == stored
    assert (new.head + "7" + new.tail).encode() == canonical_json(stored)
    assert new.record["seq"] == SEQ_MARK
    assert new.disclosed["ip_prefix"] == "192.0.2.0/24"
    # Each personal value is committed to with its own fresh salt, and opens with it; the
    # row's commitments are the record's, as bytes.
    by_column = salt_slices(new.salts)
    salts = [by_column[salt] for _, _, salt in layout(RECORD_VERSION).disclosures]
    assert len(set(salts)) == len(salts) and all(len(s) == SALT_BYTES for s in salts)
    for field, commitment, salt in layout(RECORD_VERSION).disclosures:
        assert new.record[commitment] == commit(by_column[salt], new.disclosed[field.name])
        assert field.name not in new.record
    assert [d and d.hex() for d in new.commitments] == [
        new.record[c] for _, c, _ in layout(RECORD_VERSION).disclosures
    ]
    row = export_row(
        stored,
        prev_hash="0" * 64,
        hash="1" * 64,
        subject_id="visitor-1",
        **{
            name: value
            for field, _, salt in layout(RECORD_VERSION).disclosures
            for name, value in (
                (field.name, new.disclosed[field.name]),
                (salt, by_column[salt].hex() if new.disclosed[field.name] else None),
            )
        },
    )
    assert disclosure_problem(row) is None


def test_salts_are_fresh_per_record_and_per_process() -> None:
    """Salts are cut from a buffer of random bytes: never the same slice twice, not even
    in a forked worker, whose copy of the buffer would otherwise repeat its parent's."""
    draws = [draw_salts() for _ in range(500)]  # several buffers' worth
    assert len(set(draws)) == len(draws) and {len(d) for d in draws} == {SALT_DRAW}
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first draw and leave at once
        os.write(write, draw_salts())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, SALT_DRAW)
    os.close(read)
    os.close(write)
    assert child != draw_salts()
