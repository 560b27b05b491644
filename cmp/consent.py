"""Consent semantics, pure: what a policy version allows, and what a subject's state is.

`PolicyView` is a policy version compiled for the hot paths (validation and state);
the choice rules (`resolve_choice`, `resolve_services`, `apply_gpc`) turn what a banner
sent into what is recorded (docs/api.md, Collect); `derive_state` turns a stored latest event into
the state tag managers read. Fail closed: anything but a valid consent grants only
required purposes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cmp.canonical import utc_text
from cmp.jurisdiction import DEFAULT_RULE, Rule
from cmp.models import CONSENT_SIGNALS, EventIn, PolicyVersion


@dataclass(frozen=True, slots=True)
class PolicyView:
    site_id: str
    version: int
    material: bool
    content_sha256: str
    purposes: tuple[str, ...]
    required: frozenset[str]
    gpc: frozenset[str]
    signals: dict[str, tuple[str, ...]]
    service_purpose: dict[str, str]
    services_of: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, policy: PolicyVersion) -> PolicyView:
        return cls(
            site_id=policy.site_id,
            version=policy.version,
            material=policy.material,
            content_sha256=policy.content_sha256,
            purposes=tuple(p.key for p in policy.purposes),
            required=frozenset(p.key for p in policy.purposes if p.required),
            gpc=frozenset(p.key for p in policy.purposes if p.gpc),
            signals={p.key: tuple(p.consent_mode) for p in policy.purposes},
            service_purpose={s.key: p.key for p in policy.purposes for s in p.services},
            services_of={p.key: tuple(s.key for s in p.services) for p in policy.purposes},
        )

    def closed_purposes(self) -> dict[str, bool]:
        """Fail-closed choice: required purposes only."""
        return {key: key in self.required for key in self.purposes}

    def services_for(self, purposes: dict[str, bool], chosen: dict[str, bool]) -> dict[str, bool]:
        """Every service of the version: granted iff its purpose is and it was not refused."""
        return {
            service: purposes.get(purpose, False) and chosen.get(service, True)
            for service, purpose in self.service_purpose.items()
        }


def consent_mode(view: PolicyView | None, purposes: dict[str, bool], valid: bool) -> dict[str, str]:
    """The seven Google Consent Mode v2 signals for a choice."""
    granted: set[str] = {"security_storage"}
    if valid and view is not None:
        for purpose, on in purposes.items():
            if on:
                granted.update(view.signals.get(purpose, ()))
    return {s: "granted" if s in granted else "denied" for s in CONSENT_SIGNALS}


@dataclass(frozen=True, slots=True)
class StoredChoice:
    """The latest event of a subject, as kept in consent_state."""

    event_id: str
    policy_version: int
    action: str
    purposes: dict[str, bool]
    services: dict[str, bool]
    gpc: bool
    recorded_at: datetime
    rule: str | None = None  # None: recorded before rules (version 1)


def derive_state(
    *,
    site_id: str,
    subject_id: str,
    validity_days: int,
    current: PolicyView | None,
    material_version: int,
    choice: StoredChoice | None,
    choice_view: PolicyView | None,
    now: datetime,
    rule: Rule = DEFAULT_RULE,
    gpc: bool = False,
) -> dict[str, Any]:
    """The state document (docs/api.md, Consent state) under the subject's `rule`.

    `opt_in` fails closed: anything but a valid consent grants only required purposes.
    `opt_out` and `notice_only` grant until the visitor says otherwise: without an event
    the status is `default`, and a stale or expired event keeps its refusals; GPC (`gpc`,
    the request's signal, or the event's) always denies the purposes marked `gpc`.
    """
    current_version = current.version if current else None
    if choice is None:
        status = "default" if rule.model != "opt_in" else "none"
    elif choice.policy_version < material_version:
        status = "stale"
    elif choice.recorded_at + timedelta(days=validity_days) <= now:
        status = "expired"
    else:
        status = "valid"
    valid = status == "valid"
    if valid and choice is not None:
        purposes = dict(choice.purposes)
        services = dict(choice.services)
        view = choice_view
    elif rule.model != "opt_in" and current is not None:
        # Granted unless refused: a refusal recorded earlier stays one.
        refused = {k for k, v in choice.purposes.items() if not v} if choice else set()
        purposes = {k: k not in refused for k in current.purposes}
        if gpc or (choice is not None and choice.gpc):
            purposes = apply_gpc(current, purposes)
        services = current.services_for(purposes, {})
        view, valid = current, True
    else:
        purposes = current.closed_purposes() if current else {}
        services = current.services_for(purposes, {}) if current else {}
        view = current
    return {
        "site_id": site_id,
        "subject_id": subject_id,
        "status": status,
        "needs_prompt": status in ("none", "stale", "expired"),
        "rule": rule.id,
        "model": rule.model,
        "policy_version": choice.policy_version if choice else None,
        "current_policy_version": current_version,
        "action": choice.action if choice else None,
        "purposes": purposes,
        "services": services,
        "consent_mode": consent_mode(view, purposes, valid),
        "gpc": choice.gpc if choice else gpc,
        "event_id": choice.event_id if choice else None,
        "recorded_at": utc_text(choice.recorded_at) if choice else None,
        "expires_at": (
            utc_text(choice.recorded_at + timedelta(days=validity_days)) if choice else None
        ),
    }


# --- the choice rules (docs/api.md, Collect) ----------------------------------------


def resolve_choice(
    view: PolicyView, event: EventIn, at: str, errors: list[dict[str, str]]
) -> dict[str, bool]:
    """The purposes an event grants under its policy version (docs/api.md, Collect)."""
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
