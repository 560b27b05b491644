"""Independent verification: Go's golang.org/x/mod/sumdb/note and sumdb/tlog (Debian's
golang-golang-x-mod-dev, built offline in GOPATH mode) check the checkpoint signatures,
receipts' inclusion proofs and a consistency proof that this server produced.

Skipped where Go or those sources are missing, except under CI=true (.ci/run installs
them), where that is a failure."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from cmp.canonical import canonical_json
from tests.api.test_receipts import post, receipt_of, settle
from tests.factories import event, make_key, make_site


def check(binary: Path, tmp_path: Path, doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"input-{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(doc), "utf-8")
    return subprocess.run(
        [str(binary), str(path)], capture_output=True, text=True, timeout=120, check=False
    )


async def test_go_verifies_cmps_checkpoints_receipts_and_consistency(
    client: TestClient,
    db: asyncpg.Connection,
    tlogcheck: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    site_id = await make_site(client)
    audit = await make_key(client, site_id, "audit")
    first = [event() for _ in range(37)]
    await post(client, site_id, first)
    await settle(client, db, site_id)
    second = [event(page_url="https://shop.example/rådgivning") for _ in range(300)]
    await post(client, site_id, second)
    await settle(client, db, site_id)
    r = await client.get("/v1/log/public-key", params={"site_id": site_id})
    vkey = (await r.json())["note_verifier_key"]
    receipts = []
    for body in (first[0], first[36], second[0], second[150], second[299]):
        receipt = await receipt_of(client, site_id, body)
        receipts.append(
            {
                "record": base64.b64encode(canonical_json(receipt["record"])).decode(),
                "leaf_index": receipt["leaf_index"],
                "checkpoint": receipt["checkpoint"],
                "inclusion_proof": receipt["inclusion_proof"],
                "disclosures": receipt.get("disclosures", {}),
            }
        )
    r = await client.get(f"/v1/sites/{site_id}/log/proof/consistency?from=37&to=337", headers=audit)
    proof = await r.json()
    doc = {
        "verifier_key": vkey,
        "receipts": receipts,
        "consistency": [
            {
                "old": proof["from_checkpoint"],
                "new": proof["checkpoint"],
                "consistency_proof": proof["consistency_proof"],
            }
        ],
    }
    done = check(tlogcheck, tmp_path, doc)
    assert done.returncode == 0, done.stderr
    # Each version 2 receipt discloses the subject digest, IP prefix and agent, and the
    # page URL where the event had one (the three of `second`): 2 × 3 + 3 × 4.
    assert done.stdout.strip() == (
        "go tlog verifier: 7 checkpoint signatures, 5 inclusion proofs, "
        "1 consistency proofs, 18 disclosures verified"
    )
    with capsys.disabled():
        print(f"\n{done.stdout.strip()}")
    # The Go side is not a rubber stamp: each tampering fails there too.
    tampered = json.loads(json.dumps(doc))
    tampered["receipts"][1]["leaf_index"] = 35
    assert "inclusion proof" in check(tlogcheck, tmp_path, tampered).stderr
    tampered = json.loads(json.dumps(doc))
    tampered["receipts"][0]["checkpoint"] = doc["receipts"][0]["checkpoint"].replace(
        "\n337\n", "\n338\n"
    )
    assert "checkpoint signature" in check(tlogcheck, tmp_path, tampered).stderr
    tampered = json.loads(json.dumps(doc))
    tampered["consistency"][0]["consistency_proof"][0] = base64.b64encode(b"\0" * 32).decode()
    assert "consistency" in check(tlogcheck, tmp_path, tampered).stderr
    # A disclosed value that is not the committed one, or opened with another salt.
    tampered = json.loads(json.dumps(doc))
    tampered["receipts"][2]["disclosures"]["page_url"]["value"] = "https://shop.example/other"
    assert "page_url and page_url_salt do not match" in check(tlogcheck, tmp_path, tampered).stderr
    tampered = json.loads(json.dumps(doc))
    other = doc["receipts"][3]["disclosures"]["user_agent"]["salt"]
    tampered["receipts"][2]["disclosures"]["user_agent"]["salt"] = other
    assert "user_agent and user_agent_salt" in check(tlogcheck, tmp_path, tampered).stderr
