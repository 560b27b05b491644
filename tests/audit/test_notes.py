"""Checkpoint notes: the C2SP layout, key ids and the failures a verifier names."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cmp.audit import notes
from cmp.audit.signing import Signer

ORIGIN = "cmp.example/sites/shop"
ROOT = hashlib.sha256(b"root").digest()


def test_layout_key_id_and_round_trip() -> None:
    signer = Signer.generate()
    note = notes.sign_checkpoint(signer, ORIGIN, 42, ROOT)
    text, sig = note.split("\n\n")
    assert text == f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}"
    assert sig.startswith(f"\u2014 {ORIGIN} ") and sig.endswith("\n")
    blob = base64.b64decode(sig.split(" ")[2])
    raw = base64.b64decode(signer.public_key_document()["public_key"])
    assert blob[:4] == hashlib.sha256(ORIGIN.encode() + b"\n\x01" + raw).digest()[:4]
    Ed25519PublicKey.from_public_bytes(raw).verify(blob[4:], (text + "\n").encode())
    cp = notes.open_checkpoint(note, signer.public_key)
    assert (cp.origin, cp.size, cp.root) == (ORIGIN, 42, ROOT)
    vkey = notes.verifier_key(ORIGIN, signer.public_key)
    name, key = notes.parse_verifier_key(vkey)
    assert name == ORIGIN and notes.open_checkpoint(note, key, name).size == 42


def test_altered_note_is_named() -> None:
    signer = Signer.generate()
    note = notes.sign_checkpoint(signer, ORIGIN, 42, ROOT)
    with pytest.raises(notes.NoteError, match="altered"):
        notes.open_checkpoint(note.replace("\n42\n", "\n43\n"), signer.public_key)


def test_other_key_is_named() -> None:
    note = notes.sign_checkpoint(Signer.generate(), ORIGIN, 42, ROOT)
    with pytest.raises(notes.NoteError, match="not signed by the key given"):
        notes.open_checkpoint(note, Signer.generate().public_key)


def test_key_for_another_log_is_named() -> None:
    signer = Signer.generate()
    note = notes.sign_checkpoint(signer, ORIGIN, 1, ROOT)
    with pytest.raises(notes.NoteError, match="origin"):
        notes.open_checkpoint(note, signer.public_key, "cmp.example/sites/other")


@pytest.mark.parametrize(
    "bad",
    ["", "x\n", f"{ORIGIN}\n01\nAAAA\n\n\u2014 a b\n", f"{ORIGIN}\n1\n\n\n\u2014 a AAAA\n"],
)
def test_malformed_notes(bad: str) -> None:
    with pytest.raises(notes.NoteError):
        notes.open_checkpoint(bad, Signer.generate().public_key)


def test_verifier_key_with_wrong_id_is_refused() -> None:
    vkey = notes.verifier_key(ORIGIN, Signer.generate().public_key)
    name, _, key = vkey.split("+", 2)
    with pytest.raises(notes.NoteError, match="key id"):
        notes.parse_verifier_key(f"{name}+{'0' * 8}+{key}")
    with pytest.raises(ValueError):
        notes.checkpoint_text("has space", 1, ROOT)
