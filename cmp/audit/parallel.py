"""Big exports checked by worker processes, block by block, absorbed in file order.

JSON decoding is CPU-bound, so a big file is cut into blocks of whole lines that worker
processes check with the same rules (`cmp.audit.runs.Run`); the head process checks only
the seams between blocks. A bounded window of blocks in flight keeps memory constant.
"""

from __future__ import annotations

import gzip
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import IO, Final

from cmp.audit.runs import Pin, Run

BLOCK_BYTES: Final = 1 << 20
# Below this a worker pool costs more to start than it saves.
PARALLEL_MIN_BYTES: Final = 8 << 20
MAX_WORKERS: Final = 8


def _check_block(block: bytes, partial: bool, pin: Pin | None) -> Run:
    """Worker entry point: check one block of whole lines, numbered from 1 within it."""
    run = Run(partial, pin, head=False)
    feed = run.feed
    lines = block.split(b"\n")
    if not lines[-1]:
        lines.pop()  # the block's final newline ends a line, it does not start one
    run.lines = len(lines)
    for line_no, raw in enumerate(lines, 1):
        if not feed(line_no, raw):
            break
    return run


def _check_range(path: str, start: int, end: int, partial: bool, pin: Pin | None) -> Run:
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


def open_export(path: Path) -> IO[bytes]:
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


def cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


def run_parallel(head: Run, path: Path, compressed: bool, workers: int) -> None:
    """Check blocks in worker processes and absorb them in file order.

    A bounded window of blocks in flight keeps memory constant whatever the file size.
    A plain file is split by byte ranges that workers read; a gzip stream cannot be
    entered in the middle, so the head process inflates it and ships the blocks.
    """
    partial, pin = head.partial, head.pin
    pool = ProcessPoolExecutor(max_workers=workers)
    pending: deque[Future[Run]] = deque()
    base = 0  # lines before the next block to absorb

    def absorb_oldest() -> bool:
        nonlocal base
        block = pending.popleft().result()
        ok = head.absorb(block, base)
        base += block.lines
        return ok

    try:
        if compressed:
            with open_export(path) as stream:
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
