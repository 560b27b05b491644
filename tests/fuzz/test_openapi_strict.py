"""The OpenAPI document states what the server enforces (the fuzz test relies on it)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

import jsonschema_rs
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from cmp.timerange import parse_instant
from cmp.values import SITE_ID_RE, SUBJECT_ID_RE, OccurredAt, normal_user_id
from tests.factories import ADMIN, new_site_id, site_body


async def document(client: TestClient) -> dict[str, Any]:
    r = await client.get("/openapi.json")
    assert r.status == 200
    doc: dict[str, Any] = await r.json()
    return doc


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


async def test_every_path_parameter_has_the_pattern_the_server_checks(client: TestClient) -> None:
    doc = await document(client)
    for path, method, op in operations(doc):
        names = re.findall(r"{(\w+)}", path)
        params = {p["name"]: p for p in op["parameters"] if p["in"] == "path"}
        assert sorted(params) == sorted(names), (method, path)
        for name, param in params.items():
            assert param["required"] is True
            assert param["schema"]["pattern"].startswith("^"), (method, path, name)
            assert param["schema"]["pattern"].endswith("$"), (method, path, name)
    site = doc["paths"]["/v1/sites/{site_id}"]["get"]["parameters"][0]["schema"]["pattern"]
    assert site == SITE_ID_RE.pattern
    consent = doc["paths"]["/v1/sites/{site_id}/subjects/{subject_id}/consent"]["get"]
    assert consent["parameters"][1]["schema"]["pattern"] == SUBJECT_ID_RE.pattern


async def test_every_operation_lists_its_statuses_and_errors_are_problems(
    client: TestClient,
) -> None:
    doc = await document(client)
    for path, method, op in operations(doc):
        responses = op["responses"]
        assert "default" not in responses and "500" not in responses, (method, path)
        assert any(code.startswith("2") for code in responses), (method, path)
        for code, response in responses.items():
            if int(code) >= 400:
                assert list(response["content"]) == ["application/problem+json"], (code, path)
            if code in ("429", "503"):
                assert response["headers"]["Retry-After"]["required"] is True
        if "security" in op and {} not in op["security"]:
            assert {"401", "403", "404"} <= set(responses), (method, path)
        if "requestBody" in op:
            assert op["requestBody"]["required"] is True
            assert {"400", "413", "415", "422"} <= set(responses), (method, path)


async def test_security_is_one_bearer_scheme_per_scope(client: TestClient) -> None:
    doc = await document(client)
    schemes = doc["components"]["securitySchemes"]
    assert sorted(schemes) == ["admin", "audit", "identify", "read"]
    assert all(s == {**s, "type": "http", "scheme": "bearer"} for s in schemes.values())
    assert doc["paths"]["/v1/sites/{site_id}/events"]["get"]["security"] == [{"audit": []}]
    # The collect endpoints are public (Origin-checked), or admin for server-side imports.
    assert doc["paths"]["/v1/sites/{site_id}/events"]["post"]["security"] == [{}, {"admin": []}]


async def test_site_languages_are_unique_items_as_the_server_requires(client: TestClient) -> None:
    doc = await document(client)
    site_in = doc["components"]["schemas"]["SiteIn"]
    assert site_in["properties"]["languages"]["uniqueItems"] is True
    body = site_body(languages=("en", "en"))
    r = await client.put(f"/v1/sites/{new_site_id()}", json=body, headers=ADMIN)
    assert r.status == 422


async def test_links_name_existing_operations_and_parameters(client: TestClient) -> None:
    doc = await document(client)
    by_id = {op["operationId"]: op for _, _, op in operations(doc)}
    assert len(by_id) == len(operations(doc)), "operation ids must be unique"
    found = 0
    for _, _, op in operations(doc):
        for response in op["responses"].values():
            for link in response.get("links", {}).values():
                target = by_id[link["operationId"]]
                names = {p["name"] for p in target["parameters"]}
                assert set(link["parameters"]) <= names, link
                found += 1
    assert found >= 6


# Characters where a trimming server and a pattern can disagree: C0 and C1 controls, every
# kind of white space (Python's and ECMAScript's), and plain letters.
EDGE = st.sampled_from(
    [chr(c) for c in range(0x20)]
    + [chr(c) for c in range(0x7F, 0xA1)]
    + list("\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000\ufeff\u180e ")
    + list("ab\u00e9")
)


async def test_a_user_id_is_taken_exactly_when_its_documented_pattern_allows_it(
    client: TestClient,
) -> None:
    """A trailing newline or C1 control once passed trimming while the document refused
    it, and schemathesis found the 200 (ST201)."""
    doc = await document(client)
    op = doc["paths"]["/v1/sites/{site_id}/users/{user_id}/consent"]["get"]
    (schema,) = [p["schema"] for p in op["parameters"] if p["name"] == "user_id"]
    allowed = documented(schema)

    @settings(max_examples=2000, deadline=None)
    @given(st.text(EDGE, max_size=6) | st.text(max_size=300))
    @example("[\x1f\n")
    @example("a\x85")
    @example("\ufeff")
    @example("a" + " " * 300)
    @example("a\n")
    def agree(text: str) -> None:
        if any(unicodedata.category(c) in ("Cs", "Cn") for c in text):
            return  # refused by the server only: a code point whose NFC may yet change
        try:
            normal_user_id(text)
            taken = True
        except ValueError:
            taken = False
        assert taken == allowed(text), repr(text)

    agree()


def documented(schema: dict[str, Any]) -> Callable[[str], bool]:
    """Whether a text is valid under `schema` as schemathesis reads the document: with
    jsonschema-rs, formats checked (date-time by RFC 3339) and fancy-regex patterns, whose
    `$` is the very end of the text, as ECMAScript's. Compiled once per schema."""
    validator = jsonschema_rs.validator_for(
        schema, validate_formats=True, pattern_options=jsonschema_rs.FancyRegexOptions()
    )
    return lambda text: bool(validator.is_valid(text))


STAMPS = st.sampled_from(
    [
        "2026-11-21",
        "2026-11-21T10:00:00Z",
        "2026-11-21t10:00:00.123456789z",
        "2026-11-21 10:00:00+01:00",
        "2026-11-21T01:00:00 02:00",
        "2026-11-21T10:00:00.5-18:00",
    ]
)
# What a mutation inserts: separators, signs, white space, digits of other scripts.
STAMP_EDGE = st.sampled_from([*" \t\n+-:.TtZz0189", "\u0661", "\uff11", "\u00a0"])


@st.composite
def mutated_stamps(draw: st.DrawFn, stamps: st.SearchStrategy[str] = STAMPS) -> str:
    text = draw(stamps)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 2))
        text = text[:at] + draw(st.text(STAMP_EDGE, max_size=2)) + text[at + cut :]
    return text


async def test_the_server_takes_no_from_or_to_its_document_refuses(client: TestClient) -> None:
    """The other direction (a documented form refused, such as year 1 at +01:00, which is
    before year 1 in UTC) is a 422 the fuzz test's exceptions name."""
    doc = await document(client)
    op = doc["paths"]["/v1/sites/{site_id}/stats"]["get"]
    (schema,) = [p["schema"] for p in op["parameters"] if p["name"] == "from"]
    allowed = documented(schema)

    @settings(max_examples=3000, deadline=None)
    @given(mutated_stamps())
    @example(" 2026-11-21")
    @example("2026-11-21\n")
    @example("2026-11-21T10:00:00 01:00")
    @example("2026-11-21 10:00:00+01:80")  # once taken: Python reads it as +02:20
    @example("2026-11-21T10:00:00-00:60")
    @example("2026-11-21T10:00:00.1234567\u0661Z")  # once taken: digits past the 6th were cut
    def agree(text: str) -> None:
        try:
            parse_instant(text)
        except ValueError:
            return
        assert allowed(text), repr(text)

    agree()


# A client's clock in an event: RFC 3339 only (pydantic alone takes more), inside the window.
OCCURRED = st.sampled_from(
    [
        "2026-11-21T10:00:00Z",
        "2026-11-21t10:00:00.123456z",
        "2026-11-21T10:00:00+01:00",
        "2026-11-21T10:00:00.5-05:30",
    ]
)


async def test_the_server_takes_no_occurred_at_its_document_refuses(client: TestClient) -> None:
    """pydantic's datetime took a space for the T, no seconds, "+0100", a decimal comma and
    Unix seconds; the document's date-time format takes none of them."""
    doc = await document(client)
    allowed = documented(doc["components"]["schemas"]["EventIn"]["properties"]["occurred_at"])
    clock = TypeAdapter(OccurredAt)

    @settings(max_examples=3000, deadline=None)
    @given(mutated_stamps(OCCURRED))
    @example("2026-11-21 10:00:00Z")
    @example("2026-11-21T10:00Z")
    @example("2026-11-21T10:00:00+0100")
    @example("2026-11-21T10:00:00,5Z")
    def agree(text: str) -> None:
        try:
            clock.validate_python(text)
        except ValidationError:
            return
        assert allowed(text), repr(text)

    agree()
    with pytest.raises(ValidationError):
        clock.validate_json("1700000000")  # a number is no RFC 3339 text either
