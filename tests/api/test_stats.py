"""Consent statistics (docs/api.md): counts and opt-in rates per bucket, the range
parameters, the audit scope, and the HTML page behind signed links.

Events can only be recorded "now" through the API (the log is append-only and
hash-chained), so aggregation is checked on one bucket; where buckets begin is checked
by holding the Python mirror of the bucketing to PostgreSQL's own `date_trunc`.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from cmp.api.problems import Problem
from cmp.api.stats import resolve_range
from cmp.api.stats_page import Column, render_page
from cmp.stats_links import signed_stats_url
from cmp.store.stats import Counts, Tally, bucket_start
from cmp.timerange import parse_instant
from tests.factories import ADMIN, ORIGIN, event, make_key, make_site, policy_body, stats_link

HDR = {"Origin": ORIGIN}
NOW = datetime(2026, 11, 21, 10, 30, tzinfo=UTC)


@pytest.fixture
async def site(client: TestClient) -> dict[str, Any]:
    site_id = await make_site(client)
    return {"id": site_id, "audit": await make_key(client, site_id, "audit")}


async def record(client: TestClient, site_id: str, *bodies: dict[str, Any]) -> None:
    r = await client.post(f"/v1/sites/{site_id}/events", json={"events": list(bodies)}, headers=HDR)
    assert r.status == 201, await r.text()


def custom(preferences: bool, statistics: bool, marketing: bool) -> dict[str, Any]:
    purposes = {"preferences": preferences, "statistics": statistics, "marketing": marketing}
    return event(action="custom", purposes=purposes)


def mix() -> list[dict[str, Any]]:
    """3 accept_all, 2 reject_all, 3 custom, 1 withdraw: 9 consent events."""
    return [
        event(),
        event(),
        event(),
        event(action="reject_all"),
        event(action="reject_all"),
        custom(True, True, False),
        custom(False, True, True),
        custom(False, False, False),
        event(action="withdraw"),
    ]


MIX_ACTIONS = {"accept_all": 3, "reject_all": 2, "custom": 3, "withdraw": 1}
# statistics: 3 accept + 2 custom; marketing: 3 + 1; preferences: 3 + 1; of 9.
MIX_OPT_IN = {"necessary": 1.0, "preferences": 0.4444, "statistics": 0.5556, "marketing": 0.4444}


async def stats(client: TestClient, site: dict[str, Any], **query: str) -> dict[str, Any]:
    r = await client.get(f"/v1/sites/{site['id']}/stats", params=query, headers=site["audit"])
    assert r.status == 200, await r.text()
    body: dict[str, Any] = await r.json()
    return body


def today_starts(before: datetime, interval: str) -> set[str]:
    # Around midnight UTC the events may land in either day: accept both ends of the test.
    return {
        bucket_start(ts, interval).strftime("%Y-%m-%dT%H:%M:%SZ")  # type: ignore[arg-type]
        for ts in (before, datetime.now(UTC))
    }


# --- aggregation ---------------------------------------------------------------------


async def test_counts_actions_and_opt_in_rates_per_bucket_and_in_total(
    client: TestClient, site: dict[str, Any]
) -> None:
    before = datetime.now(UTC)
    await record(client, site["id"], *mix())
    body = await stats(client, site)
    assert body["site_id"] == site["id"] and body["interval"] == "day"
    assert body["from"].endswith("Z") and body["to"].endswith("Z")
    (bucket,) = body["buckets"]
    assert bucket["start"] in today_starts(before, "day")
    assert bucket["events"] == 9
    assert bucket["actions"] == MIX_ACTIONS
    assert bucket["opt_in"] == MIX_OPT_IN
    legacy = {"events": 9, "actions": MIX_ACTIONS, "opt_in": MIX_OPT_IN}
    assert {key: body["totals"][key] for key in legacy} == legacy
    # Per rule (issue 21): the site has no rules, so all under the default one.
    [rule] = body["totals"]["rules"]
    assert rule["rule"] == "default"
    assert {key: rule[key] for key in legacy} == legacy


@pytest.mark.parametrize("interval", ["week", "month"])
async def test_coarser_intervals_put_the_same_events_in_one_bucket(
    client: TestClient, site: dict[str, Any], interval: str
) -> None:
    before = datetime.now(UTC)
    await record(client, site["id"], *mix())
    body = await stats(client, site, interval=interval)
    (bucket,) = body["buckets"]
    assert bucket["start"] in today_starts(before, interval)
    assert bucket["actions"] == MIX_ACTIONS and bucket["opt_in"] == MIX_OPT_IN


async def test_gpc_denied_purposes_lower_the_rate(client: TestClient, site: dict[str, Any]) -> None:
    await record(client, site["id"], event(), event())
    r = await client.post(
        f"/v1/sites/{site['id']}/events", json=event(), headers={**HDR, "Sec-GPC": "1"}
    )
    assert r.status == 201
    opt_in = (await stats(client, site))["totals"]["opt_in"]
    assert opt_in["marketing"] == 0.6667 and opt_in["statistics"] == 1.0


async def test_a_range_without_events_has_no_buckets_and_zero_totals(
    client: TestClient, site: dict[str, Any]
) -> None:
    await record(client, site["id"], event())
    body = await stats(client, site, **{"from": "2020-01-01", "to": "2020-02-01"})
    assert body["from"] == "2020-01-01T00:00:00Z" and body["to"] == "2020-02-01T00:00:00Z"
    assert body["buckets"] == []
    totals = body["totals"]
    assert totals["events"] == 0 and totals["opt_in"] == {} and totals["rules"] == []
    assert totals["actions"] == {"accept_all": 0, "reject_all": 0, "custom": 0, "withdraw": 0}
    assert totals["funnel"]["impressions"] == totals["funnel"]["interactions"] == 0
    assert totals["funnel"]["accept_all_rate"] is None


async def test_from_is_inclusive_and_to_exclusive(
    client: TestClient, site: dict[str, Any], db: asyncpg.Connection
) -> None:
    await record(client, site["id"], event(), event(action="reject_all"))
    stamps = await db.fetch(
        "SELECT received_at FROM consent_events WHERE site_id = $1 ORDER BY seq", site["id"]
    )
    first = stamps[0]["received_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert (await stats(client, site, **{"from": first}))["totals"]["events"] == 2
    body = await stats(client, site, to=first)
    assert body["totals"]["events"] == 0 and body["buckets"] == []


async def test_erasure_records_are_not_counted(client: TestClient, site: dict[str, Any]) -> None:
    subject = str(uuid.uuid4())
    await record(client, site["id"], event(subject_id=subject), event(action="reject_all"))
    r = await client.delete(f"/v1/sites/{site['id']}/subjects/{subject}", headers=ADMIN)
    assert r.status < 300, await r.text()
    totals = (await stats(client, site))["totals"]
    assert totals["events"] == 2
    assert totals["actions"] == {"accept_all": 1, "reject_all": 1, "custom": 0, "withdraw": 0}


async def test_purposes_only_count_the_events_whose_version_offered_them(
    client: TestClient, site: dict[str, Any]
) -> None:
    r = await client.post(
        f"/v1/sites/{site['id']}/policies", json=policy_body(extra_purpose=True), headers=ADMIN
    )
    assert r.status == 201
    await record(client, site["id"], event(), event(policy_version=2, action="reject_all"))
    opt_in = (await stats(client, site))["totals"]["opt_in"]
    assert opt_in["social"] == 0.0  # asked once (version 2), refused once
    assert opt_in["statistics"] == 0.5


# --- parameters ----------------------------------------------------------------------


def rng(**query: str) -> Any:
    return resolve_range(query, NOW)


def pointers(**query: str) -> list[str]:
    with pytest.raises(Problem) as caught:
        rng(**query)
    assert caught.value.status == 422
    return [e["pointer"] for e in caught.value.errors or []]


def test_defaults_are_the_last_30_days_per_day() -> None:
    r = rng()
    assert (r.start, r.end, r.interval) == (NOW - timedelta(days=30), NOW, "day")
    r = rng(to="2026-01-31")
    assert r.start == datetime(2026, 1, 1, tzinfo=UTC)
    assert rng(**{"from": "2026-11-01"}).end == NOW


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-21", datetime(2026, 11, 21, tzinfo=UTC)),
        ("2026-11-21T10:00:00Z", datetime(2026, 11, 21, 10, tzinfo=UTC)),
        ("2026-11-21t10:00:00z", datetime(2026, 11, 21, 10, tzinfo=UTC)),
        ("2026-11-21T01:00:00+02:00", datetime(2026, 11, 20, 23, tzinfo=UTC)),
        ("2026-11-21T01:00:00 02:00", datetime(2026, 11, 20, 23, tzinfo=UTC)),  # "+" lost
        ("2026-11-21T10:00:00.123456789Z", datetime(2026, 11, 21, 10, 0, 0, 123456, UTC)),
        ("2026-11-21T10:00:00.5-00:30", datetime(2026, 11, 21, 10, 30, 0, 500000, UTC)),
    ],
)
def test_from_and_to_take_dates_and_rfc3339_timestamps(raw: str, expected: datetime) -> None:
    assert parse_instant(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "yesterday",
        "2026-11-21T10:00:00",  # no offset: RFC 3339 needs one
        "2026-13-01",
        "2026-02-30",
        "2026-11-21T25:00:00Z",
        "2026-11-21T10:00:00+24:00",
        "2026-11-21T10:00:00+01:80",  # minutes past 59 (Python would read +02:20)
        "2026-11-21T10:00:00 01:60",  # the same with its "+" lost
        "2026-11-21T10:00:00.1234567\u0661Z",  # a digit of another script past the 6th
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "1700000000",
        "2026-11-21T10:00Z",
    ],
)
def test_bad_instants_are_422_naming_the_parameter(raw: str) -> None:
    assert pointers(**{"from": raw}) == ["/from"]
    assert pointers(to=raw) == ["/to"]


def test_range_rules() -> None:
    assert pointers(interval="hour") == ["/interval"]
    assert pointers(interval="hour", to="x") == ["/interval", "/to"]
    assert pointers(**{"from": "2026-02-01", "to": "2026-02-01"}) == ["/from"]
    assert pointers(**{"from": "2026-12-01"}) == ["/from"]  # after the default 'to' (now)
    assert pointers(to="0001-01-02") == ["/to"]  # 30 days before it is before year 1
    two_years = {"from": "2024-01-01", "to": "2026-01-01"}  # 731 days: allowed per day
    assert rng(**two_years).interval == "day"
    longer = {"from": "2024-01-01", "to": "2026-01-01T00:00:01Z"}
    assert pointers(**longer) == ["/from"]
    assert rng(**longer, interval="week").interval == "week"
    assert rng(**longer, interval="month").interval == "month"


INSTANTS = [
    datetime(2026, 11, 22, 23, 59, 59, 999999, UTC),  # a Sunday, last microsecond
    datetime(2026, 11, 23, tzinfo=UTC),  # the Monday after
    datetime(2026, 11, 30, 23, 30, tzinfo=UTC),
    datetime(2026, 12, 1, 0, 30, tzinfo=UTC),
    datetime(2024, 2, 29, 12, tzinfo=UTC),
    datetime(2027, 1, 1, 0, 0, 0, 1, UTC),  # a Friday: its ISO week began in 2026
    parse_instant("2026-12-01T00:30:00+01:00"),  # still November in UTC
]


@pytest.mark.parametrize("interval", ["day", "week", "month"])
async def test_bucket_starts_match_postgresql_date_trunc_in_utc(
    db: asyncpg.Connection, interval: str
) -> None:
    for ts in INSTANTS:
        expected = await db.fetchval("SELECT date_trunc($1, $2::timestamptz, 'UTC')", interval, ts)
        assert bucket_start(ts, interval) == expected, (interval, ts)  # type: ignore[arg-type]


def test_bucket_starts_are_utc_midnights_mondays_and_firsts() -> None:
    ts = parse_instant("2027-01-01T00:30:00+01:00")  # 2026-12-31 23:30 UTC, a Thursday
    assert bucket_start(ts, "day") == datetime(2026, 12, 31, tzinfo=UTC)
    assert bucket_start(ts, "week") == datetime(2026, 12, 28, tzinfo=UTC)
    assert bucket_start(ts, "month") == datetime(2026, 12, 1, tzinfo=UTC)


async def test_bad_parameters_are_422_problems_over_http(
    client: TestClient, site: dict[str, Any]
) -> None:
    for query, pointer in [
        ({"from": "not-a-date"}, "/from"),
        ({"to": "2026-02-30"}, "/to"),
        ({"interval": "year"}, "/interval"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "/from"),
        ({"from": "2020-01-01", "to": "2026-01-01"}, "/from"),
    ]:
        r = await client.get(f"/v1/sites/{site['id']}/stats", params=query, headers=site["audit"])
        assert r.status == 422, query
        assert r.content_type == "application/problem+json"
        assert [e["pointer"] for e in (await r.json())["errors"]] == [pointer]


# --- authorization -------------------------------------------------------------------


async def test_stats_need_an_audit_key_of_that_site(
    client: TestClient, site: dict[str, Any]
) -> None:
    path = f"/v1/sites/{site['id']}/stats"

    async def status(headers: dict[str, str] | None = None) -> int:
        return (await client.get(path, headers=headers)).status

    assert await status() == 401
    assert await status(await make_key(client, site["id"], "read")) == 403
    assert await status(await make_key(client, await make_site(client), "audit")) == 404
    assert await status(site["audit"]) == 200
    assert await status(await make_key(client, site["id"], "admin")) == 200
    assert await status(ADMIN) == 200
    assert (await client.get("/v1/sites/no-such-site/stats", headers=ADMIN)).status == 404


# --- the HTML page -------------------------------------------------------------------


async def page_url(client: TestClient, site_id: str, **kwargs: Any) -> str:
    return await stats_link(client, site_id, **kwargs)


async def test_a_signed_link_shows_table_and_one_line_per_optional_purpose(
    client: TestClient, site: dict[str, Any]
) -> None:
    await record(client, site["id"], *mix())
    r = await client.get(await page_url(client, site["id"], interval="week"))
    assert r.status == 200, await r.text()
    assert r.content_type == "text/html" and r.charset == "utf-8"
    assert "script-src" not in r.headers["Content-Security-Policy"]  # default-src 'none'
    assert r.headers["Referrer-Policy"] == "no-referrer"
    html = await r.text()
    assert "<svg" in html and "<script" not in html
    assert html.count("<polyline") == 3  # preferences, statistics, marketing
    assert "55.6\u202f%" in html and "44.4\u202f%" in html and "100.0\u202f%" in html
    assert "<td>Total</td><td>9</td><td>3</td><td>2</td><td>3</td><td>1</td>" in html


async def test_the_page_has_an_empty_state(client: TestClient, site: dict[str, Any]) -> None:
    r = await client.get(
        await page_url(client, site["id"], from_=date(2020, 1, 1), to="2020-02-01")
    )
    assert r.status == 200
    html = await r.text()
    assert "No consent events in this range" in html and "<polyline" not in html
    # The range as a reader takes it in: whole days as dates, other instants to the second.
    assert "2020-01-01 to 2020-02-01 (UTC, end exclusive)" in html
    r = await client.get(
        await page_url(client, site["id"], from_="2020-01-01T10:30:15.25+01:00", to="2020-02-01")
    )
    assert "2020-01-01 09:30:15 to 2020-02-01 (UTC, end exclusive)" in await r.text()


async def test_the_page_escapes_purpose_titles(client: TestClient, site: dict[str, Any]) -> None:
    body = policy_body()
    body["purposes"][2]["title"] = {"nb": "<script>alert(1)</script>", "en": "Stats & co"}
    r = await client.post(f"/v1/sites/{site['id']}/policies", json=body, headers=ADMIN)
    assert r.status == 201
    await record(client, site["id"], event(policy_version=2))
    html = await (await client.get(await page_url(client, site["id"]))).text()
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_the_page_escapes_the_site_name(client: TestClient) -> None:
    name = '</title><script>alert("name")</script>'
    site_id = await make_site(client, name=name)
    html = await (await client.get(await page_url(client, site_id))).text()
    assert "<script" not in html and "</title><script" not in html
    assert "&lt;/title&gt;&lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt;" in html
    assert html.count("&lt;script&gt;") == 2  # the title and the heading


def test_every_value_of_the_page_is_escaped() -> None:
    hostile = '<img src=x onerror="alert(1)">'
    start = datetime(2026, 11, 1, tzinfo=UTC)
    counts = Counts(events=1, actions={"custom": 1}, purposes={"p": (1, 1)})
    tally = Tally(start, {(hostile, hostile): counts}, {(hostile, hostile, ""): (2, 1)})
    cols = [Column("p", hostile, 'nb"><script>', False), Column("q", hostile, "", False)]
    page = render_page(
        site_id="shop",
        site_name=hostile,
        start=start,
        end=start + timedelta(days=2),
        interval="day",
        buckets=[tally],
        totals=tally,
        cols=cols,
    )
    assert "<img" not in page and "<script" not in page
    assert 'lang="nb&quot;&gt;&lt;script&gt;"' in page
    # The site name twice; each purpose title in its column heading, its line's tooltip
    # and the legend; the first also in the tooltip of its one dot; the rule and the
    # variant in the variants table.
    assert page.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;") == 2 + 2 * 3 + 1 + 2


def tamper(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return f"{parts.path}?{urlencode(query)}"


async def test_a_changed_or_expired_link_is_403(client: TestClient, site: dict[str, Any]) -> None:
    url = await page_url(client, site["id"], from_="2026-01-01", interval="month")
    sig = parse_qs(urlsplit(url).query)["sig"][0]
    other = await make_site(client)
    bad = [
        tamper(url, sig=("A" if sig[0] != "A" else "B") + sig[1:]),
        tamper(url, sig=sig[:-2]),
        tamper(url, interval="week"),
        tamper(url, **{"from": "2025-01-01"}),
        tamper(url, to="2027-01-01"),
        tamper(url, expires=str(int(time.time()) + 10_000)),
        url.replace(site["id"], other),  # another site's page with this site's link
        url + "&from=2020-01-01",  # a second value for a signed parameter
        f"/v1/sites/{site['id']}/stats.html",
        await page_url(client, site["id"], ttl_seconds=60, now=time.time() - 61),
    ]
    for link in bad:
        r = await client.get(link)
        assert r.status == 403, link
        assert r.content_type == "application/problem+json"
    r = await client.get(bad[-1])
    assert "expired" in (await r.json())["detail"]
    # Even the root admin key is not a way in: the page is for links only.
    assert (await client.get(bad[-2], headers=ADMIN)).status == 403
    assert (await client.get(url)).status == 200


async def test_a_link_to_an_unknown_site_is_403_like_a_forged_one(client: TestClient) -> None:
    r = await client.get(await page_url(client, "no-such-site"))
    assert r.status == 403
    assert (await r.json())["detail"] == "the link's signature is not valid"


def test_signed_stats_url_refuses_what_the_page_would() -> None:
    key = b"k" * 32
    url = signed_stats_url(key, "https://cmp.example/", "shop", from_="2026-01-01")
    assert url.startswith("https://cmp.example/v1/sites/shop/stats.html?from=2026-01-01&")
    bad: list[dict[str, Any]] = [
        {"site_id": "Not A Site"},
        {"interval": "hour"},
        {"ttl_seconds": 0},
        {"ttl_seconds": 8 * 86400},
        {"from_": "yesterday"},
        {"to": datetime(2026, 1, 1)},  # naive
        {"from_": "2026-02-01", "to": "2026-01-01"},  # from after to
        {"from_": "2020-01-01", "to": "2026-01-01"},  # more than 731 days per day
        {"from_": "2999-01-01"},  # after now, the default `to`
    ]
    for kwargs in bad:
        with pytest.raises(ValueError):
            signed_stats_url(key, "", **({"site_id": "shop"} | kwargs))
