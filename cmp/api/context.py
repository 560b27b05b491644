"""Request context around every route handler: request id, problems, metrics, one log line.

Applied as a plain wrapper when a route is registered, not as an aiohttp middleware:
aiohttp runs middlewares through two extra layers per request (its own current-app
fix-up and ours), a cost the ingest path notices (loadtest/README.md, "What made it
faster"). Requests no route matches reach `unmatched`, the last route, which answers
404 or 405 the same way.

aiohttp's own access log is off (its cost is in the same table); the wrapper logs instead,
with bound context, at DEBUG for 2xx/3xx so production (INFO) logs only failures, and
records latency by route template. A client that hangs up before its body arrived
(`ClientGone`) is the client's doing: counted apart, logged at INFO, never a 5xx.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import secrets
import time

from aiohttp import web

from cmp.api.problems import ClientGone, Handler, problem_for
from cmp.api.streaming import StreamAborted
from cmp.appkeys import METRICS, REQUEST_ID

log = logging.getLogger("cmp.request")

# Request ids: a random per-process prefix and a counter (no syscall per request).
_PREFIX = secrets.token_hex(4)
_COUNTER = itertools.count(1)

UNMATCHED = "unmatched"

# A client's own request id is kept only when it is short and plain (it goes into log
# lines and a response header); anything else gets one of ours.
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:+/=-]{1,64}")


def with_context(handler: Handler, route: str) -> Handler:
    """`handler` inside the request context; `route` is the metric and log label."""

    @functools.wraps(handler)
    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = request.headers.get("X-Request-Id", "")
        if not REQUEST_ID_RE.fullmatch(request_id):
            request_id = f"{_PREFIX}-{next(_COUNTER):x}"
        request[REQUEST_ID] = request_id
        try:
            response = await handler(request)
        except StreamAborted as exc:
            response = exc.response  # headers sent, transport aborted: nothing more to say
        except ClientGone:
            return _client_gone(request, route, started, request_id)
        except Exception as exc:
            response = problem_for(request, exc)
        elapsed = time.perf_counter() - started
        status = response.status
        request.app[METRICS].http.observe(route, request.method, status, elapsed)
        response.headers["X-Request-Id"] = request_id
        level = logging.DEBUG if status < 400 else logging.INFO
        if log.isEnabledFor(level):
            _log(request, route, status, elapsed, request_id, level)
        return response

    return handle


def _log(
    request: web.Request, route: str, status: int, elapsed: float, request_id: str, level: int
) -> None:
    log.log(
        level,
        "%s %s %s %.1fms",
        request.method,
        route,
        status,
        elapsed * 1000,
        extra={
            "request_id": request_id,
            "site_id": request.match_info.get("site_id"),
            "status": status,
            "latency_ms": round(elapsed * 1000, 2),
        },
    )


def _client_gone(request: web.Request, route: str, started: float, request_id: str) -> web.Response:
    """A request its client abandoned: counted apart from the answered ones (it has no
    status) and logged at INFO, like any refused request."""
    request.app[METRICS].client_aborts.labels(route, request.method).inc()
    elapsed = time.perf_counter() - started
    log.info(
        "%s %s client went away %.1fms",
        request.method,
        route,
        elapsed * 1000,
        extra={"request_id": request_id, "site_id": request.match_info.get("site_id")},
    )
    # Nobody reads it: aiohttp finds the connection closed and drops it.
    return web.Response(status=400, headers={"X-Request-Id": request_id})


async def unmatched(request: web.Request) -> web.StreamResponse:
    """The catch-all route: 405 with Allow when another route has the path, else 404."""
    own = request.match_info.route.resource
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not own:
            _, methods = await resource.resolve(request)
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()
