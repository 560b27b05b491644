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
# A user's state (docs/linked-users.md): a state without a subject, with the subjects
# linked to the user now and `as_of`, the oldest decision still in force.
USER_STATE = obj(
    {
        **{k: v for k, v in STATE["properties"].items() if k != "subject_id"},
        "user_id": STRING,
        "subjects": STRINGS,
        "as_of": NULLABLE_STRING,
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
NULLABLE_RATE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
COUNTS = {"type": "object", "additionalProperties": INT}
# The impression funnel of one group (docs/api.md "Statistics").
FUNNEL = obj(
    {
        "impressions": INT,
        "unique_visitors": INT,
        "interactions": INT,
        "ignored": INT,
        "answers": obj({"accept_all": INT, "custom": INT, "reject_all": INT}),
        "accept_all_rate": NULLABLE_RATE,
        "accept_all_interval": {
            "type": ["array", "null"],
            "items": {"type": "number", "minimum": 0, "maximum": 1},
            "minItems": 2,
            "maxItems": 2,
        },
        "opt_in_rate": {
            "type": "object",
            "additionalProperties": obj(
                {"over_impressions": NULLABLE_RATE, "over_decisions": NULLABLE_RATE}
            ),
        },
        "decisions": INT,
        "median_seconds_to_decision": {"type": ["integer", "null"]},
        "timed_decisions": INT,
        "excluded": obj({"api_imported": INT, "gpc_automatic": INT}),
    }
)
COMPARISON = obj(
    {
        "variants": {"type": "array", "items": STRING, "minItems": 2, "maxItems": 2},
        "z": {"type": ["number", "null"]},
        "p_value": NULLABLE_RATE,  # a probability
        "differs": {"type": "boolean"},
    }
)
VARIANT_FUNNEL = obj({"variant": STRING, "funnel": FUNNEL})
RULE_TALLY = obj(
    {
        "rule": STRING,
        "events": INT,
        "actions": COUNTS,
        "opt_in": {"type": "object", "additionalProperties": {"type": "number"}},
        "funnel": FUNNEL,
        "variants": {"type": "array", "items": VARIANT_FUNNEL},
        "comparisons": {"type": "array", "items": COMPARISON},
    }
)
RULE_TALLY["required"].remove("comparisons")  # in the totals only
TALLY = obj(
    {
        "events": INT,
        "actions": COUNTS,
        "opt_in": {"type": "object", "additionalProperties": {"type": "number"}},
        "funnel": FUNNEL,
        "rules": {"type": "array", "items": RULE_TALLY},
        "variants": {"type": "array", "items": VARIANT_FUNNEL},
        "comparisons": {"type": "array", "items": COMPARISON},
        "start": STRING,
        "as_of": {"type": "string", "format": "date-time"},
    }
)
TALLY["required"] = ["events", "actions", "opt_in", "funnel", "rules", "variants"]
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

# A link or unlink (docs/linked-users.md): `seq` is the record appended, or the link in
# force when nothing was appended (null for a retry).
LINK = obj(
    {
        "site_id": STRING,
        "subject_id": STRING,
        "linked": {"type": "boolean"},
        "appended": {"type": "boolean"},
        "seq": {"type": ["integer", "null"]},
    }
)
# The banner's identify (docs/linked-users.md): the link, and the subject's state now that
# it is linked (its user's) when the site shares consent across devices, else null.
IDENTIFIED = obj({**LINK["properties"], "state": {"anyOf": [STATE, {"type": "null"}]}})
