"""The reference server: the ceiling of "HTTP + Python" on this machine.

A bare aiohttp app on uvloop without access log that does what every cmp request must
do at least: read the body and validate it with the same pydantic model cmp uses for
that route (`EventIn`/`EventBatch` for events, `ImpressionIn`/`ImpressionBatch` for
impressions, `LookupIn` for lookups), then answer
204. Every GET gets a fixed 300-byte JSON. No database, no middleware.

    python -m loadtest.reference --port 8099
"""

from __future__ import annotations

import argparse
import json

from aiohttp import web
from pydantic import BaseModel, ValidationError

from cmp.models import EventBatch, EventIn, ImpressionBatch, ImpressionIn, LookupIn


def _fixed_json(size: int) -> bytes:
    head = b'{"status":"valid","pad":"'
    tail = b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


GET_BODY = _fixed_json(300)


def _validated(
    raw: bytes, key: bytes, batch: type[BaseModel], one: type[BaseModel], status: int
) -> web.Response:
    """`batch` when the body names `key`, else `one`: 422 or `status`, as cmp answers."""
    try:
        (batch if key in raw else one).model_validate_json(raw)
    except ValidationError:
        return web.Response(status=422)
    return web.Response(status=status)


async def post_events(request: web.Request) -> web.Response:
    return _validated(await request.read(), b'"events"', EventBatch, EventIn, 204)


async def post_impressions(request: web.Request) -> web.Response:
    return _validated(await request.read(), b'"impressions"', ImpressionBatch, ImpressionIn, 202)


async def post_lookup(request: web.Request) -> web.Response:
    raw = await request.read()
    try:
        LookupIn.model_validate_json(raw)
    except ValidationError:
        return web.Response(status=422)
    return web.Response(status=204)


async def get_any(request: web.Request) -> web.Response:
    return web.Response(body=GET_BODY, content_type="application/json")


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/sites/{site_id}/events", post_events)
    app.router.add_post("/v1/sites/{site_id}/impressions", post_impressions)
    app.router.add_post("/v1/sites/{site_id}/consent/lookup", post_lookup)
    app.router.add_get("/{tail:.*}", get_any)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvloop

    uvloop.install()
    assert len(GET_BODY) == 300, len(GET_BODY)
    json.loads(GET_BODY)
    web.run_app(create_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
