"""Export throughput: stream a site's whole log as JSON lines, if cmp can yet.

The audit export (`GET /v1/sites/{site}/events?format=jsonl`) is looked up in the
server's own `/openapi.json` at run time; without it the benchmark says so and goes on.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from loadtest import procstat
from loadtest.runner import Server

EXPORT_PATH = "/v1/sites/{site_id}/events"
CHUNK = 1 << 16


async def export_available(session: aiohttp.ClientSession, base: str) -> bool:
    async with session.get(f"{base}/openapi.json") as resp:
        if resp.status != 200:
            return False
        document = await resp.json()
    return "get" in document.get("paths", {}).get(EXPORT_PATH, {})


async def measure_export(
    session: aiohttp.ClientSession,
    base: str,
    site: str,
    audit_key: str,
    server: Server,
    within_s: float = 120.0,
    query: str = "",
) -> dict[str, Any]:
    """Stream the export, count records (lines), watch the workers' RSS meanwhile;
    `query` adds parameters (e.g. `&from=…&to=…`)."""
    url = f"{base}/v1/sites/{site}/events?format=jsonl{query}"
    headers = {"Authorization": f"Bearer {audit_key}", "Accept-Encoding": "identity"}
    pids = server.worker_pids()
    before = sum(procstat.memory_kib(p).get("VmRSS", 0) for p in pids) / 1024
    sampler = procstat.RssSampler(pids, interval=0.1).start()
    cpu0 = procstat.cpu_seconds(server.cpu_pids())
    db0 = procstat.cpu_seconds(server.db_pids())
    records = size = 0
    started = time.perf_counter()
    first_byte: float | None = None
    try:
        async with session.get(
            url, headers=headers, timeout=aiohttp.ClientTimeout(total=within_s)
        ) as resp:
            if resp.status != 200:
                return {
                    "available": True,
                    "error": f"HTTP {resp.status}: {(await resp.text())[:300]}",
                }
            async for chunk in resp.content.iter_chunked(CHUNK):
                if first_byte is None:
                    first_byte = time.perf_counter() - started
                records += chunk.count(b"\n")
                size += len(chunk)
    except TimeoutError:
        return {
            "available": True,
            "error": f"no complete export within {within_s:.0f} s",
            "records": records,
        }
    finally:
        await sampler.stop()
    seconds = time.perf_counter() - started
    cpu = procstat.cpu_seconds(server.cpu_pids()) - cpu0
    db = procstat.cpu_seconds(server.db_pids()) - db0
    return {
        "available": True,
        "records": records,
        "bytes": size,
        "seconds": round(seconds, 2),
        "records_per_s": round(records / seconds, 1) if seconds else 0.0,
        "first_byte_s": round(first_byte or 0.0, 3),
        "cpu_us_per_record": round(cpu / max(records, 1) * 1e6, 1),
        "db_cpu_us_per_record": round(db / max(records, 1) * 1e6, 1),
        "rss_before_mib": round(before, 1),
        "rss_peak_mib": round(sampler.total_mib, 1),
        "rss_growth_mib": round(sampler.total_mib - before, 1),
    }
