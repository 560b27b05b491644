"""JSON responses: one encoder (datetimes as RFC 3339 UTC with Z, like the log).

orjson writes UTF-8 directly (non-ASCII kept as itself) and is faster than the stdlib
encoder on the read path's state documents (loadtest/README.md, `loadtest.micro`).
Datetimes pass through to `_default` so that they keep the log's exact form.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel

from cmp.api.bodies import Response
from cmp.canonical import utc_text


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc_text(value)
    if isinstance(value, BaseModel):
        return value.model_dump()
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(data: Any) -> bytes:
    return orjson.dumps(data, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        body=dumps(data), status=status, content_type="application/json", headers=headers
    )
