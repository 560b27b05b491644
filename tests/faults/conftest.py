"""The fault suite's report: counts go straight to the terminal, so a passing run's CI
log shows them too (pytest hides a passing test's captured output)."""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    def write(line: str) -> None:
        with capsys.disabled():
            print(f"\n[faults] {line}", flush=True)

    return write
