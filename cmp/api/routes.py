"""The one route table: every route, its handler and its declared access.

`setup_routes` registers each route behind the checks its scope declares
(cmp/api/access.py); the OpenAPI document (cmp/api/openapi/) is built from the same
table, and tests/api/test_access.py derives the auth matrix from it.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from cmp.api import (
    audit,
    banner,
    collect,
    consent,
    demo,
    integrations,
    keys,
    ops,
    policies,
    receipts,
    sites,
    stats,
    users,
)
from cmp.api.access import ROUTE_TABLE, AnyRoute, Route, SiteRoute, guarded
from cmp.api.context import UNMATCHED, unmatched, with_context
from cmp.models import (
    EventBatch,
    IdentifyIn,
    ImpressionBatch,
    KeyIn,
    LinkIn,
    LookupIn,
    PolicyIn,
    SiteIn,
)

SITE_PATH = "/v1/sites/{site_id}"

ROUTES: tuple[AnyRoute, ...] = (
    Route(
        method="PUT",
        path=SITE_PATH,
        handler=sites.put_site,
        scope="admin",
        body=SiteIn,
        tag="admin",
        summary="Create or update a site",
    ),
    SiteRoute(
        method="GET",
        path=SITE_PATH,
        handler=sites.get_site,
        scope="admin",
        tag="admin",
        summary="Read a site",
    ),
    SiteRoute(
        method="POST",
        path=f"{SITE_PATH}/policies",
        handler=policies.post_policy,
        scope="admin",
        body=PolicyIn,
        tag="admin",
        summary="Publish a new policy version",
    ),
    SiteRoute(
        method="GET",
        path=f"{SITE_PATH}/policies",
        handler=policies.list_policies,
        scope="admin",
        tag="admin",
        summary="List policy versions",
    ),
    SiteRoute(
        method="GET",
        path=f"{SITE_PATH}/policies/{{version}}",
        handler=policies.get_policy,
        scope="admin",
        tag="admin",
        summary="Read a policy version (number or 'current')",
    ),
    SiteRoute(
        method="POST",
        path=f"{SITE_PATH}/keys",
        handler=keys.post_key,
        scope="admin",
        body=KeyIn,
        tag="admin",
        summary="Create an API key (shown once)",
    ),
    SiteRoute(
        method="GET",
        path=f"{SITE_PATH}/keys",
        handler=keys.list_keys,
        scope="admin",
        tag="admin",
        summary="List API keys (no secrets)",
    ),
    SiteRoute(
        method="DELETE",
        path=f"{SITE_PATH}/keys/{{key_id}}",
        handler=keys.delete_key,
        scope="admin",
        tag="admin",
        summary="Revoke an API key",
    ),
    SiteRoute(
        method="POST",
        path=f"{SITE_PATH}/events",
        handler=collect.post_events,
        scope="origin",
        body=EventBatch,
        tag="collect",
        summary="Record consent events (one, or {events: [...]} up to 100)",
    ),
    SiteRoute(
        method="OPTIONS",
        path=f"{SITE_PATH}/events",
        handler=collect.preflight,
        scope="preflight",
        tag="collect",
        summary="CORS preflight",
    ),
    SiteRoute(
        method="POST",
        path=f"{SITE_PATH}/impressions",
        handler=collect.post_impressions,
        scope="origin",
        body=ImpressionBatch,
        tag="collect",
        summary="Count showings of the banner (one, or {impressions: [...]} up to 100);"
        " 202 once counted, each impression_id once",
    ),
    SiteRoute(
        method="OPTIONS",
        path=f"{SITE_PATH}/impressions",
        handler=collect.preflight,
        scope="preflight",
        tag="collect",
        summary="CORS preflight",
    ),
    SiteRoute(
        method="POST",
        path=f"{SITE_PATH}/integrations/cookieconsent",
        handler=integrations.post_cookieconsent,
        scope="origin",
        tag="collect",
        summary="Record a vanilla-cookieconsent v3 choice ({cookie, preferences, event})",
    ),
    SiteRoute(
        method="OPTIONS",
        path=f"{SITE_PATH}/integrations/cookieconsent",
        handler=collect.preflight,
        scope="preflight",
        tag="collect",
        summary="CORS preflight",
    ),
    SiteRoute(
        method="GET",
        path="/v1/privacy-managers/{site_id}/config.json",
        handler=integrations.get_klaro_config,
        scope="public",
        tag="collect",
        summary="Klaro API mode: a Klaro config built from the current policy",
    ),
    SiteRoute(
        method="POST",
        path="/v1/privacy-managers/{site_id}/submit",
        handler=integrations.post_klaro_submit,
        scope="origin",
        tag="collect",
        summary="Klaro API mode: record a consent submit (anonymous proof)",
    ),
    SiteRoute(
        method="OPTIONS",
        path="/v1/privacy-managers/{site_id}/submit",
        handler=collect.preflight,
        scope="preflight",
        tag="collect",
        summary="CORS preflight",
    ),
    SiteRoute(
        method="GET",
        path=f"{SITE_PATH}/subjects/{{subject_id}}/consent",
        handler=consent.get_consent,
        scope="read",
        tag="state",
        summary="Current consent state of a subject",
    ),
    SiteRoute(
        method="POST",
        path=f"{SITE_PATH}/consent/lookup",
        handler=consent.post_lookup,
        scope="read",
        body=LookupIn,
        tag="state",
        summary="Current consent state of up to 1000 subjects",
    ),
    SiteRoute(
        method="GET",
        path=f"{SITE_PATH}/users/{{user_id}}/consent",
        handler=users.get_user_consent,
        scope="read",
        tag="users",
        summary="A user's consent state across its linked subjects",
    ),
    SiteRoute(
        method="GET",
        path=f"{SITE_PATH}/users/{{user_id}}/events",
        handler=users.get_user_events,
        scope="audit",
        tag="users",
        summary="Every record of every subject ever linked to a user (access request)",
    ),
    SiteRoute(
        method="DELETE",
        path=f"{SITE_PATH}/users/{{user_id}}",
        handler=users.erase_user,
        scope="admin",
        tag="users",
        summary="Erase a user and every subject ever linked to it",
    ),
    SiteRoute(
        method="POST",
        path=f"{SITE_PATH}/subjects/{{subject_id}}/link",
        handler=users.post_link,
        scope="identify",
        body=LinkIn,
        tag="users",
        summary="Link a subject to one of the site's users (a link record is appended)",
    ),
    SiteRoute(
        method="DELETE",
        path=f"{SITE_PATH}/subjects/{{subject_id}}/link",
        handler=users.delete_link,
        scope="identify",
        tag="users",
        summary="Unlink a subject from its user (an unlink record is appended)",
    ),
    SiteRoute(
        method="POST",
        path=f"{SITE_PATH}/subjects/{{subject_id}}/identify",
        handler=users.post_identify,
        scope="origin",
        body=IdentifyIn,
        tag="users",
        summary="The banner links its subject to the user a link token names"
        " (window.cmp.identify(token))",
    ),
    SiteRoute(
        method="OPTIONS",
        path=f"{SITE_PATH}/subjects/{{subject_id}}/identify",
        handler=collect.preflight,
        scope="preflight",
        tag="users",
        summary="CORS preflight",
    ),
    SiteRoute(
        method="POST",
        path=f"{SITE_PATH}/link-secret",
        handler=users.post_link_secret,
        scope="admin",
        tag="users",
        summary="A new link secret for the banner's link tokens (shown once; the old one"
        " stops verifying)",
    ),
    SiteRoute(
        method="GET",
        path=f"{SITE_PATH}/banner.js",
        handler=banner.get_banner,
        scope="public",
        tag="banner",
        summary="The site's consent banner script (public, cacheable, ETag)",
    ),
    SiteRoute(
        method="GET",
        path="/demo/{site_id}",
        handler=demo.get_demo,
        scope="public",
        tag="banner",
        summary="Demo page of a site with its banner (only with `cmpd serve --demo`;"
        " 404 otherwise)",
    ),
    SiteRoute(
        method="GET",
        path=f"{SITE_PATH}/events",
        handler=audit.export_events,
        scope="audit",
        tag="audit",
        summary="Export the consent log in seq order (format=jsonl|csv|iso27560; from, to,"
        " policy_version, subject_id filters); gzip on request",
    ),
    SiteRoute(
        method="GET",
        path=f"{SITE_PATH}/subjects/{{subject_id}}/events",
        handler=audit.subject_events,
        scope="audit",
        tag="audit",
        summary="A subject's full history (access request)",
    ),
    SiteRoute(
        method="DELETE",
        path=f"{SITE_PATH}/subjects/{{subject_id}}",
        handler=audit.erase_subject,
        scope="admin",
        tag="audit",
        summary="Erase a subject: its personal values leave the log, erased record appended",
    ),
    SiteRoute(
        method="GET",
        path=f"{SITE_PATH}/log/checkpoint",
        handler=audit.get_checkpoint,
        scope="audit",
        tag="audit",
        summary="A signed checkpoint of the site's hash chain head",
    ),
    SiteRoute(
        method="GET",
        path=f"{SITE_PATH}/log/checkpoints",
        handler=audit.list_checkpoints,
        scope="audit",
        tag="audit",
        summary="Stored signed checkpoints (periodic and purge anchors)",
    ),
    Route(
        method="GET",
        path="/v1/log/public-key",
        handler=receipts.public_key,
        scope="public",
        tag="audit",
        summary="The Ed25519 public key that signs checkpoints (with ?site_id=: that site's log"
        " origin and its signed-note verifier key)",
    ),
    SiteRoute(
        method="GET",
        path=f"{SITE_PATH}/log/proof/inclusion",
        handler=receipts.get_inclusion,
        scope="audit",
        tag="audit",
        summary="RFC 9162 inclusion proof of leaf `index` in the Merkle tree of `size` leaves,"
        " with the signed checkpoint (C2SP note) of that size",
    ),
    SiteRoute(
        method="GET",
        path=f"{SITE_PATH}/log/proof/consistency",
        handler=receipts.get_consistency,
        scope="audit",
        tag="audit",
        summary="RFC 9162 consistency proof from the tree of `from` leaves to the tree of `to`"
        " leaves, with both signed checkpoints",
    ),
    Route(
        method="GET",
        path=f"{SITE_PATH}/receipts/{{event_id}}",
        handler=receipts.get_receipt,
        scope="public",
        tag="audit",
        summary="A visitor's receipt (query: subject_id): record, leaf index, signed checkpoint"
        " and inclusion proof (format=iso27560 adds the ISO/IEC TS 27560 record); 202 +"
        " Retry-After until the record is in a checkpoint",
    ),
    SiteRoute(
        method="GET",
        path=f"{SITE_PATH}/stats",
        handler=stats.get_stats,
        scope="audit",
        tag="audit",
        summary="Consent statistics: events per action and opt-in rate per purpose per UTC "
        "day/week/month (query: from, to, interval)",
    ),
    SiteRoute(
        method="GET",
        path=f"{SITE_PATH}/stats.html",
        handler=stats.get_stats_page,
        scope="signed-link",
        tag="audit",
        summary="Consent statistics as an HTML page with a chart, authorized by a signed link "
        "(query: from, to, interval, expires, sig; minted by `cmpd stats-url`)",
    ),
    SiteRoute(
        method="DELETE",
        path=f"{SITE_PATH}/stats-links",
        handler=stats.revoke_stats_links,
        scope="admin",
        tag="admin",
        summary="Revoke every signed link to the site's statistics page (the site's"
        " stats-link key is replaced; links minted after work)",
    ),
    Route(
        method="GET",
        path="/healthz",
        handler=ops.healthz,
        scope="ops",
        summary="Process alive",
    ),
    Route(
        method="GET",
        path="/readyz",
        handler=ops.readyz,
        scope="ops",
        summary="Database reachable and schema current",
    ),
    Route(
        method="GET",
        path="/metrics",
        handler=ops.metrics,
        scope="ops",
        summary="Prometheus metrics",
    ),
    Route(
        method="GET",
        path="/openapi.json",
        handler=ops.openapi,
        scope="ops",
        summary="This OpenAPI 3.1 document",
    ),
)


# Paths on the hot paths: aiohttp tries resources in registration order, so these go
# first (a stable sort keeps each path's methods together).
HOT_PATHS = (
    f"{SITE_PATH}/events",
    f"{SITE_PATH}/impressions",
    f"{SITE_PATH}/subjects/{{subject_id}}/consent",
    f"{SITE_PATH}/consent/lookup",
)


def setup_routes(app: web.Application, routes: Sequence[AnyRoute] = ROUTES) -> None:
    """Register `routes` (tests pass a changed table), each behind its declared checks;
    every GET also answers HEAD (RFC 9110 §9.3.2: probes and caches use it)."""
    app[ROUTE_TABLE] = tuple(routes)
    for route in sorted(routes, key=lambda r: r.path not in HOT_PATHS):
        handler = with_context(guarded(route), route.path)
        app.router.add_route(route.method, route.path, handler)
        if route.method == "GET":
            # aiohttp sends a HEAD response's headers (Content-Length too) without its body.
            app.router.add_route("HEAD", route.path, handler)
    app.router.add_route("*", "/{tail:.*}", with_context(unmatched, UNMATCHED))
