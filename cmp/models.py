"""Domain models shared by `api` and `store`: pydantic, no I/O.

Request models validate at the edge; the same models describe what is stored.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    model_validator,
)

# Every pattern is anchored and read with `fullmatch` in Python (`re.match` with `$`
# accepts a trailing newline); pydantic's own regex engine has no such gap, and the same
# text is the OpenAPI pattern.
SITE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
SUBJECT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
LANG_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$"
VERSION_PATTERN = r"^[1-9][0-9]{0,8}$"
API_KEY_ID_PATTERN = r"^[a-z0-9]{1,32}$"

SITE_ID_RE = re.compile(SITE_ID_PATTERN)
SUBJECT_ID_RE = re.compile(SUBJECT_ID_PATTERN)
VERSION_RE = re.compile(VERSION_PATTERN)
API_KEY_ID_RE = re.compile(API_KEY_ID_PATTERN)

# Free text from outside: no C0/C1 controls (NUL included), DEL, or the noncharacters
# U+FFFE/U+FFFF (lone surrogates never get this far: the JSON parser refuses them).
# PostgreSQL cannot store NUL, and the others only hide what a record says.
_CONTROLS = r"\u0000-\u001F\u007F-\u009F\uFFFE\uFFFF"
TEXT_PATTERN = rf"^[^{_CONTROLS}]*$"
# Long texts (policy bodies) may break lines.
MULTILINE_PATTERN = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\uFFFE\uFFFF]*$"
TEXT_RE = re.compile(TEXT_PATTERN)


def version_number(text: str) -> int | None:
    """A policy version given as text (path or query): ASCII digits only, else None."""
    return int(text) if VERSION_RE.fullmatch(text) else None

# A page URL: http(s), optional userinfo, host (name or [IPv6]), optional port, path,
# query, fragment. Only scheme, host, port and path are kept: userinfo carries
# credentials, query and fragment carry personal data.
_URL_CHAR = rf"[^{_CONTROLS}\u0020]"
PAGE_URL_PATTERN = (
    r"^(https?)://"
    r"(?:[^\u0000-\u0020\u007F-\u009F\uFFFE\uFFFF/?#@\[\]]*@)?"
    r"([A-Za-z0-9._~%!$&'()*+,;=-]+|\[[0-9A-Fa-f:.]+\])"
    r"(:[0-9]{0,5})?"
    rf"(/[^{_CONTROLS}\u0020?#]*)?"
    rf"(?:\?[^{_CONTROLS}\u0020#]*)?"
    rf"(?:#{_URL_CHAR}*)?$"
)
PAGE_URL_RE = re.compile(PAGE_URL_PATTERN)
URL_PATH_PATTERN = rf"^/[^{_CONTROLS}\u0020?#]*$"

# Client clocks: a window that PostgreSQL, Python and the canonical text all represent
# exactly (asyncpg turns datetime.min into -infinity; year 1 with an offset overflows).
OCCURRED_FLOOR = datetime(2000, 1, 1, tzinfo=UTC)

Scope = Literal["admin", "read", "audit"]
Action = Literal["accept_all", "reject_all", "custom", "withdraw"]
ConsentSignal = Literal[
    "ad_storage",
    "ad_user_data",
    "ad_personalization",
    "analytics_storage",
    "functionality_storage",
    "personalization_storage",
    "security_storage",
]
CONSENT_SIGNALS: tuple[str, ...] = (
    "ad_storage",
    "ad_user_data",
    "ad_personalization",
    "analytics_storage",
    "functionality_storage",
    "personalization_storage",
    "security_storage",
)

Key = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
Lang = Annotated[str, StringConstraints(pattern=LANG_PATTERN)]
Text = Annotated[str, StringConstraints(pattern=TEXT_PATTERN)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=TEXT_PATTERN)]
LongText = Annotated[str, StringConstraints(max_length=20_000, pattern=MULTILINE_PATTERN)]


def page_url(value: str) -> str:
    """The stored form of a page URL: scheme://host[:port]/path (see PAGE_URL_PATTERN)."""
    found = PAGE_URL_RE.fullmatch(value)
    if found is None:
        raise ValueError("not an http(s) URL")
    scheme, host, port, path = found.group(1, 2, 3, 4)
    return f"{scheme}://{host}{port or ''}{path or ''}"


def occurred_in_window(value: datetime) -> datetime:
    """In UTC, from 2000-01-01 on; the upper bound (now + 5 min) is the pipeline's."""
    # The year test comes first: converting year 1 or 9999 with an offset overflows.
    if not 2000 <= value.year <= 9998:
        raise ValueError("must lie between 2000-01-01 and now + 5 minutes")
    value = value.astimezone(UTC)
    if value < OCCURRED_FLOOR:
        raise ValueError("must lie between 2000-01-01 and now + 5 minutes")
    return value


PageUrl = Annotated[
    str,
    StringConstraints(max_length=2000, pattern=PAGE_URL_PATTERN),
    AfterValidator(page_url),
]
OccurredAt = Annotated[AwareDatetime, AfterValidator(occurred_in_window)]


# What a browser sends as Origin: scheme, host (name or [IPv6]) and optional port.
ORIGIN_PATTERN = r"^https?://([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sites -----------------------------------------------------------------


class SiteIn(Strict):
    """Body of `PUT /v1/sites/{site_id}`."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=TEXT_PATTERN)]
    origins: list[Annotated[str, StringConstraints(pattern=ORIGIN_PATTERN)]] = Field(
        default_factory=list, max_length=50
    )
    languages: list[Lang] = Field(min_length=1, max_length=20)
    default_language: Lang
    consent_validity_days: int = Field(default=365, ge=1, le=3650)
    retention_days: int = Field(default=1825, ge=1, le=36500)

    @model_validator(mode="after")
    def _default_language_listed(self) -> SiteIn:
        if self.default_language not in self.languages:
            raise ValueError("default_language must be one of languages")
        if len(set(self.languages)) != len(self.languages):
            raise ValueError("languages must not repeat")
        return self


class Site(SiteIn):
    site_id: str
    created_at: datetime
    updated_at: datetime


# --- policy versions -------------------------------------------------------


class Service(Strict):
    key: Key
    name: ShortText
    description: dict[Lang, LongText] = Field(default_factory=dict)
    cookies: list[
        Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=TEXT_PATTERN)]
    ] = Field(
        default_factory=list
    )
    retention_days: int | None = Field(default=None, ge=0, le=36500)


class Purpose(Strict):
    key: Key
    required: bool = False
    gpc: bool = False
    consent_mode: list[ConsentSignal] = Field(default_factory=list)
    title: dict[Lang, ShortText]
    description: dict[Lang, LongText] = Field(default_factory=dict)
    services: list[Service] = Field(default_factory=list)


class Texts(Strict):
    title: ShortText
    body: LongText
    accept_all: ShortText
    reject_all: ShortText
    settings: ShortText
    save: ShortText
    policy_text: (
        Annotated[str, StringConstraints(max_length=200_000, pattern=MULTILINE_PATTERN)] | None
    ) = None


class PolicyIn(Strict):
    """Body of `POST /v1/sites/{site_id}/policies`: what the banner shows."""

    material: bool = True
    policy_url: Annotated[str, StringConstraints(pattern=r"^https?://[!-~]+$", max_length=2000)]
    purposes: list[Purpose] = Field(min_length=1, max_length=50)
    texts: dict[Lang, Texts] = Field(min_length=1)

    @model_validator(mode="after")
    def _keys_unique(self) -> PolicyIn:
        purpose_keys = [p.key for p in self.purposes]
        if len(set(purpose_keys)) != len(purpose_keys):
            raise ValueError("purpose keys must be unique")
        service_keys = [s.key for p in self.purposes for s in p.services]
        if len(set(service_keys)) != len(service_keys):
            raise ValueError("service keys must be unique across purposes")
        return self

    def language_errors(self, languages: list[str]) -> list[dict[str, str]]:
        """Every language of the site must be covered by the texts and purpose titles."""
        errors = []
        for lang in languages:
            if lang not in self.texts:
                errors.append(
                    {"pointer": f"/texts/{lang}", "detail": f"texts for '{lang}' missing"}
                )
            for i, purpose in enumerate(self.purposes):
                if lang not in purpose.title:
                    errors.append(
                        {
                            "pointer": f"/purposes/{i}/title/{lang}",
                            "detail": f"title for '{lang}' missing",
                        }
                    )
        return errors

    def substance(self) -> list[object]:
        """What consent is given to: purposes and services, without wording."""
        return [
            (
                p.key,
                p.required,
                p.gpc,
                sorted(p.consent_mode),
                sorted((s.key, tuple(s.cookies), s.retention_days) for s in p.services),
            )
            for p in sorted(self.purposes, key=lambda p: p.key)
        ]

    def document(self) -> dict[str, object]:
        """What the content hash covers: everything a visitor could see."""
        return self.model_dump(mode="json", exclude={"material"})


class PolicyVersion(Strict):
    site_id: str
    version: int
    material: bool
    content_sha256: str
    published_at: datetime
    policy_url: str
    purposes: list[Purpose]
    texts: dict[str, Texts]


# --- keys ------------------------------------------------------------------


class KeyIn(Strict):
    scope: Scope


class ApiKey(Strict):
    id: str
    site_id: str | None
    scope: Scope
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class CreatedKey(ApiKey):
    key: str


# --- consent events --------------------------------------------------------

SubjectId = Annotated[str, StringConstraints(pattern=SUBJECT_ID_PATTERN)]
MAX_VERSION = 999_999_999  # nine digits: VERSION_PATTERN
# A UUID in its hyphenated text form, lower-cased: kept a string (no uuid.UUID round
# trip on the hot path) in exactly the form PostgreSQL prints it.
EventId = Annotated[
    str,
    StringConstraints(
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        to_lower=True,
    ),
]


class EventIn(BaseModel):
    """One consent action as a banner posts it (SPEC §3.3)."""

    model_config = ConfigDict(extra="forbid")

    event_id: EventId
    subject_id: SubjectId
    policy_version: StrictInt = Field(ge=1, le=MAX_VERSION)
    action: Action
    purposes: dict[Key, StrictBool] | None = None
    services: dict[Key, StrictBool] | None = None
    language: Lang | None = None
    occurred_at: OccurredAt | None = None
    source: Annotated[str, StringConstraints(max_length=64, pattern=TEXT_PATTERN)] | None = None
    page_url: PageUrl | None = None


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=100)


class LookupIn(Strict):
    subject_ids: list[SubjectId] = Field(min_length=1, max_length=1000)
