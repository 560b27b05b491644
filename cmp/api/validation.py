"""Validate at the edge: raw bytes → model, every failure a problem with JSON pointers.

The parsing itself is the pipeline's (`cmp.ingest.parse`), so the admin API and the
collect endpoints read JSON bodies by the same rules.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel

from cmp.api.problems import ClientGone, Problem
from cmp.appkeys import SETTINGS
from cmp.ingest.parse import Rejected, parse_model

M = TypeVar("M", bound=BaseModel)


def query_problem(errors: list[dict[str, str]]) -> Problem:
    """The 422 for query parameters that failed validation, one error per parameter."""
    return Problem(422, "query parameters failed validation", code="validation", errors=errors)


def refuse_encoded(request: web.Request, headers: dict[str, str] | None = None) -> None:
    """No Content-Encoding on request bodies: no client of ours compresses them, and a
    decompressed body would escape the size limit checked on the wire."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise Problem(
            415,
            "request bodies must not be compressed (Content-Encoding)",
            code="unsupported-media-type",
            headers=headers,
        )


async def read_bytes(request: web.Request, headers: dict[str, str] | None = None) -> bytes:
    """The whole request body, or 408 when it has not arrived within
    CMP_BODY_TIMEOUT_SECONDS: a client that sends headers and then stalls must not hold
    a connection and a handler for as long as it likes (aiohttp has no such limit)."""
    if request.content.is_eof():
        return await request.read()  # it came with the headers: no timer to arm
    limit = request.app[SETTINGS].body_timeout_seconds
    try:
        async with asyncio.timeout(limit):
            return await request.read()
    except TimeoutError:
        raise Problem(
            408, f"the request body did not arrive within {limit:g} s", headers=headers
        ) from None
    except ConnectionError:
        # aiohttp ends the body with ConnectionResetError when the client hangs up; left
        # alone it would read as a lost database connection (a 503 and a warning).
        raise ClientGone from None


def check_content_type(
    request: web.Request, allowed: tuple[str, ...] = ("application/json",)
) -> None:
    if request.content_type not in allowed:
        raise Problem(
            415,
            f"Content-Type must be one of {', '.join(allowed)}",
            code="unsupported-media-type",
        )


async def parse_json(
    request: web.Request, model: type[M], allowed: tuple[str, ...] = ("application/json",)
) -> M:
    """The one way handlers read a JSON body: content type, size, JSON, model."""
    check_content_type(request, allowed)
    refuse_encoded(request)
    raw = await read_bytes(request)
    try:
        return parse_model(raw, model, reason="validation")
    except Rejected as exc:
        raise Problem(
            exc.status,
            exc.detail,
            code=exc.reason,
            errors=exc.errors,
            errors_omitted=exc.errors_omitted,
        ) from None
