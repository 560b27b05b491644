"""Jurisdiction rules (cmp/jurisdiction.py): checks, locations, and the matched rule."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cmp.canonical import canonical_json
from cmp.jurisdiction import (
    DEFAULT_RULE,
    Location,
    Rule,
    Rules,
    _countries,
    _regions,
    compile_rules,
    location_of,
    rule_errors,
)
from cmp.models import SiteIn

COUNTRIES = ["NO", "SE", "DE", "US", "CA", "GB"]
REGIONS = ["US-CA", "US-CO", "US-VA", "CA-QC", "GB-ENG", "DE-BY"]


def rule(id: str, **kw: Any) -> Rule:
    return Rule.model_validate({"id": id, "model": "opt_in", **kw})


@st.composite
def rule_sets(draw: st.DrawFn) -> tuple[list[Rule], str | None]:
    """Valid rules: every code owned by at most one rule (by construction), one default."""
    n = draw(st.integers(1, 5))
    owner_c = draw(st.dictionaries(st.sampled_from(COUNTRIES), st.integers(0, n - 1)))
    owner_r = draw(st.dictionaries(st.sampled_from(REGIONS), st.integers(0, n - 1)))
    default = draw(st.integers(0, n - 1))
    rules = [
        Rule(
            id=f"r{i}",
            countries=tuple(c for c, o in owner_c.items() if o == i),
            regions=tuple(r for r, o in owner_r.items() if o == i),
            model=draw(st.sampled_from(["opt_in", "opt_out", "notice_only"])),
            default=i == default,
        )
        for i in range(n)
    ]
    rules = [r for r in rules if r.countries or r.regions or r.default]
    fallback = draw(st.none() | st.sampled_from([r.id for r in rules]))
    return rules, fallback


def brute_force(rules: list[Rule], fallback: str | None, where: Location) -> Rule:
    """The rule by the definition: unknown → fallback (or default); else the rules naming
    the region, else those naming the country, else the default."""
    default = next(r for r in rules if r.default)
    if where.country is None:
        return next((r for r in rules if r.id == fallback), default)
    by_region = [r for r in rules if where.region is not None and where.region in r.regions]
    if by_region:
        return by_region[0]
    by_country = [r for r in rules if where.country in r.countries]
    return by_country[0] if by_country else default


locations = st.builds(
    Location, st.none() | st.sampled_from([*COUNTRIES, "FR"]), st.none() | st.sampled_from(REGIONS)
).map(lambda loc: loc if loc.country else Location())


@given(rule_sets(), locations)
def test_the_matched_rule_is_the_most_specific(
    drawn: tuple[list[Rule], str | None], where: Location
) -> None:
    rules, fallback = drawn
    assert rule_errors(rules, fallback) == []
    assert Rules(rules, fallback).match(where) == brute_force(rules, fallback, where)


@given(rule_sets(), st.sampled_from(COUNTRIES + REGIONS))
def test_a_code_in_two_rules_is_refused_with_its_pointer(
    drawn: tuple[list[Rule], str | None], code: str
) -> None:
    rules, fallback = drawn
    kind = "regions" if "-" in code else "countries"
    owners = [i for i, r in enumerate(rules) if code in getattr(r, kind)]
    extra = rule(f"x{len(rules)}", **{kind: [code]})
    errors = rule_errors([*rules, extra], fallback)
    if owners:
        assert errors == [
            {
                "pointer": f"/jurisdictions/{len(rules)}/{kind}/0",
                "detail": f"'{code}' is also in rule '{rules[owners[0]].id}': "
                "the match would depend on order",
            }
        ]
    else:
        assert errors == []


def test_rules_need_exactly_one_default_and_a_known_fallback() -> None:
    eea = rule("eea", countries=["NO"])
    assert rule_errors([eea], None) == [
        {"pointer": "/jurisdictions", "detail": "exactly one rule must be the default (found 0)"}
    ]
    two = [rule("a", default=True), rule("b", default=True)]
    assert rule_errors(two, None)[0]["detail"].endswith("(found 2)")
    assert rule_errors([rule("a", default=True)], "eea") == [
        {"pointer": "/fallback", "detail": "'eea' is not a rule id"}
    ]
    assert rule_errors(None, "eea") == [
        {"pointer": "/fallback", "detail": "a fallback needs jurisdictions"}
    ]
    assert rule_errors([rule("a", default=True), rule("a", countries=["SE"])], None) == [
        {"pointer": "/jurisdictions/1/id", "detail": "'a' repeats rule 0"}
    ]
    assert rule_errors([rule("a", default=True), rule("b")], None) == [
        {
            "pointer": "/jurisdictions/1",
            "detail": "a rule names countries or regions, or is the default",
        }
    ]


@pytest.mark.parametrize(
    ("field", "code"),
    [("countries", "ZZ"), ("countries", "no"), ("regions", "US-ZZ"), ("regions", "CA")],
)
def test_unknown_codes_are_refused_where_they_stand(field: str, code: str) -> None:
    body = {
        "name": "x",
        "languages": ["en"],
        "default_language": "en",
        "jurisdictions": [
            {"id": "rest", "model": "opt_in", "default": True, field: ["SE", code][-1:]}
        ],
    }
    with pytest.raises(ValidationError) as caught:
        SiteIn.model_validate(body)
    assert caught.value.errors()[0]["loc"] == ("jurisdictions", 0, field, 0)


def test_the_code_lists_are_pycountrys_own() -> None:
    # cmp reads pycountry's data files rather than keep its objects: the same codes.
    import pycountry

    assert _countries() == {c.alpha_2 for c in pycountry.countries}
    assert _regions() == {s.code for s in pycountry.subdivisions}
    assert {"NO", "SE"} <= _countries() and {"US-CA", "NO-03"} <= _regions()


def test_a_site_without_rules_has_one_opt_in_rule_for_everyone() -> None:
    rules = compile_rules(None, None)
    for where in (Location(), Location("US", "US-CA"), Location("NO")):
        assert rules.match(where) == DEFAULT_RULE
    assert DEFAULT_RULE.model == "opt_in"


@pytest.mark.parametrize(
    ("country", "region", "expected"),
    [
        ("US", "CA", Location("US", "US-CA")),
        ("us", "us-ca", Location("US", "US-CA")),
        (None, "US-CA", Location("US", "US-CA")),
        ("US", "GB-ENG", Location("US", None)),
        ("XX", None, Location()),
        ("T1", "CA", Location()),
        ("XX", "US-CA", Location()),
        ("", "", Location()),
        ("USA", None, Location()),
        ("NO", "03", Location("NO", "NO-03")),
        (" se ", None, Location("SE")),
        ("DE", "<script>", Location("DE")),
    ],
)
def test_locations_are_normalised(
    country: str | None, region: str | None, expected: Location
) -> None:
    assert location_of(country, region) == expected


def test_rule_sha256_is_the_hash_of_the_rule_as_it_is() -> None:
    a = rule("us-ca", regions=["US-CA"], model="opt_out")
    b = rule("us-ca", regions=["US-CA"], model="opt_in")
    assert a.sha256() != b.sha256()
    assert a.sha256() == rule("us-ca", regions=["US-CA"], model="opt_out").sha256()


def test_a_rule_without_the_sharing_override_keeps_its_fingerprint() -> None:
    # Pinned before `share_across_devices` existed: records logged then keep verifying
    # against the rule as it is written today.
    plain = rule("us-ca", regions=["US-CA"], model="opt_out")
    assert canonical_json(plain.model_dump(mode="json")) == (
        b'{"countries":[],"default":false,"id":"us-ca","model":"opt_out","regions":["US-CA"]}'
    )
    assert plain.sha256() == "d72a86674ba7be338e9c71059a4a290d295b9cb31ac3657d62dcec05212d002a"
    assert DEFAULT_RULE.sha256() == (
        "876bb927fe7d55bd978120ff1f797cb7bd3cfc57384f343e40891a420a2ec7ec"
    )
    off = rule("us-ca", regions=["US-CA"], model="opt_out", share_across_devices=False)
    assert off.sha256() != plain.sha256()
    assert canonical_json(off.model_dump(mode="json")).endswith(b',"share_across_devices":false}')
    assert (plain.shares(True), plain.shares(False), off.shares(True)) == (True, False, False)
