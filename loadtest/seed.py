"""The bench site and its data, made through cmp's own API like a real tenant's.

`setup_site` creates the site (origin https://bench.example), publishes a policy of the
same shape as the tests' `policy_body` (copied, not imported: tests are not a library)
and creates a read and an audit key. `prefill` then records one event for each of the
subjects `s-0 … s-(N-1)` in 100-event batches over several connections: the state-read
scenarios pick random ids from that range, and its duration is a batch-ingest measure.
The other bench sites (jurisdiction rules, linked users) are `loadtest.sites`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

SITE_ID = "bench"
ORIGIN = "https://bench.example"
LANGUAGES = ("nb", "en")
BATCH = 100
CUSTOM = '"purposes":{"preferences":true,"statistics":false,"marketing":false}'


def policy_body() -> dict[str, Any]:
    def t(word: str) -> dict[str, str]:
        return {lang: f"{word} ({lang})" for lang in LANGUAGES}

    return {
        "material": True,
        "policy_url": "https://bench.example/personvern",
        "purposes": [
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
                "services": [
                    {"key": "facebook-pixel", "name": "Facebook pixel", "cookies": ["_fbp"]}
                ],
            },
        ],
        "texts": {
            lang: {
                "title": "Cookies",
                "body": "Vi bruker informasjonskapsler.",
                "accept_all": "Godta alle",
                "reject_all": "Avvis alle",
                "settings": "Innstillinger",
                "save": "Lagre",
            }
            for lang in LANGUAGES
        },
    }


def site_body() -> dict[str, Any]:
    return {
        "name": "Benchmark shop",
        "origins": [ORIGIN],
        "languages": list(LANGUAGES),
        "default_language": LANGUAGES[0],
    }


@dataclass(frozen=True)
class SiteKeys:
    read: str
    audit: str


async def _expect(resp: aiohttp.ClientResponse, status: int, what: str) -> Any:
    if resp.status != status:
        raise RuntimeError(
            f"{what}: HTTP {resp.status} (wanted {status}): {(await resp.text())[:500]}"
        )
    return await resp.json()


async def setup_site(
    session: aiohttp.ClientSession,
    base: str,
    admin_key: str,
    site_id: str = SITE_ID,
    body: dict[str, Any] | None = None,
) -> SiteKeys:
    """Create the site (`site_body` unless `body` is given), publish the policy, make keys."""
    admin = {"Authorization": f"Bearer {admin_key}"}
    site = f"{base}/v1/sites/{site_id}"
    async with session.put(site, json=body or site_body(), headers=admin) as resp:
        await _expect(resp, 201, f"create site {site_id}")
    async with session.post(f"{site}/policies", json=policy_body(), headers=admin) as resp:
        await _expect(resp, 201, f"publish policy of {site_id}")
    keys = {}
    for scope in ("read", "audit"):
        keys[scope] = await create_key(session, base, admin_key, site_id, scope)
    return SiteKeys(read=keys["read"], audit=keys["audit"])


async def create_key(
    session: aiohttp.ClientSession, base: str, admin_key: str, site_id: str, scope: str
) -> str:
    """A new key of `scope` for the site (the secret, shown once)."""
    url = f"{base}/v1/sites/{site_id}/keys"
    admin = {"Authorization": f"Bearer {admin_key}"}
    async with session.post(url, json={"scope": scope}, headers=admin) as resp:
        key: str = (await _expect(resp, 201, f"create {scope} key of {site_id}"))["key"]
    return key


def event_json(n: int) -> str:
    action = ("accept_all", "reject_all", "custom")[n % 3]
    extra = f",{CUSTOM}" if action == "custom" else ""
    return (
        f'{{"event_id":"{uuid.uuid4()}","subject_id":"s-{n}","policy_version":1,'
        f'"action":"{action}"{extra}}}'
    )


def batch_body(first: int, count: int) -> bytes:
    events = ",".join(event_json(n) for n in range(first, first + count))
    return f'{{"events":[{events}]}}'.encode()


@dataclass(frozen=True)
class PrefillResult:
    subjects: int
    accepted: int
    duplicates: int
    seconds: float
    connections: int

    @property
    def events_per_second(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0


async def prefill(
    session: aiohttp.ClientSession,
    base: str,
    subjects: int,
    connections: int = 8,
    progress: bool = True,
    site_id: str = SITE_ID,
    origin: str = ORIGIN,
) -> PrefillResult:
    """One event per subject s-<n>, 100 per request, `connections` requests in flight."""
    url = f"{base}/v1/sites/{site_id}/events"
    headers = {"Origin": origin, "Content-Type": "application/json"}
    starts = iter(range(0, subjects, BATCH))
    accepted = duplicates = 0
    started = time.perf_counter()
    next_report = started + 10

    async def worker() -> None:
        nonlocal accepted, duplicates, next_report
        for first in starts:  # shared iterator: each batch is taken once
            body = batch_body(first, min(BATCH, subjects - first))
            for attempt in range(5):
                async with session.post(url, data=body, headers=headers) as resp:
                    if resp.status == 503 and attempt < 4:
                        await asyncio.sleep(0.2 * (attempt + 1))
                        continue
                    answer = await _expect(resp, 201, f"prefill {site_id} at s-{first}")
                    accepted += answer["accepted"]
                    duplicates += answer["duplicates"]
                    break
            now = time.perf_counter()
            if progress and now >= next_report:
                next_report = now + 10
                print(f"  prefill: {accepted:,} events in {now - started:.0f} s", flush=True)

    await asyncio.gather(*(worker() for _ in range(connections)))
    return PrefillResult(
        subjects=subjects,
        accepted=accepted,
        duplicates=duplicates,
        seconds=time.perf_counter() - started,
        connections=connections,
    )
