"""Consent state for tag managers (read scope): one subject, or up to 1000 at once."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from aiohttp import web

from cmp.api.access import SiteContext
from cmp.api.json import dumps
from cmp.api.problems import Problem
from cmp.api.validation import parse_json
from cmp.appkeys import CATALOG, LOOKUP_SLOTS, STATE
from cmp.commit import Unavailable
from cmp.consent import derive_state
from cmp.jurisdiction import UNKNOWN, Location, location_of, site_rules
from cmp.models import LookupIn
from cmp.store.sites import StoredSite
from cmp.values import SUBJECT_ID_RE


def subject_id_of(request: web.Request) -> str:
    """The `{subject_id}` of the path, checked (400 when it cannot be a subject id)."""
    subject_id = request.match_info["subject_id"]
    if not SUBJECT_ID_RE.fullmatch(subject_id):
        raise Problem(
            400, "subject_id must be 1–128 characters of [A-Za-z0-9._:-]", code="invalid-subject"
        )
    return subject_id


async def states(
    request: web.Request, site: StoredSite, subject_ids: list[str], where: Location = UNKNOWN
) -> list[bytes]:
    """The state document of each subject, encoded as soon as it is made, under the rule
    of its latest event, or for a subject without one (or whose rule is gone) the rule
    of `where` (docs/jurisdictions.md). `Sec-GPC: 1` on the request (a server-side tag
    manager passes the visitor's on) denies the `gpc` purposes of a default state.

    A lookup of 1000 subjects holds 1000 small byte strings, not 1000 nested dicts:
    under many concurrent lookups that is what keeps a worker's memory flat.
    """
    catalog = request.app[CATALOG]
    site_id = site.site_id
    try:
        found = await request.app[STATE].get(site_id, subject_ids)
    except Unavailable:
        raise Problem(
            503,
            "consent state is unavailable right now; retry",
            code="unavailable",
            headers={"Retry-After": "1"},
        ) from None
    current, material = await catalog.current_view(site_id)
    now = datetime.now(UTC)
    rules = site_rules(site)
    located = rules.match(where)
    gpc = request.headers.get("Sec-GPC", "").strip() == "1"
    results = []
    for subject_id in subject_ids:
        choice = found.get(subject_id)
        rule = rules.by_id.get(choice.rule or "", located) if choice else located
        choice_view = await catalog.view(site_id, choice.policy_version) if choice else None
        results.append(
            dumps(
                derive_state(
                    site_id=site_id,
                    subject_id=subject_id,
                    validity_days=site.consent_validity_days,
                    current=current,
                    material_version=material,
                    choice=choice,
                    choice_view=choice_view,
                    now=now,
                    rule=rule,
                    gpc=gpc,
                )
            )
        )
    return results


def etagged(request: web.Request, body: bytes) -> web.Response:
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)


async def get_consent(request: web.Request, ctx: SiteContext) -> web.Response:
    subject_id = subject_id_of(request)
    where = location_of(request.query.get("country"), request.query.get("region"))
    (state,) = await states(request, ctx.site, [subject_id], where)
    return etagged(request, state)


async def post_lookup(request: web.Request, ctx: SiteContext) -> web.Response:
    body = await parse_json(request, LookupIn)
    async with request.app[LOOKUP_SLOTS]:
        where = location_of(body.country, body.region)
        found = await states(request, ctx.site, body.subject_ids, where)
        return etagged(request, b'{"results":[' + b",".join(found) + b"]}")
