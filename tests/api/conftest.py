"""Fixtures of the API tests: Go's independent verifier of the transparency log, and the
environment `cmpd` runs in beside the test server (tests.factories.cmpd)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.factories import ROOT


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, db_dsn: str, tmp_path: Path) -> None:
    monkeypatch.setenv("CMP_DATABASE_URL", db_dsn)
    monkeypatch.setenv("CMP_DATA_DIR", str(tmp_path))


GOPATH = Path(os.environ.get("CMP_TEST_GOPATH", "/usr/share/gocode"))
SOURCE = ROOT / "tools" / "tlogcheck" / "main.go"


@pytest.fixture(scope="session")
def tlogcheck() -> Path:
    go = shutil.which("go") or (
        "/usr/lib/go/bin/go" if Path("/usr/lib/go/bin/go").exists() else None
    )
    missing = None
    if go is None:
        missing = "go is not installed (Debian: golang-go)"
    elif not (GOPATH / "src/golang.org/x/mod/sumdb/tlog").is_dir():
        missing = f"golang.org/x/mod is not under {GOPATH} (Debian: golang-golang-x-mod-dev)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"independent verifier unavailable in CI: {missing}")
        pytest.skip(reason=missing)
    assert go is not None
    out = ROOT / ".data" / "go"
    out.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": str(GOPATH),
        "GOCACHE": str(out / "cache"),
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
    }
    binary = out / "tlogcheck"
    subprocess.run([go, "build", "-o", str(binary), str(SOURCE)], env=env, check=True, timeout=600)
    return binary
