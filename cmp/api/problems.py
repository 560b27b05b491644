"""RFC 9457 problem+json: the one error shape, rendered in one place (`problem_for`).

It also turns aiohttp's own 404/405/413 into problems and hides the
internals of unexpected errors (logged with the request id).
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web

from cmp.appkeys import REQUEST_ID
from cmp.errorcap import ERRORS_MAX
from cmp.store.db import DB_ERRORS, PoolBusy, database_unavailable, db_error_text

log = logging.getLogger("cmp.api")

PROBLEM_TYPE = "application/problem+json"

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Validation failed",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


class Problem(Exception):
    """Raise anywhere under a handler to answer with problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        errors_omitted: int = 0,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code or TITLES.get(status, "error").lower().replace(" ", "-")
        self.errors = errors
        self.headers = headers or {}
        self.errors_omitted = errors_omitted

    def response(self) -> web.Response:
        return problem_response(
            self.status,
            self.detail,
            code=self.code,
            errors=self.errors,
            headers=self.headers,
            errors_omitted=self.errors_omitted,
        )


def problem_response(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    errors_omitted: int = 0,
) -> web.Response:
    """The problem+json answer; `errors` lists at most ERRORS_MAX, and `errors_omitted`
    (present only when above 0) counts the further errors found but not listed."""
    body: dict[str, Any] = {
        "type": f"https://cmp.dev/problems/{code or status}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        errors_omitted += max(0, len(errors) - ERRORS_MAX)
        body["errors"] = errors[:ERRORS_MAX]
    if errors_omitted:
        body["errors_omitted"] = errors_omitted
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        content_type=PROBLEM_TYPE,
        headers=headers,
    )


class ClientGone(Exception):
    """The client closed its connection before its request body arrived: its own
    doing, counted and logged as such by the request context, never as a server error."""


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem_for(request: web.Request, exc: Exception) -> web.Response:
    """The problem answer for an exception that escaped a handler.

    aiohttp's own HTTP errors become problems; a redirect (status < 400) is re-raised.
    """
    if isinstance(exc, Problem):
        return exc.response()
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return problem_response(413, "request body is larger than allowed", code="too-large")
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        detail = {
            404: "no such resource",
            405: f"method {request.method} is not allowed here",
        }.get(exc.status, exc.reason)
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return problem_response(exc.status, detail, headers=headers)
    if isinstance(exc, PoolBusy):
        # Every connection of the share this request may use is taken (docs/api.md, Operations).
        return problem_response(
            503,
            f"{exc}; retry later",
            code="busy",
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, asyncpg.LockNotAvailableError | asyncpg.QueryCanceledError):
        # A lock or statement timeout: the database is busy, not broken.
        log.warning("database busy: %s", db_error_text(exc))
        return problem_response(
            503, "the database is busy; retry", code="busy", headers={"Retry-After": "1"}
        )
    if database_unavailable(exc):
        # The database went away under a handler: the client should retry, not give up.
        log.warning("database unavailable: %s", db_error_text(exc))
        return problem_response(
            503,
            "the database is unavailable; retry",
            code="unavailable",
            headers={"Retry-After": "1"},
        )
    extra = {"request_id": request.get(REQUEST_ID)}
    if _from_database(exc):
        # The message and DETAIL of a database error quote values and rows: only the
        # SQLSTATE, constraint and where it was raised go to the log.
        log.error("unhandled database error:\n%s", _safe_trace(exc), extra=extra)
    else:
        log.exception("unhandled error", exc_info=exc, extra=extra)
    return problem_response(
        500, f"internal error; request id {request.get(REQUEST_ID, '-')}", code="internal"
    )


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from or during, outermost first."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in found):
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _from_database(exc: BaseException) -> bool:
    return any(isinstance(e, DB_ERRORS) for e in _chain(exc))


def _safe_trace(exc: BaseException) -> str:
    """A traceback whose exception lines say only what `db_error_text` says."""
    return "\nduring the above:\n".join(
        "".join(traceback.format_tb(e.__traceback__)) + db_error_text(e)
        for e in reversed(_chain(exc))
    )
