"""Hypothesis stateful test: the state endpoint always equals a pure fold of the log.

Random sequences of consent events (accept, reject, custom, withdraw, for old and new
policy versions), retries, conflicting replays and policy publications run against the
real server (real HTTP on a port, real PostgreSQL); after every step, every subject's
state must equal what a few lines of pure Python derive from the accepted events.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.factories import ADMIN, ORIGIN, new_site_id, policy_body, site_body
from tests.live import Server, live_server

SUBJECTS = ("alice", "bob", "carol")
BASE_PURPOSES = ("necessary", "preferences", "statistics", "marketing")


@pytest.fixture(scope="module")
def server(db_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = live_server(db_dsn, tmp_path_factory.mktemp("model"))
    yield srv
    srv.stop()


def expected_purposes(
    action: str, purposes: tuple[str, ...], chosen: dict[str, bool]
) -> dict[str, bool]:
    if action == "accept_all":
        return dict.fromkeys(purposes, True)
    if action in ("reject_all", "withdraw"):
        return {p: p == "necessary" for p in purposes}
    return {p: p == "necessary" or chosen[p] for p in purposes}


class ConsentLog(RuleBasedStateMachine):
    server: Server

    @initialize()
    def make_site(self) -> None:
        self.site = new_site_id()
        assert self.server.call("PUT", f"/v1/sites/{self.site}", site_body(), ADMIN)[0] == 201
        assert (
            self.server.call("POST", f"/v1/sites/{self.site}/policies", policy_body(), ADMIN)[0]
            == 201
        )
        _status, key = self.server.call(
            "POST", f"/v1/sites/{self.site}/keys", {"scope": "read"}, ADMIN
        )
        self.read = {"Authorization": f"Bearer {key['key']}"}
        self.versions: list[tuple[bool, tuple[str, ...]]] = [(True, BASE_PURPOSES)]
        self.posted: list[dict[str, Any]] = []
        self.latest: dict[str, dict[str, Any]] = {}

    def _post(self, body: dict[str, Any]) -> tuple[int, Any]:
        return self.server.call("POST", f"/v1/sites/{self.site}/events", body, {"Origin": ORIGIN})

    @rule(
        subject=st.sampled_from(SUBJECTS),
        action=st.sampled_from(["accept_all", "reject_all", "custom", "withdraw"]),
        version_pick=st.integers(min_value=0, max_value=10),
        choices=st.lists(st.booleans(), min_size=5, max_size=5),
    )
    def consent(self, subject: str, action: str, version_pick: int, choices: list[bool]) -> None:
        version = len(self.versions) - version_pick % len(self.versions)
        purposes = self.versions[version - 1][1]
        optional = [p for p in purposes if p != "necessary"]
        chosen = dict(zip(optional, choices, strict=False))
        body: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "subject_id": subject,
            "policy_version": version,
            "action": action,
        }
        if action == "custom":
            body["purposes"] = chosen
        status, answer = self._post(body)
        assert (status, answer) == (201, {"accepted": 1, "duplicates": 0}), answer
        self.posted.append(body)
        self.latest[subject] = {**body, "expected": expected_purposes(action, purposes, chosen)}

    @rule(pick=st.integers(min_value=0))
    def retry(self, pick: int) -> None:
        if not self.posted:
            return
        assert self._post(self.posted[pick % len(self.posted)]) == (
            201,
            {"accepted": 0, "duplicates": 1},
        )

    @rule(pick=st.integers(min_value=0))
    def conflicting_replay(self, pick: int) -> None:
        if not self.posted:
            return
        body = dict(self.posted[pick % len(self.posted)])
        body["action"] = "withdraw" if body["action"] != "withdraw" else "reject_all"
        body.pop("purposes", None)
        assert self._post(body)[0] == 409

    @rule(material=st.booleans())
    def publish(self, material: bool) -> None:
        extra = material  # a material version changes what is asked: one more purpose
        previous = self.versions[-1][1]
        purposes = (*previous, "social") if extra and "social" not in previous else previous
        doc = policy_body(material=material, extra_purpose="social" in purposes)
        status, answer = self.server.call("POST", f"/v1/sites/{self.site}/policies", doc, ADMIN)
        assert status == 201 and answer["version"] == len(self.versions) + 1
        self.versions.append((material, purposes))

    @invariant()
    def state_equals_fold(self) -> None:
        if not hasattr(self, "site"):
            return
        newest_material = max(i + 1 for i, (m, _) in enumerate(self.versions) if m)
        current = self.versions[-1][1]
        for subject in SUBJECTS:
            status, state = self.server.call(
                "GET", f"/v1/sites/{self.site}/subjects/{subject}/consent", headers=self.read
            )
            assert status == 200
            latest = self.latest.get(subject)
            if latest is None:
                assert state["status"] == "none"
                assert state["purposes"] == {p: p == "necessary" for p in current}
                continue
            assert state["event_id"] == latest["event_id"]
            assert state["policy_version"] == latest["policy_version"]
            if latest["policy_version"] < newest_material:
                assert state["status"] == "stale"
                assert state["purposes"] == {p: p == "necessary" for p in current}
            else:
                assert state["status"] == "valid"
                assert state["purposes"] == latest["expected"]


def test_state_always_equals_the_fold_of_accepted_events(server: Server) -> None:
    ConsentLog.server = server
    run = ConsentLog.TestCase
    run.settings = settings(
        max_examples=25,
        stateful_step_count=15,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    run().runTest()
