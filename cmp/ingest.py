"""The event pipeline: raw body → validated events → log rows → group commit.

Named steps, each rejection an enumerated reason (the problem code and a bounded
metric label): `parse` (400/413/422), `validate` against the policy version each event
names (422), `build` the stored rows with the server's own facts, `commit` (201, 409,
503). Everything is validated before anything is queued, so a request is stored whole
or not at all. Used by the native endpoint and by the banner integrations alike.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cmp.audit.chain import subject_digest
from cmp.canonical import canonical_json, utc_text
from cmp.commit import GroupCommitter, Refused
from cmp.consent import PolicyView
from cmp.models import EventBatch, EventIn
from cmp.store.events import CONFLICT, DUPLICATE, SKIPPED, NewEvent
from cmp.store.sites import SiteRow

M = TypeVar("M", bound=BaseModel)

FUTURE_SKEW = timedelta(minutes=5)
USER_AGENT_MAX = 256


class Rejected(Exception):
    """An ingest request refused; `reason` is both problem code and metric label."""

    def __init__(
        self, status: int, reason: str, detail: str, errors: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Facts:
    """What the server records from the request itself, never from the body."""

    origin: str | None
    user_agent: str | None
    ip_prefix: str | None
    gpc: bool
    received_at: datetime
    received_text: str  # received_at in the chain's form, formatted once per request


@dataclass(frozen=True, slots=True)
class Accepted:
    accepted: int
    duplicates: int


ViewLookup = Callable[[int], Awaitable[PolicyView | None]]


# --- step 1: parse -----------------------------------------------------------


def parse(raw: bytes) -> tuple[list[EventIn], str]:
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
        raise _rejected(errors) from None


def parse_model(raw: bytes, model: type[M]) -> M:
    """Validate raw bytes as `model`: 400 when not JSON, 422 with pointers otherwise."""
    if not raw.strip():
        raise Rejected(400, "malformed-json", "request body is empty")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise _rejected(exc.errors(include_url=False)) from None


def mapped(make: Callable[[], EventIn], prefix: str = "") -> EventIn:
    """An integration's payload made into a native event; a value the mapping let through
    but the event refuses is the client's fault (422), never ours."""
    try:
        return make()
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise Rejected(
            422,
            "invalid-event",
            "request body failed validation",
            [{"pointer": prefix + _pointer(e["loc"]), "detail": e["msg"]} for e in errors],
        ) from None


def _rejected(errors: Sequence[Any]) -> Rejected:
    if any(e["type"] in ("json_invalid", "json_type") for e in errors):
        return Rejected(400, "malformed-json", "request body is not valid JSON")
    return Rejected(
        422,
        "invalid-event",
        "request body failed validation",
        [{"pointer": _pointer(e["loc"]), "detail": e["msg"]} for e in errors],
    )


def _pointer(loc: Sequence[int | str]) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in loc)


# --- step 2: validate --------------------------------------------------------


def resolve_choice(
    view: PolicyView, event: EventIn, at: str, errors: list[dict[str, str]]
) -> dict[str, bool]:
    """The purposes an event grants under its policy version (SPEC §3.3 rules)."""
    sent = event.purposes or {}
    for key in sent:
        if key not in view.signals:
            errors.append(
                {
                    "pointer": f"{at}purposes/{key}",
                    "detail": f"'{key}' is not a purpose of policy version {view.version}",
                }
            )
    for key in view.required:
        if sent.get(key) is False:
            errors.append(
                {
                    "pointer": f"{at}purposes/{key}",
                    "detail": f"'{key}' is required and cannot be refused",
                }
            )
    if event.action == "custom":
        if event.purposes is None:
            errors.append({"pointer": f"{at}purposes", "detail": "required for a custom choice"})
            return {}
        for key in view.purposes:
            if key not in view.required and key not in sent:
                errors.append(
                    {
                        "pointer": f"{at}purposes/{key}",
                        "detail": f"a custom choice must decide '{key}'",
                    }
                )
        return {key: key in view.required or bool(sent.get(key)) for key in view.purposes}
    grant = event.action == "accept_all"
    for key, value in sent.items():
        if key in view.signals and key not in view.required and value is not grant:
            errors.append(
                {
                    "pointer": f"{at}purposes/{key}",
                    "detail": f"disagrees with action '{event.action}'",
                }
            )
    return {key: grant or key in view.required for key in view.purposes}


def resolve_services(
    view: PolicyView,
    purposes: dict[str, bool],
    event: EventIn,
    at: str,
    errors: list[dict[str, str]],
) -> dict[str, bool]:
    chosen = event.services or {}
    for key, value in chosen.items():
        purpose = view.service_purpose.get(key)
        if purpose is None:
            errors.append(
                {
                    "pointer": f"{at}services/{key}",
                    "detail": f"'{key}' is not a service of policy version {view.version}",
                }
            )
        elif value and not purposes.get(purpose, False):
            errors.append(
                {
                    "pointer": f"{at}services/{key}",
                    "detail": f"cannot be granted while purpose '{purpose}' is denied",
                }
            )
    return view.services_for(purposes, chosen)


def apply_gpc(view: PolicyView, purposes: dict[str, bool]) -> dict[str, bool]:
    """Sec-GPC: 1 opts out of every purpose marked `gpc` (sale/sharing)."""
    return {k: (v and k not in view.gpc) or k in view.required for k, v in purposes.items()}


# --- step 3: build -------------------------------------------------------------


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ufffe\uffff\ud800-\udfff]")


def header_text(value: str | None, limit: int) -> str | None:
    """A header value as storable text: never rejected, only made safe.

    aiohttp keeps undecodable header bytes as lone surrogates; those become U+FFFD, as do
    controls, and the result is cut to `limit` characters.
    """
    if not value:
        return None
    if not (value.isascii() and value.isprintable()):
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        value = _UNPRINTABLE.sub("\ufffd", value)
    return value[:limit]


def ip_prefix(address: str | None) -> str | None:
    """IPv4 /24 or IPv6 /48 network of a client address; never the address itself."""
    if not address:
        return None
    try:
        # The common case in C, without the ipaddress module (a few µs per request).
        a, b, c, _ = socket.inet_pton(socket.AF_INET, address)
        return f"{a}.{b}.{c}.0/24"
    except OSError:
        pass
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    bits = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


def body_digest(event: EventIn) -> bytes:
    """Digest of the event as the client meant it: a retry matches, a reuse does not.

    Every field in a fixed order, choices sorted, so key order and whitespace of a
    retried body do not matter.
    """
    occurred = event.occurred_at.isoformat() if event.occurred_at else ""
    text = repr(
        (
            event.event_id,
            event.subject_id,
            event.policy_version,
            event.action,
            sorted(event.purposes.items()) if event.purposes is not None else None,
            sorted(event.services.items()) if event.services is not None else None,
            event.language,
            occurred,
            event.source,
            event.page_url,
        )
    )
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def build(
    site: SiteRow,
    view: PolicyView,
    event: EventIn,
    purposes: dict[str, bool],
    services: dict[str, bool],
    facts: Facts,
) -> NewEvent:
    site_id = site.site.site_id
    occurred = event.occurred_at  # in UTC already (cmp.models.OccurredAt)
    record: dict[str, Any] = {
        "v": 1,
        "site_id": site_id,
        "seq": SEQ_MARK,
        "event_id": event.event_id,
        "subject_digest": subject_digest(site.subject_key, event.subject_id),
        "policy_version": view.version,
        "policy_sha256": view.content_sha256,
        "action": event.action,
        "purposes": purposes,
        "services": services,
        "gpc": facts.gpc,
        "language": event.language,
        "source": event.source,
        "page_url": event.page_url,  # stored form already (cmp.models.page_url)
        "origin": facts.origin,
        "ip_prefix": facts.ip_prefix,
        "user_agent": facts.user_agent,
        "occurred_at": utc_text(occurred) if occurred else None,
        "received_at": facts.received_text,
    }
    head, tail = split_at_seq(record)
    return NewEvent(
        site_id=site_id,
        event_id=event.event_id,
        subject_id=event.subject_id,
        body_digest=body_digest(event),
        record=record,
        occurred_at=occurred,
        received_at=facts.received_at,
        head=head,
        tail=tail,
    )


# The record's seq is only known under the site's chain lock, in the database: the
# canonical JSON is made here (off the hot lock) with a marker where seq goes, and the
# database splices the number in: head + str(seq) + tail == canonical_json(record).
SEQ_MARK = -1
_SEQ_TOKEN = f'"seq":{SEQ_MARK}'


def split_at_seq(record: dict[str, Any]) -> tuple[str, str]:
    text = canonical_json(record).decode("utf-8")
    # Quotes inside string values are escaped, so the token can only be the real key.
    head, found, tail = text.partition(_SEQ_TOKEN)
    assert found, "chain record without seq"
    return head + '"seq":', tail


async def prepare(
    site: SiteRow, events: Sequence[EventIn], prefix: str, view_of: ViewLookup, facts: Facts
) -> list[NewEvent]:
    """Validate every event, then build its row; any error rejects the whole request."""
    errors: list[dict[str, str]] = []
    built: list[NewEvent] = []
    seen_ids: set[str] = set()
    languages = site.site.languages
    latest = facts.received_at + FUTURE_SKEW
    for i, event in enumerate(events):
        at = f"{prefix}{i}/" if prefix else "/"
        view = await view_of(event.policy_version)
        if view is None:
            errors.append(
                {
                    "pointer": f"{at}policy_version",
                    "detail": f"policy version {event.policy_version} does not exist",
                }
            )
            break  # each unknown version may cost a query: one per request is enough
        if event.language is not None and event.language not in languages:
            errors.append(
                {
                    "pointer": f"{at}language",
                    "detail": f"not a language of this site ({', '.join(languages)})",
                }
            )
        if event.occurred_at is not None and event.occurred_at > latest:
            errors.append(
                {"pointer": f"{at}occurred_at", "detail": "more than 5 minutes in the future"}
            )
        event_key = event.event_id
        if event_key in seen_ids:
            errors.append({"pointer": f"{at}event_id", "detail": "repeated within this request"})
        seen_ids.add(event_key)
        before = len(errors)
        purposes = resolve_choice(view, event, at, errors)
        services = resolve_services(view, purposes, event, at, errors)
        if len(errors) > before:
            continue
        if facts.gpc:
            purposes = apply_gpc(view, purposes)
            services = view.services_for(purposes, event.services or {})
        built.append(build(site, view, event, purposes, services, facts))
    if errors:
        raise Rejected(422, "invalid-event", "request body failed validation", errors)
    return built


# --- step 4: commit -------------------------------------------------------------


async def commit(committer: GroupCommitter, events: list[NewEvent]) -> Accepted:
    if not events:
        return Accepted(accepted=0, duplicates=0)
    try:
        outcomes = await committer.submit(events)
    except Refused as exc:
        raise Rejected(
            422,
            "unstorable",
            f"the database refused these events (SQLSTATE {exc.sqlstate}); "
            "nothing of this request was stored",
        ) from None
    if CONFLICT in outcomes or SKIPPED in outcomes:
        ids = [e.event_id for e, o in zip(events, outcomes, strict=True) if o == CONFLICT]
        raise Rejected(
            409,
            "conflict",
            f"event_id {ids[0]} was already stored with a different body; "
            "nothing of this request was stored",
        )
    duplicates = outcomes.count(DUPLICATE)
    return Accepted(accepted=len(outcomes) - duplicates, duplicates=duplicates)
