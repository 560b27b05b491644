"""Shared test data and helpers: the admin key, site and policy bodies, events, and the
small HTTP steps (make a site, make a key) that many tests start with.

Plain functions, imported by name; the fixtures that use them live in conftest.py.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from cmp.cli import main

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "cmp_live_root_" + "t" * 43
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ORIGIN = "https://shop.example"
# A visitor's browser, and a known crawler (whose showings are not counted).
BROWSER = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def with_database(dsn: str, name: str) -> str:
    """The same server, another database."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def policy_body(
    material: bool = True, languages: tuple[str, ...] = ("nb", "en"), extra_purpose: bool = False
) -> dict[str, Any]:
    def t(word: str) -> dict[str, str]:
        return {lang: f"{word} ({lang})" for lang in languages}

    purposes: list[dict[str, Any]] = [
        {
            "key": "necessary",
            "required": True,
            "consent_mode": ["security_storage"],
            "title": t("Necessary"),
            "services": [
                {
                    "key": "session",
                    "name": "Session cookie",
                    "cookies": ["sid"],
                    "retention_days": 0,
                }
            ],
        },
        {
            "key": "preferences",
            "consent_mode": ["functionality_storage", "personalization_storage"],
            "title": t("Preferences"),
        },
        {
            "key": "statistics",
            "consent_mode": ["analytics_storage"],
            "title": t("Statistics"),
            "services": [
                {
                    "key": "google-analytics",
                    "name": "Google Analytics",
                    "cookies": ["_ga", "_ga_*"],
                    "retention_days": 730,
                }
            ],
        },
        {
            "key": "marketing",
            "gpc": True,
            "consent_mode": ["ad_storage", "ad_user_data", "ad_personalization"],
            "title": t("Marketing"),
            "services": [{"key": "facebook-pixel", "name": "Facebook pixel", "cookies": ["_fbp"]}],
        },
    ]
    if extra_purpose:
        purposes.append({"key": "social", "title": t("Social"), "consent_mode": []})
    return {
        "material": material,
        "policy_url": "https://shop.example/personvern",
        "purposes": purposes,
        "texts": {
            lang: {
                "title": "Cookies",
                "body": "Vi bruker informasjonskapsler.",
                "accept_all": "Godta alle",
                "reject_all": "Avvis alle",
                "settings": "Innstillinger",
                "save": "Lagre",
            }
            for lang in languages
        },
    }


def site_body(languages: tuple[str, ...] = ("nb", "en"), **extra: Any) -> dict[str, Any]:
    return {
        "name": "Test shop",
        "origins": [ORIGIN],
        "languages": list(languages),
        "default_language": languages[0],
        **extra,
    }


def new_site_id() -> str:
    return f"t-{secrets.token_hex(5)}"


async def make_site(client: TestClient, *, policy: bool = True, **extra: Any) -> str:
    site_id = new_site_id()
    r = await client.put(f"/v1/sites/{site_id}", json=site_body(**extra), headers=ADMIN)
    assert r.status == 201, await r.text()
    if policy:
        r = await client.post(f"/v1/sites/{site_id}/policies", json=policy_body(), headers=ADMIN)
        assert r.status == 201, await r.text()
    return site_id


async def stats_link(client: TestClient, site_id: str, **kwargs: Any) -> str:
    """A link to the site's statistics page signed as `cmpd stats-url` signs it (a missing
    site: with a key of no site)."""
    from cmp.appkeys import CATALOG
    from cmp.stats_links import signed_stats_url

    site = await client.app[CATALOG].site(site_id)  # type: ignore[index]
    key = site.stats_link_key if site is not None else secrets.token_bytes(32)
    return signed_stats_url(key, "", site_id, **kwargs)


async def make_key(client: TestClient, site_id: str, scope: str) -> dict[str, str]:
    r = await client.post(f"/v1/sites/{site_id}/keys", json={"scope": scope}, headers=ADMIN)
    assert r.status == 201, await r.text()
    return {"Authorization": f"Bearer {(await r.json())['key']}"}


def event(subject_id: str | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "subject_id": subject_id or str(uuid.uuid4()),
        "policy_version": 1,
        "action": "accept_all",
    }
    body.update(fields)
    return body


async def age_records(db: asyncpg.Connection, site_id: str, through_seq: int) -> None:
    """Move a site's records 1..through_seq three days back in `received_at`, past a
    one-day retention. A superuser session may bypass the append-only trigger; the
    application itself cannot. Their month's partition is made first."""
    await db.execute("SELECT cmp_event_partition(now() - interval '3 days')")
    await db.execute("SET session_replication_role = replica")
    await db.execute(
        "UPDATE consent_events SET received_at = received_at - interval '3 days'"
        " WHERE site_id = $1 AND seq <= $2",
        site_id,
        through_seq,
    )
    await db.execute("SET session_replication_role = origin")


async def retain_one_day(client: TestClient, site_id: str) -> None:
    """Set the site's consent validity and retention to one day."""
    r = await client.put(
        f"/v1/sites/{site_id}",
        headers=ADMIN,
        json=site_body(consent_validity_days=1, retention_days=1),
    )
    assert r.status == 200, await r.text()


async def cmpd(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`cmpd ARGV` in this process (its own event loop, in a thread); (exit, out, err).

    The database and data directory are the `cli_env` fixture's (tests/api/conftest.py)."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err
