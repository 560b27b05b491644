"""OpenAPI 3.1 document generated from a route table and the pydantic models.

It is meant to be exactly as strict as the server, so that a schema-driven fuzzer
(tests/fuzz) can tell a server bug from a schema gap: path parameters carry the
patterns the handlers enforce, request bodies the models' constraints, and every
status an operation can answer is listed with its body schema (problem+json for
errors). What JSON Schema cannot say (rules across fields, or against stored state:
a policy's languages against the site's) is stated in the descriptions.

Reading order: `parameters` and `schemas` (what goes in and out), `responses` (the
statuses of each operation), `operations` (one route's operation), then `document`
below, which assembles them for the table it is given.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from cmp import __version__
from cmp.api.access import KEY_SCOPES, AnyRoute
from cmp.api.openapi.operations import BODIES, operation
from cmp.api.openapi.schemas import PROBLEM, REF
from cmp.models import ApiKey, CreatedKey, EventIn, ImpressionIn, PolicyVersion, Site

RESPONSE_MODELS = (Site, PolicyVersion, ApiKey, CreatedKey)


def schemas(routes: tuple[AnyRoute, ...]) -> tuple[dict[Any, Any], dict[str, Any]]:
    """The models' references by (model, mode), and their definitions by name."""
    bodies = {route.body for route in routes if route.body is not None}
    bodies |= {EventIn, ImpressionIn, *BODIES.values()}
    keyed: list[tuple[type[BaseModel], Any]] = [(m, "validation") for m in bodies]
    keyed += [(m, "serialization") for m in RESPONSE_MODELS]
    refs, top = models_json_schema(keyed, ref_template=REF)
    defs: dict[str, Any] = dict(top.get("$defs", {}))
    # The response models by their plain names (the links and SUCCESS refer to them).
    for model in RESPONSE_MODELS:
        target = refs[(model, "serialization")]["$ref"].rsplit("/", 1)[-1]
        if target != model.__name__:
            defs[model.__name__] = {"$ref": REF.format(model=target)}
    # Constraints the models enforce in validators: stated where JSON Schema can.
    defs["SiteIn"]["properties"]["languages"]["uniqueItems"] = True
    defs["SiteIn"]["properties"]["origins"]["uniqueItems"] = True
    return refs, defs


@lru_cache(maxsize=4)
def document(routes: tuple[AnyRoute, ...]) -> dict[str, Any]:
    """The document of `routes` (the app's table, cmp/api/routes.py), built once each."""
    refs, defs = schemas(routes)
    counts = Counter(route.name for route in routes)
    shared = {name for name, count in counts.items() if count > 1}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = operation(route, refs, shared)
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
                for scope in KEY_SCOPES
            },
            "schemas": {**defs, "Problem": PROBLEM},
        },
    }
