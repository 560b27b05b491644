"""The event pipeline: raw body → validated events → log rows → group commit.

One entry per kind of payload (`Ingest.native`, `.cookieconsent`, `.klaro`), each the
same named steps, each rejection an enumerated reason (the problem code and a bounded
metric label): `parse` (400/422, cmp/ingest/parse.py), map an integration's payload to
native events (cmp/integrations.py), take the rate tokens of every further event (429),
`validate` each event against the policy version it names (422, the rules in
cmp/consent.py), `build` its row (cmp/ingest/build.py), `store` (201, 409, 422, 503).
Everything is validated before anything is queued, so a request is stored whole or not
at all. The HTTP layer calls in with the site, the raw body and the request's facts,
after `admit` took the first rate token; nothing here calls back into it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from cmp.catalog import Catalog
from cmp.commit import GroupCommitter, Refused
from cmp.consent import PolicyView, apply_gpc, resolve_choice, resolve_services
from cmp.errorcap import ERRORS_MAX
from cmp.ingest.build import build
from cmp.ingest.facts import Facts
from cmp.ingest.parse import Rejected, mapped, parse_events, parse_model
from cmp.integrations import CookieConsentIn, KlaroSubmitIn, from_cookieconsent, from_klaro
from cmp.models import EventIn
from cmp.ratelimit import RateLimiter
from cmp.store.events import CONFLICT, DUPLICATE, SKIPPED, NewEvent
from cmp.store.sites import StoredSite

FUTURE_SKEW = timedelta(minutes=5)

ViewLookup = Callable[[int], Awaitable[PolicyView | None]]


@dataclass(frozen=True, slots=True)
class Accepted:
    accepted: int
    duplicates: int


def admit(limiter: RateLimiter, site_id: str, facts: Facts, cost: int) -> None:
    """Take `cost` tokens of `limiter`'s (site, network) bucket, or reject with 429; a
    server-to-server request (no Origin, an admin key) takes none."""
    if facts.origin is None or cost <= 0:
        return
    wait = limiter.take(site_id, facts.ip_prefix or "-", cost)
    if wait > 0:
        raise Rejected(
            429,
            "rate-limited",
            "too many requests from this network for this site",
            retry_after=wait,
        )


class Ingest:
    """The pipeline's entries, bound to the catalogue, the rate limiter and the committer."""

    def __init__(
        self, catalog: Catalog, limiter: RateLimiter, committer: GroupCommitter[NewEvent]
    ) -> None:
        self._catalog = catalog
        self._limiter = limiter
        self._committer = committer

    def admit(self, site_id: str, facts: Facts, cost: int = 1) -> None:
        """Take `cost` tokens of the (site, network) bucket, or reject with 429.

        The first token is taken before the body is even read, so a flood of bad
        requests is stopped before it costs parsing or queries.
        """
        admit(self._limiter, site_id, facts, cost)

    async def native(self, site: StoredSite, raw: bytes, facts: Facts) -> Accepted:
        return await self._store(site, *parse_events(raw), facts)  # no local: see _store

    async def cookieconsent(self, site: StoredSite, raw: bytes, facts: Facts) -> Accepted:
        body = parse_model(raw, CookieConsentIn)
        current, _ = await self._catalog.policy_versions(site.site_id)
        event = mapped(lambda: from_cookieconsent(body, current), "/cookie")
        return await self._store(site, [event], "", facts)

    async def klaro(self, site: StoredSite, raw: bytes, facts: Facts) -> Accepted:
        body = parse_model(raw, KlaroSubmitIn)
        if body.consent_data.type == "show":
            return Accepted(accepted=0, duplicates=0)  # the notice was shown: not a consent
        view, _ = await self._catalog.current_view(site.site_id)
        if view is None:
            raise Rejected(422, "no-policy", "the site has no published policy")
        event = mapped(lambda: from_klaro(body, view), "/location_data")
        return await self._store(site, [event], "", facts)

    async def _store(
        self, site: StoredSite, events: list[EventIn], prefix: str, facts: Facts
    ) -> Accepted:
        site_id = site.site_id
        self.admit(site_id, facts, len(events) - 1)  # `admit` took the first already

        def view_of(version: int) -> Awaitable[PolicyView | None]:
            return self._catalog.view(site_id, version)

        rows = await prepare(site, events, prefix, view_of, facts)
        # Every waiting event is in memory at once, and the parsed ones are no longer
        # needed: let them go before the wait for the commit (loadtest/README.md).
        del events
        return await store_events(self._committer, rows)


async def prepare(
    site: StoredSite, events: Sequence[EventIn], prefix: str, view_of: ViewLookup, facts: Facts
) -> list[NewEvent]:
    """Validate every event, then build its row; any error rejects the whole request."""
    errors: list[dict[str, str]] = []
    built: list[NewEvent] = []
    seen_ids: set[str] = set()
    languages = site.languages
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
        if len(errors) > ERRORS_MAX:
            break  # the request is refused anyway: later events are not checked
        if len(errors) > before:
            continue
        if facts.gpc:
            purposes = apply_gpc(view, purposes)
            services = view.services_for(purposes, event.services or {})
        built.append(build(site, view, event, purposes, services, facts))
    if errors:
        raise Rejected(
            422,
            "invalid-event",
            "request body failed validation",
            errors[:ERRORS_MAX],
            errors_omitted=max(0, len(errors) - ERRORS_MAX),
        )
    return built


# --- step 4: store --------------------------------------------------------------


async def store_events(committer: GroupCommitter[NewEvent], events: list[NewEvent]) -> Accepted:
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
