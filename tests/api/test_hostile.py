"""Hostile input on the public and admin edges: every row a 4xx, never a 5xx, and the
site's log still verifies afterwards (issue: no request can break the log).

Each case is one request as an attacker would send it; the table names what it probes.
Raw-socket cases send bytes no HTTP client library would produce.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from cmp.audit.verify import verify_export
from cmp.errorcap import ERRORS_MAX
from tests.factories import ADMIN, ORIGIN, event, make_key, make_site

HDR = {"Origin": ORIGIN}


def cc_body(**cookie: Any) -> dict[str, Any]:
    """A vanilla-cookieconsent v3 payload (as captured from the real banner)."""
    return {
        "event": "onFirstConsent",
        "cookie": {
            "categories": ["necessary", "statistics"],
            "revision": 0,
            "consentId": str(uuid.uuid4()),
            "languageCode": "en",
            "lastConsentTimestamp": "2026-11-22T01:36:38.573Z",
            **cookie,
        },
        "preferences": {
            "acceptType": "custom",
            "acceptedCategories": ["necessary", "statistics"],
            "rejectedCategories": ["preferences", "marketing"],
        },
    }


def klaro_body(**location: Any) -> dict[str, Any]:
    return {
        "location_data": {
            "pathname": "/side",
            "port": 443,
            "hostname": "shop.example",
            "protocol": "https",
            **location,
        },
        "user_data": {"client_version": "0.7.22", "client_name": "klaro:web"},
        "consent_data": {"consents": {"statistics": True}, "type": "accept"},
    }


@dataclass(frozen=True)
class Case:
    name: str
    body: Any
    status: int
    path: str = "/v1/sites/{site}/events"
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    pointer: str | None = None


CC = "/v1/sites/{site}/integrations/cookieconsent"
KLARO = "/v1/privacy-managers/{site}/submit"

CASES = [
    # Row 1: a client clock PostgreSQL or the canonical form cannot hold exactly.
    Case(
        "occurred_at year 1", event(occurred_at="0001-01-01T00:00:00Z"), 422, pointer="/occurred_at"
    ),
    Case(
        "occurred_at 1999", event(occurred_at="1999-12-31T23:59:59Z"), 422, pointer="/occurred_at"
    ),
    Case("occurred_at year 1 with offset", event(occurred_at="0001-01-01T00:30:00+01:00"), 422),
    Case("occurred_at year 9999", event(occurred_at="9999-12-31T23:59:59-23:59"), 422),
    Case("occurred_at far future", event(occurred_at="2999-01-01T00:00:00Z"), 422),
    Case("occurred_at naive", event(occurred_at="2026-01-01T00:00:00"), 422),
    # Forms pydantic alone takes that are no RFC 3339 date-time (the document's format).
    Case("occurred_at with a space", event(occurred_at="2026-01-01 00:00:00Z"), 422),
    Case("occurred_at without seconds", event(occurred_at="2026-01-01T00:00Z"), 422),
    Case("occurred_at offset without colon", event(occurred_at="2026-01-01T00:00:00+0100"), 422),
    Case("occurred_at decimal comma", event(occurred_at="2026-01-01T00:00:00,5Z"), 422),
    Case("occurred_at Unix seconds", event(occurred_at=1_700_000_000), 422, pointer="/occurred_at"),
    Case("cookieconsent Unix ms", cc_body(lastConsentTimestamp=1_700_000_000_000), 422, CC),
    # Row 2: NUL and other controls in free text.
    Case("NUL in source", event(source="x\u0000y"), 422, pointer="/source"),
    Case("NUL in page_url", event(page_url="https://shop.example/a\u0000b"), 422),
    Case("C1 control in source", event(source="x\u0085y"), 422),
    Case("escape in source", event(source="\u001b[31mred"), 422),
    Case("U+FFFF in source", event(source="x\uffff"), 422),
    Case("U+FFFE in page_url", event(page_url="https://shop.example/\ufffe"), 422),
    Case("NUL in cookieconsent pageUrl", {**cc_body(), "pageUrl": "https://x/\u0000"}, 422, CC),
    Case("NUL in Klaro pathname", klaro_body(pathname="/a\u0000"), 422, KLARO),
    Case("NUL in a batch's second event", {"events": [event(), event(source="\u0000")]}, 422),
    # Row 3: values that used to raise inside the server.
    Case("page_url unclosed IPv6", event(page_url="http://[abc/x"), 422, pointer="/page_url"),
    Case("page_url not http", event(page_url="javascript:alert(1)"), 422),
    Case("page_url with space", event(page_url="https://shop.example/a b"), 422),
    Case("cookieconsent revision 2^32", cc_body(revision=4294967296), 422, CC),
    Case("cookieconsent revision as text", cc_body(revision="1"), 422, CC),
    Case("cookieconsent languageCode EN_us", cc_body(languageCode="EN_us"), 422, CC),
    Case(
        "cookieconsent year-1 timestamp",
        cc_body(lastConsentTimestamp="0001-01-01T00:00:00Z"),
        422,
        CC,
    ),
    Case(
        "cookieconsent naive timestamp",
        cc_body(lastConsentTimestamp="2026-01-01T00:00:00"),
        422,
        CC,
    ),
    Case("cookieconsent consentId newline", cc_body(consentId="abc\n"), 422, CC),
    Case("Klaro hostname [", klaro_body(hostname="["), 422, KLARO),
    Case("Klaro port 70000", klaro_body(port=70000), 422, KLARO),
    Case("Klaro protocol ftp", klaro_body(protocol="ftp"), 422, KLARO),
    # Strict integers and booleans: "1", true and 1.5 are not versions.
    Case("version as text", event(policy_version="1"), 422, pointer="/policy_version"),
    Case("version true", event(policy_version=True), 422),
    Case("version 1.5", event(policy_version=1.5), 422),
    Case("version 10^12", event(policy_version=10**12), 422),
    Case("version 2^64", event(policy_version=2**64), 422),
    Case("purpose 'yes'", event(action="custom", purposes={"statistics": "yes"}), 422),
    Case("unknown field", {**event(), "admin": True}, 422),
    Case("subject id with newline", event(subject_id="abc\n"), 422),
    Case("event id not a uuid", event(event_id="1; DROP TABLE"), 422),
    # Bodies that are not what they say.
    Case("gzip on a plain body", event(), 415, headers={"Content-Encoding": "gzip"}),
    Case("deflate on a plain body", event(), 415, headers={"Content-Encoding": "deflate"}),
    Case("gzip on cookieconsent", cc_body(), 415, CC, headers={"Content-Encoding": "gzip"}),
    Case("not JSON", "{", 400),
    Case("lone surrogate escape", '{"event_id": "\\ud800"}', 400),
    Case("JSON array", [], 422),
    # Path parameters: fullmatch, ASCII digits.
    Case("site id with newline", {"name": "x"}, 404, "/v1/sites/newsite%0A", ADMIN, "PUT"),
    Case(
        "policy version superscript one",
        None,
        404,
        "/v1/sites/{site}/policies/%C2%B9",
        ADMIN,
        "GET",
    ),
    Case(
        "policy version arabic-indic", None, 404, "/v1/sites/{site}/policies/%D9%A1", ADMIN, "GET"
    ),
    Case("key id NUL", None, 404, "/v1/sites/{site}/keys/%00", ADMIN, "DELETE"),
    # Keys that cannot be keys never reach the database.
    Case(
        "bearer key id too long",
        None,
        401,
        "/v1/sites/{site}",
        {"Authorization": "Bearer cmp_live_" + "a" * 99 + "_x"},
        "GET",
    ),
    Case(
        "bearer non-ASCII",
        None,
        401,
        "/v1/sites/{site}",
        {"Authorization": "Bearer cmp_live_ø_x"},
        "GET",
    ),
]


async def send(client: TestClient, site: str, case: Case) -> tuple[int, Any]:
    headers = {**HDR, **case.headers}
    kwargs: dict[str, Any] = {"headers": headers}
    if isinstance(case.body, str):
        kwargs["data"] = case.body.encode("utf-8")
        headers["Content-Type"] = "application/json"
    elif case.body is not None:
        kwargs["data"] = json.dumps(case.body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    path = case.path.format(site=site)
    r = await client.request(case.method, path, **kwargs)
    text = await r.text()
    return r.status, json.loads(text) if text.startswith("{") else text


@pytest.fixture
async def site(client: TestClient) -> str:
    return await make_site(client)


async def export_lines(client: TestClient, site: str) -> list[str]:
    audit = await make_key(client, site, "audit")
    r = await client.get(f"/v1/sites/{site}/events", headers=audit)
    assert r.status == 200, await r.text()
    return [line for line in (await r.text()).splitlines() if line]


async def test_every_hostile_value_is_a_4xx_and_the_log_still_verifies(
    client: TestClient, site: str
) -> None:
    failures = []
    for case in CASES:
        status, body = await send(client, site, case)
        if status != case.status:
            failures.append(f"{case.name}: {status} {body}")
        elif case.pointer and not any(e["pointer"] == case.pointer for e in body["errors"]):
            failures.append(f"{case.name}: no error at {case.pointer}: {body}")
        # Every hostile request is followed by a good one, which must still be stored.
        good_status, _ = await send(client, site, Case("good", event(), 201))
        if good_status != 201:
            failures.append(f"after {case.name}: a valid event got {good_status}")
    assert not failures, "\n".join(failures)
    lines = await export_lines(client, site)
    assert len(lines) == len(CASES)
    assert verify_export(lines).ok


async def test_the_window_edges_are_stored_exactly(
    client: TestClient, site: str, db: asyncpg.Connection
) -> None:
    """The first instant of the window is accepted and hashed as stored."""
    body = event(occurred_at="2000-01-01T01:00:00+01:00")
    status, _ = await send(client, site, Case("floor", body, 201))
    assert status == 201
    stored = await db.fetchval("SELECT occurred_at FROM consent_events WHERE site_id = $1", site)
    assert stored.isoformat() == "2000-01-01T00:00:00+00:00"
    (line,) = await export_lines(client, site)
    assert json.loads(line)["occurred_at"] == "2000-01-01T00:00:00.000000Z"
    assert verify_export([line]).ok


async def test_credentials_query_and_fragment_never_reach_the_log(
    client: TestClient, site: str, db: asyncpg.Connection
) -> None:
    urls = {
        "https://alice:s3cret@shop.example/p?token=x#frag": "https://shop.example/p",
        "https://shop.example:8443/å?": "https://shop.example:8443/å",
        "http://[::1]:8080/x#y": "http://[::1]:8080/x",
    }
    for sent in urls:
        status, _ = await send(client, site, Case("url", event(page_url=sent), 201))
        assert status == 201
    rows = await db.fetch(
        "SELECT page_url FROM consent_events WHERE site_id = $1 ORDER BY seq", site
    )
    assert [r["page_url"] for r in rows] == list(urls.values())
    assert verify_export(await export_lines(client, site)).ok


async def raw_request(client: TestClient, request: bytes) -> bytes:
    """Send bytes as they are over a real socket; return the status line."""
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), timeout=10)
    finally:
        writer.close()


async def test_user_agent_bytes_are_stored_safely_never_rejected(
    client: TestClient, site: str, db: asyncpg.Connection
) -> None:
    body = json.dumps(event()).encode()
    request = (
        (
            f"POST /v1/sites/{site}/events HTTP/1.1\r\nHost: x\r\nOrigin: {ORIGIN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n"
        ).encode()
        + b"User-Agent: Mozilla\xff\xfe/5.0 \xc3\xa6\r\n\r\n"
        + body
    )
    status = await raw_request(client, request)
    assert status.startswith(b"HTTP/1.1 201"), status
    agent = await db.fetchval("SELECT user_agent FROM consent_events WHERE site_id = $1", site)
    assert agent == "Mozilla\ufffd\ufffd/5.0 æ"
    assert verify_export(await export_lines(client, site)).ok


async def test_subject_id_with_trailing_newline_is_refused_on_read_and_erasure(
    client: TestClient, site: str, db: asyncpg.Connection
) -> None:
    read = await make_key(client, site, "read")
    audit = await make_key(client, site, "audit")
    paths = [
        ("GET", f"/v1/sites/{site}/subjects/abc%0A/consent", read),
        ("GET", f"/v1/sites/{site}/subjects/abc%0A/events", audit),
        ("DELETE", f"/v1/sites/{site}/subjects/abc%0A", ADMIN),
    ]
    for method, path, headers in paths:
        r = await client.request(method, path, headers=headers)
        assert r.status == 400, (method, path, r.status)
    erased = await db.fetchval(
        "SELECT count(*) FROM consent_events WHERE site_id = $1 AND action = 'erased'", site
    )
    assert erased == 0


async def test_unknown_versions_stop_at_the_first(client: TestClient, site: str) -> None:
    bad = {"events": [event(policy_version=1000 + i) for i in range(100)]}
    for _ in range(2):  # the second time from the cache of misses
        status, body = await send(client, site, Case("unknown", bad, 422))
        assert status == 422
        # Validation stops at the first unknown version: one error, one lookup at most.
        assert [e["pointer"] for e in body["errors"]] == ["/events/0/policy_version"]


async def test_the_rate_token_is_taken_before_the_body_is_parsed(
    aiohttp_client: Any, settings: Any, db_dsn: str
) -> None:
    from cmp.app import create_app

    tight = settings.model_copy(update={"rate_per_second": 0.01, "rate_burst": 5})
    client = await aiohttp_client(create_app(tight, db_dsn))
    site = await make_site(client)
    statuses = [(await send(client, site, Case("bad", "{", 400)))[0] for _ in range(8)]
    # Unparsable bodies still cost a token each: the sixth is refused unread.
    assert statuses == [400] * 5 + [429] * 3
    # A batch costs a token per event, all taken before any event is validated: six
    # events against a fresh bucket of five are refused without a lookup.
    batch = {"events": [event(policy_version=1000 + i) for i in range(6)]}
    status, body = await send(client, await make_site(client), Case("batch", batch, 429))
    assert status == 429, body


async def post_raw(client: TestClient, site: str, raw: bytes) -> tuple[int, bytes]:
    r = await client.post(
        f"/v1/sites/{site}/events",
        data=raw,
        headers={**HDR, "Content-Type": "application/json"},
    )
    return r.status, await r.read()


async def test_errors_of_many_empty_events_are_capped_and_counted(
    client: TestClient, site: str
) -> None:
    raw = json.dumps({"events": [{}] * 100}, separators=(",", ":")).encode()
    assert len(raw) == 312
    status, answer = await post_raw(client, site, raw)
    assert status == 422
    body = json.loads(answer)
    # Four missing fields per event: checking stops past ERRORS_MAX (the sixth event).
    assert [e["pointer"] for e in body["errors"]][:4] == [
        "/events/0/event_id",
        "/events/0/subject_id",
        "/events/0/policy_version",
        "/events/0/action",
    ]
    assert len(body["errors"]) == ERRORS_MAX and body["errors_omitted"] == 4
    assert len(answer) < 2048


async def test_errors_of_unknown_keys_are_capped_and_checking_stops(
    client: TestClient, site: str
) -> None:
    """100 events of 75 unknown keys each: 7,900 errors if every event were checked."""
    events = [{f"k{j}": 0 for j in range(75)} for _ in range(100)]
    raw = json.dumps({"events": events}, separators=(",", ":")).encode()
    assert len(raw) < 64 * 1024
    status, answer = await post_raw(client, site, raw)
    assert status == 422
    body = json.loads(answer)
    assert len(body["errors"]) == ERRORS_MAX
    assert all(e["pointer"].startswith("/events/0/") for e in body["errors"])
    # The first event's 4 missing fields and the first ERRORS_MAX + 1 of its unknown
    # keys: checking stopped there, and no later event was checked.
    assert body["errors_omitted"] == 4 + ERRORS_MAX + 1 - ERRORS_MAX
    assert len(answer) < 4096


async def test_rule_errors_across_a_batch_are_capped(client: TestClient, site: str) -> None:
    """Events that parse but break the policy's rules: the pipeline stops past the cap."""
    batch = {"events": [event(language="xx") for _ in range(100)]}
    status, body = await send(client, site, Case("rules", batch, 422))
    assert status == 422
    assert [e["pointer"] for e in body["errors"]] == [
        f"/events/{i}/language" for i in range(ERRORS_MAX)
    ]
    assert body["errors_omitted"] == 1


async def test_a_single_event_with_thousands_of_unknown_keys_gets_a_small_answer(
    client: TestClient, site: str
) -> None:
    raw = json.dumps({f"k{j}": 0 for j in range(6000)}, separators=(",", ":")).encode()
    assert len(raw) < 64 * 1024
    status, answer = await post_raw(client, site, raw)
    assert status == 422
    body = json.loads(answer)
    assert len(body["errors"]) == ERRORS_MAX and body["errors_omitted"] == 5
    assert [e["pointer"] for e in body["errors"]][3:6] == ["/action", "/k0", "/k1"]
    assert len(answer) < 4096


async def test_a_map_of_bad_names_stops_at_the_first_and_junk_beside_events_is_capped(
    client: TestClient, site: str
) -> None:
    raw = json.dumps(event(purposes={f"Bad {j}": True for j in range(3000)})).encode()
    status, answer = await post_raw(client, site, raw)
    assert status == 422
    body = json.loads(answer)
    assert [e["pointer"] for e in body["errors"]] == ["/purposes/Bad 0/[key]"]
    assert "errors_omitted" not in body

    junk = {"events": [event()], **{f"k{j}": 0 for j in range(3000)}}
    status, answer = await post_raw(client, site, json.dumps(junk).encode())
    assert status == 422
    body = json.loads(answer)
    assert [e["pointer"] for e in body["errors"]] == [f"/k{j}" for j in range(ERRORS_MAX)]
    assert body["errors_omitted"] == 1 and len(answer) < 4096
