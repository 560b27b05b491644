"""JSON responses: one encoder (datetimes as RFC 3339 UTC with Z)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, BaseModel):
        return value.model_dump()
    raise TypeError(f"cannot encode {type(value).__name__}")


_ENCODER = json.JSONEncoder(default=_default, ensure_ascii=False)


def dumps(data: Any) -> bytes:
    return _ENCODER.encode(data).encode("utf-8")


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=dumps(data), status=status, content_type="application/json", headers=headers
    )
