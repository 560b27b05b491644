"""Summaries of the runs: the markdown tables, the targets, `results/latest.json`.

Per scenario and concurrency, the rounds of cmp and of the reference server are
reduced to a median (with min–max) and their ratio; since the rounds alternate A/B,
drift of the shared machine hits both sides alike. Latency, CPU and RSS are cmp's.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtest.runner import SCENARIOS

RESULTS = Path(__file__).resolve().parent / "results"

# The targets.
INGEST_RATIO = 0.50
STATE_RATIO = 0.70
HALF_RATE_P99_MS = 20.0
RSS_PER_WORKER_MIB = 100.0
EXPORT_RECORDS_PER_S = 100_000.0


def say(text: str) -> None:
    print(text, flush=True)


def _median(values: Iterable[float]) -> float:
    found = list(values)
    return statistics.median(found) if found else 0.0


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (scenario, concurrency) in scenario order."""
    rows = []
    keys = sorted(
        {(r["scenario"], r["connections"]) for r in runs},
        key=lambda k: ([s.name for s in SCENARIOS].index(k[0]), k[1]),
    )
    for scenario, conc in keys:
        mine = [r for r in runs if (r["scenario"], r["connections"]) == (scenario, conc)]
        cmp_runs = [r for r in mine if r["server"] == "cmp"]
        ref_runs = [r for r in mine if r["server"] == "reference"]
        cmp_rps = [r["rps"] for r in cmp_runs]
        ref_rps = [r["rps"] for r in ref_runs]
        ref_median = _median(ref_rps)
        rows.append(
            {
                "scenario": scenario,
                "connections": conc,
                "rounds": len(cmp_runs),
                "cmp_rps": _median(cmp_rps),
                "cmp_rps_min": min(cmp_rps, default=0),
                "cmp_rps_max": max(cmp_rps, default=0),
                "ref_rps": ref_median,
                "ref_rps_min": min(ref_rps, default=0),
                "ref_rps_max": max(ref_rps, default=0),
                "ratio": _median(cmp_rps) / ref_median if ref_median else None,
                "p50_ms": _median(r["p50_ms"] for r in cmp_runs),
                "p99_ms": _median(r["p99_ms"] for r in cmp_runs),
                "ref_p99_ms": _median(r["p99_ms"] for r in ref_runs),
                "cpu_us": _median(r["cpu_us_per_req"] for r in cmp_runs),
                "db_cpu_us": _median(r["db_cpu_us_per_req"] or 0 for r in cmp_runs),
                "ref_cpu_us": _median(r["cpu_us_per_req"] for r in ref_runs),
                "rss_mib": max((r["rss_peak_mib"] for r in cmp_runs), default=0),
                "non_2xx": sum(r["non_2xx"] for r in cmp_runs),
                "socket_errors": sum(r["socket_errors"] for r in cmp_runs),
            }
        )
    return rows


def _n(value: float) -> str:
    return f"{value:,.0f}"


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| scenario | c | cmp req/s median (min–max) | reference req/s | ratio "
        "| p50 ms | p99 ms | CPU µs/req | PG µs/req | ref CPU µs/req | RSS MB | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "–"
        out.append(
            f"| {r['scenario']} | {r['connections']} | {_n(r['cmp_rps'])} "
            f"({_n(r['cmp_rps_min'])}–{_n(r['cmp_rps_max'])}) | {_n(r['ref_rps'])} | {ratio} "
            f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['cpu_us']:.0f} | {r['db_cpu_us']:.0f} "
            f"| {r['ref_cpu_us']:.0f} | {r['rss_mib']:.0f} | {r['non_2xx'] + r['socket_errors']} |"
        )
    return "\n".join(out)


def half_rate_table(runs: list[dict[str, Any]]) -> str:
    out = [
        "| scenario | server | target req/s | achieved | p50 ms | p99 ms | p99.9 ms "
        "| max ms | CPU µs/req | non-2xx |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        out.append(
            f"| {r['scenario']} | {r['server']} | {_n(r['target_rate'])} "
            f"| {_n(r['achieved_rate'])} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
            f"| {r['p999_ms']:.1f} | {r['max_ms']:.1f} | {r['cpu_us_per_req']:.0f} "
            f"| {r['non_2xx'] + r['unanswered'] + r['connection_errors']} |"
        )
    return "\n".join(out)


def export_line(export: dict[str, Any]) -> str:
    if not export.get("available"):
        return "export: not available yet"
    if "error" in export:
        return f"export: {export['error']}"
    return (
        f"export (jsonl): {export['records']:,} records, {export['bytes'] / 1e6:,.0f} MB "
        f"in {export['seconds']:.1f} s = {_n(export['records_per_s'])} records/s "
        f"(first byte {export['first_byte_s']:.2f} s); cmp {export['cpu_us_per_record']:.0f}"
        f" µs + PG {export['db_cpu_us_per_record']:.0f} µs CPU per record; cmp RSS "
        f"{export['rss_before_mib']:.0f} → {export['rss_peak_mib']:.0f} MB "
        f"(+{export['rss_growth_mib']:.1f})"
    )


@dataclass(frozen=True)
class Target:
    name: str
    wanted: str
    measured: str
    passed: bool | None  # None: could not be measured

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "MISS", None: "n/a"}[self.passed]


def _best(rows: list[dict[str, Any]], scenario: str) -> dict[str, Any] | None:
    found = [r for r in rows if r["scenario"] == scenario and r["ratio"] is not None]
    return max(found, key=lambda r: r["cmp_rps"], default=None)


def targets(
    rows: list[dict[str, Any]], half: list[dict[str, Any]], rss_mib: float, export: dict[str, Any]
) -> list[Target]:
    out = []
    for scenario, wanted, label in (
        ("ingest-1", INGEST_RATIO, "single-event ingest"),
        ("state", STATE_RATIO, "state reads"),
    ):
        best = _best(rows, scenario)
        others = ", ".join(
            f"c={r['connections']}: {r['ratio']:.0%}"
            for r in rows
            if r["scenario"] == scenario and r is not best and r["ratio"]
        )
        out.append(
            Target(
                f"{label} vs reference",
                f"≥ {wanted:.0%} of reference",
                f"{best['ratio']:.0%} at c={best['connections']} (cmp's best req/s"
                + (f"; {others})" if others else ")")
                if best
                else "not run",
                best["ratio"] >= wanted if best else None,
            )
        )
    ingest = [r for r in half if r["server"] == "cmp" and r["scenario"] == "single"]
    out.append(
        Target(
            "p99 ingest at half the max rate",
            f"≤ {HALF_RATE_P99_MS:.0f} ms",
            f"{ingest[0]['p99_ms']:.1f} ms at {_n(ingest[0]['target_rate'])} req/s (open loop)"
            if ingest
            else "not run",
            ingest[0]["p99_ms"] <= HALF_RATE_P99_MS if ingest else None,
        )
    )
    out.append(
        Target(
            "RSS per worker",
            f"≤ {RSS_PER_WORKER_MIB:.0f} MB",
            f"{rss_mib:.0f} MB peak VmRSS over the whole run",
            rss_mib <= RSS_PER_WORKER_MIB,
        )
    )
    if export.get("records_per_s"):
        out.append(
            Target(
                "export throughput",
                f"≥ {_n(EXPORT_RECORDS_PER_S)} records/s",
                f"{_n(export['records_per_s'])} records/s",
                export["records_per_s"] >= EXPORT_RECORDS_PER_S,
            )
        )
    else:
        out.append(
            Target(
                "export throughput",
                f"≥ {_n(EXPORT_RECORDS_PER_S)} records/s",
                export.get("error", "not available yet"),
                None,
            )
        )
    return out


def targets_table(found: list[Target]) -> str:
    out = ["| target | wanted | measured | verdict |", "|---|---|---|---|"]
    out += [f"| {t.name} | {t.wanted} | {t.measured} | {t.verdict} |" for t in found]
    return "\n".join(out)


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, cwd=RESULTS.parent.parent
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        wrk = subprocess.run(
            ["wrk", "-v"], capture_output=True, text=True, timeout=10
        ).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        wrk = ""
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_rev": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "loadavg": os.getloadavg(),
    }


def write_json(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)
