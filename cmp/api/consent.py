"""Consent state for tag managers (read scope): one subject, or up to 1000 at once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web

from cmp.api.access import SiteContext
from cmp.api.bodies import Response
from cmp.api.json import dumps
from cmp.api.problems import Problem
from cmp.api.validation import parse_json
from cmp.appkeys import CATALOG, LOOKUP_SLOTS, STATE
from cmp.commit import Unavailable
from cmp.consent import PolicyView, StoredChoice, derive_state
from cmp.jurisdiction import UNKNOWN, Location, Rule, Rules, location_of, site_rules
from cmp.models import LookupIn
from cmp.store import links as link_store
from cmp.store.events import Peers
from cmp.store.sites import StoredSite
from cmp.users import fold, user_digest
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
    manager passes the visitor's on) denies the `gpc` purposes of a default state. A
    subject linked to a user has the user's state when its rule shares across devices
    (the rule's `share_across_devices`, else the site's; docs/linked-users.md).

    A lookup of 1000 subjects holds 1000 small byte strings, not 1000 nested dicts:
    under many concurrent lookups that is what keeps a worker's memory flat.
    """
    return [doc for doc, _ in await shared_states(request, site, subject_ids, where)]


async def shared_states(
    request: web.Request, site: StoredSite, subject_ids: list[str], where: Location
) -> list[tuple[bytes, bool]]:
    """`states`, each with whether the subject's rule shares across devices (so that, if
    linked, the document is its user's state)."""
    found, peers = await read_choices_and_peers(request, site.site_id, subject_ids)
    documents = await StateDocuments.make(request, site, where)
    results = []
    for subject_id in subject_ids:
        own = found.get(subject_id)
        # The subject's own rule decides, as it decides the state: its latest event's, or
        # the location's.
        shares = documents.rule_of(own).shares(site.share_across_devices)
        linked = peers.get(subject_id) if shares else None
        choice = documents.fold([c for _, c in linked if c is not None])[0] if linked else own
        results.append((dumps(await documents.of(subject_id, choice)), shares))
    return results


async def read_choices(
    request: web.Request, site_id: str, subject_ids: list[str]
) -> dict[str, StoredChoice]:
    """The subjects' latest choices through the batched state read (503 when down)."""
    return (await read_choices_and_peers(request, site_id, subject_ids))[0]


async def read_choices_and_peers(
    request: web.Request, site_id: str, subject_ids: list[str]
) -> tuple[dict[str, StoredChoice], dict[str, Peers]]:
    """`read_choices`, and the peers of the subjects linked to a user (same statement)."""
    try:
        return await request.app[STATE].get_with_peers(site_id, subject_ids)
    except Unavailable:
        raise Problem(
            503,
            "consent state is unavailable right now; retry",
            code="unavailable",
            headers={"Retry-After": "1"},
        ) from None


@dataclass(frozen=True, slots=True)
class StateDocuments:
    """What every state document of one request shares: the site's current versions and
    rules, the request's location and GPC signal, the time."""

    request: web.Request
    site: StoredSite
    current: PolicyView | None
    material: int
    rules: Rules
    located: Rule
    gpc: bool
    now: datetime

    @classmethod
    async def make(cls, request: web.Request, site: StoredSite, where: Location) -> StateDocuments:
        current, material = await request.app[CATALOG].current_view(site.site_id)
        rules = site_rules(site)
        gpc = request.headers.get("Sec-GPC", "").strip() == "1"
        return cls(
            request, site, current, material, rules, rules.match(where), gpc, datetime.now(UTC)
        )

    def fold(self, choices: list[StoredChoice]) -> tuple[StoredChoice | None, datetime | None]:
        """A user's choice from its subjects' (cmp.users.fold), and `as_of`."""
        return fold(
            choices,
            material_version=self.material,
            validity_days=self.site.consent_validity_days,
            now=self.now,
        )

    def rule_of(self, choice: StoredChoice | None) -> Rule:
        """The rule a state is computed under: its choice's, or (no choice, or a rule
        gone since) the request's location's."""
        return self.rules.by_id.get(choice.rule or "", self.located) if choice else self.located

    async def of(self, subject_id: str, choice: StoredChoice | None) -> dict[str, Any]:
        site_id = self.site.site_id
        catalog = self.request.app[CATALOG]
        rule = self.rule_of(choice)
        choice_view = await catalog.view(site_id, choice.policy_version) if choice else None
        return derive_state(
            site_id=site_id,
            subject_id=subject_id,
            validity_days=self.site.consent_validity_days,
            current=self.current,
            material_version=self.material,
            choice=choice,
            choice_view=choice_view,
            now=self.now,
            rule=rule,
            gpc=self.gpc,
        )


def etagged(request: web.Request, body: bytes) -> web.Response:
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return Response(body=body, content_type="application/json", headers=headers)


async def get_consent(request: web.Request, ctx: SiteContext) -> web.Response:
    subject_id = subject_id_of(request)
    where = location_of(request.query.get("country"), request.query.get("region"))
    (state,) = await states(request, ctx.site, [subject_id], where)
    return etagged(request, state)


async def post_lookup(request: web.Request, ctx: SiteContext) -> web.Response:
    body = await parse_json(request, LookupIn)
    async with request.app[LOOKUP_SLOTS]:
        where = location_of(body.country, body.region)
        found = await states(request, ctx.site, body.subject_ids, where) if body.subject_ids else []
        doc = b'{"results":[' + b",".join(found) + b"]"
        if body.user_ids:
            users = await user_states(request, ctx.site, body.user_ids, where)
            doc += b',"users":[' + b",".join(users) + b"]"
        return etagged(request, doc + b"}")


async def user_states(
    request: web.Request, site: StoredSite, user_ids: list[str], where: Location = UNKNOWN
) -> list[bytes]:
    """The state of each of the site's users (normalised ids): per purpose the latest
    decision among the subjects linked to it now (cmp.users.fold)."""
    site_id = site.site_id

    async def read_links(conn: asyncpg.Connection) -> dict[str, list[str]]:
        return {
            user_id: await link_store.linked_subjects(
                conn, site_id, user_digest(site.subject_key, user_id)
            )
            for user_id in dict.fromkeys(user_ids)
        }

    linked = await request.app[STATE].bounded(read_links)
    subjects = list(dict.fromkeys(s for found in linked.values() for s in found))
    found = await read_choices(request, site_id, subjects) if subjects else {}
    documents = await StateDocuments.make(request, site, where)
    results = []
    for user_id in user_ids:
        choice, as_of = documents.fold([found[s] for s in linked[user_id] if s in found])
        doc = await documents.of("", choice)
        del doc["subject_id"]
        doc.update(user_id=user_id, subjects=linked[user_id], as_of=as_of)
        results.append(dumps(doc))
    return results
