"""The sequence rules of an export: each record links to the one before, seqs without
gaps (unless the export is filtered), one site throughout, and a signed checkpoint's
record present with the signed hash. `Run` checks lines in order; a run checked by a
worker process is absorbed by the head run, which checks the seam.
"""

from __future__ import annotations

from dataclasses import dataclass

from cmp.audit.chain import GENESIS
from cmp.audit.lines import LineError, parse

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


class Run:
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
            seq, site, prev, digest, actual = parse(raw)
        except LineError as exc:
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

    def absorb(self, block: Run, base: int) -> bool:
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
