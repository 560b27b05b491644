"""What is hashed is what is stored, over the whole input space.

Hypothesis posts native events, vanilla-cookieconsent and Klaro payloads with any value
the edge accepts (free text in every script, URLs with userinfo, ports and IPv6 hosts,
client clocks with odd offsets and precisions, user agents with undecodable bytes)
through the real server and the real write path. Then every record is rebuilt from its
database row alone: its hash must equal the stored hash, and the export must verify.
A field that is hashed in one form and stored in another (a timestamp PostgreSQL turns
into -infinity, a URL cleaned after hashing) fails here, whatever the field.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmp.audit.chain import record_hash
from cmp.audit.verify import verify_export
from tests.factories import ADMIN, ORIGIN, policy_body, site_body
from tests.live import Server, live_server
from tests.store.chainrows import record_of_row

PURPOSES = ("necessary", "preferences", "statistics", "marketing")
SERVICES = {"session": "necessary", "google-analytics": "statistics", "facebook-pixel": "marketing"}

# Any character the edge accepts in free text: every plane, quotes, backslashes,
# line separators — but no controls or noncharacters (those are a 422, elsewhere).
text_chars = st.characters(
    blacklist_categories=("Cs",),
    blacklist_characters="".join(map(chr, [*range(0x20), *range(0x7F, 0xA0), 0xFFFE, 0xFFFF])),
)
url_chars = st.characters(
    blacklist_categories=("Cs", "Zs"),
    blacklist_characters="".join(
        map(chr, [*range(0x21), *range(0x7F, 0xA0), 0xFFFE, 0xFFFF, ord("?"), ord("#")])
    ),
)


@st.composite
def client_clock(draw: st.DrawFn) -> str:
    """An RFC 3339 time inside the window, at any offset and with 0–6 fraction digits."""
    now = datetime.now(UTC)
    at = draw(
        st.datetimes(
            min_value=datetime(2000, 1, 1, 0, 0, 1),
            max_value=(now - timedelta(minutes=1)).replace(tzinfo=None),
        )
    ).replace(tzinfo=UTC)
    minutes = draw(st.integers(-18 * 60, 18 * 60))
    local = at.astimezone(timezone(timedelta(minutes=minutes)))
    digits = draw(st.sampled_from([0, 3, 6]))
    stamp = local.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        stamp += "." + f"{local.microsecond:06d}"[:digits]
    offset = "Z" if minutes == 0 and draw(st.booleans()) else local.strftime("%z")
    if offset != "Z":
        offset = offset[:3] + ":" + offset[3:]
    return stamp + offset


@st.composite
def any_clock(draw: st.DrawFn) -> str:
    """Any time Python can write, years 1–9999, at any offset up to ±23:59."""
    at = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
    minutes = draw(st.integers(-(24 * 60 - 1), 24 * 60 - 1))
    sign = "-" if minutes < 0 else "+"
    return at.isoformat() + f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@st.composite
def page_url(draw: st.DrawFn) -> str:
    host = draw(
        st.sampled_from(
            ["shop.example", "Shop.Example", "[::1]", "xn--rksmrgs-5wao1o.se", "10.0.0.1"]
        )
    )
    userinfo = draw(st.sampled_from(["", "alice@", "alice:s3cret@"]))
    port = draw(st.sampled_from(["", ":8443", ":80"]))
    path = "/" + draw(st.text(url_chars, max_size=40))
    query = draw(st.sampled_from(["", "?", "?email=a@b.no&x=1"]))
    fragment = draw(st.sampled_from(["", "#", "#top"]))
    return f"{draw(st.sampled_from(['http', 'https']))}://{userinfo}{host}{port}{path}{query}{fragment}"


@st.composite
def native_event(draw: st.DrawFn) -> dict[str, Any]:
    action = draw(st.sampled_from(["accept_all", "reject_all", "custom", "withdraw"]))
    body: dict[str, Any] = {
        # Fresh per example (a reused id with another body is a 409); any letter case.
        "event_id": str(uuid.uuid4()).upper() if draw(st.booleans()) else str(uuid.uuid4()),
        "subject_id": draw(st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True)),
        "policy_version": 1,
        "action": action,
    }
    granted = {p: p == "necessary" or action == "accept_all" for p in PURPOSES}
    if action == "custom":
        granted = {p: p == "necessary" or draw(st.booleans()) for p in PURPOSES}
        body["purposes"] = dict(granted)
    if draw(st.booleans()):
        body["services"] = {
            s: granted[p] and draw(st.booleans())
            for s, p in SERVICES.items()
            if draw(st.booleans())
        }
    # Mostly what the edge accepts, sometimes anything at all: a 4xx is fine then, but
    # whatever is stored must hash as stored.
    for name, strategy in (
        ("language", st.sampled_from(["nb", "en"])),
        ("occurred_at", st.one_of(client_clock(), client_clock(), any_clock())),
        ("source", st.one_of(st.text(text_chars, max_size=64), st.text(max_size=64))),
        ("page_url", st.one_of(page_url(), page_url(), st.text(max_size=100))),
    ):
        if draw(st.booleans()):
            body[name] = draw(strategy)
    return body


@st.composite
def cookieconsent(draw: st.DrawFn) -> dict[str, Any]:
    accept = draw(st.sampled_from(["all", "necessary", "custom"]))
    chosen = {
        p: p == "necessary" or accept == "all" or (accept == "custom" and draw(st.booleans()))
        for p in PURPOSES
    }
    body: dict[str, Any] = {
        "event": draw(st.sampled_from(["onFirstConsent", "onConsent", "onChange"])),
        "cookie": {
            "categories": [p for p, on in chosen.items() if on],
            "revision": draw(st.sampled_from([0, 1])),
            "consentId": str(uuid.uuid4()),
            "lastConsentTimestamp": draw(st.one_of(client_clock(), client_clock(), any_clock())),
            "languageCode": draw(st.sampled_from(["nb", "en"])),
            "data": {"anything": draw(st.text(max_size=5))},
        },
        "preferences": {
            "acceptType": accept,
            "acceptedCategories": [p for p, on in chosen.items() if on],
            "rejectedCategories": [p for p, on in chosen.items() if not on],
        },
    }
    if draw(st.booleans()):
        body["pageUrl"] = draw(st.one_of(page_url(), st.text(max_size=50)))
    return body


@st.composite
def klaro(draw: st.DrawFn) -> dict[str, Any]:
    # As Klaro sends them: accept turns everything on, decline everything off.
    kind = draw(st.sampled_from(["accept", "decline", "save"]))
    names = ("google-analytics", "preferences", "session")
    consents = {n: kind == "accept" or (kind == "save" and draw(st.booleans())) for n in names}
    return {
        "location_data": {
            "pathname": "/" + draw(st.one_of(st.text(url_chars, max_size=30), st.text(max_size=9))),
            "port": draw(st.sampled_from([None, 443, 8080])),
            "hostname": draw(st.sampled_from(["shop.example", "localhost", "a-b.example.no", "["])),
            "protocol": draw(st.sampled_from(["http", "https", "https:"])),
        },
        "user_data": {
            "client_version": draw(st.text(text_chars, max_size=30)),
            "client_name": draw(st.text(text_chars, max_size=30)),
        },
        "consent_data": {"consents": consents, "type": kind},
    }


# Header values as a browser may send them: Latin-1 bytes arrive undecodable as UTF-8.
user_agents = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF).filter(
        lambda c: not 0x7F <= ord(c) < 0xA0
    ),
    max_size=300,
)


@pytest.fixture(scope="module")
def server(db_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = live_server(db_dsn, tmp_path_factory.mktemp("hashed"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def site(server: Server) -> str:
    site_id = f"t-hashed-{uuid.uuid4().hex[:8]}"
    assert server.call("PUT", f"/v1/sites/{site_id}", site_body(), ADMIN)[0] == 201
    assert server.call("POST", f"/v1/sites/{site_id}/policies", policy_body(), ADMIN)[0] == 201
    return site_id


async def rows_rebuilt(dsn: str, site_id: str) -> list[tuple[str, str, str]]:
    """(stored hash, hash of the record rebuilt from its row, seq) for every row."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT * FROM consent_events WHERE site_id = $1 ORDER BY seq", site_id
        )
    finally:
        await conn.close()
    out = []
    for row in rows:
        record = record_of_row(row)
        out.append((row["hash"], record_hash(row["prev_hash"], record), str(row["seq"])))
    return out


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    payloads=st.lists(
        st.one_of(
            native_event().map(lambda b: ("events", b)),
            cookieconsent().map(lambda b: ("integrations/cookieconsent", b)),
            klaro().map(lambda b: ("submit", b)),
        ),
        min_size=1,
        max_size=4,
    ),
    agent=user_agents,
    gpc=st.booleans(),
)
def test_every_record_rebuilt_from_its_row_has_the_stored_hash(
    server: Server, site: str, db_dsn: str, payloads: list[tuple[str, Any]], agent: str, gpc: bool
) -> None:
    headers = {"Origin": ORIGIN, "User-Agent": agent, **({"Sec-GPC": "1"} if gpc else {})}
    for kind, body in payloads:
        path = (
            f"/v1/privacy-managers/{site}/submit"
            if kind == "submit"
            else f"/v1/sites/{site}/{kind}"
        )
        status, answer = server.call("POST", path, body, headers)
        assert status == 201 or status in (400, 422), (kind, body, answer)
    rebuilt = server.run(rows_rebuilt(db_dsn, site))
    mismatched = [seq for stored, again, seq in rebuilt if stored != again]
    assert not mismatched, f"records whose row does not hash to the stored hash: {mismatched}"
    # And the export, whose lines the database builds, verifies from the first record.
    lines = server.text(f"/v1/sites/{site}/events", ADMIN).splitlines()
    assert len(lines) == len(rebuilt)
    assert verify_export(lines).ok
