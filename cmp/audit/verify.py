"""Offline verifier for exported consent logs (`cmpd verify FILE [--checkpoint F --public-key F]`).

It recomputes every record's hash from its fields, checks that each record links to
the one before, that seqs have no gaps and that one site runs throughout, and, given a
signed checkpoint, that the export contains exactly what the server signed. It names
the first line that does not fit. The rules are those of `cmp.audit.chain`, written up
in docs/audit-log.md; read them here in this order: `cmp.audit.lines.parse_line` (one
record, the definition), `cmp.audit.runs.Run` (the sequence), `verify_export` below.

The file is streamed; big files are checked block by block in worker processes
(`cmp.audit.parallel`), and lines in the exact canonical form take a fast path that
hashes their own bytes (`cmp.audit.lines.parse_fast`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cmp.audit import parallel
from cmp.audit.runs import Failure, Pin, Run
from cmp.audit.signing import checkpoint_problem


@dataclass(slots=True)
class Result:
    """Outcome of a verification; ``summary()`` is the line `cmpd verify` prints."""

    ok: bool
    site_id: str | None
    records: int
    first_seq: int | None
    last_seq: int | None
    last_hash: str | None
    anchor_seq: int | None  # set when the export starts after purged records
    anchor_hash: str | None
    links_checked: int
    partial: bool
    checkpoint: Mapping[str, Any] | None
    failure: Failure | None

    @property
    def checkpoint_ok(self) -> bool | None:
        return None if self.checkpoint is None else self.ok

    def summary(self) -> str:
        if self.failure is not None:
            return f"FAILED: {self.failure}"
        if not self.records:
            text = "OK: 0 records"
        else:
            kind = "partial export, " if self.partial else ""
            text = (
                f"OK: {kind}{self.records} records of site {self.site_id}, "
                f"seq {self.first_seq}..{self.last_seq}"
            )
            if self.partial:
                text += f", {self.links_checked} links checked"
            elif self.anchor_seq is None:
                text += ", from genesis"
            else:
                text += f", anchored at seq {self.anchor_seq} (hash {self.anchor_hash})"
            text += f", last hash {self.last_hash}"
        if self.checkpoint is not None:
            cp = self.checkpoint
            text += (
                f"; checkpoint seq {cp['seq']} signed {cp['signed_at']} by key {cp['key_id']}: ok"
            )
        return text


def verify_export(
    lines_or_path: str | os.PathLike[str] | Iterable[str | bytes],
    *,
    checkpoint: Mapping[str, Any] | None = None,
    public_key: Ed25519PublicKey | None = None,
    partial: bool = False,
    workers: int | None = None,
) -> Result:
    """Verify a JSONL export given as a path (plain or gzip) or as an iterable of lines.

    ``partial`` allows seq gaps (a filtered export). ``checkpoint`` needs
    ``public_key``. ``workers`` defaults to one per CPU for big files, else 1.
    Raises OSError (or EOFError/zlib.error for a broken gzip file) when the file
    cannot be read; everything about its content ends up in the Result.
    """
    pin: Pin | None = None
    failure: Failure | None = None
    if checkpoint is not None:
        if public_key is None:
            raise ValueError("a checkpoint can only be checked with the server's public key")
        problem = checkpoint_problem(checkpoint, public_key)
        if problem is None:
            pin = (checkpoint["site_id"], checkpoint["seq"], checkpoint["hash"])
        else:
            failure = Failure(None, None, f"checkpoint: {problem}")
    head = Run(partial, pin, head=True)
    if failure is not None:
        head.failure = failure
    elif isinstance(lines_or_path, str | os.PathLike):
        path = Path(lines_or_path)
        with parallel.open_export(path) as stream:
            compressed = not isinstance(stream, io.BufferedReader)
            if workers is None:
                big = path.stat().st_size >= parallel.PARALLEL_MIN_BYTES
                workers = min(parallel.cpus(), parallel.MAX_WORKERS) if big else 1
            if workers <= 1:
                for line_no, raw in enumerate(stream, 1):
                    if not head.feed(line_no, raw):
                        break
        if workers > 1:
            parallel.run_parallel(head, path, compressed, workers)
    else:
        for line_no, line in enumerate(lines_or_path, 1):
            raw = line.encode("utf-8") if isinstance(line, str) else line
            if not head.feed(line_no, raw):
                break
    head.finish()
    return _result(head, partial, checkpoint)


def _result(head: Run, partial: bool, checkpoint: Mapping[str, Any] | None) -> Result:
    records = head.records
    return Result(
        ok=head.failure is None,
        site_id=head.site,
        records=records,
        first_seq=head.first[1] if head.first and records else None,
        last_seq=head.last_seq if records else None,
        last_hash=head.last_hash if records else None,
        anchor_seq=head.anchor[0] if head.anchor else None,
        anchor_hash=head.anchor[1] if head.anchor else None,
        links_checked=head.links,
        partial=partial,
        checkpoint=checkpoint,
        failure=head.failure,
    )
