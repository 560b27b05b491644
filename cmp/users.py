"""A site's own users (linked users, docs/linked-users.md): the normal form of a user id
and the keyed digest the log knows a user by. No I/O."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final

from cmp.audit.chain import subject_digest
from cmp.consent import StoredChoice
from cmp.values import normal_user_id

# Subject ids cannot hold NUL, so a user's digest never equals a subject's.
_USER_DOMAIN: Final = "user\x00"


def user_digest(secret: bytes, user_id: str) -> str:
    """Hex HMAC-SHA256 of the normalised user id under the site's subject secret."""
    return subject_digest(secret, _USER_DOMAIN + normal_user_id(user_id))


def fold(
    choices: Iterable[StoredChoice], *, material_version: int, validity_days: int, now: datetime
) -> tuple[StoredChoice | None, datetime | None]:
    """A user's choice from its linked subjects' latest choices, and `as_of`.

    Per purpose (and per service) the latest decision by `received_at` among the choices
    still in force (under the current material version, not expired); the action is the
    latest choice's when it decided everything, `custom` otherwise; `recorded_at` and
    `as_of` are the oldest decision still in force (so the state expires with it). With
    no choice in force, the latest choice as it is (its own status: stale or expired).
    """
    known = sorted(choices, key=lambda c: (c.recorded_at, c.event_id))
    in_force = [
        c
        for c in known
        if c.policy_version >= material_version
        and c.recorded_at + timedelta(days=validity_days) > now
    ]
    if not in_force:
        return (known[-1], None) if known else (None, None)
    purposes: dict[str, StoredChoice] = {}
    services: dict[str, StoredChoice] = {}
    for choice in in_force:  # later ones override: the latest decision wins
        purposes.update(dict.fromkeys(choice.purposes, choice))
        services.update(dict.fromkeys(choice.services, choice))
    deciding = {id(c): c for c in (*purposes.values(), *services.values())}.values()
    latest = in_force[-1]
    as_of = min(c.recorded_at for c in deciding)
    folded_purposes = {k: c.purposes[k] for k, c in purposes.items()}
    folded_services = {k: c.services[k] for k, c in services.items()}
    alone = all(c is latest for c in deciding)
    return (
        StoredChoice(
            event_id=latest.event_id,
            policy_version=latest.policy_version,
            action=latest.action if alone else "custom",
            purposes=folded_purposes,
            services=folded_services,
            gpc=any(c.gpc for c in deciding),
            recorded_at=as_of,
            rule=latest.rule,
        ),
        as_of,
    )
