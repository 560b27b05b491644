"""`python -m loadtest.instructions`: every scenario's request is one the app takes (through
aiohttp's real test server, on the bench's site and policy), and a callgrind output's
total is read from its `totals:` line. The counting itself needs valgrind and minutes;
it is run by hand (loadtest/README.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cmp.app import create_app
from cmp.config import Settings
from loadtest import instructions, seed
from tests.factories import ADMIN_KEY, new_site_id

WANTED = {
    "ingest-1": {"accepted": 1},
    "ingest-10": {"accepted": 10},
    "impressions-1": {"counted": 1},
}


async def test_every_scenario_sends_requests_the_app_takes(
    aiohttp_client: Any, settings: Settings, db_dsn: str
) -> None:
    client = await aiohttp_client(create_app(settings, db_dsn))
    site_id = new_site_id()
    base = str(client.make_url("")).rstrip("/")
    await seed.setup_site(client.session, base, ADMIN_KEY, site_id)
    assert set(WANTED) == set(instructions.SCENARIOS)
    for scenario, wanted in WANTED.items():
        for n in (0, 1):
            path, data = instructions.body(scenario, n)
            resp = await client.post(
                f"/v1/sites/{site_id}/{path}", data=data, headers=instructions.request_headers()
            )
            assert resp.status in (201, 202), await resp.text()
            answer = await resp.json()
            assert {k: answer[k] for k in wanted} == wanted, (scenario, answer)


def test_the_total_is_read_from_the_totals_line(tmp_path: Path) -> None:
    out = tmp_path / "callgrind.out"
    out.write_text("version: 1\nevents: Ir\nsummary: 0\nfn=main\n5 10\ntotals: 1234567\n")
    assert instructions.totals(out) == 1234567
    out.write_text("version: 1\nevents: Ir\n")
    with pytest.raises(ValueError, match="no totals line"):
        instructions.totals(out)


def test_an_unknown_scenario_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        instructions.body("state", 0)
