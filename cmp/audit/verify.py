"""Offline verifier for exported consent logs: `cmpd verify FILE [--checkpoint F --public-key F]`.

It recomputes every record's hash from its fields, checks that each record links to
the one before, that seqs have no gaps and that one site runs throughout, and, given a
signed checkpoint, that the export contains exactly what the server signed. It names
the first line that does not fit. The rules are those of `cmp.audit.chain`, written up
in docs/audit-log.md.

The file is streamed. Big files are cut into blocks checked by worker processes, since
JSON decoding is CPU-bound; the head process only checks the seams between blocks.
Lines in the exact canonical form of `chain.export_line` take a fast path that hashes
the line's own bytes instead of decoding and re-encoding them; it accepts only what the
plain path would accept, and every other line takes the plain path.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import itertools
import json
import os
import re
import sys
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cmp.audit.chain import CHAIN_FIELDS, GENESIS, HEX64_RE, LINK_FIELDS, RECORD_VERSION
from cmp.audit.signing import KeyFileError, checkpoint_problem, load_public_key
from cmp.canonical import canonical_json

BLOCK_BYTES: Final = 1 << 20
# Below this a worker pool costs more to start than it saves.
PARALLEL_MIN_BYTES: Final = 8 << 20
MAX_WORKERS: Final = 8

Pin = tuple[str, int, str]  # the checkpoint's (site_id, seq, hash)


@dataclass(frozen=True, slots=True)
class Failure:
    """The first thing that does not fit; ``line`` is None for a checkpoint-level failure."""

    line: int | None
    seq: int | None
    reason: str

    def __str__(self) -> str:
        if self.line is None:
            return self.reason
        return f"line {self.line}, seq {'?' if self.seq is None else self.seq}: {self.reason}"


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


class _LineError(Exception):
    def __init__(self, reason: str, seq: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.seq = reason, seq


# --- one line -> (seq, site_id, prev_hash, hash, recomputed hash) ------------------------

_STR = rb'"[^"\\\x00-\x1f]*+"'  # a JSON string without escapes encodes as itself
_OPT_STR = rb"(?:null|" + _STR + rb")"
_CHOICE = rb'"[a-z0-9_.:-]++":(?:true|false)'
_CHOICES = rb"(?:null|\{(?:" + _CHOICE + rb"(?:," + _CHOICE + rb")*+)?\})"
_FAST_VALUES: Final = {
    "v": rb"1",
    "site_id": rb'"(?P<site_id>[^"\\\x00-\x1f]*+)"',
    "seq": rb"(?P<seq>[1-9][0-9]*+)",
    "event_id": _STR,
    "subject_digest": _STR,
    "policy_version": rb"(?:null|[1-9][0-9]*+)",
    "policy_sha256": _OPT_STR,
    "action": _STR,
    "purposes": rb"(?P<purposes>" + _CHOICES + rb")",
    "services": rb"(?P<services>" + _CHOICES + rb")",
    "gpc": rb"(?:null|true|false)",
    "prev_hash": rb'"(?P<prev_hash>[0-9a-f]{64})"',
    "hash": rb'"(?P<hash>[0-9a-f]{64})"',
    "subject_id": _OPT_STR,
}


def _fast_pattern() -> re.Pattern[bytes]:
    """Matches exactly canonical_json of an export row with no extra fields, whose
    strings need no escaping and whose choice maps have simple keys. The runs of members
    around the link fields are the groups keep0..keep3: together, the record's bytes."""
    pattern, run, keep = b"", b"\\{", 0
    for index, name in enumerate(sorted(CHAIN_FIELDS + LINK_FIELDS)):
        member = b'%s"%s":%s' % (
            b"," if index else b"",
            name.encode(),
            _FAST_VALUES.get(name, _OPT_STR),
        )
        if name in LINK_FIELDS:
            pattern += b"(?P<keep%d>%s)%s" % (keep, run, member)
            run, keep = b"", keep + 1
        else:
            run += member
    return re.compile(pattern + b"(?P<keep%d>%s\\})" % (keep, run))


_FAST: Final = _fast_pattern()


# A log repeats a handful of choice maps millions of times: remember the verdicts.
_choices_seen: dict[bytes, bool] = {}


def _sorted_keys(choices: bytes) -> bool:
    # Canonical JSON sorts keys; the pattern cannot, so check order (and uniqueness) here.
    known = _choices_seen.get(choices)
    if known is None:
        keys = [item.split(b'":', 1)[0] for item in choices[1:-1].split(b",")]
        known = all(a < b for a, b in itertools.pairwise(keys))
        if len(_choices_seen) >= 4096:
            _choices_seen.clear()
        _choices_seen[choices] = known
    return known


def _parse_fast(raw: bytes) -> tuple[int, str, str, str, str] | None:
    m = _FAST.fullmatch(raw)
    if m is None:
        return None
    seq, site_id, prev, digest, purposes, services, *kept = m.group(
        "seq",
        "site_id",
        "prev_hash",
        "hash",
        "purposes",
        "services",
        "keep0",
        "keep1",
        "keep2",
        "keep3",
    )
    if not (_sorted_keys(purposes) and _sorted_keys(services)):
        return None
    try:
        raw.decode("utf-8")  # the pattern admits any byte >= 0x20; JSON needs UTF-8
    except UnicodeDecodeError:
        return None
    return (
        int(seq),
        site_id.decode("utf-8"),
        prev.decode("ascii"),
        digest.decode("ascii"),
        hashlib.sha256(prev + b"".join(kept)).hexdigest(),
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Floats are rare and only wrong inside the record: count them while decoding, and only
# look where they are when this count moved.
_floats_decoded = [0]


def _note_float(text: str) -> float:
    _floats_decoded[0] += 1
    return float(text)


_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_note_float
)


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return False


def _parse_plain(raw: bytes) -> tuple[int, str, str, str, str]:
    """The definition: decode the row, take the chain fields, hash their canonical JSON."""
    floats_before = _floats_decoded[0]
    try:
        row = _DECODER.decode(raw.decode("utf-8"))
    except ValueError as exc:  # includes JSONDecodeError and UnicodeDecodeError
        raise _LineError(f"malformed JSON ({exc})") from None
    if not isinstance(row, dict):
        raise _LineError("malformed JSON (not an object)")
    seq = row.get("seq")
    known_seq = seq if type(seq) is int else None
    for name in (*CHAIN_FIELDS, "prev_hash", "hash"):
        if name not in row:
            raise _LineError(f"missing field {name!r}", known_seq)
    if known_seq is None or known_seq < 1:
        raise _LineError("seq must be a positive integer")
    seq = known_seq
    if row["v"] != RECORD_VERSION or type(row["v"]) is not int:
        raise _LineError(f"unsupported record version v={row['v']!r}", seq)
    site_id, prev, digest = row["site_id"], row["prev_hash"], row["hash"]
    if not isinstance(site_id, str):
        raise _LineError("site_id must be a string", seq)
    for name, value in (("prev_hash", prev), ("hash", digest)):
        if not isinstance(value, str) or not HEX64_RE.fullmatch(value):
            raise _LineError(f"{name} must be 64 lowercase hex characters", seq)
    record = {name: row[name] for name in CHAIN_FIELDS}
    if _floats_decoded[0] != floats_before:
        floats = [name for name, value in record.items() if _has_float(value)]
        if floats:
            raise _LineError(f"field {floats[0]!r} holds a float; canonical JSON has none", seq)
    actual = hashlib.sha256(prev.encode("ascii") + canonical_json(record)).hexdigest()
    return seq, site_id, prev, digest, actual


# --- sequence rules ----------------------------------------------------------------------


class _Run:
    """Checks a run of lines in order. Workers check one block each (``head`` False);
    the head run sees the whole export's start and absorbs the blocks in order."""

    def __init__(self, partial: bool, pin: Pin | None, head: bool) -> None:
        self.partial, self.pin, self.head = partial, pin, head
        self.records = 0
        self.links = 0
        self.first: tuple[int, int, str, str] | None = None  # line, seq, site, prev_hash
        self.site: str | None = None
        self.last_seq = 0
        self.last_hash = ""
        self.anchor: tuple[int, str] | None = None
        self.pin_seen = False
        self.failure: Failure | None = None
        self.lines = 0  # lines a worker's block held, blank ones included

    def feed(self, line_no: int, raw: bytes) -> bool:
        """Check one line; False once something did not fit."""
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        if not raw or raw.isspace():
            return True  # blank lines carry nothing to tamper with
        try:
            seq, site, prev, digest, actual = _parse_fast(raw) or _parse_plain(raw)
        except _LineError as exc:
            self.failure = Failure(line_no, exc.seq, exc.reason)
            return False
        if self.first is None:
            problem = self._start(line_no, seq, site, prev)
        else:
            problem = self._follow(seq, site, prev)
        problem = problem or self._own(seq, prev, digest, actual)
        if problem:
            self.failure = Failure(line_no, seq, problem)
            return False
        self.records += 1
        self.last_seq, self.last_hash = seq, digest
        return True

    def _start(self, line_no: int, seq: int, site: str, prev: str) -> str | None:
        self.first, self.site = (line_no, seq, site, prev), site
        if not self.head:
            return None  # the head checks it against the block before
        if self.pin is not None and site != self.pin[0]:
            return f"site_id {site!r} differs from the checkpoint's site {self.pin[0]!r}"
        if not self.partial and prev != GENESIS and seq > 1:
            self.anchor = (seq - 1, prev)  # earlier records were purged (retention)
        return None

    def _follow(self, seq: int, site: str, prev: str) -> str | None:
        if site != self.site:
            return f"site_id {site!r} differs from {self.site!r} of the first record"
        last = self.last_seq
        if seq <= last:
            return f"seq out of order (comes after seq {last})"
        if seq == last + 1:
            if prev != self.last_hash:
                return f"prev_hash does not link to the hash of seq {last}"
            self.links += 1
        elif not self.partial:
            missing = f"seq {last + 1}" if seq == last + 2 else f"seqs {last + 1}..{seq - 1}"
            return f"seq gap after seq {last} ({missing} missing: deleted records?)"
        return None

    def _own(self, seq: int, prev: str, digest: str, actual: str) -> str | None:
        if seq == 1 and prev != GENESIS:
            return "seq 1 must have the genesis prev_hash (64 zeros)"
        if seq != 1 and prev == GENESIS:
            return "genesis prev_hash on a record other than seq 1"
        if actual != digest:
            return f"hash mismatch: the fields hash to {actual}, the line says {digest}"
        if self.pin is not None:
            _, pin_seq, pin_hash = self.pin
            if seq == pin_seq:
                self.pin_seen = True
                if digest != pin_hash:
                    return f"hash differs from the signed checkpoint at seq {pin_seq}"
            elif seq == pin_seq + 1:
                self.pin_seen = True
                if prev != pin_hash:
                    return f"prev_hash differs from the signed checkpoint's hash of seq {pin_seq}"
        return None

    def absorb(self, block: _Run, base: int) -> bool:
        """Append a block checked elsewhere, whose line numbers start after ``base`` lines:
        check its seam, then take over its state."""
        if block.first is not None:
            line_no, seq, site, prev = block.first
            line_no += base
            if self.first is None:
                problem = self._start(line_no, seq, site, prev)
            else:
                problem = self._follow(seq, site, prev)
            if problem:
                self.failure = Failure(line_no, seq, problem)
                return False
            if block.records:
                self.records += block.records
                self.links += block.links
                self.last_seq, self.last_hash = block.last_seq, block.last_hash
            self.pin_seen = self.pin_seen or block.pin_seen
        if block.failure is not None:
            failure = block.failure
            self.failure = Failure(base + (failure.line or 0), failure.seq, failure.reason)
            return False
        return True

    def finish(self) -> None:
        if self.failure is not None or self.pin is None or self.pin_seen:
            return
        _, pin_seq, pin_hash = self.pin
        if not self.records and pin_seq == 0 and pin_hash == GENESIS:
            return
        if not self.records or pin_seq > self.last_seq:
            end = f"seq {self.last_seq}" if self.records else "no records"
            reason = f"the export stops ({end}) before the checkpoint at seq {pin_seq}"
        else:
            reason = f"the export has no record at seq {pin_seq} or {pin_seq + 1} to check it"
        self.failure = Failure(None, None, f"checkpoint: {reason}")


def _check_block(block: bytes, partial: bool, pin: Pin | None) -> _Run:
    """Worker entry point: check one block of whole lines, numbered from 1 within it."""
    run = _Run(partial, pin, head=False)
    feed = run.feed
    lines = block.split(b"\n")
    if not lines[-1]:
        lines.pop()  # the block's final newline ends a line, it does not start one
    run.lines = len(lines)
    for line_no, raw in enumerate(lines, 1):
        if not feed(line_no, raw):
            break
    return run


def _check_range(path: str, start: int, end: int, partial: bool, pin: Pin | None) -> _Run:
    """Worker entry point: check the lines of a plain file that start in [start, end).

    Workers read the file themselves so the head process does not copy it through pipes.
    """
    with open(path, "rb") as handle:
        skip_partial = False
        if start:
            handle.seek(start - 1)
            skip_partial = handle.read(1) != b"\n"  # that line belongs to the block before
        block = handle.read(end - start)
        if block and not block.endswith(b"\n"):
            block += handle.readline()  # finish the last line started in the range
    if skip_partial:
        block = block[block.find(b"\n") + 1 :] if b"\n" in block else b""
    return _check_block(block, partial, pin)


# --- input -------------------------------------------------------------------------------


def _open(path: Path) -> IO[bytes]:
    """The export as bytes, gunzipped when it starts with the gzip magic number."""
    handle: IO[bytes] = path.open("rb")
    if handle.read(2) != b"\x1f\x8b":
        handle.seek(0)
        return handle
    handle.close()
    return gzip.open(path, "rb")  # type: ignore[return-value]


def _blocks(stream: IO[bytes]) -> Iterator[bytes]:
    """The stream cut into blocks of whole lines."""
    rest = b""
    while data := stream.read(BLOCK_BYTES):
        data = rest + data
        cut = data.rfind(b"\n") + 1
        block, rest = data[:cut], data[cut:]
        if block:
            yield block
    if rest:
        yield rest


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


def _run_parallel(head: _Run, path: Path, compressed: bool, workers: int) -> None:
    """Check blocks in worker processes and absorb them in file order.

    A bounded window of blocks in flight keeps memory constant whatever the file size.
    A plain file is split by byte ranges that workers read; a gzip stream cannot be
    entered in the middle, so the head process inflates it and ships the blocks.
    """
    partial, pin = head.partial, head.pin
    pool = ProcessPoolExecutor(max_workers=workers)
    pending: deque[Future[_Run]] = deque()
    base = 0  # lines before the next block to absorb

    def absorb_oldest() -> bool:
        nonlocal base
        block = pending.popleft().result()
        ok = head.absorb(block, base)
        base += block.lines
        return ok

    try:
        if compressed:
            with _open(path) as stream:
                for block in _blocks(stream):
                    pending.append(pool.submit(_check_block, block, partial, pin))
                    if len(pending) >= 2 * workers and not absorb_oldest():
                        return
        else:
            size = path.stat().st_size
            for start in range(0, size, BLOCK_BYTES):
                end = min(start + BLOCK_BYTES, size)
                pending.append(pool.submit(_check_range, str(path), start, end, partial, pin))
                if len(pending) >= 2 * workers and not absorb_oldest():
                    return
        while pending:
            if not absorb_oldest():
                return
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
    head = _Run(partial, pin, head=True)
    if failure is not None:
        head.failure = failure
    elif isinstance(lines_or_path, str | os.PathLike):
        path = Path(lines_or_path)
        with _open(path) as stream:
            compressed = not isinstance(stream, io.BufferedReader)
            if workers is None:
                big = path.stat().st_size >= PARALLEL_MIN_BYTES
                workers = min(_cpus(), MAX_WORKERS) if big else 1
            if workers <= 1:
                for line_no, raw in enumerate(stream, 1):
                    if not head.feed(line_no, raw):
                        break
        if workers > 1:
            _run_parallel(head, path, compressed, workers)
    else:
        for line_no, line in enumerate(lines_or_path, 1):
            raw = line.encode("utf-8") if isinstance(line, str) else line
            if not head.feed(line_no, raw):
                break
    head.finish()
    return _result(head, partial, checkpoint)


def _result(head: _Run, partial: bool, checkpoint: Mapping[str, Any] | None) -> Result:
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


# --- command line ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cmpd verify",
        description="Recompute an exported consent log's hash chain offline "
        "and name the first record that does not fit.",
        epilog="Exit status: 0 verified, 1 verification failed, 2 usage or unreadable file.",
    )
    parser.add_argument("file", help="JSONL export (gzip accepted), or - for standard input")
    parser.add_argument("--checkpoint", metavar="FILE", help="signed checkpoint (JSON)")
    parser.add_argument(
        "--public-key", metavar="FILE", help="server public key: PEM or the JSON document"
    )
    parser.add_argument(
        "--partial",
        action="store_true",
        help="filtered export: allow seq gaps, check links only between consecutive seqs",
    )
    parser.add_argument(
        "--workers", type=int, metavar="N", help="worker processes (default: one per CPU)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """`cmpd verify`: ``argv`` holds the arguments after ``verify``. Returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on usage errors; a caller wants a code
        return exc.code if isinstance(exc.code, int) else 2
    if args.workers is not None and args.workers < 1:
        parser.print_usage(sys.stderr)
        print("cmpd verify: error: --workers must be at least 1", file=sys.stderr)
        return 2
    checkpoint: dict[str, Any] | None = None
    public_key: Ed25519PublicKey | None = None
    if args.checkpoint is not None:
        if args.public_key is None:
            parser.print_usage(sys.stderr)
            print("cmpd verify: error: --checkpoint needs --public-key", file=sys.stderr)
            return 2
        try:
            checkpoint = json.loads(Path(args.checkpoint).read_bytes())
        except (OSError, ValueError) as exc:
            print(f"cmpd verify: cannot read checkpoint {args.checkpoint}: {exc}", file=sys.stderr)
            return 2
        if not isinstance(checkpoint, dict):
            print(f"cmpd verify: {args.checkpoint} is not a JSON object", file=sys.stderr)
            return 2
    if args.public_key is not None:
        try:
            public_key = load_public_key(args.public_key)
        except KeyFileError as exc:
            print(f"cmpd verify: {exc}", file=sys.stderr)
            return 2
    source: str | Iterable[bytes] = sys.stdin.buffer if args.file == "-" else args.file
    try:
        result = verify_export(
            source,
            checkpoint=checkpoint,
            public_key=public_key,
            partial=args.partial,
            workers=args.workers,
        )
    except (OSError, EOFError, zlib.error) as exc:
        print(f"cmpd verify: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
