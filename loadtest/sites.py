"""The bench sites beside the plain one (`loadtest.seed`), each measuring one feature next
to its plain twin in the same run, made through cmp's own API like a tenant's.

- `bench-rules` has jurisdiction rules like the demo sites' (docs/jurisdictions.md): the
  EEA and UK/CH opt-in, US states with a privacy law opt-out (GPC honoured), the rest of
  the US notice only, opt-in elsewhere, an unknown location treated as the EEA.
  `ingest-1-rules` posts `ingest-1`'s events to it with the location headers a CDN sets,
  spread over `PLACES`; `rule_problems` then checks that the stored events fell under
  the rule each place should (a site that matched nothing would pass a status count).
- `bench-linked` shares consent across devices (the default) and has the first
  `LINKED_SHARE` of its subjects linked in pairs to users (two devices per user) through
  the `identify` scope's link route: `state-linked` reads those the way `state` reads
  the plain site's, so each read pays the links lookup and its peer's choice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from loadtest import seed
from loadtest.report import say
from loadtest.runner import SiteLoad

RULES = "rules"
LINKED = "linked"
RULES_SITE_ID = "bench-rules"
LINKED_SITE_ID = "bench-linked"
LINKED_SHARE = 0.5
# The headers cmp is told to believe (servers.cmp_env) and the rules scenario sends.
COUNTRY_HEADER = "CF-IPCountry"
REGION_HEADER = "CF-Region-Code"

EEA = (
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IS",
    "IT", "LV", "LI", "LT", "LU", "MT", "NL", "NO", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
)  # fmt: skip
US_PRIVACY_STATES = ("US-CA", "US-CO", "US-CT", "US-OR", "US-TX", "US-UT", "US-VA")


def jurisdictions() -> list[dict[str, Any]]:
    return [
        {"id": "eea", "countries": list(EEA), "model": "opt_in"},
        {"id": "uk-ch", "countries": ["GB", "CH"], "model": "opt_in"},
        {"id": "us-states", "regions": list(US_PRIVACY_STATES), "model": "opt_out"},
        {"id": "us", "countries": ["US"], "model": "notice_only"},
        {"id": "rest", "model": "opt_in", "default": True},
    ]


@dataclass(frozen=True)
class Place:
    """A visitor's location as the proxy headers give it, and the rule it must match."""

    country: str  # "" sends no country header
    region: str  # the subdivision alone, as Cloudflare sends it ("" sends none)
    gpc: bool
    rule: str

    @property
    def stored(self) -> tuple[str, str | None, str | None, bool]:
        """(rule, country, region, gpc) as the event records them."""
        region = f"{self.country}-{self.region}" if self.region else None
        return self.rule, self.country or None, region, self.gpc

    @property
    def arg(self) -> str:
        return f"{self.country}:{self.region}:{int(self.gpc)}"


# Region, country, default and fallback matches, with and without GPC.
PLACES = (
    Place("NO", "", False, "eea"),
    Place("SE", "", False, "eea"),
    Place("DE", "", False, "eea"),
    Place("US", "CA", False, "us-states"),
    Place("US", "CA", True, "us-states"),
    Place("US", "NY", False, "us"),
    Place("GB", "", False, "uk-ch"),
    Place("BR", "", False, "rest"),
    Place("", "", False, "eea"),
)


def rules_site_body(site_id: str = RULES_SITE_ID) -> dict[str, Any]:
    return {
        **seed.site_body(),
        "name": "Benchmark shop with jurisdiction rules",
        "origins": [origin_of(site_id)],
        "jurisdictions": jurisdictions(),
        "fallback": "eea",
    }


def linked_site_body(site_id: str = LINKED_SITE_ID) -> dict[str, Any]:
    return {
        **seed.site_body(),
        "name": "Benchmark shop with linked users",
        "origins": [origin_of(site_id)],
        "share_across_devices": True,
    }


def origin_of(site_id: str) -> str:
    return f"https://{site_id}.example"


def rules_wrk_args() -> tuple[str, ...]:
    return (
        "places=" + ",".join(p.arg for p in PLACES),
        f"country_header={COUNTRY_HEADER}",
        f"region_header={REGION_HEADER}",
    )


def user_of(n: int) -> str:
    """The user subject s-<n> is linked to: two devices per user."""
    return f"u-{n // 2}"


def linked_count(subjects: int) -> int:
    """How many of the linked site's subjects are linked (whole pairs)."""
    return int(subjects * LINKED_SHARE) // 2 * 2


async def link_subjects(
    session: aiohttp.ClientSession,
    base: str,
    site_id: str,
    identify_key: str,
    count: int,
    connections: int = 16,
) -> float:
    """Link s-0 … s-(count-1) to their users, `connections` links in flight (there is no
    batch route: each link appends one record under the site's chain lock); seconds."""
    headers = {"Authorization": f"Bearer {identify_key}"}
    numbers = iter(range(count))
    started = time.perf_counter()

    async def worker() -> None:
        for n in numbers:  # shared iterator: each subject is linked once
            url = f"{base}/v1/sites/{site_id}/subjects/s-{n}/link"
            body = {"user_id": user_of(n), "event_id": str(uuid.uuid4())}
            for attempt in range(5):
                async with session.post(url, json=body, headers=headers) as resp:
                    if resp.status == 503 and attempt < 4:
                        await asyncio.sleep(0.2 * (attempt + 1))
                        continue
                    await seed._expect(resp, 201, f"link s-{n} of {site_id}")
                    break

    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - started


async def setup_rules_site(
    session: aiohttp.ClientSession, base: str, admin_key: str, site_id: str = RULES_SITE_ID
) -> tuple[SiteLoad, dict[str, Any]]:
    keys = await seed.setup_site(session, base, admin_key, site_id, rules_site_body(site_id))
    load = SiteLoad(site_id, origin_of(site_id), keys.read, 0, rules_wrk_args())
    return load, {"site": site_id, "rules": len(jurisdictions()), "places": len(PLACES)}


async def setup_linked_site(
    session: aiohttp.ClientSession,
    base: str,
    admin_key: str,
    subjects: int,
    connections: int,
    site_id: str = LINKED_SITE_ID,
) -> tuple[SiteLoad, dict[str, Any]]:
    """The site, one event for each of its subjects, then the first share linked."""
    keys = await seed.setup_site(session, base, admin_key, site_id, linked_site_body(site_id))
    identify = await seed.create_key(session, base, admin_key, site_id, "identify")
    origin = origin_of(site_id)
    filled = await seed.prefill(
        session, base, subjects, connections, progress=False, site_id=site_id, origin=origin
    )
    linked = linked_count(subjects)
    seconds = await link_subjects(session, base, site_id, identify, linked, connections)
    say(
        f"linked site: {filled.accepted:,} subjects in {filled.seconds:.1f} s, "
        f"{linked:,} of them linked to {linked // 2:,} users in {seconds:.1f} s "
        f"({linked / seconds if seconds else 0:,.0f} links/s)"
    )
    info = {
        "site": site_id,
        "subjects": filled.accepted,
        "linked": linked,
        "link_seconds": round(seconds, 2),
    }
    # the state-linked reads draw from s-0 … s-(linked-1): linked subjects only
    return SiteLoad(site_id, origin, keys.read, linked), info


def rule_problems(found: dict[tuple[str, str | None, str | None, bool], int]) -> list[str]:
    """What the rules site's stored events say against `PLACES`: each place's rule,
    country and region must appear, and nothing else (events of an unconfigured site
    would all be the fallback's, without country)."""
    wanted = {p.stored for p in PLACES}
    problems = [
        f"{n} events under rule {rule} from {country}/{region} (gpc {gpc}): no place of "
        "the spread gives that"
        for (rule, country, region, gpc), n in sorted(found.items(), key=str)
        if (rule, country, region, gpc) not in wanted
    ]
    problems += [
        f"no event under rule {rule} from {country}/{region} (gpc {gpc})"
        for rule, country, region, gpc in sorted(wanted - set(found), key=str)
    ]
    return problems
