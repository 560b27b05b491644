"""Jurisdiction rules of a site (docs/jurisdictions.md): which visitors a rule covers, its consent
model, and which rule a visitor's location falls under. Pure: no I/O.

A site's rules are ordered; each names countries (ISO 3166-1 alpha-2) and regions (ISO
3166-2), one is the default, and `fallback` names the rule of visitors whose location
is unknown. The most specific match wins: region, then country, then the default. Two
rules naming the same code would make the answer depend on order, so they are refused
(`rule_errors`); matching is then a dictionary look-up (`Rules.match`).

The code lists are pycountry's data (a pinned dependency): read once, on the first check.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from cmp.canonical import content_sha256
from cmp.packagedata import package_json

Model = Literal["opt_in", "opt_out", "notice_only"]
MODELS: Final = ("opt_in", "opt_out", "notice_only")
RULE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"
MAX_RULES = 50
MAX_COUNTRIES = 300  # more than ISO 3166-1 has
MAX_REGIONS = 500


@functools.cache
def _countries() -> frozenset[str]:
    return _iso_codes("iso3166-1.json", "3166-1", "alpha_2")


@functools.cache
def _regions() -> frozenset[str]:
    return _iso_codes("iso3166-2.json", "3166-2", "code")


def _iso_codes(file: str, table: str, key: str) -> frozenset[str]:
    """One column of one of pycountry's code lists (cmp.packagedata)."""
    return frozenset(entry[key] for entry in package_json("pycountry", "databases", file)[table])


def _known_country(code: str) -> str:
    if code not in _countries():
        raise ValueError(f"'{code}' is not an ISO 3166-1 alpha-2 country code")
    return code


def _known_region(code: str) -> str:
    if code not in _regions():
        raise ValueError(f"'{code}' is not an ISO 3166-2 subdivision code")
    return code


CountryCode = Annotated[
    str, StringConstraints(pattern=r"^[A-Z]{2}$"), AfterValidator(_known_country)
]
RegionCode = Annotated[
    str, StringConstraints(pattern=r"^[A-Z]{2}-[A-Z0-9]{1,3}$"), AfterValidator(_known_region)
]
RuleId = Annotated[str, StringConstraints(pattern=RULE_ID_PATTERN)]


# A boolean a client sends or leaves out (None: absent), never null on the wire.
AbsentOrBool = Annotated[StrictBool | None, WithJsonSchema({"type": "boolean"})]


def _no_default(schema: dict[str, Any]) -> None:
    # The default, None, stands for "absent": it is no value a client may send.
    schema.pop("default", None)


class Rule(BaseModel):
    """One rule of `jurisdictions` (tuples, so that a rule is hashable)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: RuleId
    countries: tuple[CountryCode, ...] = Field(default=(), max_length=MAX_COUNTRIES)
    regions: tuple[RegionCode, ...] = Field(default=(), max_length=MAX_REGIONS)
    model: Model
    default: bool = False
    # Overrides the site's `share_across_devices` for subjects under this rule; absent (None)
    # keeps the site's. Left out of every dump when absent, so a rule written before the
    # field existed keeps its canonical JSON and `rule_sha256`.
    share_across_devices: AbsentOrBool = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Overrides the site's share_across_devices for subjects under this rule "
        "(docs/linked-users.md); absent: the site's setting.",
        json_schema_extra=_no_default,
    )

    @field_validator("share_across_devices", mode="before")
    @classmethod
    def _absent_not_null(cls, value: object) -> object:
        # Absent means the site's setting; an explicit null would be a second way to say it.
        if value is None:
            raise PydanticCustomError("bool_type", "Input should be a valid boolean")
        return value

    def shares(self, site_shares: bool) -> bool:
        """Whether a linked subject under this rule has its user's state."""
        return site_shares if self.share_across_devices is None else self.share_across_devices

    def sha256(self) -> str:
        """`rule_sha256`: the content hash of the rule as it is now (canonical JSON)."""
        return content_sha256(self.model_dump(mode="json"))


# A site without `jurisdictions` behaves as before rules existed: one opt-in rule.
DEFAULT_RULE: Final = Rule(id="default", model="opt_in", default=True)


def rule_errors(rules: Sequence[Rule] | None, fallback: str | None) -> list[dict[str, str]]:
    """What makes a site's rules ambiguous or incomplete, as JSON pointers: ids that
    repeat, not exactly one default, a code in two rules, a rule covering nothing, a
    fallback that names no rule."""
    if rules is None:
        if fallback is not None:
            return [{"pointer": "/fallback", "detail": "a fallback needs jurisdictions"}]
        return []
    errors: list[dict[str, str]] = []
    ids: dict[str, int] = {}
    owner: dict[str, str] = {}  # code -> the rule that named it first
    for i, rule in enumerate(rules):
        at = f"/jurisdictions/{i}"
        if rule.id in ids:
            errors.append(
                {"pointer": f"{at}/id", "detail": f"'{rule.id}' repeats rule {ids[rule.id]}"}
            )
        ids.setdefault(rule.id, i)
        if not (rule.countries or rule.regions or rule.default):
            errors.append(
                {"pointer": at, "detail": "a rule names countries or regions, or is the default"}
            )
        for kind, codes in (("countries", rule.countries), ("regions", rule.regions)):
            for k, code in enumerate(codes):
                if code in owner:
                    other = owner[code]
                    detail = (
                        f"'{code}' repeats in this rule"
                        if other == rule.id
                        else f"'{code}' is also in rule '{other}': the match would depend on order"
                    )
                    errors.append({"pointer": f"{at}/{kind}/{k}", "detail": detail})
                owner.setdefault(code, rule.id)
    defaults = [i for i, r in enumerate(rules) if r.default]
    if len(defaults) != 1:
        errors.append(
            {
                "pointer": "/jurisdictions",
                "detail": f"exactly one rule must be the default (found {len(defaults)})",
            }
        )
    if fallback is not None and fallback not in ids:
        errors.append({"pointer": "/fallback", "detail": f"'{fallback}' is not a rule id"})
    return errors


@dataclass(frozen=True, slots=True)
class Location:
    """A visitor's coarse location: ISO 3166-1 country and ISO 3166-2 region, or None."""

    country: str | None = None
    region: str | None = None


UNKNOWN: Final = Location()
_COUNTRY_RE = re.compile(r"[A-Z]{2}")
_REGION_RE = re.compile(r"([A-Z]{2})-([A-Z0-9]{1,3})")
_SUBDIVISION_RE = re.compile(r"[A-Z0-9]{1,3}")
# Cloudflare: XX is "no country data", T1 is Tor.
_NO_COUNTRY: Final = frozenset({"XX", "T1"})


def location_of(country: str | None, region: str | None) -> Location:
    """The location two proxy headers (or query fields) give, in normal form.

    A region comes as `US-CA` or as `CA` beside the country; a region of another country
    than the one given is dropped, and anything that is no code is unknown, as are
    Cloudflare's `XX` (no data) and `T1` (Tor).
    """
    c = (country or "").strip().upper()
    if c in _NO_COUNTRY:
        return UNKNOWN  # the proxy says it does not know: no region helps
    if not _COUNTRY_RE.fullmatch(c):
        c = ""
    r = (region or "").strip().upper()
    full = _REGION_RE.fullmatch(r)
    if full:
        if not c:
            c = full.group(1)
        region_code = r if full.group(1) == c else None
    elif c and _SUBDIVISION_RE.fullmatch(r):
        region_code = f"{c}-{r}"
    else:
        region_code = None
    return Location(c or None, region_code)


class Rules:
    """A site's rules compiled for matching (made once per set of rules: `compile_rules`)."""

    def __init__(self, rules: Sequence[Rule], fallback: str | None) -> None:
        self.rules = tuple(rules)
        self.by_id = {r.id: r for r in self.rules}
        self.default = next(r for r in self.rules if r.default)
        self.fallback = self.by_id.get(fallback or "", self.default)
        # `rule_sha256` of each rule, made once rather than for every event
        self.digests = {r.id: r.sha256() for r in self.rules}
        self._regions = {code: r for r in reversed(self.rules) for code in r.regions}
        self._countries = {code: r for r in reversed(self.rules) for code in r.countries}

    def match(self, location: Location) -> Rule:
        """The most specific rule for `location`; the fallback when it is unknown."""
        if location.country is None:
            return self.fallback
        if location.region is not None:
            rule = self._regions.get(location.region)
            if rule is not None:
                return rule
        return self._countries.get(location.country, self.default)


@functools.lru_cache(maxsize=1024)
def compile_rules(rules: tuple[Rule, ...] | None, fallback: str | None) -> Rules:
    """The compiled rules of a site (its `jurisdictions`, or the one opt-in rule)."""
    if not rules:
        return Rules((DEFAULT_RULE,), None)
    return Rules(rules, fallback)


class HasRules(Protocol):
    @property
    def jurisdictions(self) -> tuple[Rule, ...] | None: ...
    @property
    def fallback(self) -> str | None: ...


def site_rules(site: HasRules) -> Rules:
    """A site's compiled rules."""
    return compile_rules(site.jurisdictions, site.fallback)


def stored_rules(value: Any) -> tuple[Rule, ...] | None:
    """Rules as the database holds them (JSON), not checked again: they were checked when
    written, and a code list that changed since must not stop a site loading."""
    if value is None:
        return None
    return tuple(
        Rule.model_construct(
            id=r["id"],
            countries=tuple(r.get("countries", ())),
            regions=tuple(r.get("regions", ())),
            model=r["model"],
            default=bool(r.get("default", False)),
            share_across_devices=r.get("share_across_devices"),
        )
        for r in value
    )
