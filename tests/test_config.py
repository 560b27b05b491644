"""Configuration: a bad value stops start-up with one line naming the variable."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.factories import ADMIN_KEY


def test_bad_configuration_stops_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cmp.cli import main

    monkeypatch.setenv("CMP_PORT", "eighty")
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CMP_PORT" in err


@pytest.mark.parametrize("value", ["CF IPCountry", "X-Country:", ""])
def test_a_geo_header_that_is_no_header_name_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    from cmp.cli import main

    monkeypatch.setenv("CMP_GEO_REGION_HEADER", value)
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CMP_GEO_REGION_HEADER" in err


# --- `cmpd serve` start-up failures: one line naming the variable, never a traceback ---


def _a_file(tmp: Path) -> Path:
    """A regular file: a path below it cannot be created, not even by root."""
    file = tmp / "a-file"
    file.write_text("not a folder\n", "utf-8")
    return file


def _corrupt_key(tmp: Path) -> Path:
    key = tmp / "corrupt.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n", "utf-8")
    return key


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _taken_port(held: ExitStack) -> str:
    listener = held.enter_context(socket.create_server(("127.0.0.1", 0)))
    return str(listener.getsockname()[1])


# (what, the environment it sets given a folder and a stack to hold things open, exit
# code, variable named)
Env = Callable[[Path, ExitStack], dict[str, str]]
START_UP_FAILURES: list[tuple[str, Env, int, str]] = [
    # The data folder below a regular file: its signing key can be neither read nor written.
    (
        "data folder below a file",
        lambda t, _: {"CMP_DATA_DIR": f"{_a_file(t)}/sub"},
        2,
        "CMP_DATA_DIR",
    ),
    # A folder that cannot be made (/proc takes no new entries, root or not): the key
    # cannot be written.
    (
        "data folder not creatable",
        lambda t, _: {"CMP_DATA_DIR": "/proc/cmp-no-such"},
        2,
        "CMP_DATA_DIR",
    ),
    (
        "embedded database folder below a file",
        lambda t, _: {
            "CMP_DATABASE_URL": "",
            "CMP_DATA_DIR": f"{_a_file(t)}/sub",
            "CMP_SIGNING_KEY_FILE": str(t / "key.pem"),
        },
        2,
        "CMP_DATA_DIR",
    ),
    (
        "key file below a file",
        lambda t, _: {"CMP_SIGNING_KEY_FILE": f"{_a_file(t)}/key.pem"},
        2,
        "CMP_SIGNING_KEY_FILE",
    ),
    (
        "key file is a folder",
        lambda t, _: {"CMP_SIGNING_KEY_FILE": str(t)},
        2,
        "CMP_SIGNING_KEY_FILE",
    ),
    (
        "key file corrupt",
        lambda t, _: {"CMP_SIGNING_KEY_FILE": str(_corrupt_key(t))},
        2,
        "CMP_SIGNING_KEY_FILE",
    ),
    ("port not a number", lambda t, _: {"CMP_PORT": "eighty"}, 2, "CMP_PORT"),
    ("port taken", lambda _, held: {"CMP_PORT": _taken_port(held)}, 2, "CMP_PORT"),
    (
        "database unreachable",
        lambda t, _: {"CMP_DATABASE_URL": f"postgresql://cmp:x@127.0.0.1:{_closed_port()}/cmp"},
        1,
        "CMP_DATABASE_URL",
    ),
    ("database URL not a URL", lambda t, _: {"CMP_DATABASE_URL": "cmp@db"}, 2, "CMP_DATABASE_URL"),
]


@pytest.mark.parametrize(
    ("env", "code", "variable"),
    [case[1:] for case in START_UP_FAILURES],
    ids=[case[0] for case in START_UP_FAILURES],
)
def test_serve_start_up_failure_is_one_line_naming_the_variable(
    env: Env, code: int, variable: str, db_dsn: str, tmp_path: Path
) -> None:
    base = {
        "CMP_DATABASE_URL": db_dsn,
        "CMP_ADMIN_KEY": ADMIN_KEY,
        "CMP_DATA_DIR": str(tmp_path / "data"),
        "CMP_PORT": str(_closed_port()),
        "CMP_LOG_LEVEL": "WARNING",
    }
    with ExitStack() as held:
        given = {**base, **env(tmp_path, held)}
        if not given["CMP_DATABASE_URL"]:
            del given["CMP_DATABASE_URL"]
        done = subprocess.run(
            [sys.executable, "-m", "cmp", "serve"],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("CMP_")}, **given},
            capture_output=True,
            text=True,
            timeout=60,
        )
    lines = done.stderr.splitlines()
    assert done.returncode == code, done.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("cmpd: "), done.stderr[-3000:]
    assert variable in lines[0]
