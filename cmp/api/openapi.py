"""OpenAPI 3.1 document generated from the route table and the pydantic models."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from cmp import __version__

PARAM = re.compile(r"{(\w+)}")


@cache
def document() -> dict[str, Any]:
    from cmp.api.routes import ROUTES

    paths: dict[str, dict[str, Any]] = {}
    defs: dict[str, Any] = {}
    for route in ROUTES:
        op: dict[str, Any] = {
            "summary": route.summary,
            "tags": [route.tag],
            "operationId": route.handler.__name__,
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in PARAM.findall(route.path)
            ],
            "responses": {
                "default": {
                    "description": "RFC 9457 problem",
                    "content": {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        }
                    },
                },
                "2XX": {"description": "success"},
            },
        }
        if route.scope in ("admin", "read", "audit"):
            op["security"] = [{"bearer": [route.scope]}]
            op["description"] = f"Needs a key with the `{route.scope}` scope."
        if route.body is not None:
            schema = route.body.model_json_schema(ref_template="#/components/schemas/{model}")
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {k: v for k, v in schema.items() if k != "$defs"}
                    }
                },
            }
            defs.update(schema.get("$defs", {}))
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
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {**defs, "Problem": PROBLEM},
        },
    }


PROBLEM = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"pointer": {"type": "string"}, "detail": {"type": "string"}},
            },
        },
    },
    "required": ["type", "title", "status", "detail"],
}
