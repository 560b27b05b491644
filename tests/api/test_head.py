"""HEAD is answered wherever GET is: the same status and headers, no body."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp.test_utils import TestClient

from cmp.api.routes import ROUTES
from tests.factories import ADMIN, ORIGIN, event, make_key, make_site, new_site_id

# Headers that differ between any two responses, and the framing aiohttp leaves off a
# HEAD answer that has no length (RFC 9112 §6.1).
PER_RESPONSE = {"date", "x-request-id", "transfer-encoding"}


async def get_and_head(
    client: TestClient, url: str, headers: dict[str, str] | None = None
) -> tuple[Any, Any, bytes]:
    got = await client.get(url, headers=headers)
    await got.read()
    head = await client.head(url, headers=headers)
    return got, head, await head.read()


def comparable(response: Any) -> list[tuple[str, str]]:
    headers = ((k.lower(), v) for k, v in response.headers.items())
    return sorted((k, v) for k, v in headers if k not in PER_RESPONSE)


async def test_head_answers_as_get_without_a_body(client: TestClient) -> None:
    site_id = await make_site(client)
    read = await make_key(client, site_id, "read")
    audit = await make_key(client, site_id, "audit")
    r = await client.post(
        f"/v1/sites/{site_id}/events", json=event("head-subject"), headers={"Origin": ORIGIN}
    )
    assert r.status == 201
    cases: list[tuple[str, dict[str, str] | None, int]] = [
        ("/healthz", None, 200),
        ("/readyz", None, 200),
        ("/openapi.json", None, 200),
        ("/v1/log/public-key", None, 200),
        (f"/v1/sites/{site_id}/banner.js", None, 200),
        (f"/v1/sites/{site_id}/banner.js", {"Accept-Encoding": "identity"}, 200),
        (f"/v1/sites/{site_id}", ADMIN, 200),
        (f"/v1/sites/{site_id}/policies/current", ADMIN, 200),
        (f"/v1/sites/{site_id}/subjects/head-subject/consent", read, 200),
        (f"/v1/sites/{site_id}/subjects/head-subject/consent", None, 401),
        (f"/v1/sites/{site_id}/events", {**audit, "Accept-Encoding": "identity"}, 200),
        (f"/v1/sites/{site_id}/events?format=csv", {**audit, "Accept-Encoding": "gzip"}, 200),
        (f"/v1/sites/{site_id}/events?format=xml", audit, 422),
        (f"/v1/sites/{new_site_id()}", ADMIN, 404),
    ]
    for url, headers, status in cases:
        got, head, body = await get_and_head(client, url, headers)
        assert (got.status, head.status) == (status, status), url
        assert comparable(head) == comparable(got), url
        assert body == b"", url
    # A byte sent after a HEAD answer would be read as the next answer on the connection.
    assert (await client.get("/healthz")).status == 200


async def test_every_get_route_answers_head(client: TestClient) -> None:
    site_id = await make_site(client)
    values = {
        "site_id": site_id,
        "subject_id": "s-head",
        "version": "1",
        "key_id": "0" * 16,
        "event_id": str(uuid.uuid4()),
        "user_id": "customer-1",
    }
    for route in ROUTES:
        if route.method == "GET":
            url = route.path.format(**values)
            got, head, body = await get_and_head(client, url, ADMIN)
            assert head.status == got.status != 405, (route.path, head.status)
            assert body == b""
    assert (await client.get("/healthz")).status == 200
