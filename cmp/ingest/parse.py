"""Step 1 of the pipeline: raw bytes → models, every failure a `Rejected` with pointers.

The one way anything reads a JSON body, the admin API included (`cmp.api.validation`
turns `Rejected` into a problem): 400 when the body is not JSON, 422 with JSON pointers
when it does not fit the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cmp.models import EventBatch, EventIn

M = TypeVar("M", bound=BaseModel)


class Rejected(Exception):
    """A request refused; `reason` is both problem code and metric label."""

    def __init__(
        self,
        status: int,
        reason: str,
        detail: str,
        errors: list[dict[str, str]] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.errors = errors
        self.retry_after = retry_after


def pointer(loc: Sequence[int | str]) -> str:
    """A JSON pointer (RFC 6901) to `loc`."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in loc)


def invalid(errors: Sequence[Any], reason: str = "invalid-event", prefix: str = "") -> Rejected:
    """The rejection for pydantic errors: 400 if the body was not JSON, else 422."""
    if any(e["type"] in ("json_invalid", "json_type") for e in errors):
        return Rejected(400, "malformed-json", "request body is not valid JSON")
    return Rejected(
        422,
        reason,
        "request body failed validation",
        [{"pointer": prefix + pointer(e["loc"]), "detail": e["msg"]} for e in errors],
    )


def parse_model(raw: bytes, model: type[M], reason: str = "invalid-event") -> M:
    """Validate raw bytes as `model`: 400 when not JSON, 422 with pointers otherwise."""
    if not raw.strip():
        raise Rejected(400, "malformed-json", "request body is empty")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid(exc.errors(include_url=False), reason) from None


def parse_events(raw: bytes) -> tuple[list[EventIn], str]:
    """One event or `{"events": [...]}`; returns the events and the pointer prefix."""
    if b'"events"' not in raw:
        return [parse_model(raw, EventIn)], ""
    try:
        return EventBatch.model_validate_json(raw).events, "/events/"
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if any(e["loc"] == ("events",) and e["type"] == "missing" for e in errors):
            # `"events"` was only text inside a single event.
            return [parse_model(raw, EventIn)], ""
        raise invalid(errors) from None


def mapped(make: Callable[[], EventIn], prefix: str = "") -> EventIn:
    """An integration's payload made into a native event; a value the mapping let through
    but the event refuses is the client's fault (422), never ours."""
    try:
        return make()
    except ValidationError as exc:
        raise invalid(exc.errors(include_url=False), prefix=prefix) from None
