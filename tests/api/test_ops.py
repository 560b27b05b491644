"""Operations endpoints and the OpenAPI document."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

import cmp.store.migrate as migrate_module
from cmp.store.sqlfiles import function_files
from tests.factories import ORIGIN, event, make_site


async def test_healthz_and_readyz(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    r = await client.get("/readyz")
    assert r.status == 200 and (await r.json())["status"] == "ready"


async def test_readyz_is_503_while_a_function_file_is_not_applied(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    newer = tmp_path / "zz_newer.sql"
    newer.write_text("SELECT 1;")
    files = [*function_files(), newer]
    monkeypatch.setattr(migrate_module, "function_files", lambda: files)
    r = await client.get("/readyz")
    assert r.status == 503 and "zz_newer.sql" in (await r.json())["detail"]


async def test_metrics_label_routes_not_ids(client: TestClient) -> None:
    site_id = await make_site(client)
    body = event()
    r = await client.post(f"/v1/sites/{site_id}/events", json=body, headers={"Origin": ORIGIN})
    assert r.status == 201
    text = await (await client.get("/metrics")).text()
    assert 'route="/v1/sites/{site_id}/events"' in text
    assert "cmp_commit_batch_events_count" in text
    assert site_id not in text and body["subject_id"] not in text


async def test_openapi_documents_every_route(client: TestClient) -> None:
    doc = await (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    for resource in client.app.router.resources():  # type: ignore[union-attr]
        path = resource.canonical
        if path == "/{tail}":
            continue  # the catch-all that answers 404/405 problems
        for route in resource:
            if route.method == "HEAD":
                continue
            assert path in doc["paths"], f"{path} is not documented"
            assert route.method.lower() in doc["paths"][path], f"{route.method} {path}"
    for path in doc["paths"]:
        assert re.fullmatch(r"/[\w{}./-]*", path)
