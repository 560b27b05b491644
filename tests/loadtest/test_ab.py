"""`python -m loadtest.ab`: the summary and the paired ratios of alternating rounds (the
runs themselves need two servers, wrk and minutes; they are run by hand,
loadtest/README.md)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from loadtest import ab


def run(rps: float, cpu: float = 100.0, db: float | None = 50.0) -> dict[str, Any]:
    return {"rps": rps, "cpu_us_per_req": cpu, "db_cpu_us_per_req": db}


def test_the_ratio_is_paired_by_round_so_a_drift_falls_on_both() -> None:
    # The machine slows down round by round; the head is 10 % slower in each round.
    base = [run(6000), run(4000), run(3000)]
    head = [run(5400), run(3600), run(2700)]
    found = ab.compare(base, head)
    assert found["ratio"] == pytest.approx(0.9)
    assert found["ratio_min"] == pytest.approx(0.9) and found["ratio_max"] == pytest.approx(0.9)
    # the unpaired ranges overlap: they alone would call it no change
    assert found["head"]["rps_max"] > found["base"]["rps_min"]
    assert found["base"]["rps"] == 4000 and found["head"]["cpu_us"] == 100.0


def test_the_table_names_the_revision_and_each_scenario() -> None:
    found = {"ingest-1": ab.compare([run(100), run(120)], [run(90), run(96)])}
    table = ab.format_table("ebc58a8", found, 2)
    assert "| ebc58a8 req/s" in table
    row = "| ingest-1 | 110 (100–120), 100 / 50 | 93 (90–96), 100 / 50 | 0.85 (0.80–0.90) |"
    assert row in table


def test_a_scenario_that_needs_a_prefilled_site_is_refused() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "loadtest.ab", "HEAD", "--scenarios", "ingest-1,state"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "not one of" in out.stderr and "state" in out.stderr
