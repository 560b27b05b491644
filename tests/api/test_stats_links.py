"""Signed stats links can be revoked, and `cmpd stats-url` mints only links that can work
(issue 19)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient

from tests.factories import ADMIN, cmpd, make_key, make_site, stats_link


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def test_revoking_a_sites_links_refuses_every_link_minted_before(
    client: TestClient,
) -> None:
    site_id = await make_site(client)
    other = await make_site(client)
    old = await stats_link(client, site_id, interval="week")
    kept = await stats_link(client, other)
    assert (await client.get(old)).status == 200
    audit = await make_key(client, site_id, "audit")
    r = await client.delete(f"/v1/sites/{site_id}/stats-links", headers=audit)
    assert r.status == 403  # an admin's act
    r = await client.delete(f"/v1/sites/{site_id}/stats-links", headers=ADMIN)
    assert r.status == 204
    r = await client.get(old)
    assert r.status == 403
    assert (await r.json())["detail"] == "the link's signature is not valid"
    assert (await client.get(kept)).status == 200  # another site's links stay
    assert (await client.get(await stats_link(client, site_id))).status == 200  # new ones work


async def test_cmpd_stats_url_mints_a_working_link_and_revokes_them(
    client: TestClient, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    site_id = await make_site(client)
    code, out, _ = await cmpd(capsys, "stats-url", "--site", site_id, "--from", "2026-01-01")
    assert code == 0
    link = path_of(out.strip())
    assert (await client.get(link)).status == 200
    code, out, _ = await cmpd(capsys, "stats-url", "--site", site_id, "--revoke")
    assert code == 0
    # The CLI's change reaches this server's catalogue by NOTIFY: wait for it.
    for _ in range(200):
        status = (await client.get(link)).status
        if status == 403:
            break
        await asyncio.sleep(0.05)
    assert status == 403


@pytest.mark.parametrize(
    "argv",
    [
        ("--site", "no-such-site"),
        ("--site", "no-such-site", "--revoke"),
        ("--site", "{site}", "--from", "2026-02-01", "--to", "2026-01-01"),
        ("--site", "{site}", "--from", "2020-01-01", "--to", "2026-01-01"),
        ("--site", "{site}", "--from", "2999-01-01"),
        ("--site", "{site}", "--ttl", "0"),
    ],
)
async def test_cmpd_stats_url_refuses_an_unknown_site_and_a_range_the_page_refuses(
    client: TestClient, cli_env: None, capsys: pytest.CaptureFixture[str], argv: Any
) -> None:
    site_id = await make_site(client)
    code, out, err = await cmpd(capsys, "stats-url", *(a.format(site=site_id) for a in argv))
    assert code == 2, (out, err)
    assert out == "" and len(err.strip().splitlines()) == 1, err
