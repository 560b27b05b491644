"""The tamper-evident log through the API: export, verify, erasure, purge, checkpoints."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from cmp.app import create_app
from cmp.appkeys import SIGNER
from cmp.audit.signing import parse_public_key, verify_checkpoint
from cmp.audit.verify import verify_export
from cmp.maintenance import purge, store_checkpoints
from tests.factories import (
    ADMIN,
    ORIGIN,
    age_records,
    cmpd,
    event,
    make_key,
    make_site,
    policy_body,
    retain_one_day,
)

HDR = {"Origin": ORIGIN}


@pytest.fixture
async def site(client: TestClient) -> dict[str, Any]:
    site_id = await make_site(client)
    return {"id": site_id, "audit": await make_key(client, site_id, "audit")}


async def export(client: TestClient, site: dict[str, Any], query: str = "") -> list[str]:
    r = await client.get(f"/v1/sites/{site['id']}/events?{query}", headers=site["audit"])
    assert r.status == 200, await r.text()
    assert r.headers["Content-Type"].startswith("application/x-ndjson")
    return [line for line in (await r.text()).splitlines() if line]


async def fill(
    client: TestClient, site: dict[str, Any], n: int, **fields: Any
) -> list[dict[str, Any]]:
    bodies = [event(**fields) for _ in range(n)]
    for i in range(0, n, 100):
        r = await client.post(
            f"/v1/sites/{site['id']}/events", json={"events": bodies[i : i + 100]}, headers=HDR
        )
        assert r.status == 201
    return bodies


async def test_full_export_verifies_and_carries_every_field(
    client: TestClient, site: dict[str, Any]
) -> None:
    bodies = await fill(client, site, 5, page_url="https://shop.example/a?x=1")
    lines = await export(client, site)
    assert len(lines) == 5
    result = verify_export(lines)
    assert result.ok, result.summary()
    first = json.loads(lines[0])
    assert first["seq"] == 1 and first["prev_hash"] == "0" * 64
    assert first["subject_id"] == bodies[0]["subject_id"]
    assert first["page_url"] == "https://shop.example/a"
    assert first["received_at"].endswith("Z") and len(first["subject_digest"]) == 64
    r = await client.get(f"/v1/sites/{site['id']}/policies/1", headers=ADMIN)
    assert first["policy_sha256"] == (await r.json())["content_sha256"]


async def test_export_lines_are_canonical_json(client: TestClient, site: dict[str, Any]) -> None:
    """Lines are exactly canonical_json of the row (so verifiers can hash their bytes)."""
    from cmp.canonical import canonical_json

    await fill(client, site, 1, source='banner "ø" 1.0', page_url="https://shop.example/æøå")
    await fill(
        client,
        site,
        1,
        action="custom",
        language="en",
        occurred_at="2026-11-21T10:00:00.5+01:00",
        purposes={"preferences": True, "statistics": False, "marketing": False},
    )
    r = await client.post(
        f"/v1/sites/{site['id']}/events",
        json=event(),
        headers={**HDR, "User-Agent": 'Tab\there, quote" and ✓'},
    )
    assert r.status == 201
    body = (await fill(client, site, 1))[0]
    r = await client.delete(f"/v1/sites/{site['id']}/subjects/{body['subject_id']}", headers=ADMIN)
    assert r.status == 200
    lines = await export(client, site)
    assert len(lines) == 5 and json.loads(lines[-1])["purposes"] is None
    for line in lines:
        assert line.encode() == canonical_json(json.loads(line)), line
    assert json.loads(lines[1])["occurred_at"] == "2026-11-21T09:00:00.500000Z"
    assert verify_export(lines).ok


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_cmpd_export_writes_the_apis_lines_and_cmpd_verify_accepts_them(
    client: TestClient,
    site: dict[str, Any],
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """The operator's export (straight from the database, with progress) is the auditor's
    export byte for byte, erased subject included, and `cmpd verify` accepts its file."""
    bodies = await fill(client, site, 6, page_url="https://shop.example/a")
    gone = bodies[2]["subject_id"]
    r = await client.delete(f"/v1/sites/{site['id']}/subjects/{gone}", headers=ADMIN)
    assert r.status == 200
    out = tmp_path / "export" / "log.jsonl"  # beside CMP_DATA_DIR, not in it
    out.parent.mkdir()
    code, _, err = await cmpd(capsys, "export", "--site", site["id"], "--out", str(out))
    assert code == 0, err
    assert "100% 7/7" in err and f"exported 7 records of {site['id']}" in err
    written = out.read_text("utf-8").splitlines()
    assert written == await export(client, site)
    assert gone not in out.read_text("utf-8") and json.loads(written[-1])["action"] == "erased"
    assert files_in(out.parent) == ["log.jsonl"]  # no .part left behind
    code, summary, _ = await cmpd(capsys, "verify", str(out))
    assert code == 0 and "OK" in summary, summary
    out.write_text(out.read_text("utf-8").replace("/a", "/b", 1), "utf-8")
    code, summary, _ = await cmpd(capsys, "verify", str(out))
    assert code == 1 and "seq 1" in summary, summary


async def test_cmpd_export_of_an_unknown_site_says_so_and_writes_nothing(
    cli_env: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "export" / "log.jsonl"
    out.parent.mkdir()
    code, _, err = await cmpd(capsys, "export", "--site", "no-such-site", "--out", str(out))
    assert code == 1 and "no site 'no-such-site'" in err
    assert files_in(out.parent) == [], "a file for a site that does not exist"


async def test_edited_record_is_named_by_the_verifier(
    client: TestClient, site: dict[str, Any]
) -> None:
    await fill(client, site, 4)
    lines = await export(client, site)
    record = json.loads(lines[2])
    record["action"] = "reject_all"
    lines[2] = json.dumps(record)
    result = verify_export(lines)
    assert not result.ok and result.failure is not None and result.failure.seq == 3


async def test_chain_stays_correct_under_concurrent_batches(
    client: TestClient, site: dict[str, Any]
) -> None:
    async def batch() -> int:
        r = await client.post(
            f"/v1/sites/{site['id']}/events",
            json={"events": [event() for _ in range(20)]},
            headers=HDR,
        )
        return r.status

    assert set(await asyncio.gather(*(batch() for _ in range(25)))) == {201}
    lines = await export(client, site)
    assert len(lines) == 500
    assert verify_export(lines).ok


async def test_two_workers_writing_one_site_keep_one_chain(
    aiohttp_client: Any, settings: Any, db_dsn: str, client: TestClient, site: dict[str, Any]
) -> None:
    """Two apps on one database are two workers with their own group commits; writes
    alternate between them, with a retry and a refused conflict on the way. The log
    stays one gap-free chain that verifies."""
    other = await aiohttp_client(create_app(settings, db_dsn))
    url = f"/v1/sites/{site['id']}/events"
    retried = event()

    async def post(writer: TestClient, bodies: list[dict[str, Any]], status: int = 201) -> None:
        r = await writer.post(url, json={"events": bodies}, headers=HDR)
        assert r.status == status, await r.text()

    for step in range(12):
        writer = client if step % 3 else other
        await post(writer, [event() for _ in range(3)])
        if step == 7:
            await post(writer, [retried, event()])
            await post(writer, [retried, event()])  # a retry: a duplicate in the batch
        if step == 9:  # a conflicting reuse: the whole request refused, nothing stored
            await post(writer, [dict(retried, action="reject_all"), event()], 409)
    lines = await export(client, site)
    assert len(lines) == 12 * 3 + 3
    result = verify_export(lines)
    assert result.ok, result.summary()
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, len(lines) + 1))


async def test_filtered_exports_verify_record_by_record(
    client: TestClient, site: dict[str, Any]
) -> None:
    bodies = await fill(client, site, 6)
    r = await client.post(f"/v1/sites/{site['id']}/policies", json=policy_body(), headers=ADMIN)
    assert r.status == 201
    await fill(client, site, 3, policy_version=2)
    subject = bodies[1]["subject_id"]
    mine = await export(client, site, f"subject_id={subject}")
    assert [json.loads(x)["subject_id"] for x in mine] == [subject]
    v2 = await export(client, site, "policy_version=2")
    assert [json.loads(x)["seq"] for x in v2] == [7, 8, 9]
    assert verify_export(v2, partial=True).ok
    assert verify_export(mine, partial=True).ok
    assert await export(client, site, "from=2999-01-01") == []


async def test_bad_export_parameters_are_422(client: TestClient, site: dict[str, Any]) -> None:
    queries = (
        "from=yesterday",
        "policy_version=x",
        "policy_version=0",
        "format=xml",
        "subject_id=a%20b",
        # RFC 3339 or a date, nothing looser: Unix seconds and offset-less times are not.
        "to=0.5",
        "from=1700000000",
        "from=2026-01-01T00:00:00",
    )
    for query in queries:
        r = await client.get(f"/v1/sites/{site['id']}/events?{query}", headers=site["audit"])
        assert r.status == 422, query


async def test_export_gzip_and_csv(client: TestClient, site: dict[str, Any]) -> None:
    await fill(client, site, 3)
    r = await client.get(
        f"/v1/sites/{site['id']}/events",
        auto_decompress=False,
        headers={**site["audit"], "Accept-Encoding": "gzip"},
    )
    assert r.headers["Content-Encoding"] == "gzip"
    lines = gzip.decompress(await r.read()).decode().splitlines()
    assert verify_export(lines).ok
    r = await client.get(f"/v1/sites/{site['id']}/events?format=csv", headers=site["audit"])
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(await r.text())))
    assert [int(row["seq"]) for row in rows] == [1, 2, 3]
    assert rows[0]["hash"] == json.loads(lines[0])["hash"]
    assert json.loads(rows[0]["purposes"])["necessary"] is True


async def test_csv_cells_never_start_a_formula_and_the_jsonl_stays_exact(
    client: TestClient, site: dict[str, Any], tmp_path: Path
) -> None:
    formulas = ['=HYPERLINK("http://x")', "@SUM(1)", "+1", "-1", "=cmd|' /C calc'!A0"]
    for n, text in enumerate(formulas):
        r = await client.post(
            f"/v1/sites/{site['id']}/events",
            json=event(f"-{n}", source=text),  # subject ids may start with "-"
            headers={**HDR, "User-Agent": text},
        )
        assert r.status == 201, await r.text()
    r = await client.get(f"/v1/sites/{site['id']}/events?format=csv", headers=site["audit"])
    text = await r.text()
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [(row["source"], row["user_agent"], row["subject_id"]) for row in rows] == [
        (f"'{t}", f"'{t}", f"'-{n}") for n, t in enumerate(formulas)
    ]
    assert '"\'=HYPERLINK(""http://x"")"' in text  # prefixed and quoted (OWASP)
    # The JSONL holds the values exactly as they came, and verifies.
    lines = await export(client, site)
    records = [json.loads(line) for line in lines]
    assert [(x["source"], x["user_agent"], x["subject_id"]) for x in records] == [
        (t, t, f"-{n}") for n, t in enumerate(formulas)
    ]
    export_file = tmp_path / "log.jsonl"
    export_file.write_text("\n".join(lines) + "\n")
    from cmp.cli import main

    assert main(["verify", str(export_file)]) == 0


async def test_export_needs_audit_scope(client: TestClient, site: dict[str, Any]) -> None:
    path = f"/v1/sites/{site['id']}/events"
    assert (await client.get(path)).status == 401
    assert (
        await client.get(path, headers=await make_key(client, site["id"], "read"))
    ).status == 403
    other = await make_site(client)
    assert (await client.get(path, headers=await make_key(client, other, "audit"))).status == 404


async def test_access_request_returns_the_subjects_history(
    client: TestClient, site: dict[str, Any]
) -> None:
    first = (await fill(client, site, 1))[0]
    await fill(client, site, 2)
    r = await client.post(
        f"/v1/sites/{site['id']}/events",
        headers=HDR,
        json=event(first["subject_id"], action="withdraw"),
    )
    assert r.status == 201
    r = await client.get(
        f"/v1/sites/{site['id']}/subjects/{first['subject_id']}/events", headers=site["audit"]
    )
    history = (await r.json())["events"]
    assert [e["action"] for e in history] == ["accept_all", "withdraw"]
    assert all(e["subject_id"] == first["subject_id"] for e in history)


async def test_erasure_removes_the_id_everywhere_and_keeps_the_chain(
    client: TestClient, site: dict[str, Any], db: asyncpg.Connection
) -> None:
    bodies = await fill(client, site, 4)
    gone = bodies[1]["subject_id"]
    await client.post(
        f"/v1/sites/{site['id']}/events", headers=HDR, json=event(gone, action="reject_all")
    )
    path = f"/v1/sites/{site['id']}/subjects/{gone}"
    assert (await client.delete(path, headers=site["audit"])).status == 403
    r = await client.delete(path, headers=ADMIN)
    assert r.status == 200
    body = await r.json()
    assert body["erased_events"] == 2 and body["erased_record_seq"] == 6
    lines = await export(client, site)
    text = "\n".join(lines)
    assert gone not in text
    assert verify_export(lines).ok
    erased = json.loads(lines[-1])
    assert erased["action"] == "erased" and erased["subject_id"] is None
    # Nothing links the erasure to the records it erased: the digest is gone from all,
    # and the erasure's commitment to it opens with no salt the export shows.
    assert erased["subject_digest"] is None and erased["subject_digest_salt"] is None
    assert json.loads(lines[1])["subject_digest"] is None
    assert erased["subject_digest_sha256"] != json.loads(lines[1])["subject_digest_sha256"]
    assert gone not in str(
        await db.fetch("SELECT * FROM consent_state WHERE site_id = $1", site["id"])
    )
    read = await make_key(client, site["id"], "read")
    r = await client.get(f"/v1/sites/{site['id']}/subjects/{gone}/consent", headers=read)
    assert (await r.json())["status"] == "none"


async def test_checkpoint_is_signed_and_verifiable_offline(
    client: TestClient, site: dict[str, Any], tmp_path: Path, capsys: Any
) -> None:
    await fill(client, site, 3)
    r = await client.get(f"/v1/sites/{site['id']}/log/checkpoint", headers=site["audit"])
    checkpoint = await r.json()
    key_doc = await (await client.get("/v1/log/public-key")).json()
    key = parse_public_key(json.dumps(key_doc))
    assert checkpoint["seq"] == 3 and verify_checkpoint(checkpoint, key)
    export_file = tmp_path / "log.jsonl"
    export_file.write_text("\n".join(await export(client, site)) + "\n")
    (tmp_path / "cp.json").write_text(json.dumps(checkpoint))
    (tmp_path / "key.json").write_text(json.dumps(key_doc))
    from cmp.cli import main

    argv = [
        "verify",
        str(export_file),
        "--checkpoint",
        str(tmp_path / "cp.json"),
        "--public-key",
        str(tmp_path / "key.json"),
    ]
    assert main(argv) == 0
    forged = {**checkpoint, "hash": "f" * 64}
    (tmp_path / "cp.json").write_text(json.dumps(forged))
    assert main(argv) != 0
    capsys.readouterr()


async def test_purge_keeps_the_chain_verifiable_from_a_signed_anchor(
    client: TestClient, site: dict[str, Any], db: asyncpg.Connection
) -> None:
    await fill(client, site, 5)
    await retain_one_day(client, site["id"])
    # Age the first three records past retention (received_at is the server's clock; a
    # superuser session may bypass the append-only trigger the app itself cannot).
    await age_records(db, site["id"], through_seq=3)
    lines_before = await export(client, site)
    signer = client.app[SIGNER]  # type: ignore[index]
    done = [p for p in await purge(db, signer) if p.site_id == site["id"]]
    assert done and done[0].deleted == 3 and done[0].through_seq == 3
    lines = await export(client, site)
    assert [json.loads(x)["seq"] for x in lines] == [4, 5]
    result = verify_export(lines)
    assert result.ok, result.summary()
    anchor = json.loads(lines_before[2])["hash"]
    assert json.loads(lines[0])["prev_hash"] == anchor
    r = await client.get(f"/v1/sites/{site['id']}/log/checkpoints", headers=site["audit"])
    stored = (await r.json())["checkpoints"]
    assert any(c["kind"] == "anchor" and c["seq"] == 3 and c["hash"] == anchor for c in stored)


async def test_periodic_checkpoints_are_stored_when_the_log_grew(
    client: TestClient, site: dict[str, Any], db: asyncpg.Connection
) -> None:
    signer = client.app[SIGNER]  # type: ignore[index]
    await fill(client, site, 2)
    async with db.transaction():
        assert await store_checkpoints(db, signer) >= 1
    async with db.transaction():
        await store_checkpoints(db, signer)  # nothing grew: no second one for this site
    r = await client.get(f"/v1/sites/{site['id']}/log/checkpoints", headers=site["audit"])
    stored = (await r.json())["checkpoints"]
    assert [(c["kind"], c["seq"]) for c in stored] == [("periodic", 2)]
    assert verify_checkpoint(stored[0], signer.public_key)
