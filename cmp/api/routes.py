"""The one route table. `ROUTES` also feeds the OpenAPI document (cmp/api/openapi.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel

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
)
from cmp.api.context import UNMATCHED, unmatched, with_context
from cmp.models import EventBatch, KeyIn, LookupIn, PolicyIn, SiteIn

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    scope: str | None = None  # admin | read | audit | public | None (ops)
    body: type[BaseModel] | None = None
    tag: str = "ops"


S = "/v1/sites/{site_id}"

ROUTES: list[Route] = [
    Route("PUT", S, sites.put_site, "Create or update a site", "admin", SiteIn, "admin"),
    Route("GET", S, sites.get_site, "Read a site", "admin", tag="admin"),
    Route(
        "POST",
        f"{S}/policies",
        policies.post_policy,
        "Publish a new policy version",
        "admin",
        PolicyIn,
        "admin",
    ),
    Route(
        "GET", f"{S}/policies", policies.list_policies, "List policy versions", "admin", tag="admin"
    ),
    Route(
        "GET",
        f"{S}/policies/{{version}}",
        policies.get_policy,
        "Read a policy version (number or 'current')",
        "admin",
        tag="admin",
    ),
    Route(
        "POST",
        f"{S}/keys",
        keys.post_key,
        "Create an API key (shown once)",
        "admin",
        KeyIn,
        "admin",
    ),
    Route("GET", f"{S}/keys", keys.list_keys, "List API keys (no secrets)", "admin", tag="admin"),
    Route(
        "DELETE", f"{S}/keys/{{key_id}}", keys.delete_key, "Revoke an API key", "admin", tag="admin"
    ),
    Route(
        "POST",
        f"{S}/events",
        collect.post_events,
        "Record consent events (one, or {events: [...]} up to 100)",
        "public",
        EventBatch,
        "collect",
    ),
    Route("OPTIONS", f"{S}/events", collect.preflight, "CORS preflight", "public", tag="collect"),
    Route(
        "POST",
        f"{S}/integrations/cookieconsent",
        integrations.post_cookieconsent,
        "Record a vanilla-cookieconsent v3 choice ({cookie, preferences, event})",
        "public",
        tag="collect",
    ),
    Route(
        "OPTIONS",
        f"{S}/integrations/cookieconsent",
        collect.preflight,
        "CORS preflight",
        "public",
        tag="collect",
    ),
    Route(
        "GET",
        "/v1/privacy-managers/{site_id}/config.json",
        integrations.get_klaro_config,
        "Klaro API mode: a Klaro config built from the current policy",
        "public",
        tag="collect",
    ),
    Route(
        "POST",
        "/v1/privacy-managers/{site_id}/submit",
        integrations.post_klaro_submit,
        "Klaro API mode: record a consent submit (anonymous proof)",
        "public",
        tag="collect",
    ),
    Route(
        "OPTIONS",
        "/v1/privacy-managers/{site_id}/submit",
        collect.preflight,
        "CORS preflight",
        "public",
        tag="collect",
    ),
    Route(
        "GET",
        f"{S}/subjects/{{subject_id}}/consent",
        consent.get_consent,
        "Current consent state of a subject",
        "read",
        tag="state",
    ),
    Route(
        "POST",
        f"{S}/consent/lookup",
        consent.post_lookup,
        "Current consent state of up to 1000 subjects",
        "read",
        LookupIn,
        "state",
    ),
    Route(
        "GET",
        f"{S}/banner.js",
        banner.get_banner,
        "The site's consent banner script (public, cacheable, ETag)",
        "public",
        tag="banner",
    ),
    Route(
        "GET",
        "/demo/{site_id}",
        demo.get_demo,
        "Demo page of a site with its banner (only with `cmpd serve --demo`; 404 otherwise)",
        "public",
        tag="banner",
    ),
    Route(
        "GET",
        f"{S}/events",
        audit.export_events,
        "Export the consent log in seq order (format=jsonl|csv|iso27560; from, to, policy_version,"
        " subject_id filters); gzip on request",
        "audit",
        tag="audit",
    ),
    Route(
        "GET",
        f"{S}/subjects/{{subject_id}}/events",
        audit.subject_events,
        "A subject's full history (access request)",
        "audit",
        tag="audit",
    ),
    Route(
        "DELETE",
        f"{S}/subjects/{{subject_id}}",
        audit.erase_subject,
        "Erase a subject: state gone, id removed from the log, erased record appended",
        "admin",
        tag="audit",
    ),
    Route(
        "GET",
        f"{S}/log/checkpoint",
        audit.get_checkpoint,
        "A signed checkpoint of the site's hash chain head",
        "audit",
        tag="audit",
    ),
    Route(
        "GET",
        f"{S}/log/checkpoints",
        audit.list_checkpoints,
        "Stored signed checkpoints (periodic and purge anchors)",
        "audit",
        tag="audit",
    ),
    Route(
        "GET",
        "/v1/log/public-key",
        receipts.public_key,
        "The Ed25519 public key that signs checkpoints (with ?site_id=: that site's log"
        " origin and its signed-note verifier key)",
        "public",
        tag="audit",
    ),
    Route(
        "GET",
        f"{S}/log/proof/inclusion",
        receipts.get_inclusion,
        "RFC 9162 inclusion proof of leaf `index` in the Merkle tree of `size` leaves,"
        " with the signed checkpoint (C2SP note) of that size",
        "audit",
        tag="audit",
    ),
    Route(
        "GET",
        f"{S}/log/proof/consistency",
        receipts.get_consistency,
        "RFC 9162 consistency proof from the tree of `from` leaves to the tree of `to`"
        " leaves, with both signed checkpoints",
        "audit",
        tag="audit",
    ),
    Route(
        "GET",
        f"{S}/receipts/{{event_id}}",
        receipts.get_receipt,
        "A visitor's receipt (query: subject_id): record, leaf index, signed checkpoint"
        " and inclusion proof (format=iso27560 adds the ISO/IEC TS 27560 record); 202 +"
        " Retry-After until the record is in a checkpoint",
        "public",
        tag="audit",
    ),
    Route(
        "GET",
        f"{S}/stats",
        stats.get_stats,
        "Consent statistics: events per action and opt-in rate per purpose per UTC "
        "day/week/month (query: from, to, interval)",
        "audit",
        tag="audit",
    ),
    Route(
        "GET",
        f"{S}/stats.html",
        stats.get_stats_page,
        "Consent statistics as an HTML page with a chart, authorized by a signed link "
        "(query: from, to, interval, expires, sig; minted by `cmpd stats-url`)",
        "public",
        tag="audit",
    ),
    Route("GET", "/healthz", ops.healthz, "Process alive"),
    Route("GET", "/readyz", ops.readyz, "Database reachable and schema current"),
    Route("GET", "/metrics", ops.metrics, "Prometheus metrics"),
    Route("GET", "/openapi.json", ops.openapi, "This OpenAPI 3.1 document"),
]


# Paths on the hot paths: aiohttp tries resources in registration order, so these go
# first (a stable sort keeps each path's methods together).
HOT_PATHS = (f"{S}/events", f"{S}/subjects/{{subject_id}}/consent", f"{S}/consent/lookup")


def setup_routes(app: web.Application, extra: list[Route] | None = None) -> None:
    routes = sorted(ROUTES + (extra or []), key=lambda r: r.path not in HOT_PATHS)
    for route in routes:
        app.router.add_route(route.method, route.path, with_context(route.handler, route.path))
    app.router.add_route("*", "/{tail:.*}", with_context(unmatched, UNMATCHED))
