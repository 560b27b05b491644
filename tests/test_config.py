"""Configuration: a bad value stops start-up with one line naming the variable."""

from __future__ import annotations

import pytest


def test_bad_configuration_stops_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cmp.cli import main

    monkeypatch.setenv("CMP_PORT", "eighty")
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CMP_PORT" in err
