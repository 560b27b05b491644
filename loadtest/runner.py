"""One measured run: a load generator against one server, with its CPU and memory.

`run_wrk` drives a scenario closed-loop with wrk (`loadtest/wrk/*.lua`) at a given
concurrency; `run_open_loop` drives it at a fixed rate with `loadtest.openloop`.
Around each run the server's CPU time (utime+stime of its process tree) and the
embedded PostgreSQL's are read, and its workers' VmRSS is polled, so each result
carries CPU µs per request next to req/s and latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest import procstat

WRK_DIR = Path(__file__).resolve().parent / "wrk"
# Ingest runs: wrk runs this much past the Lua deadline, so that every request sent is
# answered and the count of acknowledged events is exact (reads need no grace).
GRACE_SECONDS = 1
MARKER = "LOADTEST_JSON "


@dataclass(frozen=True)
class Scenario:
    name: str
    script: str
    label: str
    events_per_request: int = 0  # > 0: an ingest scenario, counted against the database
    site: str = ""  # the bench site it drives: "" the plain one, else a `LoadConfig.others` key


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("ingest-1", "ingest.lua", "ingest POST, 1 event", 1),
    # beside its plain twin: the same events to a site with jurisdiction rules (#21)
    Scenario("ingest-1-rules", "ingest_rules.lua", "ingest POST, 1 event, rules", 1, "rules"),
    Scenario("ingest-10", "batch.lua", "ingest POST, 10 events", 10),
    Scenario("state", "state.lua", "state GET"),
    # beside its plain twin: reads of subjects linked to users (#23)
    Scenario("state-linked", "state.lua", "state GET, linked subject", site="linked"),
    Scenario("lookup-100", "lookup.lua", "lookup POST, 100 ids"),
    # Beside ingest-1 in the same run: the impression path against the event path (#22).
    Scenario("impressions-1", "impressions.lua", "impressions POST, 1 showing"),
    # Not in `make bench`'s default set: 10 showings a request (loadtest/README.md).
    Scenario("impressions-10", "impressions_batch.lua", "impressions POST, 10 showings"),
)


@dataclass(frozen=True)
class Server:
    """A server under test: where it listens and which processes to account."""

    name: str
    port: int
    root_pid: int
    db_pid: int | None = None

    def cpu_pids(self) -> list[int]:
        return procstat.tree(self.root_pid)

    def worker_pids(self) -> list[int]:
        return procstat.workers_of(self.root_pid)

    def db_pids(self) -> list[int]:
        return procstat.tree(self.db_pid, max_depth=1) if self.db_pid else []


@dataclass(frozen=True)
class SiteLoad:
    """One bench site as the scripts see it: subjects are s-0 … s-(subjects-1)."""

    site: str
    origin: str
    read_key: str
    subjects: int
    wrk_args: tuple[str, ...] = ()  # more key=value arguments for its scripts


@dataclass(frozen=True)
class LoadConfig(SiteLoad):
    """The plain bench site, and the others by `Scenario.site`."""

    others: Mapping[str, SiteLoad] = field(default_factory=dict)

    def of(self, scenario: Scenario) -> SiteLoad:
        if not scenario.site:
            return self
        if scenario.site not in self.others:
            raise ValueError(f"{scenario.name} needs the bench site '{scenario.site}'")
        return self.others[scenario.site]


class Meter:
    """CPU of server and database between `start` and `stop`, and the workers' peak RSS."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.rss = procstat.RssSampler(server.worker_pids())
        self.cpu0 = self.db0 = 0.0

    def start(self) -> None:
        self.cpu0 = procstat.cpu_seconds(self.server.cpu_pids())
        self.db0 = procstat.cpu_seconds(self.server.db_pids())
        self.rss.start()

    async def stop(self, requests: int) -> dict[str, Any]:
        cpu = procstat.cpu_seconds(self.server.cpu_pids()) - self.cpu0
        db = procstat.cpu_seconds(self.server.db_pids()) - self.db0
        await self.rss.stop()
        per = max(requests, 1)
        return {
            "cpu_s": round(cpu, 3),
            "cpu_us_per_req": round(cpu / per * 1e6, 1),
            "db_cpu_us_per_req": round(db / per * 1e6, 1) if self.server.db_pid else None,
            "rss_peak_mib": round(self.rss.peak_mib, 1),
            "rss_total_mib": round(self.rss.total_mib, 1),
        }


async def _run_child(argv: list[str], within_s: float) -> str:
    """Run a generator in its own process group; kill that group if we stop early."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), within_s)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(
            f"{Path(argv[0]).name} exited {proc.returncode}: {err.decode(errors='replace')[-800:]}"
        )
    return out.decode(errors="replace")


def _statuses(counts: dict[str, int]) -> tuple[int, int]:
    ok = sum(v for k, v in counts.items() if k.startswith("2"))
    return ok, sum(counts.values()) - ok


async def run_wrk(
    wrk: str, server: Server, scenario: Scenario, connections: int, duration: int, load: LoadConfig
) -> dict[str, Any]:
    nonce = random.getrandbits(31)
    grace = GRACE_SECONDS if scenario.events_per_request else 0
    target = load.of(scenario)
    load_before = os.getloadavg()[0]
    argv = [
        wrk,
        "-t2",
        f"-c{connections}",
        f"-d{duration + grace}s",
        "--timeout",
        "30s",
        "-s",
        str(WRK_DIR / scenario.script),
        f"http://127.0.0.1:{server.port}",
        "--",
        f"duration={duration}",
        f"nonce={nonce}",
        f"site={target.site}",
        f"origin={target.origin}",
        f"key={target.read_key}",
        f"subjects={target.subjects}",
        *target.wrk_args,
    ]
    meter = Meter(server)
    meter.start()
    out = await _run_child(argv, within_s=duration + grace + 30)
    line = next((ln for ln in out.splitlines() if ln.startswith(MARKER)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out[-800:]}")
    raw = json.loads(line[len(MARKER) :])
    measured = await meter.stop(raw["received"])
    ok, bad = _statuses(raw["statuses"])
    errors = raw["errors"]
    socket_errors = errors["connect"] + errors["read"] + errors["write"]
    pct = raw["latency_us"]["percentiles"]
    return {
        "server": server.name,
        "scenario": scenario.name,
        "site": target.site,
        "connections": connections,
        "duration_s": duration,
        "nonce": f"{nonce:08x}",
        "loadavg_1m": load_before,
        "rps": round(raw["in_window"] / raw["window_s"], 1),
        "p50_ms": pct["50"] / 1000,
        "p90_ms": pct["90"] / 1000,
        "p99_ms": pct["99"] / 1000,
        "p999_ms": pct["99.9"] / 1000,
        "max_ms": raw["latency_us"]["max"] / 1000,
        "sent": raw["sent"],
        "received": raw["received"],
        "ok": ok,
        "non_2xx": bad,
        "statuses": raw["statuses"],
        "socket_errors": socket_errors,
        "exact": raw["sent"] == raw["received"] and socket_errors == 0,
        "events_per_request": scenario.events_per_request,
        "events_2xx": ok * scenario.events_per_request,
        **measured,
    }


async def run_open_loop(
    server: Server,
    scenario: str,
    rate: float,
    duration: float,
    load: LoadConfig,
    connections: int = 64,
) -> dict[str, Any]:
    nonce = random.getrandbits(31)
    load_before = os.getloadavg()[0]
    argv = [
        sys.executable,
        "-m",
        "loadtest.openloop",
        "--port",
        str(server.port),
        "--scenario",
        scenario,
        "--rate",
        f"{rate:.0f}",
        "--duration",
        str(duration),
        "--connections",
        str(connections),
        "--site",
        load.site,
        "--origin",
        load.origin,
        "--key",
        load.read_key,
        "--subjects",
        str(load.subjects),
        "--nonce",
        str(nonce),
    ]
    meter = Meter(server)
    meter.start()
    out = await _run_child(argv, within_s=duration + 60)
    raw: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    measured = await meter.stop(raw["received"])
    ok, bad = _statuses(raw["statuses"])
    lat = raw["latency_ms"]
    return {
        "server": server.name,
        "scenario": scenario,
        "nonce": f"{nonce:08x}",
        "loadavg_1m": load_before,
        "target_rate": round(rate),
        "achieved_rate": round(raw["achieved_rate"], 1),
        "connections": connections,
        "p50_ms": lat["50"],
        "p90_ms": lat["90"],
        "p99_ms": lat["99"],
        "p999_ms": lat["99.9"],
        "max_ms": lat["100"],
        "sent": raw["sent"],
        "received": raw["received"],
        "ok": ok,
        "non_2xx": bad,
        "unanswered": raw["unanswered"],
        "connection_errors": raw["connection_errors"],
        "max_schedule_lag_ms": raw["max_schedule_lag_ms"],
        "events_per_request": 1 if scenario == "single" else 0,
        "events_2xx": ok if scenario == "single" else 0,
        **measured,
    }
