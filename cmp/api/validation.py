"""Validate at the edge: raw bytes → model, every failure a problem with JSON pointers."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from cmp.api.problems import Problem

M = TypeVar("M", bound=BaseModel)


def pointer(loc: tuple[int | str, ...]) -> str:
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in loc]
    return "/" + "/".join(parts) if parts else ""


def problem_from(exc: ValidationError, prefix: tuple[int | str, ...] = ()) -> Problem:
    """422 unless the body was not JSON at all (400)."""
    errors = exc.errors(include_url=False)
    if any(e["type"] in ("json_invalid", "json_type") for e in errors):
        return Problem(400, "request body is not valid JSON", code="malformed-json")
    items = [{"pointer": pointer(prefix + tuple(e["loc"])), "detail": e["msg"]} for e in errors]
    return Problem(422, "request body failed validation", code="validation", errors=items)


def parse_bytes(raw: bytes, model: type[M]) -> M:
    if not raw.strip():
        raise Problem(400, "request body is empty", code="malformed-json")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise problem_from(exc) from None


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
    return parse_bytes(await request.read(), model)
