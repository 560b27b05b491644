"""A policy version's notice texts (docs/api.md, Notice texts): the title and body of the
notice under `opt_out` and `notice_only`, validated like the other texts (every language
of the site, models by name) and covered by the version's `content_sha256`."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from cmp.canonical import content_sha256
from cmp.models import PolicyIn
from tests.factories import ADMIN, make_site, policy_body


def notice(model: str, *languages: str, title: str = "Your choices") -> dict[str, Any]:
    return {
        model: {
            lang: {"title": f"{title} ({lang})", "body": f"You may opt out ({lang})."}
            for lang in languages
        }
    }


async def publish(client: TestClient, site_id: str, body: dict[str, Any]) -> tuple[int, Any]:
    r = await client.post(f"/v1/sites/{site_id}/policies", json=body, headers=ADMIN)
    return r.status, await r.json()


def pointers(problem: dict[str, Any]) -> set[str]:
    return {e["pointer"] for e in problem["errors"]}


async def test_notice_texts_must_cover_every_language_of_the_site(client: TestClient) -> None:
    site_id = await make_site(client, policy=False)
    texts = {**notice("opt_out", "nb"), **notice("notice_only", "en")}
    status, problem = await publish(client, site_id, {**policy_body(), "notice_texts": texts})
    assert status == 422, problem
    assert pointers(problem) == {"/notice_texts/opt_out/en", "/notice_texts/notice_only/nb"}


async def test_notice_texts_name_a_granting_model_and_carry_a_title_and_body(
    client: TestClient,
) -> None:
    site_id = await make_site(client, policy=False)
    for texts, where in (
        # `texts` are the opt-in wording: no second one.
        (notice("opt_in", "nb", "en"), "/notice_texts/opt_in"),
        (notice("opt-out", "nb", "en"), "/notice_texts/opt-out"),
        ({"opt_out": {"nb": {"title": "", "body": "x"}}}, "/notice_texts/opt_out/nb/title"),
        ({"opt_out": {"nb": {"body": "x"}}}, "/notice_texts/opt_out/nb/title"),
        ({"opt_out": {"nb": {"title": "a\u0000", "body": "x"}}}, "/notice_texts/opt_out/nb/title"),
        (
            {"opt_out": {"nb": {"title": "a", "body": "x", "ok": "Ja"}}},
            "/notice_texts/opt_out/nb/ok",
        ),
        ({}, "/notice_texts"),
    ):
        status, problem = await publish(client, site_id, {**policy_body(), "notice_texts": texts})
        assert status == 422, (texts, problem)
        assert any(p.startswith(where) for p in pointers(problem)), (where, problem)


async def test_the_content_hash_covers_the_notice_texts(client: TestClient) -> None:
    site_id = await make_site(client, policy=False)
    plain = policy_body()
    status, first = await publish(client, site_id, plain)
    assert status == 201, first
    # A version without notice texts hashes as versions did before they existed.
    before = PolicyIn.model_validate(plain).model_dump(
        mode="json", exclude={"material", "variants", "notice_texts"}
    )
    assert first["content_sha256"] == content_sha256(before)
    assert first["notice_texts"] is None

    worded = {**policy_body(material=False), "notice_texts": notice("opt_out", "nb", "en")}
    status, second = await publish(client, site_id, worded)
    assert status == 201, second
    assert second["content_sha256"] != first["content_sha256"]
    assert second["notice_texts"] == worded["notice_texts"]

    reworded = {**worded, "notice_texts": notice("opt_out", "nb", "en", title="Choices")}
    status, third = await publish(client, site_id, reworded)
    assert third["content_sha256"] not in (first["content_sha256"], second["content_sha256"])
    status, again = await publish(client, site_id, worded)
    assert again["content_sha256"] == second["content_sha256"]

    r = await client.get(f"/v1/sites/{site_id}/policies/2", headers=ADMIN)
    assert (await r.json())["notice_texts"] == worded["notice_texts"]


async def test_klaro_s_notice_under_a_granting_rule_is_the_policy_s_notice_text(
    aiohttp_client: Any, settings: Any, db_dsn: str
) -> None:
    from tests.api.test_integrations import klaro_config_path
    from tests.api.test_jurisdictions import geo_client, rules_site

    client = await geo_client(aiohttp_client, settings, db_dsn, "127.0.0.0/8")
    site_id = await rules_site(client)  # eea opt_in, us-ca opt_out, the default notice_only
    worded = {**policy_body(material=False), "notice_texts": notice("opt_out", "nb", "en")}
    status, published = await publish(client, site_id, worded)
    assert status == 201, published

    async def consent_notice(**headers: str) -> dict[str, str]:
        r = await client.get(klaro_config_path(site_id), headers=headers)
        assert r.status == 200, await r.text()
        return (await r.json())["translations"]["no"]["consentNotice"]  # type: ignore[no-any-return]

    california = await consent_notice(**{"CF-IPCountry": "US", "cf-region-code": "CA"})
    assert california == {"title": "Your choices (nb)", "description": "You may opt out (nb)."}
    body = worded["texts"]["nb"]["body"]
    assert await consent_notice(**{"CF-IPCountry": "NO"}) == {"description": body}
    # No notice texts for notice_only: the policy's body, as before.
    assert await consent_notice(**{"CF-IPCountry": "JP"}) == {"description": body}
