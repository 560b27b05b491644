"""CPU and memory of server processes, read from /proc (Linux only).

`cpu_seconds` sums utime+stime over a process tree (a `cmpd serve --workers 2`
supervisor and its workers; the PostgreSQL postmaster and its backends), so CPU per
request can be taken as the difference of two readings divided by the requests between.
`RssSampler` polls VmRSS of every process of a tree in the background and keeps each
one's peak, because VmHWM alone would report the peak of the whole lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    return text[text.rindex(")") + 2 :].split()


def children_of(pid: int) -> list[int]:
    """Direct children, from every thread's `children` list (needs a 3.5+ kernel)."""
    found: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return found
    for task in tasks:
        with contextlib.suppress(OSError, ValueError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def tree(pid: int, *, max_depth: int = 3) -> list[int]:
    """The process and its descendants (bounded depth: servers are shallow trees)."""
    pids = [pid]
    level = [pid]
    for _ in range(max_depth):
        level = [c for p in level for c in children_of(p)]
        if not level:
            break
        pids += level
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of a process tree: utime+stime, plus cutime+cstime of reaped children.

    A PostgreSQL backend or autovacuum worker that exits between two readings moves
    its time into its parent's cutime/cstime, so the sum over a tree never goes back.
    """
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # After the name the state is index 0: utime, stime, cutime, cstime
            # (fields 14–17 of proc(5)) are indexes 11–14.
            total += sum(int(v) for v in fields[11:15])
    return total / TICKS


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of one process in KiB (empty when it is gone)."""
    out: dict[str, int] = {}
    try:
        lines = (PROC / str(pid) / "status").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


def workers_of(root: int) -> list[int]:
    """The processes that serve HTTP: the workers of a supervisor, else the root itself."""
    kids = [c for c in children_of(root) if _is_python(c)]
    return kids or [root]


def _is_python(pid: int) -> bool:
    try:
        return b"python" in (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False


@dataclass
class RssSampler:
    """Polls VmRSS of `pids` until stopped; `peak_mib` is the largest single process."""

    pids: list[int]
    interval: float = 0.2
    peaks_kib: dict[int, int] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    def sample(self) -> None:
        for pid in self.pids:
            rss = memory_kib(pid).get("VmRSS", 0)
            if rss > self.peaks_kib.get(pid, 0):
                self.peaks_kib[pid] = rss

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def start(self) -> RssSampler:
        self.sample()
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sample()

    @property
    def peak_mib(self) -> float:
        return max(self.peaks_kib.values(), default=0) / 1024

    @property
    def total_mib(self) -> float:
        return sum(self.peaks_kib.values()) / 1024
