"""Linked users (docs/linked-users.md): link a subject to one of the site's own users and
unlink it (`identify` scope, or the banner with a link token), the user's consent state
(`read`), access (`audit`) and erasure (`admin`) by the site's own user id."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from cmp import linktokens
from cmp.api.access import SiteContext
from cmp.api.collect import cors_headers, facts_of, rejected_problem, visitor_location
from cmp.api.consent import etagged, shared_states, subject_id_of, user_states
from cmp.api.json import json_response
from cmp.api.problems import Problem
from cmp.api.validation import parse_json
from cmp.appkeys import CATALOG, INGEST, LONG_READS, POOL
from cmp.audit.chain import subject_digest
from cmp.ingest import Rejected
from cmp.jurisdiction import location_of
from cmp.linktokens import MAX_TTL_SECONDS
from cmp.models import IdentifyIn, LinkIn
from cmp.store import audit as audit_store
from cmp.store import links as link_store
from cmp.store import sites as site_store
from cmp.store.links import LinkChange, LinkResult
from cmp.store.sites import StoredSite
from cmp.users import user_digest
from cmp.values import normal_user_id


def user_id_of(request: web.Request) -> str:
    """The `{user_id}` of the path in its normal form (400 when it cannot be one)."""
    try:
        return normal_user_id(request.match_info["user_id"])
    except ValueError as exc:
        raise Problem(400, str(exc), code="invalid-user") from None


async def link(
    request: web.Request,
    site: StoredSite,
    subject_id: str,
    user_id: str | None,
    event_id: str,
    origin: str | None = None,
) -> web.Response:
    """Link (or with no user, unlink) and answer as the outcome says."""
    body, status = await linked(request, site, subject_id, user_id, event_id, origin)
    return json_response(body, status=status)


async def linked(
    request: web.Request,
    site: StoredSite,
    subject_id: str,
    user_id: str | None,
    event_id: str,
    origin: str | None = None,
) -> tuple[dict[str, Any], int]:
    """Link (or unlink): the answer's body and status, as the outcome says."""
    change = LinkChange(
        site_id=site.site_id,
        subject_id=subject_id,
        subject_digest=subject_digest(site.subject_key, subject_id),
        user_digest=None if user_id is None else user_digest(site.subject_key, user_id),
        event_id=event_id,
        received_at=datetime.now(UTC),
        origin=origin,
    )
    async with request.app[POOL].acquire() as conn:
        result = await link_store.append_link(conn, change)
    return _answer(site, subject_id, change, result)


def _answer(
    site: StoredSite, subject_id: str, change: LinkChange, result: LinkResult
) -> tuple[dict[str, Any], int]:
    if result.outcome == "conflict":
        raise Problem(409, "this event_id was used for another request", code="conflict")
    if result.outcome == "not-linked":
        raise Problem(404, "this subject is linked to no user", code="not-found")
    body = {
        "site_id": site.site_id,
        "subject_id": subject_id,
        "linked": change.user_digest is not None,
        "appended": result.outcome == "new",
        "seq": result.seq,
    }
    return body, 201 if result.outcome == "new" else 200


async def post_link(request: web.Request, ctx: SiteContext) -> web.Response:
    """Link the subject to a user of the site (identify scope)."""
    subject_id = subject_id_of(request)
    body = await parse_json(request, LinkIn)
    return await link(request, ctx.site, subject_id, body.user_id, body.event_id)


async def delete_link(request: web.Request, ctx: SiteContext) -> web.Response:
    """Unlink the subject from its user (identify scope); 404 when it is linked to none."""
    subject_id = subject_id_of(request)
    return await link(request, ctx.site, subject_id, None, str(uuid.uuid4()))


async def get_user_consent(request: web.Request, ctx: SiteContext) -> web.Response:
    """The user's state across its linked subjects (read scope)."""
    user_id = user_id_of(request)
    where = location_of(request.query.get("country"), request.query.get("region"))
    (state,) = await user_states(request, ctx.site, [user_id], where)
    return etagged(request, state)


async def get_user_events(request: web.Request, ctx: SiteContext) -> web.Response:
    """Access request by the site's own user id: every record of every subject ever
    linked to the user (audit scope)."""
    site = ctx.site
    user_id = user_id_of(request)
    digest = user_digest(site.subject_key, user_id)
    async with (
        request.app[LONG_READS].connection(site.site_id) as conn,
        conn.transaction(readonly=True),
    ):
        subjects = await link_store.subjects_ever_linked(conn, site.site_id, digest)
        lines = await link_store.subjects_lines(conn, site.site_id, [d for _, d in subjects])
    return json_response(
        {
            "site_id": site.site_id,
            "user_id": user_id,
            "subjects": [s for s, _ in subjects],
            "events": [json.loads(line) for line in lines],
        }
    )


async def erase_user(request: web.Request, ctx: SiteContext) -> web.Response:
    """Erasure of the user and every subject ever linked to it, each as a subject's
    erasure, in one transaction (admin scope); 404 when no link names the user."""
    site = ctx.site
    digest = user_digest(site.subject_key, user_id_of(request))
    now = datetime.now(UTC)
    erased_events = 0
    async with request.app[POOL].acquire() as conn, conn.transaction():
        subjects = await link_store.subjects_ever_linked(conn, site.site_id, digest)
        for subject_id, subject in subjects:
            result = await audit_store.erase_subject(conn, site.site_id, subject_id, subject, now)
            erased_events += result.events if result else 0
    if not subjects:
        raise Problem(404, "no subject is linked to this user", code="not-found")
    return json_response(
        {
            "site_id": site.site_id,
            "erased_subjects": len(subjects),
            "erased_events": erased_events,
        }
    )


async def post_link_secret(request: web.Request, ctx: SiteContext) -> web.Response:
    """A new link secret for the site's banner link tokens, shown once (admin scope);
    tokens signed with the previous one stop verifying."""
    site_id = ctx.site.site_id
    async with request.app[POOL].acquire() as conn:
        secret = await site_store.rotate_link_secret(conn, site_id)
    if secret is None:
        raise Problem(404, "no such site", code="not-found")
    request.app[CATALOG].invalidate(f"site:{site_id}")
    return json_response(
        {"site_id": site_id, "link_secret": secret, "max_ttl_seconds": MAX_TTL_SECONDS},
        status=201,
    )


async def post_identify(request: web.Request, ctx: SiteContext) -> web.Response:
    """The banner links its subject with a token the site's backend signed (public,
    Origin-checked, rate-limited like events): `window.cmp.identify(token)`. The answer
    carries the subject's state now that it is linked (the user's, with sharing on)."""
    site = ctx.site
    subject_id = subject_id_of(request)
    origin = request.headers.get("Origin")
    cors = cors_headers(origin)
    try:
        request.app[INGEST].admit(site.site_id, facts_of(request, origin))
    except Rejected as exc:
        raise rejected_problem(request, exc, origin) from None
    body = await parse_json(request, IdentifyIn, allowed=("application/json", "text/plain"))
    secret = site.link_secret.decode() if site.link_secret else None
    try:
        user_id = linktokens.verify(secret, site.site_id, body.token, time.time())
    except linktokens.Malformed as exc:
        errors = [{"pointer": "/token", "detail": str(exc)}]
        raise Problem(422, str(exc), code="validation", errors=errors, headers=cors) from None
    except linktokens.Refused as exc:
        raise Problem(401, str(exc), code="unauthorized", headers=cors) from None
    answer, status = await linked(request, site, subject_id, user_id, body.event_id, origin)
    answer["state"] = await shared_state(request, site, subject_id)
    return json_response(answer, status=status, headers=cors)


async def shared_state(
    request: web.Request, site: StoredSite, subject_id: str
) -> dict[str, Any] | None:
    """The linked subject's state, which is its user's, for the banner to adopt (it holds
    no read key); null when the subject's rule (or else the site) keeps consent per
    device, where the banner's own cookie is the subject's state already."""
    (shared,) = await shared_states(request, site, [subject_id], visitor_location(request))
    state, sharing = shared
    if not sharing:
        return None
    found: dict[str, Any] = json.loads(state)
    return found
