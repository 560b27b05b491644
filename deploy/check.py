"""`make deploy-check`: the static checks of deploy/, all offline.

hadolint on the Dockerfile; check-jsonschema with its vendored Compose Specification
schema on compose.yaml; kubernetes-validate --strict (schemas shipped in the package)
on the rendered kustomization; yamllint on every YAML file. Each tool is pinned in
pyproject.toml's `deploy` extra. tests/test_deploy.py feeds each check a broken copy.

    python deploy/check.py [DEPLOY_DIR]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from render import RenderError, render  # noqa: E402


@dataclass(frozen=True)
class Outcome:
    check: str
    ok: bool
    output: str


def _tool(name: str) -> str:
    found = Path(sys.executable).with_name(name)
    return str(found) if found.exists() else name


def _run(check: str, argv: list[str]) -> Outcome:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return Outcome(check, done.returncode == 0, (done.stdout + done.stderr).strip())


def hadolint(root: Path) -> Outcome:
    return _run("hadolint", [_tool("hadolint"), "--no-color", str(root / "Dockerfile")])


def compose(root: Path) -> Outcome:
    argv = [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
    return _run("compose-spec", [*argv, str(root / "compose.yaml")])


def kubernetes(root: Path) -> Outcome:
    import yaml

    try:
        docs = render(root / "k8s")
    except (RenderError, OSError, yaml.YAMLError) as exc:
        return Outcome("kubernetes-validate", False, f"render: {exc}")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as out:
        out.write(yaml.safe_dump_all(docs, sort_keys=False))
    try:
        argv = [_tool("kubernetes-validate"), "--strict", "--quiet", out.name]
        return _run("kubernetes-validate", argv)
    finally:
        Path(out.name).unlink()


def yamllint(root: Path) -> Outcome:
    files = sorted(str(p) for p in root.rglob("*.yaml") if p.name != ".yamllint.yaml")
    config = root / ".yamllint.yaml"
    return _run("yamllint", [_tool("yamllint"), "--strict", "-c", str(config), *files])


CHECKS = (hadolint, compose, kubernetes, yamllint)


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else HERE
    failed = 0
    for check in CHECKS:
        outcome = check(root)
        print(f"{'ok  ' if outcome.ok else 'FAIL'} {outcome.check}")
        if not outcome.ok:
            failed += 1
            print("     " + outcome.output.replace("\n", "\n     "))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
