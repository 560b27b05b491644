"""JSON Schemas of the bodies the handlers build themselves (the pydantic models'
schemas are generated in the document), and the helpers that wrap them."""

from __future__ import annotations

from typing import Any

from cmp.errorcap import ERRORS_MAX
from cmp.models import CONSENT_SIGNALS

REF = "#/components/schemas/{model}"


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
        "status": {"enum": ["none", "default", "valid", "stale", "expired"]},
        "needs_prompt": {"type": "boolean"},
        "rule": STRING,
        "model": {"enum": ["opt_in", "opt_out", "notice_only"]},
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


RETRY_AFTER = {
    "Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}
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
            "maxItems": ERRORS_MAX,
        },
        "errors_omitted": {"type": "integer", "minimum": 1},
    },
    "required": ["type", "title", "status", "detail"],
}
