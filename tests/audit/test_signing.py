"""Checkpoint signing: the key file, signatures, the public key document."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cmp.audit.signing import (
    KeyFileError,
    Signer,
    checkpoint_message,
    checkpoint_problem,
    key_id,
    load_public_key,
    parse_public_key,
    verify_checkpoint,
)
from cmp.canonical import canonical_json

HEAD = "9" * 64


def pem_of(
    key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey, password: bytes | None = None
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def test_load_or_create_writes_a_pkcs8_key_with_mode_0600_in_a_new_folder(tmp_path: Path) -> None:
    path = tmp_path / "state" / "keys" / "signing-key.pem"
    signer = Signer.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert signer.key_id == key_id(signer.public_key)
    assert sorted(p.name for p in path.parent.iterdir()) == ["signing-key.pem"]  # no temp left


def test_load_or_create_loads_the_same_key_again(tmp_path: Path) -> None:
    path = tmp_path / "signing-key.pem"
    first = Signer.load_or_create(path)
    before = path.read_bytes()
    assert Signer.load_or_create(path).key_id == first.key_id
    assert path.read_bytes() == before


def test_load_or_create_uses_an_existing_operator_key(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "operator.pem"
    path.write_bytes(pem_of(key))
    assert Signer.load_or_create(path).key_id == key_id(key.public_key())


def test_load_or_create_never_overwrites_a_key_created_concurrently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulate a sibling worker that writes the key between our "absent" and our write.
    import cmp.audit.signing as signing

    path = tmp_path / "signing-key.pem"
    theirs = Ed25519PrivateKey.generate()
    real_publish = signing._publish

    def racing_publish(target: Path, data: bytes) -> bool:
        target.write_bytes(pem_of(theirs))
        return real_publish(target, data)

    monkeypatch.setattr(signing, "_publish", racing_publish)
    assert Signer.load_or_create(path).key_id == key_id(theirs.public_key())
    assert path.read_bytes() == pem_of(theirs)


def test_load_or_create_refuses_a_key_of_another_algorithm(tmp_path: Path) -> None:
    path = tmp_path / "ec.pem"
    path.write_bytes(pem_of(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(KeyFileError, match="not an Ed25519 key") as info:
        Signer.load_or_create(path)
    assert str(path) in str(info.value)


def test_load_or_create_refuses_a_file_that_is_not_a_key(tmp_path: Path) -> None:
    path = tmp_path / "signing-key.pem"
    path.write_text("hello\n")
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        Signer.load_or_create(path)
    assert path.read_text() == "hello\n"  # never replaced by a fresh key


def test_load_or_create_refuses_a_password_protected_key(tmp_path: Path) -> None:
    path = tmp_path / "locked.pem"
    path.write_bytes(pem_of(Ed25519PrivateKey.generate(), password=b"secret"))
    with pytest.raises(KeyFileError, match="password"):
        Signer.load_or_create(path)


def test_load_or_create_reports_an_unusable_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises((KeyFileError, OSError)):
        Signer.load_or_create(blocker / "signing-key.pem")


def test_key_id_is_the_start_of_sha256_of_the_raw_public_key() -> None:
    signer = Signer.generate()
    raw = signer.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert signer.key_id == hashlib.sha256(raw).hexdigest()[:16]


def test_a_checkpoint_signs_the_canonical_json_of_its_four_fields() -> None:
    signer = Signer.generate()
    checkpoint = signer.sign_checkpoint("kundetelling", 42, HEAD, "2026-11-21T10:00:00.000000Z")
    assert set(checkpoint) == {"site_id", "seq", "hash", "signed_at", "key_id", "signature"}
    message = canonical_json(
        {
            "site_id": "kundetelling",
            "seq": 42,
            "hash": HEAD,
            "signed_at": "2026-11-21T10:00:00.000000Z",
        }
    )
    assert message == checkpoint_message("kundetelling", 42, HEAD, "2026-11-21T10:00:00.000000Z")
    signer.public_key.verify(base64.b64decode(checkpoint["signature"]), message)
    assert verify_checkpoint(checkpoint, signer.public_key)


def test_sign_checkpoint_formats_a_datetime_and_defaults_to_now() -> None:
    signer = Signer.generate()
    when = datetime(2026, 11, 21, 10, 0, 0, 7, tzinfo=UTC)
    assert signer.sign_checkpoint("s1", 1, HEAD, when)["signed_at"] == "2026-11-21T10:00:00.000007Z"
    assert signer.sign_checkpoint("s1", 1, HEAD)["signed_at"].endswith("Z")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hash", "8" * 64),
        ("seq", 43),
        ("site_id", "other-site"),
        ("signed_at", "2027-01-01T00:00:00.000000Z"),
    ],
)
def test_an_edited_checkpoint_fails(field: str, value: object) -> None:
    signer = Signer.generate()
    checkpoint = signer.sign_checkpoint("kundetelling", 42, HEAD, "2026-11-21T10:00:00.000000Z")
    checkpoint[field] = value
    assert not verify_checkpoint(checkpoint, signer.public_key)
    assert "does not verify" in (checkpoint_problem(checkpoint, signer.public_key) or "")


def test_a_checkpoint_signed_by_another_key_fails() -> None:
    ours, theirs = Signer.generate(), Signer.generate()
    forged = theirs.sign_checkpoint("kundetelling", 42, HEAD)
    assert "signed by key" in (checkpoint_problem(forged, ours.public_key) or "")
    forged["key_id"] = ours.key_id  # claiming our key id does not help
    assert not verify_checkpoint(forged, ours.public_key)


@pytest.mark.parametrize(
    "damage",
    [
        lambda cp: cp.pop("signature"),
        lambda cp: cp.update(signature="not base64!"),
        lambda cp: cp.update(seq="42"),
        lambda cp: cp.update(hash=None),
    ],
)
def test_a_malformed_checkpoint_fails_without_raising(damage: object) -> None:
    signer = Signer.generate()
    checkpoint = signer.sign_checkpoint("kundetelling", 42, HEAD)
    damage(checkpoint)  # type: ignore[operator]
    assert not verify_checkpoint(checkpoint, signer.public_key)


def test_the_public_key_document_describes_the_key() -> None:
    signer = Signer.generate()
    doc = signer.public_key_document()
    assert doc["algorithm"] == "Ed25519"
    assert doc["key_id"] == signer.key_id
    assert len(base64.b64decode(doc["public_key"])) == 32
    assert doc["pem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert key_id(parse_public_key(json.dumps(doc))) == signer.key_id


def test_load_public_key_reads_the_json_document_or_a_pem(tmp_path: Path) -> None:
    signer = Signer.generate()
    doc = signer.public_key_document()
    as_json, as_pem = tmp_path / "key.json", tmp_path / "key.pem"
    as_json.write_text(json.dumps(doc))
    as_pem.write_text(doc["pem"])
    for path in (as_json, as_pem):
        assert key_id(load_public_key(path)) == signer.key_id
    only_pem = {"algorithm": "Ed25519", "pem": doc["pem"]}
    assert key_id(parse_public_key(json.dumps(only_pem))) == signer.key_id


@pytest.mark.parametrize(
    "content",
    [
        "{}",
        "[1, 2]",
        "not a key",
        json.dumps({"algorithm": "RSA", "public_key": "AAAA"}),
        json.dumps({"public_key": base64.b64encode(b"short").decode()}),
    ],
)
def test_load_public_key_refuses_what_is_not_an_ed25519_public_key(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "key"
    path.write_text(content)
    with pytest.raises(KeyFileError):
        load_public_key(path)


def test_load_public_key_refuses_a_document_whose_parts_disagree(tmp_path: Path) -> None:
    one, two = Signer.generate(), Signer.generate()
    doc = one.public_key_document()
    path = tmp_path / "key.json"
    path.write_text(json.dumps({**doc, "key_id": two.key_id}))
    with pytest.raises(KeyFileError, match="key_id"):
        load_public_key(path)
    path.write_text(json.dumps({**doc, "pem": two.public_key_document()["pem"]}))
    with pytest.raises(KeyFileError, match="different keys"):
        load_public_key(path)


def test_load_public_key_refuses_an_ec_public_key(tmp_path: Path) -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    path = tmp_path / "ec.pem"
    path.write_bytes(pem)
    with pytest.raises(KeyFileError, match="not an Ed25519"):
        load_public_key(path)


def test_load_public_key_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        load_public_key(tmp_path / "absent.json")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_created_key_is_not_readable_by_others_even_with_a_lax_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "k.pem"
        Signer.load_or_create(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_example_checkpoint_in_the_docs_verifies() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "audit-log.md").read_text("utf-8")
    blocks = [b.split("```", 1)[0] for b in docs.split("```json\n")[1:]]
    documents = [json.loads(b) for b in blocks if '"signature"' in b or '"algorithm"' in b]
    checkpoint = next(d for d in documents if "signature" in d)
    public = next(d for d in documents if "algorithm" in d)
    assert verify_checkpoint(checkpoint, parse_public_key(json.dumps(public)))
