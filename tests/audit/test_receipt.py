"""`cmpd verify-receipt`: a good receipt passes, and each tampering of the issue's
acceptance list is rejected with a message that names it."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cmp.audit import merkle, notes
from cmp.audit.chain import chain_record
from cmp.audit.signing import Signer
from cmp.canonical import canonical_json
from cmp.cli import main as cmpd

T0 = datetime(2026, 11, 21, 10, tzinfo=UTC)


def records(site_id: str, n: int) -> list[dict[str, Any]]:
    return [
        chain_record(
            site_id=site_id,
            seq=i + 1,
            event_id=str(uuid.UUID(int=i + 1)),
            subject_digest=f"{i:064x}",
            policy_version=1,
            policy_sha256="a" * 64,
            action="accept_all",
            purposes={"necessary": True},
            received_at=T0 + timedelta(seconds=i),
        )
        for i in range(n)
    ]


class Log:
    """A site's log as the server would hold it, in memory."""

    def __init__(self, signer: Signer, site_id: str, n: int, host: str = "cmp.example") -> None:
        self.signer, self.site_id = signer, site_id
        self.origin = notes.origin_of(host, site_id)
        self.records = records(site_id, n)
        self.leaves = [merkle.leaf_hash(canonical_json(r)) for r in self.records]

    def get(self) -> merkle.Getter:
        return merkle.list_getter(self.leaves)

    def checkpoint(self, size: int) -> str:
        root = merkle.tree_root(size, self.get())
        return notes.sign_checkpoint(self.signer, self.origin, size, root)

    def receipt(self, index: int, size: int) -> dict[str, Any]:
        proof = merkle.inclusion_proof(index, size, self.get())
        return {
            "record": self.records[index],
            "leaf_index": index,
            "checkpoint": self.checkpoint(size),
            "inclusion_proof": [base64.b64encode(p).decode() for p in proof],
        }

    def consistency(self, old: int, new: int) -> dict[str, Any]:
        proof = merkle.consistency_proof(old, new, self.get())
        return {
            "from": old,
            "to": new,
            "from_checkpoint": self.checkpoint(old),
            "checkpoint": self.checkpoint(new),
            "consistency_proof": [base64.b64encode(p).decode() for p in proof],
        }


@pytest.fixture
def signer() -> Signer:
    return Signer.generate()


def run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    receipt: dict[str, Any],
    key: str,
    *extra: str,
) -> tuple[int, str]:
    (tmp_path / "receipt.json").write_text(json.dumps(receipt), "utf-8")
    (tmp_path / "key").write_text(key, "utf-8")
    receipt_file, key_file = str(tmp_path / "receipt.json"), str(tmp_path / "key")
    code = cmpd(["verify-receipt", receipt_file, "--public-key", key_file, *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


def doc(signer: Signer) -> str:
    return json.dumps(signer.public_key_document())


def test_a_good_receipt_passes_with_every_key_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signer: Signer
) -> None:
    log = Log(signer, "shop", 13)
    receipt = log.receipt(6, 13)
    for key in (
        doc(signer),
        signer.public_key_document()["pem"],
        notes.verifier_key(log.origin, signer.public_key),
    ):
        code, out = run(tmp_path, capsys, receipt, key)
        assert code == 0, out
        assert out.startswith("OK: record seq 7") and "cmp.example/sites/shop" in out


def test_through_cmpd(tmp_path: Path, capsys: pytest.CaptureFixture[str], signer: Signer) -> None:
    log = Log(signer, "shop", 3)
    (tmp_path / "r.json").write_text(json.dumps(log.receipt(0, 3)), "utf-8")
    (tmp_path / "k.json").write_text(doc(signer), "utf-8")
    assert (
        cmpd(["verify-receipt", str(tmp_path / "r.json"), "--public-key", str(tmp_path / "k.json")])
        == 0
    )
    assert capsys.readouterr().out.startswith("OK:")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("action", "reject_all"),
        ("purposes", {"necessary": False}),
        ("received_at", "2026-11-21T10:00:09.000000Z"),
    ],
)
def test_one_changed_field_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signer: Signer, field: str, value: Any
) -> None:
    receipt = Log(signer, "shop", 13).receipt(6, 13)
    receipt["record"][field] = value
    code, out = run(tmp_path, capsys, receipt, doc(signer))
    assert code == 1
    assert "FAILED: inclusion proof does not lead to the checkpoint's root" in out
    assert "record was changed" in out


def test_a_wrong_index_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signer: Signer
) -> None:
    receipt = Log(signer, "shop", 13).receipt(6, 13)
    receipt["leaf_index"] = 7
    code, out = run(tmp_path, capsys, receipt, doc(signer))
    assert code == 1 and "FAILED: wrong leaf index: leaf_index 7" in out
    # Index and seq moved together: the record no longer hashes to that leaf.
    receipt["record"]["seq"] = 8
    code, out = run(tmp_path, capsys, receipt, doc(signer))
    assert code == 1 and "inclusion proof does not lead" in out


def test_a_proof_from_another_site_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signer: Signer
) -> None:
    ours = Log(signer, "shop", 13).receipt(6, 13)
    theirs = Log(signer, "other-shop", 13).receipt(6, 13)
    ours["checkpoint"], ours["inclusion_proof"] = theirs["checkpoint"], theirs["inclusion_proof"]
    code, out = run(tmp_path, capsys, ours, doc(signer))
    assert code == 1
    assert "checkpoint is of log 'cmp.example/sites/other-shop', not of site 'shop'" in out
    assert "another site" in out


def test_a_checkpoint_signed_by_another_key_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signer: Signer
) -> None:
    receipt = Log(Signer.generate(), "shop", 13).receipt(6, 13)
    code, out = run(tmp_path, capsys, receipt, doc(signer))
    assert code == 1 and "FAILED: checkpoint: checkpoint is not signed by the key given" in out


def test_an_altered_checkpoint_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signer: Signer
) -> None:
    receipt = Log(signer, "shop", 13).receipt(6, 13)
    receipt["checkpoint"] = receipt["checkpoint"].replace("\n13\n", "\n14\n")
    code, out = run(tmp_path, capsys, receipt, doc(signer))
    assert code == 1 and "signature does not verify: the checkpoint was altered" in out


def test_a_newer_checkpoint_that_extends_the_receipts_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signer: Signer
) -> None:
    log = Log(signer, "shop", 40)
    (tmp_path / "newer.json").write_text(json.dumps(log.consistency(13, 40)), "utf-8")
    code, out = run(
        tmp_path,
        capsys,
        log.receipt(6, 13),
        doc(signer),
        "--checkpoint",
        str(tmp_path / "newer.json"),
    )
    assert code == 0, out
    assert "the newer checkpoint at size 40 extends it" in out
    # The note and the proof as two files.
    (tmp_path / "newer.note").write_text(log.checkpoint(40), "utf-8")
    code, out = run(
        tmp_path,
        capsys,
        log.receipt(6, 13),
        doc(signer),
        "--checkpoint",
        str(tmp_path / "newer.note"),
        "--consistency-proof",
        str(tmp_path / "newer.json"),
    )
    assert code == 0, out


def test_a_consistency_proof_to_a_forked_tree_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signer: Signer
) -> None:
    log = Log(signer, "shop", 40)
    forked = Log(signer, "shop", 40)
    forked.records[3] = {**forked.records[3], "action": "reject_all"}  # history rewritten
    forked.leaves[3] = merkle.leaf_hash(canonical_json(forked.records[3]))
    (tmp_path / "fork.json").write_text(json.dumps(forked.consistency(13, 40)), "utf-8")
    code, out = run(
        tmp_path,
        capsys,
        log.receipt(6, 13),
        doc(signer),
        "--checkpoint",
        str(tmp_path / "fork.json"),
    )
    assert code == 1
    assert "consistency proof from size 13 to 40 fails" in out and "forked" in out
    # The same size with another root is a fork too.
    (tmp_path / "same.note").write_text(forked.checkpoint(13), "utf-8")
    code, out = run(
        tmp_path,
        capsys,
        log.receipt(6, 13),
        doc(signer),
        "--checkpoint",
        str(tmp_path / "same.note"),
    )
    assert code == 1 and "forked log: two checkpoints of size 13" in out
    # A newer note without a proof cannot be checked.
    (tmp_path / "bare.note").write_text(log.checkpoint(40), "utf-8")
    code, out = run(
        tmp_path,
        capsys,
        log.receipt(6, 13),
        doc(signer),
        "--checkpoint",
        str(tmp_path / "bare.note"),
    )
    assert code == 1 and "a consistency proof from size 13 to 40 is needed" in out


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.pop("inclusion_proof"),
        lambda r: r.__setitem__("inclusion_proof", ["not base64!"]),
        lambda r: r.__setitem__("leaf_index", "6"),
        lambda r: r["record"].pop("gpc"),
        lambda r: r["record"].__setitem__("seq", 0),
        lambda r: r.__setitem__("checkpoint", "garbage"),
    ],
)
def test_malformed_receipts_fail_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signer: Signer, mutate: Any
) -> None:
    receipt = Log(signer, "shop", 13).receipt(6, 13)
    mutate(receipt)
    code, out = run(tmp_path, capsys, receipt, doc(signer))
    assert code == 1 and out.startswith("FAILED: ")


def test_a_bad_key_file_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signer: Signer
) -> None:
    code, out = run(tmp_path, capsys, Log(signer, "shop", 2).receipt(0, 2), "not a key")
    assert code == 2 and "public key" in out


DOCS = Path(__file__).resolve().parents[2] / "docs" / "audit-log.md"


def test_the_documented_example_receipt_verifies() -> None:
    import hashlib
    import re

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from cmp.audit.receipt import verify_receipt

    text = DOCS.read_text("utf-8").split("## Merkle tree, signed checkpoints", 1)[1]
    receipt = json.loads(re.search(r"```json\n(\{.*?\})\n```", text, re.S).group(1))  # type: ignore[union-attr]
    vkey = re.search(r"```\n(cmp\.example/sites/kundetelling\+\S+)\n```", text).group(1)  # type: ignore[union-attr]
    name, key = notes.parse_verifier_key(vkey)
    verified = verify_receipt(receipt, key, key_name=name)
    assert verified.seq == 1 and verified.checkpoint.size == 2
    assert verified.checkpoint.root.hex() in text
    # The throwaway key signs the same note again (Ed25519 is deterministic).
    signer = Signer(
        Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"cmp docs example key").digest())
    )
    cp = verified.checkpoint
    assert notes.sign_checkpoint(signer, cp.origin, cp.size, cp.root) == receipt["checkpoint"]
    leaves = re.findall(r"leaf \d \(seq \d\)  ([0-9a-f]{64})", text)
    assert [merkle.leaf_hash(canonical_json(receipt["record"])).hex()] == leaves[:1]
