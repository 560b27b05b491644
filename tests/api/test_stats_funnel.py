"""The impression funnel in the stats (issue 22 item 4, docs/api.md "Statistics"):
impressions and decisions posted through the API, as the banner would, and the stats
answer exactly that per rule and variant; API-imported and GPC-automatic decisions are
excluded and counted; variants get Wilson intervals and a two-proportion test."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cmp.funnel import two_proportions, wilson
from tests.factories import (
    ADMIN,
    BROWSER,
    ORIGIN,
    event,
    make_key,
    make_site,
    policy_body,
    stats_link,
)

HDR = {"Origin": ORIGIN, "User-Agent": BROWSER}


def showing(subject_id: str, surface: str = "banner", **fields: Any) -> dict[str, Any]:
    return {
        "impression_id": str(uuid.uuid4()),
        "subject_id": subject_id,
        "policy_version": 1,
        "surface": surface,
        **fields,
    }


async def show(client: TestClient, site_id: str, *shown: dict[str, Any]) -> None:
    r = await client.post(
        f"/v1/sites/{site_id}/impressions", json={"impressions": list(shown)}, headers=HDR
    )
    assert r.status == 202, await r.text()
    assert (await r.json())["counted"] == len(shown)


async def decide(
    client: TestClient, site_id: str, *events: dict[str, Any], headers: dict[str, str] = HDR
) -> None:
    r = await client.post(
        f"/v1/sites/{site_id}/events", json={"events": list(events)}, headers=headers
    )
    assert r.status == 201, await r.text()


async def totals(client: TestClient, site_id: str) -> dict[str, Any]:
    audit = await make_key(client, site_id, "audit")
    r = await client.get(f"/v1/sites/{site_id}/stats", headers=audit)
    assert r.status == 200, await r.text()
    body: dict[str, Any] = await r.json()
    assert len(body["buckets"]) == 1  # everything happened today (or just after midnight)
    return body["totals"]


async def site_with_variants(client: TestClient) -> str:
    """A site whose policy version has variants a and b, half the visitors each."""
    site = await make_site(client, policy=False)
    body = policy_body()
    other = {lang: {**t, "title": f"Other {t['title']}"} for lang, t in body["texts"].items()}
    body["variants"] = {
        "a": {"texts": body["texts"], "weight": 0.5},
        "b": {"texts": other, "weight": 0.5},
    }
    r = await client.post(f"/v1/sites/{site}/policies", json=body, headers=ADMIN)
    assert r.status == 201, await r.text()
    return site


@pytest.fixture
async def site(client: TestClient) -> str:
    return await make_site(client)


async def test_a_decision_after_settings_and_a_visitor_who_never_decides(
    client: TestClient, site: str
) -> None:
    # Visitor 1: the banner, then its settings layer, then a choice answering the latter.
    banner, settings = showing("visitor-1"), showing("visitor-1", "settings")
    await show(client, site, banner, settings)
    purposes = {"necessary": True, "preferences": True, "statistics": True, "marketing": False}
    await decide(
        client,
        site,
        event(
            "visitor-1",
            action="custom",
            purposes=purposes,
            impression_id=settings["impression_id"],
        ),
    )
    # Visitor 2: the banner on three pages, no decision.
    for _ in range(3):
        await show(client, site, showing("visitor-2"))

    body = await totals(client, site)
    funnel = body["funnel"]
    assert funnel["impressions"] == 5
    assert funnel["unique_visitors"] == 2
    assert funnel["interactions"] == 1
    assert funnel["ignored"] == 4
    assert funnel["answers"] == {"accept_all": 0, "custom": 1, "reject_all": 0}
    assert funnel["accept_all_rate"] == 0.0
    assert funnel["accept_all_interval"] == list(wilson(0, 5) or ())
    assert funnel["opt_in_rate"]["statistics"] == {"over_impressions": 0.2, "over_decisions": 1.0}
    assert funnel["opt_in_rate"]["marketing"] == {"over_impressions": 0.0, "over_decisions": 0.0}
    assert funnel["timed_decisions"] == 1 and 0 <= funnel["median_seconds_to_decision"] < 60
    assert funnel["excluded"] == {"api_imported": 0, "gpc_automatic": 0}
    # One rule (the site has none: the default) and no variants.
    [rule] = body["rules"]
    assert rule["rule"] == "default" and rule["funnel"] == funnel
    assert rule["events"] == 1 and rule["actions"]["custom"] == 1
    assert [v["variant"] for v in rule["variants"]] == [""]
    assert body["events"] == 1 and body["opt_in"]["marketing"] == 0.0


async def test_api_imported_and_gpc_automatic_decisions_are_excluded_and_counted(
    client: TestClient, site: str
) -> None:
    seen = showing("v-1")
    await show(client, site, seen)
    await decide(client, site, event("v-1", impression_id=seen["impression_id"]))
    # Imported by the site's backend: no Origin, an admin key.
    await decide(client, site, event("v-2"), event("v-3"), headers=ADMIN)
    # Recorded by the banner under GPC without a showing: the signal decided.
    await decide(
        client,
        site,
        event("v-4", action="reject_all"),
        headers={**HDR, "Sec-GPC": "1"},
    )
    body = await totals(client, site)
    funnel = body["funnel"]
    assert funnel["excluded"] == {"api_imported": 2, "gpc_automatic": 1}
    assert funnel["decisions"] == 1 and funnel["interactions"] == 1
    assert funnel["answers"]["accept_all"] == 1 and funnel["accept_all_rate"] == 1.0
    # Not opt-ins nor opt-outs in the rates; still in the audit counts beside them.
    assert funnel["opt_in_rate"]["marketing"] == {"over_impressions": 1.0, "over_decisions": 1.0}
    assert body["events"] == 4 and body["actions"]["accept_all"] == 3
    assert body["opt_in"]["marketing"] == 0.75


async def test_variants_side_by_side_with_wilson_intervals_and_a_test(client: TestClient) -> None:
    site = await site_with_variants(client)
    # a: 40 showings, 30 accept all; b: 40 showings, 10 accept all, 5 reject all.
    decisions = []
    for variant, accepted, rejected in (("a", 30, 0), ("b", 10, 5)):
        shown = [showing(f"{variant}-{n}", variant=variant) for n in range(40)]
        await show(client, site, *shown)
        for n, one in enumerate(shown[: accepted + rejected]):
            action = "accept_all" if n < accepted else "reject_all"
            decisions.append(
                event(
                    one["subject_id"],
                    action=action,
                    variant=variant,
                    impression_id=one["impression_id"],
                )
            )
    await decide(client, site, *decisions)

    stats = await totals(client, site)
    by_variant = {v["variant"]: v["funnel"] for v in stats["variants"]}
    assert by_variant["a"]["impressions"] == by_variant["b"]["impressions"] == 40
    assert by_variant["a"]["accept_all_rate"] == 0.75 and by_variant["b"]["accept_all_rate"] == 0.25
    assert by_variant["a"]["accept_all_interval"] == list(wilson(30, 40) or ())
    assert by_variant["b"]["accept_all_interval"] == list(wilson(10, 40) or ())
    assert by_variant["b"]["ignored"] == 25 and by_variant["b"]["interactions"] == 15
    [compared] = stats["comparisons"]
    assert compared["variants"] == ["a", "b"] and compared["differs"] is True
    assert compared["z"] == pytest.approx(20**0.5, abs=1e-4)  # 0.5 / sqrt(0.25 * 2 / 40)
    # The same per rule (the one default rule here).
    [rule] = stats["rules"]
    assert {v["variant"]: v["funnel"] for v in rule["variants"]} == by_variant
    assert rule["comparisons"] == stats["comparisons"]


async def test_more_answers_than_showings_keep_the_rates_proportions(
    client: TestClient, site: str
) -> None:
    # Any page can post decisions naming showings never counted (a crawler's, one lost on
    # the way, an id made up), and a decision may fall in a later bucket than its showing:
    # a group may hold more answers than impressions. Its rates over impressions stay in
    # [0, 1], as `ignored` stays at 0, and the Wilson interval is still defined (it raised
    # a math domain error: a 500 for the site's owner, caused by any visitor).
    await show(client, site, showing("v-1"))
    granted = {"necessary": True, "preferences": True, "statistics": True, "marketing": True}
    await decide(
        client,
        site,
        *[
            event(f"v-{n}", action="accept_all", purposes=granted, impression_id=str(uuid.uuid4()))
            for n in range(3)
        ],
    )
    funnel = (await totals(client, site))["funnel"]
    assert (funnel["impressions"], funnel["interactions"], funnel["ignored"]) == (1, 3, 0)
    assert funnel["answers"]["accept_all"] == 3
    assert funnel["accept_all_rate"] == 1.0
    assert funnel["accept_all_interval"] == list(wilson(1, 1) or ())
    assert funnel["opt_in_rate"]["marketing"] == {"over_impressions": 1.0, "over_decisions": 1.0}
    # The page draws the same funnel and interval: no share above all (it said 300 %).
    r = await client.get(await stats_link(client, site))
    assert r.status == 200, await r.text()
    shares = [float(p) for p in re.findall(r"(\d+\.\d)\u202f%", await r.text())]
    assert shares and max(shares) == 100.0, shares


async def test_variants_with_more_answers_than_showings_are_compared_as_all_answered(
    client: TestClient,
) -> None:
    site = await site_with_variants(client)
    await show(client, site, *[showing(f"a-{n}", variant="a") for n in range(2)])
    await show(client, site, *[showing(f"b-{n}", variant="b") for n in range(4)])
    # Variant a: 5 accept-all answers to its 2 showings; b: 1 of 4.
    await decide(
        client,
        site,
        *[
            event(f"a-{n}", action="accept_all", variant="a", impression_id=str(uuid.uuid4()))
            for n in range(5)
        ],
        event("b-0", action="accept_all", variant="b", impression_id=str(uuid.uuid4())),
    )
    stats = await totals(client, site)
    by_variant = {v["variant"]: v["funnel"] for v in stats["variants"]}
    assert by_variant["a"]["accept_all_rate"] == 1.0
    assert by_variant["a"]["accept_all_interval"] == list(wilson(2, 2) or ())
    [compared] = stats["comparisons"]
    assert compared["variants"] == ["a", "b"]
    assert compared["z"] == pytest.approx(two_proportions(2, 2, 1, 4).z)
    r = await client.get(await stats_link(client, site))
    assert r.status == 200, await r.text()
