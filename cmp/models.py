"""Domain models shared by `api` and `store`: pydantic, no I/O.

Request models validate at the edge; the same models describe what is stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)

from cmp.errorcap import few_unknown_fields, within_budget
from cmp.jurisdiction import MAX_RULES, Rule, RuleId, rule_errors
from cmp.values import (
    EVENT_ID_PATTERN,
    MAX_USER_ID_CHARS,
    MULTILINE_PATTERN,
    SUBJECT_ID_PATTERN,
    TEXT_PATTERN,
    USER_ID_PATTERN,
    Key,
    Lang,
    LongText,
    OccurredAt,
    Origin,
    PageUrl,
    ShortText,
    normal_user_id,
)

Scope = Literal["admin", "read", "audit", "identify"]
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
CONSENT_SIGNALS: tuple[str, ...] = get_args(ConsentSignal)
POLICY_TEXT_MAX_CHARS = 200_000  # one language's full policy text

# Optional site fields for ISO/IEC TS 27560 records (docs/iso27560.md).
ControllerText = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=TEXT_PATTERN)
]
Jurisdiction = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")]
WithdrawalUrl = Annotated[
    str, StringConstraints(pattern=r"^https?://[^\s\u0000-\u001F\u007F-\u009F]{1,2000}$")
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sites -----------------------------------------------------------------


class SiteIn(Strict):
    """Body of `PUT /v1/sites/{site_id}`."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=TEXT_PATTERN)]
    # Stored and answered in normal form (`cmp.values.normal_origin`).
    origins: list[Origin] = Field(default_factory=list, max_length=50)
    languages: list[Lang] = Field(min_length=1, max_length=20)
    default_language: Lang
    consent_validity_days: int = Field(default=365, ge=1, le=3650)
    retention_days: int = Field(default=1825, ge=1, le=36500)
    # Optional, for ISO/IEC TS 27560 consent records and the banner's policy link area:
    # the controller of the records, its contact, the jurisdiction (ISO 3166 code),
    # and where a visitor withdraws consent.
    controller_name: ControllerText | None = None
    controller_contact: ControllerText | None = None
    jurisdiction: Jurisdiction | None = None
    withdrawal_url: WithdrawalUrl | None = None
    # Jurisdiction rules (docs/jurisdictions.md): none means one opt-in rule for everyone.
    jurisdictions: tuple[Rule, ...] | None = Field(default=None, min_length=1, max_length=MAX_RULES)
    fallback: RuleId | None = None
    # Linked users (docs/linked-users.md): a subject linked to a user has the user's state.
    share_across_devices: StrictBool = True

    def jurisdiction_errors(self) -> list[dict[str, str]]:
        """Rules that are ambiguous or incomplete (`cmp.jurisdiction.rule_errors`)."""
        return rule_errors(self.jurisdictions, self.fallback)

    @model_validator(mode="after")
    def _default_language_listed(self) -> SiteIn:
        if self.default_language not in self.languages:
            raise ValueError("default_language must be one of languages")
        if len(set(self.languages)) != len(self.languages):
            raise ValueError("languages must not repeat")
        if len(set(self.origins)) != len(self.origins):
            raise ValueError("origins must not repeat")
        return self

    @field_validator("retention_days")
    @classmethod
    def _retention_covers_validity(cls, days: int, info: ValidationInfo) -> int:
        # A consent still valid after retention purged its record would have no proof.
        validity = info.data.get("consent_validity_days")
        if validity is not None and days < validity:
            raise ValueError("retention_days must be at least consent_validity_days")
        return days


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
    ] = Field(default_factory=list)
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
        Annotated[
            str, StringConstraints(max_length=POLICY_TEXT_MAX_CHARS, pattern=MULTILINE_PATTERN)
        ]
        | None
    ) = None


class NoticeTexts(Strict):
    """A notice's own wording under a granting model (docs/banner.md, Notice texts)."""

    title: ShortText
    body: LongText


# The models whose first layer is a notice; `texts` word the opt_in request for consent.
NoticeModel = Literal["opt_out", "notice_only"]


class Variant(Strict):
    """Other texts of a version, shown to the share `weight` of its subjects (docs/api.md)."""

    texts: dict[Lang, Texts] = Field(min_length=1)
    weight: float = Field(gt=0, le=1, allow_inf_nan=False)


VARIANTS_MAX = 10
WEIGHT_SLACK = 1e-9  # weights are decimals a person wrote: 0.1 + 0.2 is not 0.3 in binary


class PolicyIn(Strict):
    """Body of `POST /v1/sites/{site_id}/policies`: what the banner shows."""

    material: bool = True
    policy_url: Annotated[str, StringConstraints(pattern=r"^https?://[!-~]+$", max_length=2000)]
    purposes: list[Purpose] = Field(min_length=1, max_length=50)
    texts: dict[Lang, Texts] = Field(min_length=1)
    # Banner variants: each subject sees one (cmp.variants.assign); without, `texts`.
    variants: dict[Key, Variant] | None = Field(default=None, min_length=1, max_length=VARIANTS_MAX)
    # The notice's title and body per granting model; without, the banner's own wording.
    notice_texts: dict[NoticeModel, dict[Lang, NoticeTexts]] | None = Field(
        default=None, min_length=1
    )

    @model_validator(mode="after")
    def _weights_sum_to_one(self) -> PolicyIn:
        if self.variants is not None:
            total = sum(v.weight for v in self.variants.values())
            if abs(total - 1) > WEIGHT_SLACK:
                raise ValueError(f"variant weights must sum to 1 (they sum to {total:g})")
        return self

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
            for name, variant in (self.variants or {}).items():
                if lang not in variant.texts:
                    errors.append(
                        {
                            "pointer": f"/variants/{name}/texts/{lang}",
                            "detail": f"texts for '{lang}' missing",
                        }
                    )
            for model, notice in (self.notice_texts or {}).items():
                if lang not in notice:
                    errors.append(
                        {
                            "pointer": f"/notice_texts/{model}/{lang}",
                            "detail": f"{model} notice texts for '{lang}' missing",
                        }
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
        """What the content hash covers: everything a visitor could see, the variants' and
        notices' texts too (each absent when there are none, so earlier versions hash as
        they did)."""
        optional = {"variants", "notice_texts"}
        exclude = {"material"} | {name for name in optional if getattr(self, name) is None}
        return self.model_dump(mode="json", exclude=exclude)


class PolicyVersion(Strict):
    site_id: str
    version: int
    material: bool
    content_sha256: str
    published_at: datetime
    policy_url: str
    purposes: list[Purpose]
    texts: dict[str, Texts]
    variants: dict[str, Variant] | None = None
    notice_texts: dict[NoticeModel, dict[str, NoticeTexts]] | None = None

    def notice(self, model: str) -> dict[str, NoticeTexts]:
        """The notice texts of `model` by language; empty when the version words none."""
        return next((t for m, t in (self.notice_texts or {}).items() if m == model), {})


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
# A site's own user id (linked users): normalised (cmp.values.normal_user_id).
UserId = Annotated[
    str,
    StringConstraints(max_length=MAX_USER_ID_CHARS, pattern=USER_ID_PATTERN),
    AfterValidator(normal_user_id),
]
MAX_VERSION = 999_999_999  # nine digits: VERSION_PATTERN
# A UUID in its hyphenated text form, lower-cased: kept a string (no uuid.UUID round
# trip on the hot path) in exactly the form PostgreSQL prints it.
EventId = Annotated[
    str,
    StringConstraints(
        pattern=EVENT_ID_PATTERN,
        to_lower=True,
    ),
]


class EventIn(BaseModel):
    """One consent action as a banner posts it (docs/api.md, Collect)."""

    model_config = ConfigDict(extra="forbid")

    event_id: EventId
    subject_id: SubjectId
    policy_version: StrictInt = Field(ge=1, le=MAX_VERSION)
    action: Action
    # The first bad entry of a map is enough: a map is as long as a body allows.
    purposes: dict[Key, StrictBool] | None = Field(default=None, fail_fast=True)
    services: dict[Key, StrictBool] | None = Field(default=None, fail_fast=True)
    language: Lang | None = None
    occurred_at: OccurredAt | None = None
    source: Annotated[str, StringConstraints(max_length=64, pattern=TEXT_PATTERN)] | None = None
    page_url: PageUrl | None = None
    # The showing this decision answers, and the banner variant it showed (docs/api.md).
    impression_id: EventId | None = None
    variant: Key | None = None


def _checked_event(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    return within_budget(few_unknown_fields(value, EventIn.model_fields), handler, info)


class EventBatch(BaseModel):
    """`{"events": [...]}` as documented, checked so that its errors stay few
    (cmp/errorcap.py); cmp/ingest/parse.py tries a faster model first."""

    model_config = ConfigDict(extra="forbid")

    events: list[Annotated[EventIn, WrapValidator(_checked_event)]] = Field(
        min_length=1, max_length=100
    )

    @model_validator(mode="wrap")
    @classmethod
    def _few_unknown_fields(
        cls, value: Any, handler: ModelWrapValidatorHandler[EventBatch]
    ) -> EventBatch:
        return handler(few_unknown_fields(value, cls.model_fields))


class LookupIn(Strict):
    """Body of `POST …/consent/lookup`: subjects, and the site's users (linked users,
    docs/linked-users.md), at most 1000 in all."""

    subject_ids: list[SubjectId] = Field(default_factory=list, max_length=1000)
    user_ids: list[UserId] = Field(default_factory=list, max_length=1000)
    # The visitors' location, for subjects without an event (docs/jurisdictions.md).
    country: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")] | None = None
    region: (
        Annotated[str, StringConstraints(pattern=r"^([A-Za-z]{2}-)?[A-Za-z0-9]{1,3}$")] | None
    ) = None

    @model_validator(mode="after")
    def _some_and_not_too_many(self) -> LookupIn:
        asked = len(self.subject_ids) + len(self.user_ids)
        if not 1 <= asked <= 1000:
            raise ValueError("subject_ids and user_ids together must name 1 to 1000")
        return self


# --- linked users (docs/linked-users.md) -----------------------------------


class LinkIn(Strict):
    """Body of `POST …/subjects/{subject_id}/link` (identify scope)."""

    user_id: UserId
    event_id: EventId


class IdentifyIn(Strict):
    """Body of `POST …/subjects/{subject_id}/identify` (the banner, with a link token)."""

    token: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    event_id: EventId


# --- impressions -----------------------------------------------------------

Surface = Literal["banner", "settings", "reprompt"]


class ImpressionIn(BaseModel):
    """One showing of the banner as a banner posts it (docs/api.md)."""

    model_config = ConfigDict(extra="forbid")

    impression_id: EventId
    subject_id: SubjectId
    policy_version: StrictInt = Field(ge=1, le=MAX_VERSION)
    surface: Surface
    variant: Key | None = None


def _checked_impression(
    value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
) -> Any:
    return within_budget(few_unknown_fields(value, ImpressionIn.model_fields), handler, info)


class ImpressionBatch(BaseModel):
    """`{"impressions": [...]}`, at most 100, its errors kept few as `EventBatch`'s."""

    model_config = ConfigDict(extra="forbid")

    impressions: list[Annotated[ImpressionIn, WrapValidator(_checked_impression)]] = Field(
        min_length=1, max_length=100
    )

    @model_validator(mode="wrap")
    @classmethod
    def _few_unknown_fields(
        cls, value: Any, handler: ModelWrapValidatorHandler[ImpressionBatch]
    ) -> ImpressionBatch:
        return handler(few_unknown_fields(value, cls.model_fields))
