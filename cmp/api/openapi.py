"""OpenAPI 3.1 document generated from the route table and the pydantic models.

It is meant to be exactly as strict as the server, so that a schema-driven fuzzer
(tests/fuzz) can tell a server bug from a schema gap: path parameters carry the
patterns the handlers enforce, request bodies the models' constraints, and every
status an operation can answer is listed with its body schema (problem+json for
errors). What JSON Schema cannot say (rules across fields, or against stored state:
a policy's languages against the site's) is stated in the descriptions.
"""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from cmp import __version__
from cmp.integrations import CookieConsentIn, KlaroSubmitIn
from cmp.models import CONSENT_SIGNALS, ApiKey, CreatedKey, EventIn, PolicyVersion, Site
from cmp.values import API_KEY_ID_PATTERN, SITE_ID_PATTERN, SUBJECT_ID_PATTERN, VERSION_PATTERN

if TYPE_CHECKING:
    from cmp.api.routes import Route

# Bodies the handlers parse themselves (the route table's `body` is for parse_json).
BODIES: dict[str, type[BaseModel]] = {
    "post_cookieconsent": CookieConsentIn,
    "post_klaro_submit": KlaroSubmitIn,
}

PARAM = re.compile(r"{(\w+)}")
REF = "#/components/schemas/{model}"

HEX = "[0-9a-fA-F]"
# Path parameters as the handlers check them (with fullmatch).
PATH_PARAMS: dict[str, dict[str, Any]] = {
    "site_id": {"type": "string", "pattern": SITE_ID_PATTERN},
    "subject_id": {"type": "string", "pattern": SUBJECT_ID_PATTERN},
    "version": {"type": "string", "pattern": f"^(current|{VERSION_PATTERN[1:-1]})$"},
    "key_id": {"type": "string", "pattern": API_KEY_ID_PATTERN},
    # Any other text cannot name a receipt: 404, like an unknown one.
    "event_id": {
        "type": "string",
        "pattern": f"^{HEX}{{8}}-{HEX}{{4}}-{HEX}{{4}}-{HEX}{{4}}-{HEX}{{12}}$",
    },
}
# Tree sizes and leaf indexes: ASCII digits, below 2^62.
TREE_INT = {"type": "integer", "maximum": (1 << 62) - 1}

# RFC 3339 allows offsets to ±23:59; the server takes ±18:00, as Python and PostgreSQL do.
OFFSET = "([Zz]|[+-]((0[0-9]|1[0-7]):[0-5][0-9]|18:00))$"
STAMP = {
    "type": "string",
    "anyOf": [{"format": "date-time", "pattern": OFFSET}, {"format": "date"}],
    "description": "RFC 3339 timestamp (2026-11-21T10:00:00Z) or a date (2026-11-21)",
}
# The export reads an empty value as absent.
STAMP_OR_EMPTY = {**STAMP, "anyOf": [*STAMP["anyOf"], {"const": ""}]}


def query(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


# Query parameters, by operation id.
QUERY: dict[str, list[dict[str, Any]]] = {
    "export_events": [
        query("from", STAMP_OR_EMPTY),
        query("to", STAMP_OR_EMPTY),
        query("policy_version", {"type": "string", "pattern": VERSION_PATTERN}),
        query("subject_id", {"type": "string", "pattern": SUBJECT_ID_PATTERN}),
        query("format", {"type": "string", "enum": ["jsonl", "csv", "iso27560"]}),
    ],
    "get_inclusion": [
        query("index", {**TREE_INT, "minimum": 0}, required=True),
        query("size", {**TREE_INT, "minimum": 1}, required=True),
    ],
    "get_consistency": [
        query("from", {**TREE_INT, "minimum": 1}, required=True),
        query("to", {**TREE_INT, "minimum": 1}, required=True),
    ],
    "get_receipt": [
        query("subject_id", {"type": "string", "pattern": SUBJECT_ID_PATTERN}, required=True),
        query("format", {"type": "string", "enum": ["json", "iso27560"]}),
    ],
    "public_key": [query("site_id", {"type": "string", "pattern": SITE_ID_PATTERN})],
    "get_stats": [
        query("from", STAMP),
        query("to", STAMP),
        query("interval", {"type": "string", "enum": ["day", "week", "month"]}),
    ],
    "get_stats_page": [
        query("from", STAMP),
        query("to", STAMP),
        query("interval", {"type": "string", "enum": ["day", "week", "month"]}),
        query("expires", {"type": "string", "pattern": "^[0-9]{1,12}$"}, required=True),
        query("sig", {"type": "string"}, required=True),
    ],
    "get_klaro_config": [query("name", {"type": "string"})],
}

IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
}
HEADERS: dict[str, list[dict[str, Any]]] = {
    "get_consent": [IF_NONE_MATCH],
    "post_lookup": [IF_NONE_MATCH],
    "get_banner": [IF_NONE_MATCH],
}


def obj(properties: dict[str, Any], *, closed: bool = True) -> dict[str, Any]:
    """An object with every listed property required."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
    }
    if closed:
        schema["additionalProperties"] = False
    return schema


STRING = {"type": "string"}
INT = {"type": "integer"}
NULLABLE_STRING = {"type": ["string", "null"]}
FLAGS = {"type": "object", "additionalProperties": {"type": "boolean"}}
STRINGS = {"type": "array", "items": STRING}

STATE = obj(
    {
        "site_id": STRING,
        "subject_id": STRING,
        "status": {"enum": ["none", "valid", "stale", "expired"]},
        "needs_prompt": {"type": "boolean"},
        "policy_version": {"type": ["integer", "null"]},
        "current_policy_version": {"type": ["integer", "null"]},
        "action": {"enum": ["accept_all", "reject_all", "custom", "withdraw", None]},
        "purposes": FLAGS,
        "services": FLAGS,
        "consent_mode": obj({s: {"enum": ["granted", "denied"]} for s in CONSENT_SIGNALS}),
        "gpc": {"type": "boolean"},
        "event_id": NULLABLE_STRING,
        "recorded_at": NULLABLE_STRING,
        "expires_at": NULLABLE_STRING,
    }
)
CHECKPOINT = obj(
    {
        "site_id": STRING,
        "seq": INT,
        "hash": STRING,
        "signed_at": STRING,
        "key_id": STRING,
        "signature": STRING,
    },
    closed=False,
)
TALLY = obj(
    {"events": INT, "actions": {"type": "object"}, "opt_in": {"type": "object"}},
    closed=False,
)
ACCEPTED = obj({"accepted": INT, "duplicates": INT})


def ref(name: str) -> dict[str, Any]:
    return {"$ref": REF.format(model=name)}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def text_body(media: str) -> dict[str, Any]:
    return {media: {"schema": {"type": "string"}}}


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
            "every version",
            json_body(obj({"policies": {"type": "array", "items": ref("PolicyVersion")}})),
        )
    },
    "get_policy": {200: ("the version", json_body(ref("PolicyVersion")))},
    "post_key": {201: ("the key, shown once", json_body(ref("CreatedKey")))},
    "list_keys": {
        200: (
            "keys without secrets",
            json_body(obj({"keys": {"type": "array", "items": ref("ApiKey")}})),
        )
    },
    "delete_key": {204: ("revoked", None)},
    "post_events": {201: ("committed", json_body(ACCEPTED))},
    "preflight": {204: ("CORS preflight allowed", None)},
    "post_cookieconsent": {201: ("committed", json_body(ACCEPTED))},
    "get_klaro_config": {200: ("a Klaro config", json_body({"type": "object"}))},
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
            json_body(obj({"results": {"type": "array", "items": STATE}})),
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
                        "subject_digest": STRING,
                        "erased_events": INT,
                        "erased_record_seq": INT,
                    }
                )
            ),
        )
    },
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
                        "buckets": {"type": "array", "items": {"type": "object"}},
                        "totals": TALLY,
                    }
                )
            ),
        )
    },
    "get_stats_page": {200: ("the statistics page", text_body("text/html"))},
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
RETRY_AFTER = {
    "Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}
}


def problem(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": PROBLEM_TEXT[status],
        "content": {"application/problem+json": {"schema": ref("Problem")}},
    }
    if status in (429, 503):
        response["headers"] = RETRY_AFTER
    return response


COLLECT = ("post_events", "post_cookieconsent", "post_klaro_submit")
TREE = ("get_inclusion", "get_consistency", "get_receipt")


def error_statuses(route: Route) -> set[int]:
    """Every problem status the route can answer, from what it does."""
    name = route.handler.__name__
    if route.scope is None:  # ops: only readiness depends on the database
        return {503} if name == "readyz" else set()
    statuses: set[int] = set()
    if "{" in route.path:
        statuses.add(404)  # an id that cannot exist, or a resource that does not
    if name != "public_key":
        statuses.add(503)  # every other route reads the database (or its catalogue)
    if route.scope in ("admin", "read", "audit"):
        statuses |= {401, 403, 404}
    if route.body is not None or name in COLLECT:
        statuses |= {400, 413, 415, 422}
    if name in COLLECT:
        statuses |= {401, 403, 409, 429}  # no Origin needs an admin key; Origin not allowed
    if name in ("preflight", "get_klaro_config", "get_stats_page"):
        statuses.add(403)  # Origin not allowed; the link's signature
    if "{subject_id}" in route.path:
        statuses.add(400)
    if name in ("export_events", "get_stats", "get_stats_page", "public_key") or name in TREE:
        statuses.add(422)  # query parameters
    if name in TREE:
        statuses.add(429)  # too many new checkpoint sizes at once; receipts' own rate
    return statuses


# Stateful testing: which operation's answer feeds which next operation.
LINKS: dict[tuple[str, int], dict[str, dict[str, Any]]] = {
    ("put_site", 201): {
        "GetSite": {
            "operationId": "get_site",
            "parameters": {"site_id": "$request.path.site_id"},
        },
    },
    ("post_policy", 201): {
        "GetPolicy": {
            "operationId": "get_policy",
            "parameters": {
                "site_id": "$request.path.site_id",
                "version": "$response.body#/version",
            },
        },
    },
    ("post_key", 201): {
        "DeleteKey": {
            "operationId": "delete_key",
            "parameters": {"site_id": "$request.path.site_id", "key_id": "$response.body#/id"},
        },
    },
    ("post_events", 201): {
        "GetConsent": {
            "operationId": "get_consent",
            "parameters": {
                "site_id": "$request.path.site_id",
                "subject_id": "$request.body#/subject_id",
            },
        },
        "GetSubjectEvents": {
            "operationId": "subject_events",
            "parameters": {
                "site_id": "$request.path.site_id",
                "subject_id": "$request.body#/subject_id",
            },
        },
        "GetReceipt": {
            "operationId": "get_receipt",
            "parameters": {
                "site_id": "$request.path.site_id",
                "event_id": "$request.body#/event_id",
                "subject_id": "$request.body#/subject_id",
            },
        },
        "EraseSubject": {
            "operationId": "erase_subject",
            "parameters": {
                "site_id": "$request.path.site_id",
                "subject_id": "$request.body#/subject_id",
            },
        },
    },
}

# Rules the request-body schema cannot state (they cross fields or need stored state).
BODY_RULES: dict[str, str] = {
    "put_site": "`default_language` must be one of `languages`.",
    "post_policy": (
        "`texts` and every purpose `title` must cover every language of the site;"
        " purpose keys are unique, and service keys unique across purposes;"
        " the first version of a site must be `material`."
    ),
    "post_events": (
        "Also accepted as `text/plain` (sendBeacon), the body still JSON."
        " `policy_version` must exist for the site; `purposes` and `services` may only name"
        " that version's keys; `custom` needs every non-required purpose; with the other"
        " actions `purposes` must agree; a service may be granted only with its purpose;"
        " `language` must be one of the site's; `occurred_at` at most 5 minutes ahead."
    ),
}


def _names_seen_twice() -> set[str]:
    from cmp.api.routes import ROUTES

    names = [r.handler.__name__ for r in ROUTES]
    return {n for n in names if names.count(n) > 1}


def operation_id(route: Route, shared: set[str]) -> str:
    """The handler's name; for a handler on several paths (CORS preflight), with the
    path's last segment, since operation ids are unique in a document."""
    name = route.handler.__name__
    if name not in shared:
        return name
    return f"{name}_{re.sub(r'[^a-z0-9]+', '_', route.path.rsplit('/', 1)[-1])}"


@cache
def document() -> dict[str, Any]:
    from cmp.api.routes import ROUTES

    bodies = {route.body for route in ROUTES if route.body is not None}
    bodies |= {EventIn, *BODIES.values()}
    keyed: list[tuple[type[BaseModel], Any]] = [(m, "validation") for m in bodies]
    keyed += [(m, "serialization") for m in (Site, PolicyVersion, ApiKey, CreatedKey)]
    refs, top = models_json_schema(keyed, ref_template=REF)
    defs: dict[str, Any] = dict(top.get("$defs", {}))
    # The response models by their plain names (the links and SUCCESS refer to them).
    for model in (Site, PolicyVersion, ApiKey, CreatedKey):
        target = refs[(model, "serialization")]["$ref"].rsplit("/", 1)[-1]
        if target != model.__name__:
            defs[model.__name__] = {"$ref": REF.format(model=target)}

    # Constraints the models enforce in validators: stated where JSON Schema can.
    defs["SiteIn"]["properties"]["languages"]["uniqueItems"] = True
    defs["SiteIn"]["properties"]["origins"]["uniqueItems"] = True

    paths: dict[str, dict[str, Any]] = {}
    shared = _names_seen_twice()
    for route in ROUTES:
        name = route.handler.__name__
        op: dict[str, Any] = {
            "summary": route.summary,
            "tags": [route.tag],
            "operationId": operation_id(route, shared),
            "parameters": [
                {"name": p, "in": "path", "required": True, "schema": PATH_PARAMS[p]}
                for p in PARAM.findall(route.path)
            ]
            + QUERY.get(name, [])
            + HEADERS.get(name, []),
        }
        if route.scope in ("admin", "read", "audit"):
            op["security"] = [{route.scope: []}]
            op["description"] = f"Needs a key with the `{route.scope}` scope."
        elif route.tag == "collect" and route.method == "POST":
            # Public with an allowed Origin; server-to-server imports send an admin key.
            op["security"] = [{}, {"admin": []}]
            op["description"] = (
                "Public: a browser's `Origin` must be one of the site's origins (403"
                " otherwise); a request without `Origin` needs an admin key."
            )
        if name in BODY_RULES:
            op["description"] = (op.get("description", "") + " " + BODY_RULES[name]).strip()
        body = BODIES.get(name, route.body)
        if body is not None:
            schema = refs[(body, "validation")]
            if name == "post_events":  # one event, or {"events": [...]}
                schema = {"anyOf": [refs[(EventIn, "validation")], schema]}
            op["requestBody"] = {"required": True, "content": json_body(schema)}
        responses: dict[str, Any] = {}
        for status, (text, content) in SUCCESS[name].items():
            response: dict[str, Any] = {"description": text}
            if content is not None:
                response["content"] = content
            if status == 202:
                response["headers"] = RETRY_AFTER
            links = LINKS.get((name, status))
            if links:
                response["links"] = links
            responses[str(status)] = response
        for status in sorted(error_statuses(route)):
            responses[str(status)] = problem(status)
        op["responses"] = responses
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cmp",
            "version": __version__,
            "description": "Consent-management backend: consent log, state, audit.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                scope: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": f"An API key with the `{scope}` scope"
                    + (" (admin keys hold every scope)" if scope != "admin" else ""),
                }
                for scope in ("admin", "read", "audit")
            },
            "schemas": {**defs, "Problem": PROBLEM},
        },
    }


PROBLEM = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"pointer": {"type": "string"}, "detail": {"type": "string"}},
                "required": ["pointer", "detail"],
            },
        },
    },
    "required": ["type", "title", "status", "detail"],
}
