"""Offline verification of a visitor's receipt (`cmpd verify-receipt`, cmp/cli/audit.py).

A receipt is ``{record, leaf_index, checkpoint, inclusion_proof}``: the record (the
chain fields of its version), its leaf index (seq − 1), a signed checkpoint note of the
site's Merkle tree, and the RFC 9162 inclusion proof of the record's leaf under that
checkpoint's root. A version 2 receipt adds ``disclosures``: each personal value the
record commits to, with its salt (an erased one is absent). Given a newer checkpoint
and a consistency proof, it also checks that the newer
tree extends the receipt's — so a log that later forked or rewrote history is caught.
Every failure names what does not fit.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cmp.audit import merkle, notes
from cmp.audit.chain import check_record, receipt_disclosure_problem
from cmp.audit.record import RECORD_VERSIONS, layout
from cmp.audit.signing import KeyFileError, parse_public_key
from cmp.canonical import canonical_json

RECEIPT_FIELDS = ("record", "leaf_index", "checkpoint", "inclusion_proof")


class ReceiptError(ValueError):
    """What is wrong with a receipt, in one sentence."""


@dataclass(frozen=True, slots=True)
class Verified:
    site_id: str
    seq: int
    event_id: str
    checkpoint: notes.Checkpoint
    key_name: str
    newer: notes.Checkpoint | None

    def summary(self) -> str:
        line = (
            f"OK: record seq {self.seq} (event {self.event_id}) of site {self.site_id} is leaf "
            f"{self.seq - 1} of {self.checkpoint.origin} at tree size {self.checkpoint.size}, "
            f"checkpoint signed by {self.key_name}"
        )
        if self.newer is not None:
            line += f"; the newer checkpoint at size {self.newer.size} extends it"
        return line


def _hashes(value: Any, what: str) -> list[bytes]:
    if not isinstance(value, list):
        raise ReceiptError(f"{what} must be a list of base64 hashes")
    out = []
    for i, item in enumerate(value):
        try:
            raw = base64.b64decode(item, validate=True) if isinstance(item, str) else b""
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != merkle.HASH_SIZE:
            raise ReceiptError(f"{what}[{i}] is not base64 of a 32-byte hash")
        out.append(raw)
    return out


def verify_receipt(
    receipt: Mapping[str, Any],
    public_key: Ed25519PublicKey,
    *,
    key_name: str | None = None,
    newer: str | None = None,
    consistency_proof: Sequence[str] | None = None,
) -> Verified:
    """Check a receipt (and optionally a newer checkpoint); raises ReceiptError naming
    the first thing that fails."""
    missing = [name for name in RECEIPT_FIELDS if name not in receipt]
    if missing:
        raise ReceiptError(f"receipt lacks {', '.join(missing)}")
    record = receipt["record"]
    version = record.get("v") if isinstance(record, dict) else None
    if type(version) is not int or version not in RECORD_VERSIONS:
        raise ReceiptError(f"record has no supported version (v={version!r})")
    names = layout(version).names
    if record.keys() != set(names):
        raise ReceiptError(
            f"record must hold exactly the {len(names)} fields of a version {version} record"
        )
    try:
        check_record(record)
    except (TypeError, ValueError) as exc:
        raise ReceiptError(f"record is not a valid log record: {exc}") from None
    problem = receipt_disclosure_problem(record, receipt.get("disclosures", {}))
    if problem is not None:
        raise ReceiptError(f"disclosures: {problem}")
    index = receipt["leaf_index"]
    if type(index) is not int or index < 0:
        raise ReceiptError("leaf_index must be a non-negative integer")
    if not isinstance(receipt["checkpoint"], str):
        raise ReceiptError("checkpoint must be the signed note text")
    proof = _hashes(receipt["inclusion_proof"], "inclusion_proof")
    try:
        checkpoint = notes.open_checkpoint(receipt["checkpoint"], public_key, key_name)
    except notes.NoteError as exc:
        raise ReceiptError(f"checkpoint: {exc}") from None
    site_id = record["site_id"]
    if not checkpoint.origin.endswith(f"/sites/{site_id}"):
        raise ReceiptError(
            f"the checkpoint is of log {checkpoint.origin!r}, not of site {site_id!r}: "
            "a checkpoint and proof from another site"
        )
    if index != record["seq"] - 1:
        raise ReceiptError(
            f"wrong leaf index: leaf_index {index} does not match the record's seq "
            f"{record['seq']} (the leaf index is seq − 1)"
        )
    if index >= checkpoint.size:
        raise ReceiptError(
            f"leaf_index {index} is outside the checkpoint's tree of size {checkpoint.size}"
        )
    leaf = merkle.leaf_hash(canonical_json(record))
    if not merkle.verify_inclusion(index, checkpoint.size, leaf, proof, checkpoint.root):
        raise ReceiptError(
            "inclusion proof does not lead to the checkpoint's root: the record was "
            "changed, or the proof is not for this record and tree"
        )
    name = key_name or checkpoint.origin
    signer = f"{name}+{notes.key_hash(name, public_key).hex()}"
    later = None
    if newer is not None:
        later = check_newer(checkpoint, newer, public_key, key_name, consistency_proof)
    return Verified(site_id, record["seq"], record["event_id"], checkpoint, signer, later)


def check_newer(
    old: notes.Checkpoint,
    newer: str,
    public_key: Ed25519PublicKey,
    key_name: str | None,
    consistency_proof: Sequence[str] | None,
) -> notes.Checkpoint:
    """The newer checkpoint, once it is shown to extend ``old``."""
    try:
        new = notes.open_checkpoint(newer, public_key, key_name)
    except notes.NoteError as exc:
        raise ReceiptError(f"newer checkpoint: {exc}") from None
    if new.origin != old.origin:
        raise ReceiptError(
            f"the newer checkpoint is of log {new.origin!r}, the receipt's of {old.origin!r}"
        )
    if new.size < old.size:
        raise ReceiptError(
            f"the newer checkpoint (size {new.size}) is older than the receipt's ({old.size})"
        )
    proof = _hashes(list(consistency_proof or []), "consistency_proof")
    if new.size == old.size:
        if new.root != old.root:
            raise ReceiptError(
                f"forked log: two checkpoints of size {new.size} with different roots"
            )
        return new
    if not proof:
        raise ReceiptError(
            f"a consistency proof from size {old.size} to {new.size} is needed "
            "(GET …/log/proof/consistency)"
        )
    if not merkle.verify_consistency(old.size, new.size, old.root, new.root, proof):
        raise ReceiptError(
            f"consistency proof from size {old.size} to {new.size} fails: the newer "
            "checkpoint does not extend the receipt's (a forked or rewritten log)"
        )
    return new


def load_key(text: str) -> tuple[Ed25519PublicKey, str | None]:
    """(key, note key name or None) from a verifier key, a key document or a PEM key."""
    stripped = text.strip()
    if stripped.count("+") >= 2 and not stripped.startswith(("{", "-----")):
        name, key = notes.parse_verifier_key(stripped)
        return key, name
    key = parse_public_key(text)
    try:
        doc = json.loads(text)
    except ValueError:
        return key, None
    vkey = doc.get("note_verifier_key") if isinstance(doc, dict) else None
    if isinstance(vkey, str):
        name, from_note = notes.parse_verifier_key(vkey)
        if from_note.public_bytes_raw() != key.public_bytes_raw():
            raise KeyFileError("note_verifier_key and public_key are different keys")
        return key, name
    return key, None


def newer_checkpoint(
    checkpoint_file: str | None, proof_file: str | None
) -> tuple[str | None, list[str] | None]:
    """(newer note, consistency proof) from `--checkpoint` and `--consistency-proof` files.

    The checkpoint file is a note, or the JSON answer of GET …/log/proof/consistency,
    which carries the proof too.
    """
    proof: list[str] | None = None
    if proof_file:
        doc = json.loads(Path(proof_file).read_text("utf-8"))
        proof = doc.get("consistency_proof") if isinstance(doc, dict) else None
        if not isinstance(proof, list):
            raise ReceiptError("--consistency-proof file has no consistency_proof list")
    if not checkpoint_file:
        return None, proof
    text = Path(checkpoint_file).read_text("utf-8")
    if text.lstrip().startswith("{"):
        doc = json.loads(text)
        if not isinstance(doc, dict) or not isinstance(doc.get("checkpoint"), str):
            raise ReceiptError("--checkpoint JSON has no checkpoint note")
        if proof is None and isinstance(doc.get("consistency_proof"), list):
            proof = doc["consistency_proof"]
        return doc["checkpoint"], proof
    return text, proof
