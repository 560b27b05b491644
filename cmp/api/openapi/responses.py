"""What each operation answers: its success statuses with their bodies, and every
problem status it can answer, derived from the route's declared scope and what it does."""

from __future__ import annotations

from typing import Any

from cmp.api.access import KEY_SCOPES, AnyRoute
from cmp.api.openapi.schemas import (
    ACCEPTED,
    CHECKPOINT,
    IDENTIFIED,
    INT,
    LINK,
    NULLABLE_STRING,
    RETRY_AFTER,
    STATE,
    STRING,
    STRINGS,
    TALLY,
    USER_STATE,
    json_body,
    obj,
    ref,
    text_body,
)

# What each operation answers on success: {status: (description, content or None)}.
SUCCESS: dict[str, dict[int, tuple[str, dict[str, Any] | None]]] = {
    "put_site": {
        200: ("updated", json_body(ref("Site"))),
        201: ("created", json_body(ref("Site"))),
    },
    "get_site": {200: ("the site", json_body(ref("Site")))},
    "post_policy": {201: ("published", json_body(ref("PolicyVersion")))},
    "list_policies": {
        200: (
            "a page of versions, oldest first; `next`: the following page, or null",
            json_body(
                obj(
                    {
                        "policies": {"type": "array", "items": ref("PolicyVersion")},
                        "next": NULLABLE_STRING,
                    }
                )
            ),
        )
    },
    "get_policy": {200: ("the version", json_body(ref("PolicyVersion")))},
    "post_key": {201: ("the key, shown once", json_body(ref("CreatedKey")))},
    "list_keys": {
        200: (
            "a page of keys without secrets, oldest first; `next`: the following page, or null",
            json_body(
                obj({"keys": {"type": "array", "items": ref("ApiKey")}, "next": NULLABLE_STRING})
            ),
        )
    },
    "delete_key": {204: ("revoked", None)},
    "post_events": {201: ("committed", json_body(ACCEPTED))},
    "post_impressions": {
        202: (
            "durably counted; `ignored`: sent by a known crawler, not counted",
            json_body(obj({"counted": INT, "duplicates": INT, "ignored": INT})),
        )
    },
    "preflight": {204: ("CORS preflight allowed", None)},
    "post_cookieconsent": {201: ("committed", json_body(ACCEPTED))},
    "get_klaro_config": {
        200: ("a Klaro config", json_body({"type": "object"})),
        304: ("not modified (If-None-Match)", None),
    },
    "post_klaro_submit": {
        201: (
            "committed",
            json_body(obj({"ok": {"const": True}, "accepted": INT})),
        )
    },
    "get_consent": {
        200: ("the state", json_body(STATE)),
        304: ("not modified (If-None-Match)", None),
    },
    "post_lookup": {
        200: (
            "states in request order",
            json_body(
                {
                    **obj({"results": {"type": "array", "items": STATE}}),
                    "properties": {
                        "results": {"type": "array", "items": STATE},
                        "users": {"type": "array", "items": USER_STATE},
                    },
                }
            ),
        ),
        304: ("not modified (If-None-Match)", None),
    },
    "get_banner": {
        200: ("the script", text_body("application/javascript")),
        304: ("not modified (If-None-Match)", None),
    },
    "get_demo": {200: ("the demo page", text_body("text/html"))},
    "export_events": {
        200: (
            "the log in seq order",
            {**text_body("application/x-ndjson"), **text_body("text/csv")},
        )
    },
    "subject_events": {
        200: (
            "the subject's history",
            json_body(
                obj(
                    {
                        "site_id": STRING,
                        "subject_id": STRING,
                        "events": {"type": "array", "items": {"type": "object"}},
                    }
                )
            ),
        )
    },
    "erase_subject": {
        200: (
            "erased",
            json_body(
                obj(
                    {
                        "site_id": STRING,
                        "erased_events": INT,
                        "erased_record_seq": INT,
                    }
                )
            ),
        )
    },
    "get_user_consent": {
        200: ("the user's state across its linked subjects", json_body(USER_STATE)),
        304: ("not modified (If-None-Match)", None),
    },
    "get_user_events": {
        200: (
            "the records of every subject ever linked to the user, in seq order",
            json_body(
                obj(
                    {
                        "site_id": STRING,
                        "user_id": STRING,
                        "subjects": STRINGS,
                        "events": {"type": "array", "items": {"type": "object"}},
                    }
                )
            ),
        )
    },
    "erase_user": {
        200: (
            "erased: every subject ever linked to the user, each with its erased record",
            json_body(obj({"site_id": STRING, "erased_subjects": INT, "erased_events": INT})),
        )
    },
    "post_identify": {
        201: ("linked: a link record was appended; the state in force", json_body(IDENTIFIED)),
        200: (
            "already linked to this user, or a retry: nothing appended; the state in force",
            json_body(IDENTIFIED),
        ),
    },
    "post_link_secret": {
        201: (
            "the new secret, shown once",
            json_body(obj({"site_id": STRING, "link_secret": STRING, "max_ttl_seconds": INT})),
        )
    },
    "post_link": {
        201: ("linked: a link record was appended", json_body(LINK)),
        200: ("already linked to this user, or a retry: nothing appended", json_body(LINK)),
    },
    "delete_link": {201: ("unlinked: an unlink record was appended", json_body(LINK))},
    "get_checkpoint": {200: ("a signed checkpoint", json_body(CHECKPOINT))},
    "get_inclusion": {
        200: (
            "the proof and the signed checkpoint (C2SP note) of that size",
            json_body(
                obj(
                    {
                        "site_id": STRING,
                        "index": INT,
                        "size": INT,
                        "root_hash": STRING,
                        "checkpoint": STRING,
                        "inclusion_proof": STRINGS,
                    }
                )
            ),
        )
    },
    "get_consistency": {
        200: (
            "the proof and both signed checkpoints",
            json_body(
                obj(
                    {
                        "site_id": STRING,
                        "from": INT,
                        "to": INT,
                        "from_checkpoint": STRING,
                        "checkpoint": STRING,
                        "consistency_proof": STRINGS,
                    }
                )
            ),
        )
    },
    "get_receipt": {
        200: (
            "the receipt",
            json_body(
                obj(
                    {
                        "record": {"type": "object"},
                        "leaf_index": INT,
                        "checkpoint": STRING,
                        "inclusion_proof": STRINGS,
                    },
                    closed=False,  # format=iso27560 adds `iso27560`
                )
            ),
        ),
        202: (
            "recorded, not yet in a signed checkpoint; retry after Retry-After",
            json_body(obj({"status": {"const": "pending"}, "detail": STRING})),
        ),
    },
    "list_checkpoints": {
        200: (
            "stored checkpoints",
            json_body(obj({"checkpoints": {"type": "array", "items": {"type": "object"}}})),
        )
    },
    "public_key": {
        200: (
            "the public key",
            json_body(
                obj(
                    {"algorithm": STRING, "key_id": STRING, "public_key": STRING, "pem": STRING},
                    closed=False,
                )
            ),
        )
    },
    "get_stats": {
        200: (
            "the statistics",
            json_body(
                obj(
                    {
                        "site_id": STRING,
                        "from": STRING,
                        "to": STRING,
                        "interval": {"enum": ["day", "week", "month"]},
                        "buckets": {"type": "array", "items": TALLY},
                        "totals": TALLY,
                    }
                )
            ),
        )
    },
    "get_stats_page": {200: ("the statistics page", text_body("text/html"))},
    "revoke_stats_links": {204: ("every link minted before is revoked", None)},
    "healthz": {200: ("alive", json_body(obj({"status": {"const": "ok"}})))},
    "readyz": {200: ("ready", json_body(obj({"status": {"const": "ready"}})))},
    "metrics": {200: ("Prometheus text format", text_body("text/plain"))},
    "openapi": {200: ("this document", json_body({"type": "object"}))},
}

PROBLEM_TEXT = {
    400: "body or parameter malformed (not JSON, empty, invalid id)",
    401: "API key missing or not valid",
    403: "key lacks the scope, or Origin not allowed",
    404: "no such site or resource (also: another tenant's)",
    409: "conflict (an event_id re-sent with another body)",
    413: "body too large",
    415: "Content-Type not accepted",
    422: "validation failed: `errors` has a JSON pointer per problem",
    429: "rate limited; see Retry-After",
    503: "database unavailable or overloaded; retry after Retry-After",
}


def problem(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": PROBLEM_TEXT[status],
        "content": {"application/problem+json": {"schema": ref("Problem")}},
    }
    if status in (429, 503):
        response["headers"] = RETRY_AFTER
    return response


# Collect endpoints read a body of their own format (not the table's `body`).
COLLECT = ("post_events", "post_cookieconsent", "post_klaro_submit")
TREE = ("get_inclusion", "get_consistency", "get_receipt")
# Routes whose query parameters are checked (TREE's too).
QUERIED = (
    "export_events",
    "get_stats",
    "get_stats_page",
    "public_key",
    "list_keys",
    "list_policies",
)


def access_statuses(route: AnyRoute) -> set[int]:
    """The statuses of the route's declared access checks (cmp/api/access.py)."""
    if route.scope in KEY_SCOPES or route.scope == "origin":
        # origin: a request without Origin needs an admin key; Origin not allowed is 403
        return {401, 403, 404}
    if route.scope in ("preflight", "signed-link"):
        return {403}  # Origin not allowed; the link's signature
    return set()


def error_statuses(route: AnyRoute) -> set[int]:
    """Every problem status the route can answer, from its access and what it does."""
    name = route.name
    if route.scope == "ops":  # only readiness depends on the database
        return {503} if name == "readyz" else set()
    statuses = access_statuses(route)
    if "{" in route.path:
        statuses.add(404)  # an id that cannot exist, or a resource that does not
    if name != "public_key":
        statuses.add(503)  # every other route reads the database (or its catalogue)
    if route.body is not None or name in COLLECT:
        statuses |= {400, 413, 415, 422}
    if name in COLLECT:
        statuses |= {409, 429}  # an event id re-sent with another body; the rate limit
    if name in ("post_impressions", "post_identify"):
        statuses.add(429)
    if name in ("post_link", "post_identify"):
        statuses.add(409)  # an event id re-sent for another link
    if name == "get_klaro_config":
        statuses |= {403, 429}  # Origin not allowed; its own rate
    if "{subject_id}" in route.path or "{user_id}" in route.path:
        statuses.add(400)
    if name in QUERIED or name in TREE:
        statuses.add(422)  # query parameters
    if name in TREE:
        statuses.add(429)  # too many new checkpoint sizes at once; receipts' own rate
    return statuses
