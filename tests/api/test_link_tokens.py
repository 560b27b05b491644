"""Linked users through the banner (docs/linked-users.md): the page's backend mints a
short-lived token with the site's link secret, the banner posts it; a forged, expired,
other-site or malformed token links nothing (401/422)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from cmp.linktokens import mint
from tests.factories import ADMIN, ORIGIN, event, make_key, make_site

DOCS = Path(__file__).resolve().parents[2] / "docs" / "linked-users.md"


async def link_secret(client: TestClient, site_id: str) -> str:
    r = await client.post(f"/v1/sites/{site_id}/link-secret", headers=ADMIN)
    assert r.status == 201, await r.text()
    doc = await r.json()
    assert doc["max_ttl_seconds"] == 600
    return str(doc["link_secret"])


async def identify(
    client: TestClient, site_id: str, subject_id: str, token: str, origin: str = ORIGIN
) -> Any:
    return await client.post(
        f"/v1/sites/{site_id}/subjects/{subject_id}/identify",
        data=json.dumps({"token": token, "event_id": str(uuid.uuid4())}),
        headers={"Origin": origin, "Content-Type": "text/plain"},
    )


async def head(db: asyncpg.Connection, site_id: str) -> int:
    return int(await db.fetchval("SELECT seq FROM log_heads WHERE site_id = $1", site_id))


async def test_a_token_from_the_sites_backend_links_the_banners_subject(
    client: TestClient, db: asyncpg.Connection
) -> None:
    site_id = await make_site(client)
    secret = await link_secret(client, site_id)
    token = mint(secret, site_id, "customer-9", int(time.time()) + 300)
    r = await identify(client, site_id, "phone", token)
    assert r.status == 201, await r.text()
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    read = await make_key(client, site_id, "read")
    r = await client.get(f"/v1/sites/{site_id}/users/customer-9/consent", headers=read)
    assert (await r.json())["subjects"] == ["phone"]
    audit = await make_key(client, site_id, "audit")
    r = await client.get(f"/v1/sites/{site_id}/events", headers=audit)
    row = json.loads((await r.text()).splitlines()[-1])
    assert row["action"] == "link" and row["origin"] == ORIGIN
    # The preflight a JSON fetch makes is answered for the site's origin.
    r = await client.options(
        f"/v1/sites/{site_id}/subjects/phone/identify",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert r.status == 204


async def test_forged_expired_other_site_and_malformed_tokens_link_nothing(
    client: TestClient, db: asyncpg.Connection
) -> None:
    site_id, other = await make_site(client), await make_site(client)
    secret, other_secret = await link_secret(client, site_id), await link_secret(client, other)
    now = int(time.time())
    good = mint(secret, site_id, "u", now + 300)
    user, expires, sig = good.split(".")
    refused = {
        "another secret": mint(other_secret, site_id, "u", now + 300),
        "another site's token": mint(other_secret, other, "u", now + 300),
        "this secret, signed for another site": mint(secret, other, "u", now + 300),
        "expired": mint(secret, site_id, "u", now - 1),
        "another user": f"{mint(secret, site_id, 'v', now + 300).split('.')[0]}.{expires}.{sig}",
        "a later expiry": f"{user}.{now + 400}.{sig}",
        "a changed signature": f"{user}.{expires}.{sig[:-2]}AA",
    }
    malformed = {
        "empty signature": f"{user}.{expires}.",
        "no dots": "abc",
        "a JWS": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1In0.",
        "too long-lived": mint(secret, site_id, "u", now + 3600),
        "not UTF-8": mint(secret, site_id, "u", now + 300).replace(user, "_w", 1),
    }
    before = await head(db, site_id)
    for name, token in refused.items():
        r = await identify(client, site_id, "s", token)
        assert r.status == 401, (name, await r.text())
        assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    for name, token in malformed.items():
        r = await identify(client, site_id, "s", token)
        assert r.status in (401, 422), (name, await r.text())
    r = await identify(client, site_id, "s", good, origin="https://elsewhere.example")
    assert r.status == 403
    assert await head(db, site_id) == before  # nothing linked
    # A new secret revokes the old one's tokens.
    await link_secret(client, site_id)
    assert (await identify(client, site_id, "s", good)).status == 401
    assert await head(db, site_id) == before


async def test_a_site_without_a_link_secret_takes_no_token(
    client: TestClient, db: asyncpg.Connection
) -> None:
    site_id = await make_site(client)
    token = mint("", site_id, "u", int(time.time()) + 60)
    assert (await identify(client, site_id, "s", token)).status == 401
    assert await head(db, site_id) == 0


def _example(language: str) -> str:
    text = DOCS.read_text("utf-8")
    return text.split(f"```{language}\n", 1)[1].split("```", 1)[0]


async def test_the_documented_examples_mint_tokens_the_server_takes(
    client: TestClient, tmp_path: Path
) -> None:
    """docs/linked-users.md's Python and JavaScript minting, run as they stand."""
    site_id = await make_site(client)
    secret = await link_secret(client, site_id)
    scope: dict[str, Any] = {}
    exec(_example("python"), scope)
    token = scope["link_token"](secret, site_id, "customer-py")
    assert (await identify(client, site_id, "py", token)).status == 201
    # Node comes with npm, which `make test` needs for the e2e packages anyway.
    node = shutil.which("node")
    assert node is not None, "node is not installed: the JavaScript example cannot run"
    script = tmp_path / "mint.js"
    script.write_text(
        _example("javascript")
        + f"\nprocess.stdout.write(linkToken({json.dumps(secret)}, {json.dumps(site_id)},"
        ' "customer-js"));\n'
    )
    run = await asyncio.create_subprocess_exec(node, str(script), stdout=asyncio.subprocess.PIPE)
    out, _ = await run.communicate()
    assert run.returncode == 0
    token = out.decode()
    assert (await identify(client, site_id, "js", token)).status == 201


async def test_the_identify_answer_carries_the_users_state_for_the_banner(
    client: TestClient, db: asyncpg.Connection
) -> None:
    site_id = await make_site(client)
    secret = await link_secret(client, site_id)
    token = mint(secret, site_id, "customer-9", int(time.time()) + 300)
    laptop = event("laptop", action="reject_all")
    r = await client.post(f"/v1/sites/{site_id}/events", json=laptop, headers={"Origin": ORIGIN})
    assert r.status == 201, await r.text()
    assert (await identify(client, site_id, "laptop", token)).status == 201
    # The phone decided nothing; once linked, its state is the user's: the laptop's refusal.
    r = await identify(client, site_id, "phone", token)
    assert r.status == 201, await r.text()
    doc = await r.json()
    assert doc["linked"] is True and doc["state"]["subject_id"] == "phone"
    state = doc["state"]
    assert (state["status"], state["action"], state["needs_prompt"]) == (
        "valid",
        "reject_all",
        False,
    )
    assert state["purposes"]["marketing"] is False and state["event_id"] == laptop["event_id"]
    # Again on the next page load: nothing appended, the same state.
    r = await identify(client, site_id, "phone", token)
    assert r.status == 200 and (await r.json())["state"] == state


async def test_without_sharing_the_identify_answer_has_no_state(
    client: TestClient, db: asyncpg.Connection
) -> None:
    site_id = await make_site(client, share_across_devices=False)
    secret = await link_secret(client, site_id)
    laptop = event("laptop", action="reject_all")
    r = await client.post(f"/v1/sites/{site_id}/events", json=laptop, headers={"Origin": ORIGIN})
    assert r.status == 201, await r.text()
    token = mint(secret, site_id, "u", int(time.time()) + 300)
    assert (await identify(client, site_id, "laptop", token)).status == 201
    r = await identify(client, site_id, "phone", token)
    assert r.status == 201 and (await r.json())["state"] is None
