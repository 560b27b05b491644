"""Step 1 of the pipeline: raw bytes → models, every failure a `Rejected` with pointers.

The one way anything reads a JSON body, the admin API included (`cmp.api.validation`
turns `Rejected` into a problem): 400 when the body is not JSON, 422 with JSON pointers
when it does not fit the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    TypeAdapter,
    ValidationError,
    WrapValidator,
)

from cmp.errorcap import ERRORS_MAX, ErrorBudget, few_unknown_fields
from cmp.models import MAX_VERSION, Action, EventBatch, EventId, EventIn, SubjectId

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
        errors_omitted: int = 0,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.errors = errors
        self.retry_after = retry_after
        self.errors_omitted = errors_omitted  # found beyond `errors` (ERRORS_MAX), unlisted


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
        [{"pointer": prefix + pointer(e["loc"]), "detail": e["msg"]} for e in errors[:ERRORS_MAX]],
        errors_omitted=max(0, len(errors) - ERRORS_MAX),
    )


def parse_model(raw: bytes, model: type[M], reason: str = "invalid-event") -> M:
    """Validate raw bytes as `model`: 400 when not JSON, 422 with pointers otherwise."""
    if not raw.strip():
        raise Rejected(400, "malformed-json", "request body is empty")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid(exc.errors(include_url=False, include_input=False), reason) from None


class FastEvent(EventIn):
    """`EventIn` for a first, fast try whose cost is bounded whatever the body holds:
    unknown fields are kept rather than each reported, a map stops at its first bad entry
    (`fail_fast`), and the required fields may be missing, since pydantic copies the
    whole object into each "missing" error. `complete` says whether it is a valid
    `EventIn`; if not, the documented model says why."""

    model_config = ConfigDict(extra="allow")

    event_id: EventId | None = None  # type: ignore[assignment]
    subject_id: SubjectId | None = None  # type: ignore[assignment]
    policy_version: StrictInt | None = Field(default=None, ge=1, le=MAX_VERSION)  # type: ignore[assignment]
    action: Action | None = None  # type: ignore[assignment]

    def complete(self) -> bool:
        required = (self.event_id, self.subject_id, self.policy_version, self.action)
        return not self.__pydantic_extra__ and None not in required


class FastBatch(BaseModel):
    """`EventBatch` that stops at the first bad event, in pydantic's own code."""

    model_config = ConfigDict(extra="allow")

    events: list[FastEvent] = Field(min_length=1, max_length=100, fail_fast=True)


# One event whose errors stay few (cmp/errorcap.py), for when the fast model refused it.
CHECKED_EVENT = TypeAdapter(
    Annotated[EventIn, WrapValidator(lambda v, h: h(few_unknown_fields(v, EventIn.model_fields)))]
)


def parse_events(raw: bytes) -> tuple[list[EventIn], str]:
    """One event or `{"events": [...]}`; returns the events and the pointer prefix.

    A fast model says whether the body is valid at a cost bounded whatever it holds;
    only a refused body is checked again by the documented models for its errors, the
    first ERRORS_MAX of them (cmp/errorcap.py)."""
    if b'"events"' not in raw:
        return [parse_event(raw)], ""
    try:
        batch = FastBatch.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if any(e["loc"] == ("events",) and e["type"] == "missing" for e in errors):
            # `"events"` was only text inside a single event.
            return [parse_event(raw)], ""
    else:
        if not batch.__pydantic_extra__ and all(e.complete() for e in batch.events):
            return list(batch.events), "/events/"
    try:
        return EventBatch.model_validate_json(raw, context=ErrorBudget()).events, "/events/"
    except ValidationError as exc:
        raise invalid(exc.errors(include_url=False, include_input=False)) from None


def parse_event(raw: bytes) -> EventIn:
    """One event: the fast model, then the documented one for the errors."""
    if not raw.strip():
        raise Rejected(400, "malformed-json", "request body is empty")
    try:
        event = FastEvent.model_validate_json(raw)
        if event.complete():
            return event
    except ValidationError:
        pass
    try:
        return CHECKED_EVENT.validate_json(raw)
    except ValidationError as exc:
        raise invalid(exc.errors(include_url=False, include_input=False)) from None


def mapped(make: Callable[[], EventIn], prefix: str = "") -> EventIn:
    """An integration's payload made into a native event; a value the mapping let through
    but the event refuses is the client's fault (422), never ours."""
    try:
        return make()
    except ValidationError as exc:
        raise invalid(exc.errors(include_url=False, include_input=False), prefix=prefix) from None
