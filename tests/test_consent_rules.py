"""The choice rules (docs/api.md, Collect) as a table, without a database or HTTP.

Each row: what the banner sent, and either the purposes and services recorded or the
pointers of the errors.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from cmp.consent import PolicyView, apply_gpc, resolve_choice, resolve_services
from cmp.models import EventIn, PolicyIn, PolicyVersion
from tests.factories import policy_body

ALL = ("necessary", "preferences", "statistics", "marketing")


def view() -> PolicyView:
    body = PolicyIn.model_validate(policy_body())
    policy = PolicyVersion(
        site_id="shop",
        version=1,
        material=True,
        content_sha256="0" * 64,
        published_at=datetime(2026, 1, 1, tzinfo=UTC),
        **body.model_dump(exclude={"material"}),
    )
    return PolicyView.of(policy)


def sent(action: str, **fields: Any) -> EventIn:
    return EventIn(
        event_id=str(uuid.uuid4()),
        subject_id="s",
        policy_version=1,
        action=action,  # type: ignore[arg-type]
        **fields,
    )


def only(*granted: str) -> dict[str, bool]:
    return {p: p in granted for p in ALL}


CHOICES: list[tuple[str, EventIn, dict[str, bool] | list[str]]] = [
    ("accept all grants all", sent("accept_all"), only(*ALL)),
    ("reject all keeps required", sent("reject_all"), only("necessary")),
    ("withdraw is a reject", sent("withdraw"), only("necessary")),
    (
        "custom records what was chosen",
        sent("custom", purposes={"preferences": True, "statistics": False, "marketing": True}),
        only("necessary", "preferences", "marketing"),
    ),
    (
        "custom may name the required purpose",
        sent(
            "custom",
            purposes={
                "necessary": True,
                "preferences": False,
                "statistics": False,
                "marketing": False,
            },
        ),
        only("necessary"),
    ),
    ("custom needs purposes", sent("custom"), ["/purposes"]),
    (
        "custom must decide every optional purpose",
        sent("custom", purposes={"preferences": True}),
        ["/purposes/statistics", "/purposes/marketing"],
    ),
    (
        "an unknown purpose",
        sent("accept_all", purposes={"social": True}),
        ["/purposes/social"],
    ),
    (
        "refusing a required purpose",
        sent("reject_all", purposes={"necessary": False}),
        ["/purposes/necessary"],
    ),
    (
        "purposes that disagree with the action",
        sent("reject_all", purposes={"marketing": True}),
        ["/purposes/marketing"],
    ),
    ("agreeing purposes are fine", sent("accept_all", purposes={"marketing": True}), only(*ALL)),
]


@pytest.mark.parametrize(("name", "event", "expected"), CHOICES, ids=[c[0] for c in CHOICES])
def test_choice_rules(name: str, event: EventIn, expected: dict[str, bool] | list[str]) -> None:
    errors: list[dict[str, str]] = []
    purposes = resolve_choice(view(), event, "/", errors)
    if isinstance(expected, list):
        assert [e["pointer"] for e in errors] == expected
    else:
        assert errors == []
        assert purposes == expected


SERVICES: list[tuple[str, dict[str, bool], dict[str, bool], dict[str, bool] | list[str]]] = [
    (
        "services follow their purposes",
        only(*ALL),
        {},
        {"session": True, "google-analytics": True, "facebook-pixel": True},
    ),
    (
        "a refused service stays refused",
        only(*ALL),
        {"facebook-pixel": False},
        {"session": True, "google-analytics": True, "facebook-pixel": False},
    ),
    (
        "denied purposes deny their services",
        only("necessary"),
        {},
        {"session": True, "google-analytics": False, "facebook-pixel": False},
    ),
    (
        "a service granted while its purpose is denied",
        only("necessary"),
        {"google-analytics": True},
        ["/services/google-analytics"],
    ),
    ("an unknown service", only(*ALL), {"hotjar": True}, ["/services/hotjar"]),
]


@pytest.mark.parametrize(
    ("name", "purposes", "chosen", "expected"), SERVICES, ids=[s[0] for s in SERVICES]
)
def test_service_rules(
    name: str,
    purposes: dict[str, bool],
    chosen: dict[str, bool],
    expected: dict[str, bool] | list[str],
) -> None:
    errors: list[dict[str, str]] = []
    event = sent("custom", services=chosen)
    services = resolve_services(view(), purposes, event, "/", errors)
    if isinstance(expected, list):
        assert [e["pointer"] for e in errors] == expected
    else:
        assert errors == []
        assert services == expected


@pytest.mark.parametrize(
    ("chosen", "expected"),
    [
        (only(*ALL), only("necessary", "preferences", "statistics")),
        (only("necessary"), only("necessary")),
        (only("necessary", "marketing"), only("necessary")),
    ],
)
def test_gpc_opts_out_of_the_gpc_purposes_only(
    chosen: dict[str, bool], expected: dict[str, bool]
) -> None:
    assert apply_gpc(view(), chosen) == expected
