"""The measurement schedule: the A/B matrix, the open-loop runs, the profiled run.

Each cell (scenario × concurrency) is run for cmp and for the reference server back to
back, the order swapped from one cell and round to the next, so that a drift of the
shared machine hits both alike. The open-loop runs go at half of cmp's best median
closed-loop rate, the same absolute rate for both servers.
"""

from __future__ import annotations

import argparse
from typing import Any

from loadtest import profile
from loadtest.report import say
from loadtest.runner import LoadConfig, Server, run_open_loop, run_wrk


async def run_matrix(
    args: argparse.Namespace, wrk: str, cmp: Server, ref: Server, load: LoadConfig, duration: int
) -> list[dict[str, Any]]:
    """Every scenario × concurrency, cmp and reference alternating first each round."""
    runs = []
    cell = 0
    for rnd in range(args.rounds):
        for scenario in args.scenario_list:
            for conc in args.concurrency:
                pair = (cmp, ref) if (rnd + cell) % 2 == 0 else (ref, cmp)
                cell += 1
                for server in pair:
                    result = await run_wrk(wrk, server, scenario, conc, duration, load)
                    result["round"] = rnd + 1
                    runs.append(result)
                    say(
                        f"  round {rnd + 1} {scenario.name:<14} c={conc:<4} {server.name:<9} "
                        f"{result['rps']:>9,.0f} req/s  p99 {result['p99_ms']:6.1f} ms  "
                        f"{result['cpu_us_per_req']:5.0f} µs/req"
                        + (f"  non-2xx {result['non_2xx']}" if result["non_2xx"] else "")
                        + (
                            ""
                            if result["exact"] or not scenario.events_per_request
                            else "  (some requests unanswered)"
                        )
                    )
    return runs


def best_rps(runs: list[dict[str, Any]], scenario: str) -> float:
    """cmp's best median req/s over the concurrencies of one scenario."""
    medians = []
    for conc in {r["connections"] for r in runs}:
        found = sorted(
            r["rps"]
            for r in runs
            if r["server"] == "cmp" and r["scenario"] == scenario and r["connections"] == conc
        )
        if found:
            medians.append(found[len(found) // 2])
    return max(medians, default=0.0)


async def run_half_rate(
    runs: list[dict[str, Any]], cmp: Server, ref: Server, load: LoadConfig, duration: int
) -> list[dict[str, Any]]:
    """Open-loop runs at half of cmp's best closed-loop rate, same rate for both servers."""
    out = []
    for scenario, source in (("single", "ingest-1"), ("state", "state")):
        rate = best_rps(runs, source) / 2
        if rate < 1:
            continue
        for server in (cmp, ref):
            result = await run_open_loop(server, scenario, rate, duration, load)
            out.append(result)
            say(
                f"  half rate {scenario:<6} {server.name:<9} {result['achieved_rate']:>7,.0f}"
                f" req/s  p50 {result['p50_ms']:5.1f} ms  p99 {result['p99_ms']:6.1f} ms"
            )
    return out


async def run_profile(
    args: argparse.Namespace, wrk: str, cmp: Server, load: LoadConfig, duration: int
) -> dict[str, Any]:
    if not args.profile:
        return {}
    py_spy = profile.find_py_spy()
    if py_spy is None:
        say("profile: py-spy is not installed (pip install py-spy); skipped")
        return {}
    seconds = max(duration, 10)
    say(f"profile: {args.profile} c=256 for {seconds} s under py-spy ...")
    result, folded = await profile.profile_run(py_spy, wrk, cmp, load, seconds, args.profile)
    result["round"] = "profile"
    say(profile.format_profile(folded))
    return {"runs": [result], "profile": folded}
