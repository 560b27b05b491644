"""Checkpoints of the Merkle tree as C2SP signed notes (tlog-checkpoint + signed-note).

A checkpoint's text is ``<origin>\\n<tree size>\\n<base64 root hash>\\n``; the note adds a
blank line and one signature line ``— <key name> <base64(key id ‖ Ed25519 signature)>``.
The key name is the origin (tlog-checkpoint: the log's key name SHOULD match the origin
line), so one server key gives each site its own verifier key
``<origin>+<8 hex key id>+<base64(0x01 ‖ public key)>``, the key id being the first four
bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key). Go's golang.org/x/mod/sumdb/note
reads these notes as they are.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cmp.audit.signing import Signer

ALG_ED25519: Final = b"\x01"
SIG_PREFIX: Final = "\u2014 "
# C2SP: a key name is non-empty and holds neither Unicode spaces nor "+".
_NAME_RE: Final = re.compile(r"[^\s+]+")


class NoteError(ValueError):
    """A checkpoint note that is malformed, unsigned by the key given, or altered."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    text: str  # the signed body, with its final newline


def valid_name(name: str) -> bool:
    return _NAME_RE.fullmatch(name) is not None


def origin_of(public_host: str, site_id: str) -> str:
    return f"{public_host}/sites/{site_id}"


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_hash(name: str, public_key: Ed25519PublicKey) -> bytes:
    """The 4-byte signed-note key id of ``public_key`` under ``name``."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + ALG_ED25519 + _raw(public_key)).digest()[
        :4
    ]


def verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """``<name>+<hex key id>+<base64 key>``: what note verifiers are configured with."""
    key = base64.b64encode(ALG_ED25519 + _raw(public_key)).decode("ascii")
    return f"{name}+{key_hash(name, public_key).hex()}+{key}"


def parse_verifier_key(text: str) -> tuple[str, Ed25519PublicKey]:
    """(name, key) of a verifier key string; NoteError when it is not one."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3 or not valid_name(parts[0]) or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
        raise NoteError("not a note verifier key (<name>+<8 hex>+<base64 key>)")
    try:
        raw = base64.b64decode(parts[2], validate=True)
    except (binascii.Error, ValueError):
        raise NoteError("verifier key: the key is not base64") from None
    if len(raw) != 33 or raw[:1] != ALG_ED25519:
        raise NoteError("verifier key: not an Ed25519 key")
    key = Ed25519PublicKey.from_public_bytes(raw[1:])
    if key_hash(parts[0], key).hex() != parts[1]:
        raise NoteError("verifier key: its key id does not match its name and key")
    return parts[0], key


def checkpoint_text(origin: str, size: int, root: bytes) -> str:
    if not valid_name(origin):
        raise ValueError(f"origin {origin!r} must be non-empty without spaces or '+'")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode('ascii')}\n"


def sign_checkpoint(signer: Signer, origin: str, size: int, root: bytes) -> str:
    """The signed note of the tree head (size, root) of the log named ``origin``."""
    text = checkpoint_text(origin, size, root)
    signature = signer.sign(text.encode("utf-8"))
    line = base64.b64encode(key_hash(origin, signer.public_key) + signature).decode("ascii")
    return f"{text}\n{SIG_PREFIX}{origin} {line}\n"


def parse_checkpoint(text: str) -> Checkpoint:
    """The three checkpoint lines of a note body (signatures not checked)."""
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "" or any(line == "" for line in lines[:-1]):
        raise NoteError("checkpoint text must be non-empty lines, each ending in a newline")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not re.fullmatch(r"0|[1-9][0-9]{0,18}", size_text):
        raise NoteError(f"checkpoint tree size {size_text!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError):
        root = b""
    if len(root) != 32:
        raise NoteError("checkpoint root hash is not base64 of 32 bytes")
    return Checkpoint(origin, int(size_text), root, text)


def open_checkpoint(note: str, public_key: Ed25519PublicKey, name: str | None = None) -> Checkpoint:
    """Verify a checkpoint note signed by ``public_key`` under ``name`` (default: its origin).

    Raises NoteError naming what is wrong: the layout, a missing signature by this key,
    or a signature that does not verify (the note was altered).
    """
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise NoteError("not a signed note: no blank line before the signatures")
    text, sig_block = note[: split + 1], note[split + 2 :]
    checkpoint = parse_checkpoint(text)
    name = checkpoint.origin if name is None else name
    if name != checkpoint.origin:
        raise NoteError(
            f"the key given is for log {name!r}, but the checkpoint's origin is "
            f"{checkpoint.origin!r}"
        )
    want = key_hash(name, public_key)
    seen: list[str] = []
    for line in sig_block[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX) or line.count(" ") != 2:
            raise NoteError(f"malformed signature line {line!r}")
        signer_name, blob_text = line[len(SIG_PREFIX) :].split(" ")
        try:
            blob = base64.b64decode(blob_text, validate=True)
        except (binascii.Error, ValueError):
            raise NoteError("signature line is not base64") from None
        if len(blob) < 5:
            raise NoteError("signature line too short")
        seen.append(f"{signer_name}+{blob[:4].hex()}")
        if signer_name != name or blob[:4] != want:
            continue  # signed-note: unknown signatures are ignored
        try:
            public_key.verify(blob[4:], text.encode("utf-8"))
        except InvalidSignature:
            raise NoteError(
                "checkpoint signature does not verify: the checkpoint was altered"
            ) from None
        return checkpoint
    raise NoteError(
        f"checkpoint is not signed by the key given ({name}+{want.hex()}); "
        f"it carries signatures by {', '.join(seen) or 'nobody'}"
    )
