"""Ed25519 checkpoints: the server signs a site's chain head so an export can be pinned.

A checkpoint is ``{"site_id", "seq", "hash", "signed_at", "key_id", "signature"}``. The
signed message is ``canonical_json({"site_id", "seq", "hash", "signed_at"})``; the
signature is standard base64; ``key_id`` is the first 16 hex characters of the sha256 of
the raw 32-byte public key. An auditor who holds a checkpoint can prove that the
records up to its seq are the ones the server had when it signed.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cmp.audit.chain import format_ts
from cmp.canonical import canonical_json

ALGORITHM: Final = "Ed25519"
CHECKPOINT_FIELDS: Final = ("site_id", "seq", "hash", "signed_at", "key_id", "signature")
SIGNED_FIELDS: Final = ("site_id", "seq", "hash", "signed_at")


class KeyFileError(Exception):
    """A signing or public key file is missing, unreadable or not an Ed25519 key."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex characters of sha256 over the raw 32-byte public key."""
    return hashlib.sha256(_raw(public_key)).hexdigest()[:16]


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def checkpoint_message(site_id: str, seq: int, hash: str, signed_at: str) -> bytes:
    """The exact bytes that are signed."""
    return canonical_json({"site_id": site_id, "seq": seq, "hash": hash, "signed_at": signed_at})


class Signer:
    """Holds the server's Ed25519 private key and signs checkpoints with it."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> Signer:
        """Load the PKCS#8 PEM key at ``path``; create it (mode 0600) when absent."""
        path = Path(path)
        try:
            return cls(_load_private_key(path))
        except FileNotFoundError:
            pass
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            if not _publish(path, pem):
                # Another process (a sibling worker) created it first: use that key so
                # every worker signs with the same one.
                return cls(_load_private_key(path))
        except OSError as exc:
            raise KeyFileError(f"cannot create signing key file {path}: {exc}") from exc
        return cls(key)

    def sign(self, message: bytes) -> bytes:
        """A raw Ed25519 signature; callers keep their messages domain-separated."""
        return self._private_key.sign(message)

    def sign_checkpoint(
        self, site_id: str, seq: int, hash: str, signed_at: datetime | str | None = None
    ) -> dict[str, Any]:
        """A signed checkpoint for the chain head ``(seq, hash)`` of ``site_id``."""
        if signed_at is None:
            signed_at = datetime.now(UTC)
        stamp = format_ts(signed_at) if isinstance(signed_at, datetime) else signed_at
        signature = self.sign(checkpoint_message(site_id, seq, hash, stamp))
        return {
            "site_id": site_id,
            "seq": seq,
            "hash": hash,
            "signed_at": stamp,
            "key_id": self.key_id,
            "signature": base64.b64encode(signature).decode("ascii"),
        }

    def public_key_document(self) -> dict[str, str]:
        """What GET /v1/log/public-key serves and `cmpd verify --public-key` reads."""
        return public_key_document(self.public_key)


def public_key_document(public_key: Ed25519PublicKey) -> dict[str, str]:
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "algorithm": ALGORITHM,
        "key_id": key_id(public_key),
        "public_key": base64.b64encode(_raw(public_key)).decode("ascii"),
        "pem": pem.decode("ascii"),
    }


def _load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise KeyFileError(f"cannot read signing key file {path}: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # cryptography's way of saying "it is encrypted"
        raise KeyFileError(
            f"signing key file {path} is password-protected; cmp needs an unencrypted key"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"signing key file {path} is not a PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(
            f"signing key file {path} holds a {type(key).__name__}, not an Ed25519 key"
        )
    return key


def _publish(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` only if it does not exist yet; False if it does.

    Written to a 0600 temporary file and hard-linked into place, so the key file
    appears complete or not at all, and a concurrent creator cannot be overwritten.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:
            # Some filesystems have no hard links; O_EXCL still never overwrites.
            return _create_exclusive(path, data)
        _fsync_dir(path.parent)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _create_exclusive(path: Path, data: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_dir(path.parent)
    return True


def _fsync_dir(folder: Path) -> None:
    # Makes the new directory entry durable; not every platform can open a folder.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def checkpoint_problem(checkpoint: Mapping[str, Any], public_key: Ed25519PublicKey) -> str | None:
    """Why ``checkpoint`` is not a valid signature by ``public_key``; None when it is."""
    missing = [name for name in CHECKPOINT_FIELDS if name not in checkpoint]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    site_id, seq, hash_, signed_at = (checkpoint[name] for name in SIGNED_FIELDS)
    if not isinstance(site_id, str) or not isinstance(signed_at, str):
        return "site_id and signed_at must be strings"
    if type(seq) is not int or seq < 0:
        return "seq must be a non-negative integer"
    if not isinstance(hash_, str) or len(hash_) != 64:
        return "hash must be 64 hex characters"
    if checkpoint["key_id"] != key_id(public_key):
        return (
            f"signed by key {checkpoint['key_id']!r}, but the public key given is "
            f"{key_id(public_key)!r}"
        )
    try:
        signature = base64.b64decode(str(checkpoint["signature"]), validate=True)
    except (binascii.Error, ValueError):
        return "signature is not base64"
    try:
        public_key.verify(signature, checkpoint_message(site_id, seq, hash_, signed_at))
    except InvalidSignature:
        return "signature does not verify: the checkpoint was altered or not signed by this key"
    return None


def verify_checkpoint(checkpoint: Mapping[str, Any], public_key: Ed25519PublicKey) -> bool:
    """True when ``checkpoint`` carries a valid signature by ``public_key``."""
    return checkpoint_problem(checkpoint, public_key) is None


def parse_public_key(data: bytes | str) -> Ed25519PublicKey:
    """An Ed25519 public key from a SubjectPublicKeyInfo PEM or the public key document."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    if text.lstrip().startswith("-----BEGIN"):
        return _from_pem(text)
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise KeyFileError("neither a PEM public key nor a JSON public key document") from exc
    if not isinstance(doc, dict):
        raise KeyFileError("public key document must be a JSON object")
    if doc.get("algorithm", ALGORITHM) != ALGORITHM:
        raise KeyFileError(f"unsupported algorithm {doc.get('algorithm')!r}; expected Ed25519")
    if isinstance(doc.get("public_key"), str):
        try:
            raw = base64.b64decode(doc["public_key"], validate=True)
            key = Ed25519PublicKey.from_public_bytes(raw)
        except (binascii.Error, ValueError) as exc:
            raise KeyFileError("public_key is not base64 of a raw 32-byte Ed25519 key") from exc
        if isinstance(doc.get("pem"), str) and _raw(_from_pem(doc["pem"])) != raw:
            raise KeyFileError("public_key and pem of the document are different keys")
    elif isinstance(doc.get("pem"), str):
        key = _from_pem(doc["pem"])
    else:
        raise KeyFileError("public key document has neither public_key nor pem")
    if "key_id" in doc and doc["key_id"] != key_id(key):
        raise KeyFileError("key_id of the document does not match its public key")
    return key


def _from_pem(text: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(text.encode("ascii", "replace"))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError("not a valid PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"PEM holds a {type(key).__name__}, not an Ed25519 public key")
    return key


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Read a public key file: PEM or the JSON document from GET /v1/log/public-key."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read public key file {path}: {exc}") from exc
    try:
        return parse_public_key(data)
    except KeyFileError as exc:
        raise KeyFileError(f"{path}: {exc}") from None
