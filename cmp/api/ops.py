"""Operations: liveness, readiness, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cmp.api.access import ROUTE_TABLE, Context
from cmp.api.bodies import Response
from cmp.api.json import json_response
from cmp.api.openapi import document
from cmp.api.problems import problem_response
from cmp.appkeys import METRICS, POOL
from cmp.store.db import DB_ERRORS_OR_TIMEOUT
from cmp.store.migrate import schema_status, stale_functions


async def healthz(request: web.Request, ctx: Context) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request, ctx: Context) -> web.Response:
    try:
        async with asyncio.timeout(2):
            async with request.app[POOL].acquire() as conn:
                missing, unknown = await schema_status(conn)
                stale = await stale_functions(conn)
    except DB_ERRORS_OR_TIMEOUT:
        return problem_response(
            503, "database unreachable", code="not-ready", headers={"Retry-After": "1"}
        )
    if missing or unknown or stale:
        return problem_response(
            503,
            f"schema not current (missing {missing}, unknown {unknown}, functions {stale})",
            code="not-ready",
        )
    return json_response({"status": "ready"})


async def metrics(request: web.Request, ctx: Context) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request, ctx: Context) -> web.Response:
    return json_response(document(request.app[ROUTE_TABLE]))
