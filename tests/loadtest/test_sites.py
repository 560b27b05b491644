"""The bench sites of `ingest-1-rules` and `state-linked` (loadtest/sites.py), seeded
through the app behind aiohttp's real test server and driven by the real wrk scripts
for a second: the rules scenario's events fall under every rule of the site, a bench
whose cmp does not believe the location headers fails the check, refused requests show
as non-2xx, and the linked site's reads are of subjects linked in pairs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from cmp.app import create_app
from cmp.config import Settings
from loadtest import counts, servers, sites
from loadtest.runner import SCENARIOS, LoadConfig, Server, SiteLoad, run_wrk
from tests.factories import ADMIN_KEY, event, new_site_id

GEO_VARIABLES = {
    "CMP_TRUSTED_PROXIES": "trusted_proxies",
    "CMP_GEO_COUNTRY_HEADER": "geo_country_header",
    "CMP_GEO_REGION_HEADER": "geo_region_header",
}


def scenario(name: str) -> Any:
    return next(s for s in SCENARIOS if s.name == name)


def base_of(client: TestClient) -> str:
    return str(client.make_url("")).rstrip("/")


async def bench_client(
    aiohttp_client: Any,
    settings: Settings,
    db_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    geo: bool = True,
) -> TestClient:
    """The app with the bench's rate limits lifted (all load comes from one address) and,
    with `geo`, the location settings the bench gives its cmp (`servers.cmp_env`), read
    from the environment as cmp reads them."""
    env = servers.cmp_env(
        "postgresql://unused/x",
        1,
        ADMIN_KEY,
        Path("unused"),
        (sites.COUNTRY_HEADER, sites.REGION_HEADER) if geo else None,
    )
    variables = {"CMP_RATE_PER_SECOND": "rate_per_second", "CMP_RATE_BURST": "rate_burst"}
    if geo:
        variables |= GEO_VARIABLES
    else:
        assert not set(GEO_VARIABLES) & set(env)
    for variable in variables:
        monkeypatch.setenv(variable, env[variable])
    from_env = Settings()
    changed = settings.model_copy(update={f: getattr(from_env, f) for f in variables.values()})
    client: TestClient = await aiohttp_client(create_app(changed, db_dsn))
    return client


async def drive(client: TestClient, name: str, target: SiteLoad) -> dict[str, Any]:
    """One second of the scenario's wrk script against the test server, 4 connections."""
    port = client.server.port
    assert port is not None
    load = LoadConfig("unused", "https://unused.example", "", 1, others={target_of(name): target})
    server = Server("cmp", port, os.getpid())
    return await run_wrk(servers.ensure_wrk(), server, scenario(name), 4, 1, load)


async def rules_site(client: TestClient) -> tuple[str, SiteLoad]:
    """A new bench site with jurisdiction rules, made through the app: its id and load."""
    site_id = new_site_id()
    target, _ = await sites.setup_rules_site(client.session, base_of(client), ADMIN_KEY, site_id)
    return site_id, target


def target_of(name: str) -> str:
    site: str = scenario(name).site
    return site


async def test_the_rules_scenario_stores_every_place_under_its_rule(
    aiohttp_client: Any, settings: Settings, db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await bench_client(aiohttp_client, settings, db_dsn, monkeypatch)
    site_id, target = await rules_site(client)
    run = await drive(client, "ingest-1-rules", target)
    assert run["non_2xx"] == 0 and run["socket_errors"] == 0, run["statuses"]
    assert run["exact"] and run["ok"] >= 2 * len(sites.PLACES)
    found = await counts.rule_spread(db_dsn, site_id)
    assert sites.rule_problems(found) == []
    assert set(found) == {p.stored for p in sites.PLACES}
    # the region, country, default and fallback matches, GPC recorded where sent
    assert {k[0] for k in found} == {"eea", "uk-ch", "us-states", "us", "rest"}
    assert ("us-states", "US", "US-CA", True) in found
    total, by_nonce = await counts.stored_counts(db_dsn, [site_id], [run["nonce"]])
    assert total == by_nonce[run["nonce"]] == run["events_2xx"]


async def test_a_cmp_that_does_not_believe_the_location_fails_the_rules_check(
    aiohttp_client: Any, settings: Settings, db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await bench_client(aiohttp_client, settings, db_dsn, monkeypatch, geo=False)
    site_id, target = await rules_site(client)
    run = await drive(client, "ingest-1-rules", target)
    assert run["non_2xx"] == 0  # every event is taken: the status count alone cannot tell
    found = await counts.rule_spread(db_dsn, site_id)
    assert set(found) == {("eea", None, None, False), ("eea", None, None, True)}
    problems = sites.rule_problems(found)
    assert "no event under rule us-states from US/US-CA (gpc True)" in problems
    assert any(p.endswith("no place of the spread gives that") for p in problems)


async def test_events_the_rules_site_refuses_show_as_non_2xx(
    aiohttp_client: Any, settings: Settings, db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await bench_client(aiohttp_client, settings, db_dsn, monkeypatch)
    site_id, target = await rules_site(client)
    foreign = SiteLoad(site_id, "https://elsewhere.example", "", 0, target.wrk_args)
    run = await drive(client, "ingest-1-rules", foreign)
    assert run["ok"] == 0 and run["non_2xx"] == run["received"] > 0
    assert set(run["statuses"]) == {"403"}


async def test_the_linked_site_links_pairs_and_state_linked_reads_only_them(
    aiohttp_client: Any, settings: Settings, db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await bench_client(aiohttp_client, settings, db_dsn, monkeypatch)
    site_id = new_site_id()
    target, info = await sites.setup_linked_site(
        client.session, base_of(client), ADMIN_KEY, 41, 4, site_id
    )
    assert info["subjects"] == 41 and info["linked"] == target.subjects == 20
    conn = await asyncpg.connect(db_dsn)
    try:
        links = await conn.fetch(
            "SELECT subject_id FROM subject_links WHERE site_id = $1 ORDER BY seq", site_id
        )
    finally:
        await conn.close()
    assert sorted(r["subject_id"] for r in links) == sorted(f"s-{n}" for n in range(20))

    read = {"Authorization": f"Bearer {target.read_key}"}
    base = f"/v1/sites/{site_id}"
    r = await client.get(f"{base}/users/{sites.user_of(6)}/consent", headers=read)
    assert sorted((await r.json())["subjects"]) == ["s-6", "s-7"]
    # s-7's newer choice is s-6's state (shared across devices); s-20 and s-21 are not linked
    for subject in ("s-7", "s-21"):
        body = event(subject, action="withdraw")
        r = await client.post(f"{base}/events", json=body, headers={"Origin": target.origin})
        assert r.status == 201, await r.text()
    for subject, action in (("s-6", "withdraw"), ("s-20", "custom")):
        r = await client.get(f"{base}/subjects/{subject}/consent", headers=read)
        assert (await r.json())["action"] == action

    run = await drive(client, "state-linked", target)
    assert run["non_2xx"] == 0 and run["ok"] > 0, run["statuses"]
