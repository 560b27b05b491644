"""One error shape: RFC 9457 problem+json, also for aiohttp's own 404/405/413."""

from __future__ import annotations

import io

from aiohttp.test_utils import TestClient

from tests.factories import ADMIN, new_site_id


async def _problem(r: object) -> dict[str, object]:
    assert r.content_type == "application/problem+json"  # type: ignore[attr-defined]
    body: dict[str, object] = await r.json(content_type=None)  # type: ignore[attr-defined]
    assert {"type", "title", "status", "detail"} <= body.keys()
    return body


async def test_unknown_route_is_a_problem(client: TestClient) -> None:
    r = await client.get("/nope")
    assert r.status == 404
    assert (await _problem(r))["status"] == 404


async def test_wrong_method_is_a_problem_with_allow(client: TestClient) -> None:
    r = await client.delete("/healthz")
    assert r.status == 405
    await _problem(r)
    assert "GET" in r.headers["Allow"]


async def test_malformed_json_is_400(client: TestClient) -> None:
    r = await client.put(
        f"/v1/sites/{new_site_id()}",
        data=b"{not json",
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert r.status == 400
    await _problem(r)


async def test_validation_failure_is_422_with_pointers(client: TestClient) -> None:
    r = await client.put(
        f"/v1/sites/{new_site_id()}",
        json={"name": "x", "languages": ["nb"], "default_language": "sv", "origins": ["not a url"]},
        headers=ADMIN,
    )
    assert r.status == 422
    body = await _problem(r)
    pointers = {e["pointer"] for e in body["errors"]}  # type: ignore[attr-defined]
    assert "/origins/0" in pointers


async def test_oversized_admin_body_is_413(client: TestClient) -> None:
    r = await client.put(
        f"/v1/sites/{new_site_id()}",
        data=io.BytesIO(b"x" * (2 * 1024 * 1024)),  # a stream: raw bytes this big warn
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert r.status == 413
    await _problem(r)


async def test_wrong_content_type_is_415(client: TestClient) -> None:
    r = await client.put(
        f"/v1/sites/{new_site_id()}",
        data=b"name=x",
        headers={**ADMIN, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status == 415
    await _problem(r)


async def test_garbage_bodies_never_cause_500(client: TestClient) -> None:
    site = new_site_id()
    for body in [b"[]", b"null", b"1", b'"x"', b"{}", b'{"name": null}', b"\xff\xfe"]:
        r = await client.put(
            f"/v1/sites/{site}", data=body, headers={**ADMIN, "Content-Type": "application/json"}
        )
        assert r.status in (400, 422), body
        await _problem(r)


def test_only_database_connection_errors_read_as_503() -> None:
    from cmp.api.problems import database_unavailable

    # What asyncpg raises when the unix socket of a stopped server is gone:
    assert database_unavailable(FileNotFoundError(2, "No such file or directory"))
    assert database_unavailable(ConnectionRefusedError())
    # A missing file elsewhere is an internal error, not a reason to retry:
    assert not database_unavailable(FileNotFoundError(2, "No such file", "/srv/banner.js"))
    assert not database_unavailable(ValueError("x"))
