"""Mapping existing banners' payloads to native events (pure; no I/O).

vanilla-cookieconsent v3 posts `{cookie, preferences, event}`; Klaro 0.7 in API mode
posts `{location_data, user_data, consent_data}`. Both become `EventIn`s that run
through the same pipeline and rules as native events.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

from cmp.consent import PolicyView
from cmp.jurisdiction import DEFAULT_RULE, Rule
from cmp.models import MAX_VERSION, Action, EventIn, PolicyVersion
from cmp.values import SUBJECT_ID_PATTERN, TEXT_PATTERN, URL_PATH_PATTERN, Lang, OccurredAt, PageUrl

# Fixed namespace: the event id of a cookieconsent choice is uuid5(NS, consentId|timestamp),
# so the same choice posted again on every page load (`onConsent`) is a duplicate.
COOKIECONSENT_NS = uuid.UUID("6f0d3a64-3c1e-4f0e-9a53-2b7f6f0c9e11")


class Loose(BaseModel):
    """Unknown fields ignored (banners add their own); every known one checked as strictly
    as the native event's, so mapping to `EventIn` cannot fail."""

    model_config = ConfigDict(extra="ignore")


# Names the banner's config chose (categories, services): checked for length and
# controls here; whether they name a purpose or service of the policy is the pipeline's.
Name = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=TEXT_PATTERN)]
Names = list[Name]


class CcCookie(Loose):
    categories: Names = Field(default_factory=list, max_length=50)
    revision: StrictInt = Field(default=0, ge=0, le=MAX_VERSION)
    consentId: str = Field(pattern=SUBJECT_ID_PATTERN)
    consentTimestamp: OccurredAt | None = None
    lastConsentTimestamp: OccurredAt
    languageCode: Lang | None = None
    services: dict[Name, Names] = Field(default_factory=dict, max_length=50)


class CcPreferences(Loose):
    acceptType: Literal["all", "necessary", "custom"]
    acceptedCategories: Names = Field(default_factory=list, max_length=50)
    rejectedCategories: Names = Field(default_factory=list, max_length=50)
    acceptedServices: dict[Name, Names] = Field(default_factory=dict, max_length=50)
    rejectedServices: dict[Name, Names] = Field(default_factory=dict, max_length=50)


class CookieConsentIn(Loose):
    cookie: CcCookie
    preferences: CcPreferences
    event: Literal["onFirstConsent", "onConsent", "onChange"] | None = None
    pageUrl: PageUrl | None = None


ACCEPT_TYPES: dict[str, Action] = {
    "all": "accept_all",
    "necessary": "reject_all",
    "custom": "custom",
}


def from_cookieconsent(body: CookieConsentIn, current_version: int) -> EventIn:
    cookie, prefs = body.cookie, body.preferences
    action = ACCEPT_TYPES[prefs.acceptType]
    accepted = set(prefs.acceptedCategories)
    purposes = {c: True for c in accepted}
    purposes.update({c: False for c in prefs.rejectedCategories if c not in accepted})
    services = {s: True for names in prefs.acceptedServices.values() for s in names}
    services.update({s: False for names in prefs.rejectedServices.values() for s in names})
    stamp = cookie.lastConsentTimestamp.isoformat()
    return EventIn(
        event_id=str(uuid.uuid5(COOKIECONSENT_NS, f"{cookie.consentId}|{stamp}")),
        subject_id=cookie.consentId,
        policy_version=cookie.revision or current_version,
        action=action,
        purposes=purposes if action == "custom" else None,
        services=services or None,
        language=cookie.languageCode if cookie.languageCode else None,
        occurred_at=cookie.lastConsentTimestamp,
        # Not the event name: onConsent repeats onFirstConsent and must be a duplicate.
        source="vanilla-cookieconsent/3",
        page_url=body.pageUrl,
    )


# --- Klaro ------------------------------------------------------------------------


class KlaroLocation(Loose):
    # Built into a page URL below, so each part is held to what a URL part can be.
    pathname: str | None = Field(default=None, max_length=1700, pattern=URL_PATH_PATTERN)
    port: StrictInt | None = Field(default=None, ge=0, le=65535)
    hostname: str | None = Field(default=None, max_length=255, pattern=r"^[A-Za-z0-9.-]+$")
    protocol: Literal["http", "https", "http:", "https:"] | None = None


ClientText = Annotated[str, StringConstraints(max_length=30, pattern=TEXT_PATTERN)]


class KlaroUser(Loose):
    client_version: ClientText | None = None
    client_name: ClientText | None = None


class KlaroConsent(Loose):
    consents: dict[Name, StrictBool] = Field(default_factory=dict, max_length=100)
    changes: dict[str, Any] | None = None
    type: Literal["accept", "decline", "save", "show"]
    config: str | None = Field(default=None, max_length=100)


class KlaroSubmitIn(Loose):
    location_data: KlaroLocation = Field(default_factory=KlaroLocation)
    user_data: KlaroUser = Field(default_factory=KlaroUser)
    consent_data: KlaroConsent


KLARO_TYPES: dict[str, Action] = {"accept": "accept_all", "decline": "reject_all", "save": "custom"}


def klaro_services(view: PolicyView) -> dict[str, str]:
    """Klaro service name → purpose: each service, and each purpose without services."""
    names = dict(view.service_purpose)
    for purpose in view.purposes:
        if not view.services_of.get(purpose):
            names.setdefault(purpose, purpose)
    return names


def from_klaro(body: KlaroSubmitIn, view: PolicyView) -> EventIn:
    """A Klaro submit (not `show`) as an anonymous event: Klaro sends no subject id."""
    data = body.consent_data
    action = KLARO_TYPES[data.type]
    names = klaro_services(view)
    purposes: dict[str, bool] = {p: p in view.required for p in view.purposes}
    for name, on in data.consents.items():
        purpose = names.get(name)
        if purpose is not None and on:
            purposes[purpose] = True
    services = {
        n: on and purposes[names[n]] for n, on in data.consents.items() if n in view.service_purpose
    }
    loc = body.location_data
    page = None
    if loc.hostname and loc.protocol:
        port = f":{loc.port}" if loc.port else ""
        page = f"{loc.protocol.rstrip(':')}://{loc.hostname}{port}{loc.pathname or '/'}"
    client = body.user_data
    return EventIn(
        event_id=str(uuid.uuid4()),
        subject_id=f"klaro-{uuid.uuid4()}",
        policy_version=view.version,
        action=action,
        purposes=purposes if action == "custom" else None,
        services=services or None,
        source=f"{client.client_name or 'klaro'}/{client.client_version or '?'}"[:64],
        page_url=page,
    )


KLARO_LANGS = {"nb": "no", "nn": "no"}


def klaro_lang(lang: str) -> str:
    """Our language code as Klaro knows it."""
    return KLARO_LANGS.get(lang, lang)


def notice_words(policy: PolicyVersion, model: str, lang: str) -> dict[str, str]:
    """Klaro's `consentNotice` texts: the policy's notice texts for the model, else the body
    of its texts (Klaro's own title)."""
    notice = policy.notice(model).get(lang)
    if notice is None:
        return {"description": policy.texts[lang].body}
    return {"title": notice.title, "description": notice.body}


def klaro_config(
    site_languages: list[str],
    default_language: str,
    validity_days: int,
    policy: PolicyVersion,
    name: str,
    rule: Rule = DEFAULT_RULE,
    gpc: bool = False,
) -> dict[str, Any]:
    """A Klaro 0.7 config (version 1) built from the current policy version, for the
    visitor's jurisdiction rule: under `opt_out` and `notice_only` a service is on by
    default and loads before any choice (Klaro's `default` and `optOut`), except, when
    the browser sends GPC, the services of `gpc` purposes (docs/jurisdictions.md)."""
    view = PolicyView.of(policy)
    granting = rule.model != "opt_in"
    by_key = {p.key: p for p in policy.purposes}
    services = []
    for service_name, purpose_key in klaro_services(view).items():
        purpose = by_key[purpose_key]
        service = next((s for s in purpose.services if s.key == service_name), None)
        on = purpose.required or (granting and not (gpc and purpose.gpc))
        services.append(
            {
                "name": service_name,
                "title": service.name
                if service
                else purpose.title.get(default_language, purpose_key),
                "purposes": [purpose_key],
                "required": purpose.required,
                "default": on,
                "optOut": on and not purpose.required,
                "cookies": list(service.cookies) if service else [],
                "translations": {
                    klaro_lang(lang): {
                        "description": (service.description.get(lang) if service else None)
                        or purpose.description.get(lang, "")
                    }
                    for lang in site_languages
                },
            }
        )
    translations = {
        klaro_lang(lang): {
            "privacyPolicyUrl": policy.policy_url,
            # A granting rule's notice in the policy's own words for the model, when given.
            "consentNotice": notice_words(policy, rule.model, lang),
            "consentModal": {
                "title": policy.texts[lang].title,
                "description": policy.texts[lang].body,
            },
            "acceptAll": policy.texts[lang].accept_all,
            "decline": policy.texts[lang].reject_all,
            "save": policy.texts[lang].save,
            "purposes": {p.key: p.title.get(lang, p.key) for p in policy.purposes},
        }
        for lang in site_languages
        if lang in policy.texts
    }
    return {
        "version": 1,
        "name": name,
        "status": "active",
        "elementID": "klaro",
        "storageMethod": "cookie",
        "cookieName": "klaro",
        "cookieExpiresAfterDays": validity_days,
        "privacyPolicy": policy.policy_url,
        "default": False,
        "mustConsent": False,
        "acceptAll": True,
        "hideDeclineAll": False,
        # Klaro 0.7 ships its own UI strings for "no", not "nb"/"nn"; "zz" is its
        # fallback unless told otherwise, and has no strings for our buttons.
        "lang": klaro_lang(default_language),
        "fallbackLang": "en" if "en" in site_languages else klaro_lang(default_language),
        "translations": translations,
        "services": services,
        # Not Klaro's: the rule this config was built for, for pages that read it.
        "cmp": {"rule": rule.id, "model": rule.model},
    }
