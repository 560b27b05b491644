"""Where cmp's CPU goes under a scenario (`--profile [SCENARIO]`, needs py-spy).

Runs one extra wrk run of the scenario (default `ingest-1`) at c=256 while
`py-spy record` samples the (first) cmp worker, then folds the raw stacks by function:
*self* (the frame on top of the stack) and *inclusive* (anywhere in the stack, counted
once per sample) shares of the samples. Line numbers are dropped so a function's lines add up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from loadtest.runner import SCENARIOS, LoadConfig, Server, run_wrk

SAMPLE_RATE = 100
LINE_NO = re.compile(r":\d+\)$")
CMP_FRAME = re.compile(r"[(/]cmp/(?!__main__)")


def find_py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def fold(raw: str, top: int = 15) -> dict[str, Any]:
    """Self and inclusive shares per function from py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [
            LINE_NO.sub(")", f)
            for f in stack.split(";")
            if not f.startswith(("process ", "thread "))
        ]
        if not frames:
            continue
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            anywhere[frame] += n
    if not total:
        return {"samples": 0, "self": [], "inclusive": []}

    def share(
        counter: Counter[str], only: re.Pattern[str] | None = None
    ) -> list[tuple[str, float]]:
        found = [(f, n) for f, n in counter.most_common() if only is None or only.search(f)]
        return [(f, round(100 * n / total, 1)) for f, n in found[:top]]

    return {"samples": total, "self": share(own), "inclusive": share(anywhere, CMP_FRAME)}


async def profile_run(
    py_spy: str, wrk: str, server: Server, load: LoadConfig, duration: int, name: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The wrk result of the profiled run and the folded profile."""
    scenario = next(s for s in SCENARIOS if s.name == name)
    pid = server.worker_pids()[0]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profile.raw"
        spy = await asyncio.create_subprocess_exec(
            py_spy,
            "record",
            "-p",
            str(pid),
            "-d",
            str(duration),
            "-r",
            str(SAMPLE_RATE),
            "-f",
            "raw",
            "-o",
            str(out),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            result = await run_wrk(wrk, server, scenario, 256, duration, load)
            _, err = await asyncio.wait_for(spy.communicate(), duration + 30)
        finally:
            if spy.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(spy.pid, signal.SIGKILL)
                await spy.wait()
        if not out.exists():
            return result, {"error": err.decode(errors="replace")[-400:]}
        return result, fold(out.read_text())


def format_profile(folded: dict[str, Any]) -> str:
    if "error" in folded:
        return f"profile failed: {folded['error']}"
    lines = [
        f"py-spy: {folded['samples']} samples at {SAMPLE_RATE} Hz (share of busy samples)",
        "",
        "self (top of stack):",
    ]
    lines += [f"  {pct:5.1f}%  {frame}" for frame, pct in folded["self"]]
    lines += ["", "inclusive, cmp's own functions:"]
    lines += [f"  {pct:5.1f}%  {frame}" for frame, pct in folded["inclusive"]]
    return "\n".join(lines)
