"""Hypothesis stateful test of linked users: link, unlink and relink sequences, decisions
on each device and policy publications run against the real server (real HTTP on a
port, real PostgreSQL); after every step each user's state equals a few lines of pure
Python folding the decisions of the subjects linked to it (docs/linked-users.md), and
each subject's own state is its user's while linked, its own otherwise.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.factories import ADMIN, ORIGIN, new_site_id, policy_body, site_body
from tests.live import Server, live_server
from tests.test_state_model import BASE_PURPOSES, expected_purposes

SUBJECTS = ("laptop", "phone", "tablet")
USERS = ("ada", "bo")


@pytest.fixture(scope="module")
def server(db_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = live_server(db_dsn, tmp_path_factory.mktemp("users"))
    yield srv
    srv.stop()


class LinkedUsers(RuleBasedStateMachine):
    server: Server

    @initialize()
    def make_site(self) -> None:
        self.site = new_site_id()
        assert self.server.call("PUT", f"/v1/sites/{self.site}", site_body(), ADMIN)[0] == 201
        status, _ = self.server.call(
            "POST", f"/v1/sites/{self.site}/policies", policy_body(), ADMIN
        )
        assert status == 201
        self.keys = {scope: self._key(scope) for scope in ("read", "identify")}
        self.versions: list[tuple[bool, tuple[str, ...]]] = [(True, BASE_PURPOSES)]
        self.order = itertools.count()
        # subject → (order, policy version, expected purposes) of its latest decision
        self.decided: dict[str, tuple[int, int, dict[str, bool]]] = {}
        # subject → (user, order of the link in force)
        self.links: dict[str, tuple[str, int]] = {}

    def _key(self, scope: str) -> dict[str, str]:
        status, key = self.server.call(
            "POST", f"/v1/sites/{self.site}/keys", {"scope": scope}, ADMIN
        )
        assert status == 201
        return {"Authorization": f"Bearer {key['key']}"}

    @rule(
        subject=st.sampled_from(SUBJECTS),
        action=st.sampled_from(["accept_all", "reject_all", "custom", "withdraw"]),
        choices=st.lists(st.booleans(), min_size=5, max_size=5),
    )
    def decide(self, subject: str, action: str, choices: list[bool]) -> None:
        """A decision under the current version (most of them)."""
        self.decide_under(subject, action, 0, choices)

    @rule(
        subject=st.sampled_from(SUBJECTS),
        action=st.sampled_from(["accept_all", "reject_all", "custom", "withdraw"]),
        version_pick=st.integers(min_value=1, max_value=3),
        choices=st.lists(st.booleans(), min_size=5, max_size=5),
    )
    def decide_under(
        self, subject: str, action: str, version_pick: int, choices: list[bool]
    ) -> None:
        """A decision under an older version when there is one (a page cached long)."""
        version = len(self.versions) - version_pick % len(self.versions)
        purposes = self.versions[version - 1][1]
        chosen = dict(zip([p for p in purposes if p != "necessary"], choices, strict=False))
        body: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "subject_id": subject,
            "policy_version": version,
            "action": action,
        }
        if action == "custom":
            body["purposes"] = chosen
        status, _ = self.server.call(
            "POST", f"/v1/sites/{self.site}/events", body, {"Origin": ORIGIN}
        )
        assert status == 201
        expected = expected_purposes(action, purposes, chosen)
        self.decided[subject] = (next(self.order), version, expected)

    @rule(subject=st.sampled_from(SUBJECTS), user=st.sampled_from(USERS))
    def link(self, subject: str, user: str) -> None:
        body = {"user_id": user, "event_id": str(uuid.uuid4())}
        status, answer = self.server.call(
            "POST", f"/v1/sites/{self.site}/subjects/{subject}/link", body, self.keys["identify"]
        )
        if self.links.get(subject, ("", 0))[0] == user:
            assert status == 200 and answer["appended"] is False  # in force already
        else:
            assert status == 201 and answer["appended"] is True
            self.links[subject] = (user, next(self.order))

    @rule(subject=st.sampled_from(SUBJECTS))
    def unlink(self, subject: str) -> None:
        status, _ = self.server.call(
            "DELETE", f"/v1/sites/{self.site}/subjects/{subject}/link", None, self.keys["identify"]
        )
        assert status == (201 if subject in self.links else 404)
        self.links.pop(subject, None)

    @rule(material=st.booleans())
    def publish(self, material: bool) -> None:
        previous = self.versions[-1][1]
        purposes = (*previous, "social") if material and "social" not in previous else previous
        doc = policy_body(material=material, extra_purpose="social" in purposes)
        assert self.server.call("POST", f"/v1/sites/{self.site}/policies", doc, ADMIN)[0] == 201
        self.versions.append((material, purposes))

    def expected(self, subjects: list[str]) -> tuple[str, dict[str, bool]]:
        """The reference fold: (status, purposes) of these subjects' decisions."""
        material = max(i + 1 for i, (m, _) in enumerate(self.versions) if m)
        closed = {p: p == "necessary" for p in self.versions[-1][1]}
        decisions = sorted(self.decided[s] for s in subjects if s in self.decided)
        in_force = [d for d in decisions if d[1] >= material]
        if not in_force:
            return ("stale" if decisions else "none"), closed
        purposes: dict[str, bool] = {}
        for _, _, expected in in_force:
            purposes.update(expected)  # the latest decision wins, purpose by purpose
        return "valid", purposes

    def _get(self, path: str) -> dict[str, Any]:
        status, doc = self.server.call(
            "GET", f"/v1/sites/{self.site}{path}", None, self.keys["read"]
        )
        assert status == 200
        return dict(doc)

    @invariant()
    def users_state_is_the_fold_of_their_subjects(self) -> None:
        if not hasattr(self, "site"):
            return
        for user in USERS:
            linked = sorted((o, s) for s, (u, o) in self.links.items() if u == user)
            subjects = [s for _, s in linked]
            state = self._get(f"/users/{user}/consent")
            assert state["subjects"] == subjects
            assert (state["status"], state["purposes"]) == self.expected(subjects)
        for subject in SUBJECTS:
            state = self._get(f"/subjects/{subject}/consent")
            if subject in self.links:
                user = self.links[subject][0]
                peers = [s for s, (u, _) in self.links.items() if u == user]
            else:
                peers = [subject]
            assert (state["status"], state["purposes"]) == self.expected(peers), subject


def test_a_users_state_always_equals_the_fold_of_its_linked_subjects(server: Server) -> None:
    LinkedUsers.server = server
    run = LinkedUsers.TestCase
    run.settings = settings(
        max_examples=60,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    run().runTest()
