"""One OpenAPI operation per route: identity, parameters, security, request body,
responses and the links a stateful test follows."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from cmp.api.access import KEY_SCOPES, AnyRoute
from cmp.api.openapi.parameters import parameters
from cmp.api.openapi.responses import SUCCESS, error_statuses, problem
from cmp.api.openapi.schemas import RETRY_AFTER, json_body
from cmp.integrations import CookieConsentIn, KlaroSubmitIn
from cmp.models import EventIn, ImpressionIn

Refs = dict[tuple[type[BaseModel], Any], dict[str, Any]]

# Bodies the handlers parse themselves (the route table's `body` is for parse_json).
BODIES: dict[str, type[BaseModel]] = {
    "post_cookieconsent": CookieConsentIn,
    "post_klaro_submit": KlaroSubmitIn,
}

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
        "`texts`, each variant's `texts`, each model's `notice_texts` and every purpose"
        " `title` must cover every language of the site;"
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
    "post_impressions": (
        "Also accepted as `text/plain` (sendBeacon), the body still JSON."
        " `policy_version` must exist for the site. The same `impression_id` counts once;"
        " a known crawler's user agent is answered but not counted."
    ),
}


def operation_id(route: AnyRoute, shared: set[str]) -> str:
    """The handler's name; for a handler on several paths (CORS preflight), with the
    path's last segment, since operation ids are unique in a document."""
    if route.name not in shared:
        return route.name
    return f"{route.name}_{re.sub(r'[^a-z0-9]+', '_', route.path.rsplit('/', 1)[-1])}"


def security(route: AnyRoute) -> tuple[list[dict[str, list[str]]], str] | None:
    """The security requirement and its description, from the declared scope."""
    if route.scope in KEY_SCOPES:
        return [{route.scope: []}], f"Needs a key with the `{route.scope}` scope."
    if route.scope == "origin":
        # Public with an allowed Origin; server-to-server imports send an admin key.
        return [{}, {"admin": []}], (
            "Public: a browser's `Origin` must be one of the site's origins (403"
            " otherwise); a request without `Origin` needs an admin key."
        )
    return None


def responses(route: AnyRoute) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for status, (text, content) in SUCCESS[route.name].items():
        response: dict[str, Any] = {"description": text}
        if content is not None:
            response["content"] = content
        if status == 202 and route.name != "post_impressions":  # a receipt not signed yet
            response["headers"] = RETRY_AFTER
        links = LINKS.get((route.name, status))
        if links:
            response["links"] = links
        found[str(status)] = response
    for status in sorted(error_statuses(route)):
        found[str(status)] = problem(status)
    return found


def operation(route: AnyRoute, refs: Refs, shared: set[str]) -> dict[str, Any]:
    """The operation of `route`; `refs` are the models' schema references."""
    name = route.name
    op: dict[str, Any] = {
        "summary": route.summary,
        "tags": [route.tag],
        "operationId": operation_id(route, shared),
        "parameters": parameters(route.path, name),
    }
    secured = security(route)
    if secured is not None:
        op["security"], op["description"] = secured
    if name in BODY_RULES:
        op["description"] = (op.get("description", "") + " " + BODY_RULES[name]).strip()
    body = BODIES.get(name, route.body)
    if body is not None:
        schema = refs[(body, "validation")]
        if name == "post_events":  # one event, or {"events": [...]}
            schema = {"anyOf": [refs[(EventIn, "validation")], schema]}
        if name == "post_impressions":  # one impression, or {"impressions": [...]}
            schema = {"anyOf": [refs[(ImpressionIn, "validation")], schema]}
        op["requestBody"] = {"required": True, "content": json_body(schema)}
    op["responses"] = responses(route)
    return op
