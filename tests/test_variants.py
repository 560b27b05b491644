"""Banner variants (docs/api.md): assignment is deterministic per subject and splits
subjects by the weights; a policy's variants are validated and part of its hash."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cmp.variants import assign, fnv1a32
from tests.factories import ADMIN, make_site, policy_body

WEIGHTS = {"a": 0.5, "b": 0.3, "c": 0.2}


def test_2000_subjects_split_within_binomial_bounds_and_each_keeps_its_variant() -> None:
    subjects = [str(uuid.UUID(int=uuid.uuid4().int)) for _ in range(2000)]
    seen = {s: assign(s, WEIGHTS) for s in subjects}
    assert all(assign(s, WEIGHTS) == v for s, v in seen.items())  # every page load
    for name, weight in WEIGHTS.items():
        n = sum(1 for v in seen.values() if v == name)
        sigma = math.sqrt(2000 * weight * (1 - weight))
        assert abs(n - 2000 * weight) < 4 * sigma, (name, n)


def test_the_hash_is_fnv1a_as_the_banner_computes_it() -> None:
    # Published FNV-1a 32-bit vectors: the banner's variantOf must give the same.
    assert fnv1a32("") == 0x811C9DC5 and fnv1a32("a") == 0xE40C292C
    assert fnv1a32("foobar") == 0xBF9CF968
    assert assign("s", {}) is None and assign("s", {"only": 1.0}) == "only"


def with_variants(**changes: Any) -> dict[str, Any]:
    body = policy_body()
    texts = body["texts"]
    other = {lang: {**t, "title": f"Other {t['title']}"} for lang, t in texts.items()}
    body["variants"] = {"a": {"texts": texts, "weight": 0.5}, "b": {"texts": other, "weight": 0.5}}
    body["variants"].update(changes)
    return body


async def publish(client: TestClient, site: str, body: dict[str, Any]) -> tuple[int, Any]:
    r = await client.post(f"/v1/sites/{site}/policies", json=body, headers=ADMIN)
    return r.status, await r.json()


async def test_variants_are_published_and_part_of_the_content_hash(client: TestClient) -> None:
    site = await make_site(client, policy=False)
    status, first = await publish(client, site, with_variants())
    assert status == 201 and set(first["variants"]) == {"a", "b"}
    changed = with_variants()
    changed["variants"]["b"]["texts"]["en"]["body"] = "Another body"
    status, second = await publish(client, site, changed)
    assert status == 201 and second["content_sha256"] != first["content_sha256"]
    status, plain = await publish(client, site, policy_body())
    assert status == 201 and plain["variants"] is None


@pytest.mark.parametrize(
    ("changes", "pointer"),
    [
        ({"b": None}, "sum to 1"),
        ({"c": {"texts": policy_body()["texts"], "weight": 0.25}}, "sum to 1"),
        (
            {"b": {"texts": {"nb": policy_body()["texts"]["nb"]}, "weight": 0.5}},
            "/variants/b/texts/en",
        ),
        ({"b": {"texts": policy_body()["texts"], "weight": 0}}, "/variants/b/weight"),
        ({"B b": {"texts": policy_body()["texts"], "weight": 0.5}}, "/variants/B b"),
    ],
)
async def test_bad_variants_are_422(
    client: TestClient, changes: dict[str, Any], pointer: str
) -> None:
    site = await make_site(client, policy=False)
    body = with_variants(**changes)
    body["variants"] = {k: v for k, v in body["variants"].items() if v is not None}
    status, answer = await publish(client, site, body)
    assert status == 422, answer
    said = [f"{e['pointer']} {e['detail']}" for e in answer["errors"]]
    assert any(pointer in text for text in said), said
